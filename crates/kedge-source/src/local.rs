//! A local directory as a [`FileTree`] (for `kedge render DIR`), with the same path and symlink rules as Git trees.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tree::{
    Budget, DirEntry, EntryKind, FileTree, Limits, MAX_LINK_HOPS, TreeError, clean_relative,
    resolve_link,
};

/// A directory on disk read as a tree. Symlinks must stay inside the directory.
#[derive(Debug)]
pub struct LocalTree {
    root: PathBuf,
    limits: Limits,
    budget: Budget,
}

impl LocalTree {
    /// Opens `root`, which must be a directory.
    pub fn new(root: impl Into<PathBuf>, limits: Limits) -> Result<Self, TreeError> {
        let root = root.into();
        let meta = fs::metadata(&root).map_err(|e| io(&root.display().to_string(), e))?;
        if !meta.is_dir() {
            return Err(TreeError::WrongType {
                path: root.display().to_string(),
                expected: "directory",
            });
        }
        Ok(LocalTree {
            root,
            limits,
            budget: Budget::default(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` to clean components with every in-tree symlink followed; errors on escapes.
    fn resolve(&self, path: &str) -> Result<(Vec<String>, fs::Metadata), TreeError> {
        let mut parts: Vec<String> = clean_relative(path)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut hops = 0;
        'restart: loop {
            let mut here = self.root.clone();
            let mut meta = fs::metadata(&here).map_err(|e| io(path, e))?;
            for i in 0..parts.len() {
                if !meta.is_dir() {
                    return Err(TreeError::NotFound {
                        path: path.to_owned(),
                    });
                }
                here.push(&parts[i]);
                let m = match fs::symlink_metadata(&here) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(TreeError::NotFound {
                            path: path.to_owned(),
                        });
                    }
                    Err(e) => return Err(io(path, e)),
                };
                if m.file_type().is_symlink() {
                    hops += 1;
                    let shown = parts[..=i].join("/");
                    if hops > MAX_LINK_HOPS {
                        return Err(TreeError::SymlinkEscape {
                            path: shown,
                            target: "too many levels of symbolic links".into(),
                        });
                    }
                    let target = fs::read_link(&here).map_err(|e| io(&shown, e))?;
                    let target = target.to_string_lossy().into_owned();
                    let link: Vec<&str> = parts[..=i].iter().map(String::as_str).collect();
                    let mut resolved = resolve_link(&link, &target)?;
                    resolved.extend(parts[i + 1..].iter().cloned());
                    parts = resolved;
                    continue 'restart;
                }
                meta = m;
            }
            return Ok((parts, meta));
        }
    }

    fn path_of(&self, parts: &[String]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(parts);
        p
    }

    fn hash_dir(
        &self,
        parts: &[String],
        hasher: &mut Sha256,
        depth: usize,
    ) -> Result<(), TreeError> {
        if depth > 256 {
            return Err(TreeError::SymlinkEscape {
                path: parts.join("/"),
                target: "directory nesting too deep".into(),
            });
        }
        let shown = parts.join("/");
        for entry in self.read_dir(&shown)? {
            let mut child = parts.to_vec();
            child.push(entry.name.clone());
            let rel = child.join("/");
            match entry.kind {
                EntryKind::Dir => {
                    hasher.update(b"d ");
                    hasher.update(entry.name.as_bytes());
                    hasher.update(b"\n");
                    let (resolved, _) = self.resolve(&rel)?;
                    self.hash_dir(&resolved, hasher, depth + 1)?;
                    hasher.update(b"end\n");
                }
                EntryKind::File => {
                    let data = self.read_file(&rel)?;
                    hasher.update(b"f ");
                    hasher.update(entry.name.as_bytes());
                    hasher.update(b" ");
                    hasher.update((data.len() as u64).to_le_bytes());
                    hasher.update(&data);
                }
            }
        }
        Ok(())
    }
}

fn io(path: &str, e: std::io::Error) -> TreeError {
    if e.kind() == std::io::ErrorKind::NotFound {
        return TreeError::NotFound {
            path: path.to_owned(),
        };
    }
    TreeError::Io {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

impl FileTree for LocalTree {
    fn read_dir(&self, dir: &str) -> Result<Vec<DirEntry>, TreeError> {
        let (parts, meta) = self.resolve(dir)?;
        if !meta.is_dir() {
            return Err(TreeError::WrongType {
                path: dir.to_owned(),
                expected: "directory",
            });
        }
        self.budget.charge(&self.limits, dir, 0)?;
        let mut out = Vec::new();
        for entry in fs::read_dir(self.path_of(&parts)).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" {
                continue;
            }
            let ft = entry.file_type().map_err(|e| io(dir, e))?;
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                let mut full = parts.clone();
                full.push(name.clone());
                match self.resolve(&full.join("/")) {
                    Ok((_, m)) if m.is_dir() => EntryKind::Dir,
                    _ => EntryKind::File,
                }
            } else if ft.is_file() {
                EntryKind::File
            } else {
                continue;
            };
            out.push(DirEntry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        let (parts, meta) = self.resolve(path)?;
        if !meta.is_file() {
            return Err(TreeError::WrongType {
                path: path.to_owned(),
                expected: "file",
            });
        }
        self.budget.charge(&self.limits, path, meta.len())?;
        fs::read(self.path_of(&parts)).map_err(|e| io(path, e))
    }

    fn dir_id(&self, dir: &str) -> Result<String, TreeError> {
        let (parts, meta) = self.resolve(dir)?;
        if !meta.is_dir() {
            return Err(TreeError::WrongType {
                path: dir.to_owned(),
                expected: "directory",
            });
        }
        let mut hasher = Sha256::new();
        self.hash_dir(&parts, &mut hasher, 0)?;
        Ok(hex::encode(hasher.finalize()))
    }

    fn materialize(&self) -> Result<PathBuf, TreeError> {
        Ok(self.root.clone())
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}
