//! Classified errors of the source: every error names the repository (without credentials), the revision and the cause.

use std::fmt;
use std::sync::Arc;

use crate::tree::TreeError;

/// What went wrong, coarsely, so that callers can decide whether to retry and what to tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The remote could not be reached (connection refused, DNS, protocol failure, server error).
    Unreachable,
    /// The remote refused our credentials (or demanded some that we do not have).
    AuthFailed,
    /// The SSH host key of the remote is not in the configured known_hosts entries.
    HostKeyUnknown,
    /// The SSH host key of the remote differs from the configured known_hosts entry.
    HostKeyChanged,
    /// The revision (branch, tag, SHA or semver constraint) does not resolve to a commit.
    RevisionNotFound,
    /// The application path does not exist at the revision, or escapes the repository.
    PathNotFound,
    /// A network operation did not finish within the configured timeout.
    Timeout,
    /// A configured limit (file size, total bytes, object count) was exceeded.
    LimitExceeded,
    /// The request itself is invalid (bad URL, bad revision syntax, bad credentials shape).
    Invalid,
    /// The local cache (mirror, lock, materialized tree) could not be read or written.
    Cache,
}

impl ErrorKind {
    /// A short stable name, e.g. for metrics labels and condition reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "Unreachable",
            ErrorKind::AuthFailed => "AuthFailed",
            ErrorKind::HostKeyUnknown => "HostKeyUnknown",
            ErrorKind::HostKeyChanged => "HostKeyChanged",
            ErrorKind::RevisionNotFound => "RevisionNotFound",
            ErrorKind::PathNotFound => "PathNotFound",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::LimitExceeded => "LimitExceeded",
            ErrorKind::Invalid => "Invalid",
            ErrorKind::Cache => "Cache",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The underlying cause of a [`SourceError`], as text that has been scrubbed of credentials.
#[derive(Debug, Clone)]
pub struct Cause(Arc<str>);

impl Cause {
    /// Wraps an already scrubbed message.
    pub fn new(message: impl Into<String>) -> Self {
        Cause(Arc::from(message.into()))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// Failure to fetch or read a revision of a repository.
#[derive(Debug, Clone, thiserror::Error)]
#[error("failed to {action} {repo} at revision {revision:?}: {kind}: {cause}")]
pub struct SourceError {
    /// The classification.
    pub kind: ErrorKind,
    /// What was being done, e.g. "fetch" or "resolve".
    pub action: &'static str,
    /// The repository URL without credentials.
    pub repo: String,
    /// The revision as requested.
    pub revision: String,
    /// The cause, scrubbed of credentials.
    #[source]
    pub cause: Cause,
}

impl SourceError {
    /// Builds an error.
    pub fn new(
        kind: ErrorKind,
        action: &'static str,
        repo: impl Into<String>,
        revision: impl Into<String>,
        cause: impl Into<String>,
    ) -> Self {
        SourceError {
            kind,
            action,
            repo: repo.into(),
            revision: revision.into(),
            cause: Cause::new(cause),
        }
    }

    /// The classification of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same request later may succeed without a change of configuration
    /// (network trouble, timeouts, a busy cache); false for auth, host key, missing revision or path, limits and invalid input.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Cache
        )
    }

    /// Converts a tree error met while reading a snapshot into a source error.
    pub fn from_tree(repo: &str, revision: &str, err: &TreeError) -> Self {
        let kind = match err {
            TreeError::NotFound { .. }
            | TreeError::PathEscape { .. }
            | TreeError::SymlinkEscape { .. }
            | TreeError::WrongType { .. } => ErrorKind::PathNotFound,
            TreeError::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            TreeError::Io { .. } => ErrorKind::Cache,
        };
        SourceError::new(kind, "read", repo, revision, error_chain(err))
    }
}

/// Renders an error and all its sources as one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
