//! A commit's tree read straight from the mirror's object database, implementing [`FileTree`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{ErrorKind, SourceError, error_chain};
use crate::revision::Revision;
use crate::tree::{
    Budget, DirEntry, EntryKind, FileTree, Limits, MAX_LINK_HOPS, TreeError, clean_relative,
    resolve_link,
};

/// What the tag of a revision says about its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSignature {
    /// The revision did not resolve through a tag.
    NotATag,
    /// A tag without a tag object (it cannot be signed).
    Lightweight,
    /// An annotated tag without a signature.
    Unsigned,
    /// A signed annotated tag: the armored signature and the bytes it signs.
    Signed {
        /// The armored signature.
        signature: String,
        /// The tag object without the signature.
        payload: Vec<u8>,
    },
}

/// The files of one commit of one repository, read from the object database without a checkout.
///
/// Cloning is cheap; clones share the limit budget and the materialized folder.
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
}

struct Inner {
    repo: gix::ThreadSafeRepository,
    revision: Revision,
    root: gix::ObjectId,
    path: String,
    limits: Limits,
    budget: Budget,
    trees_dir: PathBuf,
    materialized: Mutex<Option<PathBuf>>,
    lookups: Arc<Lookups>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.inner.revision)
            .field("path", &self.inner.path)
            .finish()
    }
}

/// How many path resolutions [`Lookups`] keeps in each of its two generations.
const LOOKUPS_KEPT: usize = 16 * 1024;

type Resolutions = HashMap<(gix::ObjectId, String), Node>;

/// A tree larger than this (in bytes as stored, about 35 per entry) is indexed by name the first time a path is
/// looked up in it: the folder of a monorepo that lists every application.
const WIDE_TREE_BYTES: usize = 8 * 1024;
/// At most this many entries of wide trees are indexed; past it the oldest index goes.
const WIDE_ENTRIES_KEPT: usize = 256 * 1024;

/// The entries of one wide tree, by name.
type TreeIndex = HashMap<Box<[u8]>, (gix::objs::tree::EntryMode, gix::ObjectId)>;

/// Paths resolved in trees, by root tree id, shared by the snapshots of one source. Bounded: when the newer of two
/// generations is full, the older is dropped; a path found in the older one moves to the newer.
///
/// Wide trees are indexed by name besides: with thousands of applications in one folder, their paths outnumber
/// what the generations keep, and each path missed read that folder's tree again, hundreds of kilobytes to inflate
/// (most of the controller's time spent in Git at 10,000 applications).
#[derive(Default)]
pub(crate) struct Lookups {
    generations: Mutex<(Resolutions, Resolutions)>,
    wide: Mutex<WideTrees>,
}

/// Indexes of wide trees, oldest first.
#[derive(Default)]
struct WideTrees {
    order: std::collections::VecDeque<gix::ObjectId>,
    trees: HashMap<gix::ObjectId, Arc<TreeIndex>>,
    entries: usize,
}

impl WideTrees {
    fn get(&self, id: &gix::ObjectId) -> Option<Arc<TreeIndex>> {
        self.trees.get(id).cloned()
    }

    fn put(&mut self, id: gix::ObjectId, index: TreeIndex) -> Arc<TreeIndex> {
        if let Some(kept) = self.trees.get(&id) {
            return kept.clone();
        }
        let index = Arc::new(index);
        self.entries += index.len();
        self.trees.insert(id, index.clone());
        self.order.push_back(id);
        // The newest index stays, however large.
        while self.entries > WIDE_ENTRIES_KEPT && self.order.len() > 1 {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.trees.remove(&old) {
                self.entries -= gone.len();
            }
        }
        index
    }
}

impl Lookups {
    fn get(&self, root: gix::ObjectId, path: &str) -> Option<Node> {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let key = (root, path.to_owned());
        if let Some(node) = g.0.get(&key) {
            return Some(*node);
        }
        let node = g.1.remove(&key)?;
        Self::insert(&mut g, key, node);
        Some(node)
    }

    fn put(&self, root: gix::ObjectId, path: String, node: Node) {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        Self::insert(&mut g, (root, path), node);
    }

