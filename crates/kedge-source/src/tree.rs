//! A read-only view of the files of one revision, shared by the source (which produces it) and the renderer (which reads it).

use std::path::{Path, PathBuf};

/// Failure to read from a [`FileTree`].
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The path does not exist in the tree.
    #[error("path not found: {path}")]
    NotFound {
        /// The path, relative to the tree root.
        path: String,
    },
    /// The path is absolute, contains `..` that leaves the root, or is otherwise not a clean relative path.
    #[error("path escapes the repository or is not relative: {path}")]
    PathEscape {
        /// The offending path, as given.
        path: String,
    },
    /// A symbolic link points outside the tree or to an absolute path.
    #[error("symlink {path} points outside the repository (to {target})")]
    SymlinkEscape {
        /// The link, relative to the tree root.
        path: String,
        /// Where it points.
        target: String,
    },
    /// A configured limit (file size, total bytes, object count) was exceeded.
    #[error("limit exceeded at {path}: {what} is {actual}, the limit is {limit}")]
    LimitExceeded {
        /// The path being read when the limit was hit.
        path: String,
        /// Which limit.
        what: &'static str,
        /// The observed value.
        actual: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The path exists but has the wrong type (a file where a directory was expected or vice versa).
    #[error("{path} is not a {expected}")]
    WrongType {
        /// The path, relative to the tree root.
        path: String,
        /// "file" or "directory".
        expected: &'static str,
    },
    /// Reading the underlying store failed.
    #[error("failed to read {path}")]
    Io {
        /// The path being read.
        path: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What kind of entry a [`DirEntry`] is. Symlinks are resolved by the tree: a link to a file is a `File`,
/// a link to a directory is a `Dir`, and a link that escapes the tree is an error when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (or a link to one inside the tree).
    File,
    /// A directory (or a link to one inside the tree).
    Dir,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (no slashes).
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
}

/// A read-only tree of files at one revision.
///
/// Paths are relative to the tree root, `/`-separated, with `""` meaning the root; implementations reject
/// absolute paths and `..` components that leave the root with [`TreeError::PathEscape`].
pub trait FileTree: Send + Sync {
    /// Lists a directory, sorted by name.
    fn read_dir(&self, dir: &str) -> Result<Vec<DirEntry>, TreeError>;
    /// Reads a whole file (following in-tree symlinks).
    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError>;
    /// A content identity of a directory and everything below it: equal ids mean equal content.
    /// For Git trees it is the tree object id; for local directories a hash of the content.
    fn dir_id(&self, dir: &str) -> Result<String, TreeError>;
    /// A real directory holding the whole tree, for subprocesses such as kustomize that need files on disk.
    /// Implementations may cache it (one checkout per commit); callers must treat it as read-only.
    fn materialize(&self) -> Result<PathBuf, TreeError>;
    /// A human-readable description of the tree for messages, e.g. `repo@sha` or a local path.
    fn describe(&self) -> String;
}

/// Limits on what reading one tree may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file, in bytes (default 10 MiB).
    pub max_file_bytes: u64,
    /// Total bytes read from one tree (default 256 MiB).
    pub max_total_bytes: u64,
    /// Number of files and directories read from one tree (default 50,000).
    pub max_objects: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 10 * 1024 * 1024,
            max_total_bytes: 256 * 1024 * 1024,
            max_objects: 50_000,
        }
    }
}

/// Running totals checked against [`Limits`].
#[derive(Debug, Default)]
pub(crate) struct Budget {
    bytes: std::sync::atomic::AtomicU64,
    objects: std::sync::atomic::AtomicU64,
}

impl Budget {
    /// Accounts for one object (file or directory) of `bytes` bytes at `path`.
    pub(crate) fn charge(&self, limits: &Limits, path: &str, bytes: u64) -> Result<(), TreeError> {
        use std::sync::atomic::Ordering;
        if bytes > limits.max_file_bytes {
            return Err(TreeError::LimitExceeded {
                path: path.to_owned(),
                what: "file size",
                actual: bytes,
                limit: limits.max_file_bytes,
            });
        }
        let objects = self.objects.fetch_add(1, Ordering::Relaxed) + 1;
        if objects > limits.max_objects {
            return Err(TreeError::LimitExceeded {
                path: path.to_owned(),
                what: "object count",
                actual: objects,
                limit: limits.max_objects,
            });
        }
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > limits.max_total_bytes {
            return Err(TreeError::LimitExceeded {
                path: path.to_owned(),
                what: "total bytes",
                actual: total,
                limit: limits.max_total_bytes,
            });
        }
        Ok(())
    }
}

/// Resolves a symlink `target` found at `link` (both relative to the root) to clean components,
/// refusing absolute targets and targets that leave the root.
pub(crate) fn resolve_link(link: &[&str], target: &str) -> Result<Vec<String>, TreeError> {
    let escape = || TreeError::SymlinkEscape {
        path: link.join("/"),
        target: target.to_owned(),
    };
    if target.starts_with('/') || Path::new(target).is_absolute() || target.contains('\\') {
        return Err(escape());
    }
    let parent = &link[..link.len().saturating_sub(1)];
    let joined = if parent.is_empty() {
        target.to_owned()
    } else {
        format!("{}/{}", parent.join("/"), target)
    };
    clean_relative(&joined)
        .map(|parts| parts.into_iter().map(str::to_owned).collect())
        .map_err(|_| escape())
}

/// Most symlinks followed while resolving one path.
pub(crate) const MAX_LINK_HOPS: usize = 40;

/// Splits a relative path into clean components, rejecting absolute paths and `..` that leave the root.
pub fn clean_relative(path: &str) -> Result<Vec<&str>, TreeError> {
    if path.starts_with('/') || Path::new(path).is_absolute() {
        return Err(TreeError::PathEscape {
            path: path.to_owned(),
        });
    }
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(TreeError::PathEscape {
                        path: path.to_owned(),
                    });
                }
            }
            p => out.push(p),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_relative_accepts_inner_dotdot_and_rejects_escapes() {
        assert_eq!(clean_relative("a/./b/../c").ok(), Some(vec!["a", "c"]));
        assert_eq!(clean_relative("").ok(), Some(vec![]));
        assert!(matches!(
            clean_relative("../x"),
            Err(TreeError::PathEscape { .. })
        ));
        assert!(matches!(
            clean_relative("a/../../x"),
            Err(TreeError::PathEscape { .. })
        ));
        assert!(matches!(
            clean_relative("/etc"),
            Err(TreeError::PathEscape { .. })
        ));
    }
}
