//! `git daemon` serving a [`RepoRoot`] over git:// on a loopback port.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use tempfile::TempDir;

use super::{RepoRoot, git_helper, isolated};
use crate::error::{Error, Result, io_err};
use crate::process::{
    Readiness, START_ATTEMPTS, START_TIMEOUT, free_port, kill_and_reap, log_tail, wait_listening,
};

/// A running `git daemon` (git://, fetch and push allowed, every repository exported). Killed on drop.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    port: u16,
    root: RepoRoot,
    log: PathBuf,
    _dir: TempDir,
}

impl GitDaemon {
    /// Starts `git daemon` on a free port of 127.0.0.1 serving `root`, and waits until it accepts connections.
    pub fn start(root: &RepoRoot) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kedge-git-daemon-")
            .tempdir()
            .map_err(io_err("create a temporary directory for git daemon"))?;
        let log = dir.path().join("daemon.log");
        let program = git_helper("git-daemon")?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let log_file = File::create(&log).map_err(io_err("create the git daemon log"))?;
            let mut child = isolated(std::process::Command::new(&program))
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "safe.directory")
                .env("GIT_CONFIG_VALUE_0", "*")
                .arg("--reuseaddr")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg("--export-all")
                .arg("--enable=receive-pack")
                .arg("--informative-errors")
                .arg("--verbose")
                .arg(format!("--base-path={}", root.path().display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|source| Error::Spawn {
                    program: "git daemon".into(),
                    source,
                })?;
            let reason = match wait_listening(&mut child, port, START_TIMEOUT, |_| true) {
                Readiness::Ready => {
                    return Ok(Self {
                        child,
                        port,
                        root: root.clone(),
                        log,
                        _dir: dir,
                    });
                }
                Readiness::Exited(status) => format!("exited while starting ({status})"),
                Readiness::TimedOut => format!("not listening after {START_TIMEOUT:?}"),
            };
            kill_and_reap(&mut child);
            last_err = Some(Error::ServerStart {
                what: "git daemon",
                port,
                reason,
                log: log_tail(&log, 20),
            });
        }
        Err(last_err.unwrap_or_else(|| Error::ServerStart {
            what: "git daemon",
            port: 0,
            reason: "no attempt made".into(),
            log: String::new(),
        }))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of repository `name` of the root, e.g. `git://127.0.0.1:PORT/app.git`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            name.trim_start_matches('/')
        )
    }

    /// The root it serves.
    pub fn root(&self) -> &RepoRoot {
        &self.root
    }

    /// The daemon's log so far (useful when a test fails).
    pub fn log(&self) -> String {
        log_tail(&self.log, usize::MAX)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