    fn insert(g: &mut (Resolutions, Resolutions), key: (gix::ObjectId, String), node: Node) {
        if g.0.len() >= LOOKUPS_KEPT {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(key, node);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Tree(gix::ObjectId),
    Blob(gix::ObjectId),
}

struct Entry {
    name: String,
    mode: gix::objs::tree::EntryMode,
    id: gix::ObjectId,
}

impl Snapshot {
    /// Opens the tree of `revision` (already in the mirror `repo`).
    pub(crate) fn open(
        repo: gix::ThreadSafeRepository,
        revision: Revision,
        path: String,
        limits: Limits,
        trees_dir: PathBuf,
        lookups: Arc<Lookups>,
    ) -> Result<Self, SourceError> {
        let fail = |e: String| {
            SourceError::new(
                ErrorKind::Cache,
                "open",
                revision.repo.clone(),
                revision.requested.clone(),
                e,
            )
        };
        let root =
            gix::ObjectId::from_hex(revision.tree.as_bytes()).map_err(|e| fail(e.to_string()))?;
        Ok(Snapshot {
            inner: Arc::new(Inner {
                repo,
                revision,
                root,
                path,
                limits,
                budget: Budget::default(),
                trees_dir,
                materialized: Mutex::new(None),
                lookups,
            }),
        })
    }

    /// The resolved revision.
    pub fn revision(&self) -> &Revision {
        &self.inner.revision
    }

    /// The application path inside the repository, as requested.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The commit's signature (its `gpgsig` header, armored) and the bytes it signs (the commit without that header),
    /// or `None` when the commit is not signed.
    pub fn commit_signature(&self) -> Result<Option<(String, Vec<u8>)>, SourceError> {
        let rev = &self.inner.revision;
        let fail = |e: String| self.cache_error("read signature of", e);
        let repo = self.inner.repo.to_thread_local();
        let id = gix::ObjectId::from_hex(rev.sha.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let commit = repo.find_commit(id).map_err(|e| fail(error_chain(&e)))?;
        let signature = commit.signature().map_err(|e| fail(error_chain(&e)))?;
        Ok(signature.map(|(sig, signed)| (sig.to_string(), signed.to_bstring().into())))
    }

    /// A failure to read this snapshot's own objects from the mirror.
    fn cache_error(&self, action: &'static str, cause: String) -> SourceError {
        let rev = &self.inner.revision;
        SourceError::new(
            ErrorKind::Cache,
            action,
            rev.repo.clone(),
            rev.requested.clone(),
            cause,
        )
    }

    /// The signature of the annotated tag the revision resolved through (a tag name or a version constraint), as
    /// Git stores it: appended to the tag object, which it signs without itself.
    pub fn tag_signature(&self) -> Result<TagSignature, SourceError> {
        let rev = &self.inner.revision;
        let Some(name) = rev
            .ref_name
            .as_deref()
            .filter(|n| n.starts_with("refs/tags/"))
        else {
            return Ok(TagSignature::NotATag);
        };
        let fail = |e: String| self.cache_error("read tag signature of", e);
        let repo = self.inner.repo.to_thread_local();
        let reference = repo
            .find_reference(name)
            .map_err(|e| fail(error_chain(&e)))?;
        let Some(target) = reference.target().try_id().map(|id| id.to_owned()) else {
            return Ok(TagSignature::NotATag);
        };
        let object = repo
            .find_object(target)
            .map_err(|e| fail(error_chain(&e)))?;
        if object.kind != gix::object::Kind::Tag {
            return Ok(TagSignature::Lightweight);
        }
        Ok(match gix::objs::TagRefIter::signature(&object.data) {
            None => TagSignature::Unsigned,
            Some((signature, signed)) => TagSignature::Signed {
                signature: signature.data.to_string(),
                payload: signed.to_bstring().into(),
            },
        })
    }

    /// Checks that the application path is a clean relative path that exists at this revision.
    pub fn check_path(&self) -> Result<(), SourceError> {
        let rev = &self.inner.revision;
        let repo = self.inner.repo.to_thread_local();
        self.lookup(&repo, &self.inner.path)
            .map(|_| ())
            .map_err(|e| SourceError::from_tree(&rev.repo, &rev.requested, &e))
    }

    fn io_err(path: &str, e: impl std::error::Error + Send + Sync + 'static) -> TreeError {
        TreeError::Io {
            path: path.to_owned(),
            source: Box::new(e),
        }
    }

    fn entries(
        repo: &gix::Repository,
        id: gix::ObjectId,
        path: &str,
    ) -> Result<Vec<Entry>, TreeError> {
        let tree = repo.find_tree(id).map_err(|e| Self::io_err(path, e))?;
        let mut out = Vec::new();
        for entry in tree.iter() {
            let entry = entry.map_err(|e| Self::io_err(path, e))?;
            out.push(Entry {
                name: entry.filename().to_string(),
                mode: entry.mode(),
                id: entry.object_id(),
            });
        }
        Ok(out)
    }

    fn link_target(
        repo: &gix::Repository,
        id: gix::ObjectId,
        path: &str,
    ) -> Result<String, TreeError> {
        let blob = repo.find_blob(id).map_err(|e| Self::io_err(path, e))?;
        Ok(String::from_utf8_lossy(&blob.data).into_owned())
    }

    /// Resolves a path to a tree or blob, following in-tree symlinks in every component.
    ///
    /// What a path resolves to in a tree never changes (a tree's id names its content), so resolutions are kept in
    /// the [`Lookups`] shared by all snapshots of a source, and a walk starts from the longest prefix resolved before:
    /// the files of an application directory in a monorepo do not each read the directory that lists every
    /// application.
    fn lookup(&self, repo: &gix::Repository, path: &str) -> Result<Node, TreeError> {
        let mut parts: Vec<String> = clean_relative(path)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let root = self.inner.root;
        let lookups = &self.inner.lookups;
        let asked = parts.join("/");
        if let Some(node) = lookups.get(root, &asked) {
            return Ok(node);
        }
        let mut hops = 0;
        'restart: loop {
            let (mut node, from) = (1..parts.len())
                .rev()
                .find_map(|k| lookups.get(root, &parts[..k].join("/")).map(|n| (n, k)))
                .unwrap_or((Node::Tree(root), 0));
            for i in from..parts.len() {
                let Node::Tree(tree) = node else {
                    return Err(TreeError::NotFound {
                        path: path.to_owned(),
                    });
                };
                let shown = parts[..=i].join("/");
                let (mode, id) = self.child(repo, tree, &parts[i], &shown)?.ok_or_else(|| {
                    TreeError::NotFound {
                        path: path.to_owned(),
                    }
                })?;
                if mode.is_link() {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(TreeError::SymlinkEscape {
                            path: shown,
                            target: "too many levels of symbolic links".into(),
                        });
                    }
                    let target = Self::link_target(repo, id, &shown)?;
                    let link: Vec<&str> = parts[..=i].iter().map(String::as_str).collect();
                    let mut resolved = resolve_link(&link, &target)?;
                    resolved.extend(parts[i + 1..].iter().cloned());
                    parts = resolved;
                    continue 'restart;
                }
                node = if mode.is_tree() {
                    Node::Tree(id)
                } else if mode.is_blob() {
                    Node::Blob(id)
                } else {
                    // Submodules are not part of the tree's content.
                    return Err(TreeError::NotFound {
                        path: path.to_owned(),
                    });
                };
                // `shown` was walked from the root without a link in it.
                lookups.put(root, shown, node);
            }
            lookups.put(root, asked, node);
            return Ok(node);
        }
    }

    /// The entry `name` of tree `id`, found without copying the others; a wide tree is indexed, once.
    fn child(
        &self,
        repo: &gix::Repository,
        id: gix::ObjectId,
        name: &str,
        path: &str,
    ) -> Result<Option<(gix::objs::tree::EntryMode, gix::ObjectId)>, TreeError> {
        let wide = &self.inner.lookups.wide;
        if let Some(index) = wide.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(index.get(name.as_bytes()).copied());
        }
        let tree = repo.find_tree(id).map_err(|e| Self::io_err(path, e))?;
        if tree.data.len() > WIDE_TREE_BYTES {
            let mut index = TreeIndex::new();
            for entry in tree.iter() {
                let entry = entry.map_err(|e| Self::io_err(path, e))?;
                // The first of two entries of one name wins, as in the scan below.
                index
                    .entry(entry.filename().to_vec().into_boxed_slice())
                    .or_insert((entry.mode(), entry.object_id()));
            }
            let index = wide
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(id, index);
            return Ok(index.get(name.as_bytes()).copied());
        }
        for entry in tree.iter() {
            let entry = entry.map_err(|e| Self::io_err(path, e))?;
            if entry.filename() == name.as_bytes() {
                return Ok(Some((entry.mode(), entry.object_id())));
            }
        }
        Ok(None)
    }

