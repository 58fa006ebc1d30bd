//! A git work tree in a temporary directory, driven by the `git` CLI with a fixed identity and clock.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

use super::git_cmd;
use crate::error::{Error, Result, io_err};
use crate::process::{check_relative, describe, run, run_stdout};

/// The fixed commit time (seconds since the epoch) of fixtures; each commit adds one second.
const EPOCH: u64 = 1_700_000_000;

/// A git repository with a work tree in a temporary directory (removed on drop), on branch `main`.
///
/// Author, committer and dates are fixed, so the same sequence of operations yields the same SHAs on every run.
#[derive(Debug)]
pub struct GitFixture {
    dir: TempDir,
    env: BTreeMap<String, String>,
    clock: AtomicU64,
}

impl GitFixture {
    /// Creates an empty repository on branch `main`.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kedge-fixture-")
            .tempdir()
            .map_err(io_err("create a temporary directory for a git fixture"))?;
        let fixture = Self {
            dir,
            env: BTreeMap::new(),
            clock: AtomicU64::new(EPOCH),
        };
        fixture.git(["init", "--quiet", "--initial-branch=main"])?;
        Ok(fixture)
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets an environment variable for every later git command of this fixture (e.g. `GIT_SSH_COMMAND`).
    pub fn set_env(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.env.insert(key.into(), value.into());
    }

