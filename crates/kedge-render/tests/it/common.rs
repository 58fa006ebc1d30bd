//! A test-only [`FileTree`] over a temporary directory, and helpers to fill it.

#![allow(dead_code)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kedge_source::{DirEntry, EntryKind, FileTree, TreeError};

/// A directory on disk as a tree; counts `materialize` calls.
pub struct TempTree {
    pub dir: tempfile::TempDir,
    pub materialized: AtomicUsize,
}

fn io(path: &str, e: std::io::Error) -> TreeError {
    if e.kind() == std::io::ErrorKind::NotFound {
        TreeError::NotFound {
            path: path.to_owned(),
        }
    } else {
        TreeError::Io {
            path: path.to_owned(),
            source: Box::new(e),
        }
    }
}

impl TempTree {
    pub fn new() -> Self {
        TempTree {
            dir: tempfile::tempdir().unwrap(),
            materialized: AtomicUsize::new(0),
        }
    }

    /// A tree holding a copy of a fixture directory (under `tests/fixtures`) at `at`.
    pub fn with_fixture(fixture: &str, at: &str) -> Self {
        let t = TempTree::new();
        t.copy_fixture(fixture, at);
        t
    }

    pub fn copy_fixture(&self, fixture: &str, at: &str) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture);
        copy_dir(&src, &self.path(at));
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir.path().to_path_buf()
        } else {
            self.dir.path().join(rel)
        }
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn hash_dir(&self, p: &Path, h: &mut DefaultHasher) -> std::io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(p)?.collect::<Result<Vec<_>, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            e.file_name().hash(h);
            let path = e.path();
            if path.is_dir() {
                1u8.hash(h);
                self.hash_dir(&path, h)?;
            } else {
                2u8.hash(h);
                std::fs::read(&path)?.hash(h);
            }
        }
        Ok(())
    }
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

impl FileTree for TempTree {
    fn read_dir(&self, dir: &str) -> Result<Vec<DirEntry>, TreeError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.path(dir)).map_err(|e| io(dir, e))? {
            let e = e.map_err(|e| io(dir, e))?;
            let kind = if e.path().is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push(DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        std::fs::read(self.path(path)).map_err(|e| io(path, e))
    }

    fn dir_id(&self, dir: &str) -> Result<String, TreeError> {
        let mut h = DefaultHasher::new();
        self.hash_dir(&self.path(dir), &mut h)
            .map_err(|e| io(dir, e))?;
        Ok(format!("{:016x}", h.finish()))
    }

    fn materialize(&self) -> Result<PathBuf, TreeError> {
        self.materialized.fetch_add(1, Ordering::SeqCst);
        Ok(self.dir.path().to_path_buf())
    }

    fn describe(&self) -> String {
        self.dir.path().display().to_string()
    }
}