    fn write_tree(
        &self,
        repo: &gix::Repository,
        tree: gix::ObjectId,
        prefix: &str,
        dest: &Path,
    ) -> Result<(), TreeError> {
        for entry in Self::entries(repo, tree, prefix)? {
            let rel = if prefix.is_empty() {
                entry.name.clone()
            } else {
                format!("{prefix}/{}", entry.name)
            };
            if entry.name.contains(['/', '\\'])
                || entry.name == ".."
                || entry.name == "."
                || entry.name == ".git"
            {
                continue;
            }
            let out = dest.join(&entry.name);
            if entry.mode.is_tree() {
                self.inner.budget.charge(&self.inner.limits, &rel, 0)?;
                fs::create_dir(&out).map_err(|e| Self::io_err(&rel, e))?;
                self.write_tree(repo, entry.id, &rel, &out)?;
            } else if entry.mode.is_link() {
                let target = Self::link_target(repo, entry.id, &rel)?;
                let parts: Vec<&str> = rel.split('/').collect();
                match resolve_link(&parts, &target) {
                    Ok(_) => {
                        std::os::unix::fs::symlink(&target, &out)
                            .map_err(|e| Self::io_err(&rel, e))?;
                    }
                    Err(_) => {
                        tracing::warn!(
                            tree = %self.describe(),
                            path = rel,
                            "not materializing a symlink that points outside the repository"
                        );
                    }
                }
            } else if entry.mode.is_blob() {
                let header = repo
                    .find_header(entry.id)
                    .map_err(|e| Self::io_err(&rel, e))?;
                self.inner
                    .budget
                    .charge(&self.inner.limits, &rel, header.size())?;
                let blob = repo
                    .find_blob(entry.id)
                    .map_err(|e| Self::io_err(&rel, e))?;
                fs::write(&out, &blob.data).map_err(|e| Self::io_err(&rel, e))?;
                if entry.mode.is_executable() {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&out, fs::Permissions::from_mode(0o755))
                        .map_err(|e| Self::io_err(&rel, e))?;
                }
            }
        }
        Ok(())
    }
}