    /// Writes `contents` to the relative path `rel`, creating parent directories.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> Result<()> {
        let path = self.file(rel)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("create directory for {rel}")))?;
        }
        std::fs::write(&path, contents).map_err(io_err(format!("write {rel}")))
    }

    /// Removes the file or directory tree at `rel`.
    pub fn remove(&self, rel: &str) -> Result<()> {
        let path = self.file(rel)?;
        let meta = std::fs::symlink_metadata(&path).map_err(io_err(format!("stat {rel}")))?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io_err(format!("remove directory {rel}")))
        } else {
            std::fs::remove_file(&path).map_err(io_err(format!("remove {rel}")))
        }
    }

    /// Creates a symbolic link at `rel` pointing to `target` (stored as given, usually relative).
    pub fn symlink(&self, target: &str, rel: &str) -> Result<()> {
        let path = self.file(rel)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("create directory for {rel}")))?;
        }
        std::os::unix::fs::symlink(target, &path).map_err(io_err(format!("create symlink {rel}")))
    }

    /// Stages every change (additions, modifications, deletions) and commits it; returns the commit SHA.
    /// An empty commit is made if nothing changed.
    pub fn commit(&self, message: &str) -> Result<String> {
        self.git(["add", "--all"])?;
        self.git([
            "commit",
            "--quiet",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ])?;
        self.head()
    }

    /// The SHA of `HEAD`.
    pub fn head(&self) -> Result<String> {
        self.rev_parse("HEAD")
    }

    /// The SHA a revision resolves to (`git rev-parse --verify REV^{}` peels tags to their object).
    pub fn rev_parse(&self, rev: &str) -> Result<String> {
        self.git(["rev-parse", "--verify", "--end-of-options", rev])
    }

    /// Creates branch `name` at `HEAD` without switching to it.
    pub fn create_branch(&self, name: &str) -> Result<()> {
        self.git(["branch", name]).map(drop)
    }

    /// Switches the work tree to existing branch `name`.
    pub fn switch(&self, name: &str) -> Result<()> {
        self.git(["switch", "--quiet", name]).map(drop)
    }

    /// Creates branch `name` at `HEAD` and switches to it.
    pub fn switch_new(&self, name: &str) -> Result<()> {
        self.git(["switch", "--quiet", "-c", name]).map(drop)
    }

    /// Creates an orphan branch `name` (no parent, empty index) and switches to it.
    pub fn switch_orphan(&self, name: &str) -> Result<()> {
        self.git(["switch", "--quiet", "--orphan", name]).map(drop)
    }

    /// Creates the lightweight tag `name` at `HEAD`; returns the commit SHA it points to.
    pub fn tag(&self, name: &str) -> Result<String> {
        self.git(["tag", name])?;
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Creates the annotated tag `name` at `HEAD`; returns the SHA of the tag object (not of the commit).
    pub fn tag_annotated(&self, name: &str, message: &str) -> Result<String> {
        self.git(["tag", "-a", name, "-m", message])?;
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Adds (or replaces) the remote `name` with `url`.
    pub fn set_remote(&self, name: &str, url: &str) -> Result<()> {
        let _ = self.git(["remote", "remove", name]);
        self.git(["remote", "add", name, url]).map(drop)
    }

    /// `git push URL REFSPEC`, e.g. `push(url, "main")` or `push(url, "refs/tags/v1:refs/tags/v1")`.
    pub fn push(&self, url: &str, refspec: &str) -> Result<()> {
        self.git(["push", "--quiet", url, refspec]).map(drop)
    }

    /// `git push --force URL REFSPEC` (rewrites history on the remote).
    pub fn force_push(&self, url: &str, refspec: &str) -> Result<()> {
        self.git(["push", "--quiet", "--force", url, refspec])
            .map(drop)
    }

    /// `git push --all` and `--tags` of every branch and tag to `url`.
    pub fn push_all(&self, url: &str) -> Result<()> {
        self.git([
            "push",
            "--quiet",
            url,
            "refs/heads/*:refs/heads/*",
            "refs/tags/*:refs/tags/*",
        ])
        .map(drop)
    }

    /// Appends `commits` commits to `branch` with `git fast-import` and moves the work tree to its tip; returns the
    /// tip SHA. The first commit writes `files` files (`data/DDD/fNNNNN.yaml`, 100 per directory so that each commit
    /// writes small trees); each later commit rewrites one of them in turn. Dates and contents are fixed, so the
    /// SHAs are reproducible.
    pub fn fast_history(&self, branch: &str, commits: usize, files: usize) -> Result<String> {
        let files = files.max(1);
        let parent = self.rev_parse(&format!("refs/heads/{branch}")).ok();
        let mut stream = Vec::with_capacity(commits * 200 + files * 64);
        let start = self.clock.load(Ordering::Relaxed);
        for i in 0..commits {
            let when = start + i as u64 + 1;
            let msg = format!("commit {i}");
            let _ = writeln!(stream, "commit refs/heads/{branch}");
            let _ = writeln!(
                stream,
                "author Kedge Test <test@kedge.invalid> {when} +0000"
            );
            let _ = writeln!(
                stream,
                "committer Kedge Test <test@kedge.invalid> {when} +0000"
            );
            let _ = writeln!(stream, "data {}\n{msg}", msg.len());
            if i == 0
                && let Some(parent) = &parent
            {
                let _ = writeln!(stream, "from {parent}");
            }
            let touched: Vec<usize> = if i == 0 {
                (0..files).collect()
            } else {
                vec![i % files]
            };
            for f in touched {
                let content = format!("file: {f}\nrevision: {i}\n");
                let path = format!("data/{:03}/f{f:05}.yaml", f / 100);
                let _ = writeln!(
                    stream,
                    "M 100644 inline {path}\ndata {}\n{content}",
                    content.len()
                );
            }
            let _ = writeln!(stream);
        }
        self.clock
            .store(start + commits as u64 + 1, Ordering::Relaxed);
        let mut cmd = self.command(["fast-import", "--quiet", "--done"]);
        stream.extend_from_slice(b"done\n");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "git fast-import".into(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&stream)
                .map_err(io_err("feed git fast-import"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(io_err("wait for git fast-import"))?;
        if !output.status.success() {
            return Err(Error::Command {
                command: describe(&cmd),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let current = self
            .git(["symbolic-ref", "--quiet", "--short", "HEAD"])
            .unwrap_or_default();
        if current == branch {
            self.git(["reset", "--quiet", "--hard", "HEAD"])?;
        } else {
            self.git(["switch", "--quiet", "--force", branch])?;
        }
        self.head()
    }

    /// Runs `git ARGS` in the work tree with the fixture's identity and environment; returns trimmed stdout.
    pub fn git<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_stdout(&mut self.command(args))
    }

    /// Runs `git ARGS` and returns whether it succeeded, with its stderr (for asserting on failures).
    pub fn git_status<I, S>(&self, args: I) -> Result<(bool, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(args);
        let output = cmd.output().map_err(|source| Error::Spawn {
            program: "git".into(),
            source,
        })?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        // Every command ticks the clock so successive commits get distinct, reproducible dates.
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        let date = format!("{now} +0000");
        let mut cmd = git_cmd();
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "Kedge Test")
            .env("GIT_AUTHOR_EMAIL", "test@kedge.invalid")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_NAME", "Kedge Test")
            .env("GIT_COMMITTER_EMAIL", "test@kedge.invalid")
            .env("GIT_COMMITTER_DATE", &date)
            .envs(&self.env);
        cmd
    }

    fn file(&self, rel: &str) -> Result<PathBuf> {
        check_relative(rel)?;
        Ok(self.dir.path().join(rel))
    }
}

/// Clones `url` into `dest` with the `git` CLI (isolated configuration); `envs` are extra variables such as
/// `GIT_SSH_COMMAND`. Returns git's stderr on failure inside the error.
pub fn git_clone(url: &str, dest: &Path, envs: &[(&str, &str)]) -> Result<()> {
    let mut cmd = git_cmd();
    cmd.args(["clone", "--quiet", url]).arg(dest);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(&mut cmd).map(drop)
}
