//! The error type of the test kit.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting servers, building fixtures or talking to the test cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or socket operation failed.
    #[error("failed to {action}")]
    Io {
        /// What was being done, e.g. "create temp dir".
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started at all.
    #[error("failed to start `{program}`")]
    Spawn {
        /// The program that was started.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("failed to run `{command}` ({status}): {stderr}")]
    Command {
        /// The command line (no secrets: the kit never puts credentials on a command line it reports).
        command: String,
        /// The exit status as text.
        status: String,
        /// The trimmed standard error of the command.
        stderr: String,
    },
    /// A server process did not start listening in time, or exited while starting.
    #[error("failed to start {what} on 127.0.0.1:{port}: {reason}; log tail:\n{log}")]
    ServerStart {
        /// Which server, e.g. "git daemon".
        what: &'static str,
        /// The port it was told to listen on.
        port: u16,
        /// Why it is considered failed.
        reason: String,
        /// The last lines of its log.
        log: String,
    },
    /// A name given to the kit is not usable (empty, absolute, or containing `..`).
    #[error("failed to use name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The output of `testcluster/up` did not end with a kubeconfig path.
    #[error("failed to find a kubeconfig path in the output of `{script}`: last line was {line:?}")]
    NoKubeconfig {
        /// The script that was run.
        script: PathBuf,
        /// The last line it printed.
        line: String,
    },
    /// The kubeconfig could not be read or turned into a client configuration.
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A Kubernetes API call made by the kit failed.
    #[error("failed to {action}")]
    Kube {
        /// What was being done, e.g. "create namespace kedge-x-1".
        action: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
    /// A condition polled by [`wait_for`](crate::wait_for) never became true.
    #[error(transparent)]
    Timeout(#[from] Timeout),
}

/// A condition polled by [`wait_for`](crate::wait_for) was not met in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("condition polled at {location} was not met within {timeout:?} ({attempts} attempts)")]
pub struct Timeout {
    /// Source location of the `wait_for` call.
    pub location: String,
    /// The time allowed.
    pub timeout: Duration,
    /// How many times the condition was evaluated.
    pub attempts: u32,
}

/// Result type of the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let action = action.into();
    move |source| Error::Io { action, source }
}