impl FileTree for Snapshot {
    fn read_dir(&self, dir: &str) -> Result<Vec<DirEntry>, TreeError> {
        let repo = self.inner.repo.to_thread_local();
        let Node::Tree(tree) = self.lookup(&repo, dir)? else {
            return Err(TreeError::WrongType {
                path: dir.to_owned(),
                expected: "directory",
            });
        };
        self.inner.budget.charge(&self.inner.limits, dir, 0)?;
        let base: Vec<String> = clean_relative(dir)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut out = Vec::new();
        for e in Self::entries(&repo, tree, dir)? {
            let kind = if e.mode.is_tree() {
                EntryKind::Dir
            } else if e.mode.is_blob() {
                EntryKind::File
            } else if e.mode.is_link() {
                let mut full = base.clone();
                full.push(e.name.clone());
                match self.lookup(&repo, &full.join("/")) {
                    Ok(Node::Tree(_)) => EntryKind::Dir,
                    // Escaping or dangling links are listed as files and fail when read.
                    _ => EntryKind::File,
                }
            } else {
                continue;
            };
            out.push(DirEntry { name: e.name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        let repo = self.inner.repo.to_thread_local();
        let Node::Blob(id) = self.lookup(&repo, path)? else {
            return Err(TreeError::WrongType {
                path: path.to_owned(),
                expected: "file",
            });
        };
        let header = repo.find_header(id).map_err(|e| Self::io_err(path, e))?;
        self.inner
            .budget
            .charge(&self.inner.limits, path, header.size())?;
        let blob = repo.find_blob(id).map_err(|e| Self::io_err(path, e))?;
        Ok(blob.data.clone())
    }

    fn dir_id(&self, dir: &str) -> Result<String, TreeError> {
        let repo = self.inner.repo.to_thread_local();
        match self.lookup(&repo, dir)? {
            Node::Tree(id) => Ok(id.to_string()),
            Node::Blob(_) => Err(TreeError::WrongType {
                path: dir.to_owned(),
                expected: "directory",
            }),
        }
    }

    fn materialize(&self) -> Result<PathBuf, TreeError> {
        let mut cached = self
            .inner
            .materialized
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A tree removed by garbage collection since is written again.
        if let Some(p) = cached.as_ref().filter(|p| p.is_dir()) {
            crate::gc::touch(p);
            return Ok(p.clone());
        }
        let target = self.inner.trees_dir.join(&self.inner.revision.sha);
        if target.is_dir() {
            // Marks it used, so that garbage collection keeps it.
            crate::gc::touch(&target);
        } else {
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempdir_in(&self.inner.trees_dir)
                .map_err(|e| Self::io_err("", e))?;
            let mut repo = self.inner.repo.to_thread_local();
            // Delta bases are shared between many blobs: a cache avoids decoding them over and over.
            repo.object_cache_size_if_unset(32 * 1024 * 1024);
            self.write_tree(&repo, self.inner.root, "", tmp.path())?;
            let tmp_path = tmp.keep();
            if let Err(e) = fs::rename(&tmp_path, &target) {
                let _ = fs::remove_dir_all(&tmp_path);
                // Another process may have won the race; that result is just as good.
                if !target.is_dir() {
                    return Err(Self::io_err("", e));
                }
            }
        }
        *cached = Some(target.clone());
        Ok(target)
    }

    fn describe(&self) -> String {
        format!("{}@{}", self.inner.revision.repo, self.inner.revision.sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> gix::ObjectId {
        let mut bytes = [0u8; 20];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        gix::ObjectId::from_bytes_or_panic(&bytes)
    }

    #[test]
    fn lookups_keep_two_generations_and_move_what_is_used() {
        let lookups = Lookups::default();
        let root = id(0);
        lookups.put(root, "used".into(), Node::Tree(id(1)));
        lookups.put(root, "unused".into(), Node::Blob(id(2)));
        // The newer generation fills up: both move to the older one, and are still found.
        for n in 0..LOOKUPS_KEPT {
            lookups.put(root, format!("p{n}"), Node::Blob(id(n)));
        }
        assert_eq!(lookups.get(root, "used"), Some(Node::Tree(id(1))));
        assert_eq!(lookups.get(id(9), "used"), None, "another tree's path");
        // Once more: the older generation is dropped, except what was used meanwhile.
        for n in 0..LOOKUPS_KEPT {
            lookups.put(root, format!("q{n}"), Node::Blob(id(n)));
        }
        assert_eq!(lookups.get(root, "used"), Some(Node::Tree(id(1))));
        assert_eq!(lookups.get(root, "unused"), None);
        let g = lookups
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        assert!(g.0.len() + g.1.len() <= 2 * LOOKUPS_KEPT);
    }

    #[test]
    fn wide_tree_indexes_are_bounded_and_the_oldest_goes_first() {
        let index = |n: usize| -> TreeIndex {
            (0..n)
                .map(|i| {
                    (
                        format!("app-{i}").into_bytes().into_boxed_slice(),
                        (
                            gix::objs::tree::EntryMode::from(gix::objs::tree::EntryKind::Tree),
                            id(i),
                        ),
                    )
                })
                .collect()
        };
        let mut wide = WideTrees::default();
        let half = WIDE_ENTRIES_KEPT / 2;
        wide.put(id(1), index(half));
        wide.put(id(2), index(half));
        assert!(wide.get(&id(1)).is_some() && wide.get(&id(2)).is_some());
        // Indexing the same tree again keeps the one held.
        wide.put(id(2), index(1));
        assert_eq!(wide.get(&id(2)).map(|i| i.len()), Some(half));
        wide.put(id(3), index(10));
        assert!(wide.get(&id(1)).is_none(), "the oldest goes");
        assert!(wide.get(&id(2)).is_some() && wide.get(&id(3)).is_some());
        assert_eq!(wide.entries, half + 10);
        // One index larger than the bound is kept alone.
        wide.put(id(4), index(WIDE_ENTRIES_KEPT + 1));
        assert_eq!(wide.trees.len(), 1);
        assert_eq!(
            wide.get(&id(4)).and_then(|i| i.get(&b"app-7"[..]).copied()),
            Some((
                gix::objs::tree::EntryMode::from(gix::objs::tree::EntryKind::Tree),
                id(7)
            ))
        );
    }
}
