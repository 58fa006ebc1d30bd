//! An in-memory [`FileTree`]: files given by path, for tests and for sets whose repositories are already read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kedge_source::{DirEntry, EntryKind, FileTree, TreeError};

/// Files by path (`a/b/c.yaml`); directories are those that hold files.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemoryTree {
    /// A tree of these files.
    pub fn new<P: Into<String>, C: Into<Vec<u8>>>(files: impl IntoIterator<Item = (P, C)>) -> Self {
        Self {
            files: files
                .into_iter()
                .map(|(p, c)| (p.into(), c.into()))
                .collect(),
        }
    }
}

impl FileTree for MemoryTree {
    fn read_dir(&self, dir: &str) -> Result<Vec<DirEntry>, TreeError> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: BTreeMap<String, EntryKind> = BTreeMap::new();
        for path in self.files.keys() {
            if let Some(rest) = path.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((d, _)) => out.insert(d.to_owned(), EntryKind::Dir),
                    None => out.insert(rest.to_owned(), EntryKind::File),
                };
            }
        }
        if out.is_empty() && !dir.is_empty() {
            return Err(TreeError::NotFound {
                path: dir.to_owned(),
            });
        }
        Ok(out
            .into_iter()
            .map(|(name, kind)| DirEntry { name, kind })
            .collect())
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| TreeError::NotFound {
                path: path.to_owned(),
            })
    }

    fn dir_id(&self, dir: &str) -> Result<String, TreeError> {
        Ok(format!("memory:{dir}"))
    }

    fn materialize(&self) -> Result<PathBuf, TreeError> {
        Err(TreeError::Io {
            path: String::new(),
            source: "an in-memory tree has no directory on disk".into(),
        })
    }

    fn describe(&self) -> String {
        "in-memory tree".into()
    }
}
