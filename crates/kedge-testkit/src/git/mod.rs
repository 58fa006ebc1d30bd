//! Loopback git servers (git daemon, smart HTTP, SSH) over a shared root of bare repositories, and git fixtures.

mod daemon;
mod fixture;
mod http;
mod ssh;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tempfile::TempDir;

use crate::error::{Result, io_err};
use crate::process::{check_relative, run};

pub use daemon::GitDaemon;
pub use fixture::{GitFixture, git_clone};
pub use http::{GitHttpServer, HttpAuth, HttpRequestRecord};
pub use ssh::GitSshServer;

/// A temporary directory of bare repositories, served by every server started on it; removed when the last
/// handle (including the servers' own) is dropped.
#[derive(Debug, Clone)]
pub struct RepoRoot {
    dir: Arc<TempDir>,
}

impl RepoRoot {
    /// Creates an empty root in a fresh temporary directory.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kedge-repos-")
            .tempdir()
            .map_err(io_err("create a temporary directory for bare repositories"))?;
        Ok(Self { dir: Arc::new(dir) })
    }

    /// The absolute path of the root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates the bare repository `name` (a relative path such as `"app.git"` or `"team/app.git"`) with `main`
    /// as its default branch, and returns its absolute path. Pushes over every transport are allowed.
    pub fn create_bare_repo(&self, name: &str) -> Result<PathBuf> {
        check_relative(name)?;
        let path = self.path().join(name);
        run(git_cmd()
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&path))?;
        for (key, value) in [
            ("http.receivepack", "true"),
            ("uploadpack.allowReachableSHA1InWant", "true"),
            ("uploadpack.allowFilter", "true"),
        ] {
            run(git_cmd().arg("-C").arg(&path).args(["config", key, value]))?;
        }
        Ok(path)
    }
}

/// The path of a git helper program such as `git-daemon` in git's exec path. Running it directly (not as
/// `git daemon`) matters: `git` runs helpers as child processes, so killing `git` would leave the helper running.
pub(crate) fn git_helper(name: &str) -> Result<PathBuf> {
    let exec_path = crate::process::run_stdout(git_cmd().arg("--exec-path"))?;
    Ok(Path::new(&exec_path).join(name))
}

/// A `git` command isolated from the user's and the system's git configuration.
pub(crate) fn git_cmd() -> Command {
    isolated(Command::new("git"))
}

/// Isolates a git program from the user's and the system's git configuration.
pub(crate) fn isolated(mut cmd: Command) -> Command {
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}
