//! The files that differ between two commits of a mirror, found by walking both trees side by side.
//!
//! Subtrees with the same id are skipped without being read, so a commit that touches one application of a monorepo
//! costs a handful of tree reads however large the repository is.

use std::collections::BTreeMap;

/// Compares the trees `old` and `new` and returns the paths (relative to the repository root, `/`-separated) of the
/// files added, removed or changed between them, or `None` when more than `max` differ.
///
/// A directory replaced by a file (or the reverse) reports every file beneath it.
pub(crate) fn changed_files(
    repo: &gix::Repository,
    old: gix::ObjectId,
    new: gix::ObjectId,
    max: usize,
) -> Result<Option<Vec<String>>, String> {
    let mut out = Vec::new();
    let mut pending = vec![(String::new(), Some(old), Some(new))];
    while let Some((prefix, a, b)) = pending.pop() {
        if a == b {
            continue;
        }
        let left = match a {
            Some(id) => entries(repo, id)?,
            None => BTreeMap::new(),
        };
        let right = match b {
            Some(id) => entries(repo, id)?,
            None => BTreeMap::new(),
        };
        let mut names: Vec<&String> = left.keys().chain(right.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let l = left.get(name).copied();
            let r = right.get(name).copied();
            if l == r {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let (l_tree, l_blob) = split(l);
            let (r_tree, r_blob) = split(r);
            if l_blob.is_some() || r_blob.is_some() {
                // The file itself (mode or content changed, added, removed, or it replaced a directory).
                if l_blob != r_blob {
                    out.push(path.clone());
                    if out.len() > max {
                        return Ok(None);
                    }
                }
            }
            if (l_tree.is_some() || r_tree.is_some()) && l_tree != r_tree {
                pending.push((path, l_tree, r_tree));
            }
        }
    }
    out.sort();
    Ok(Some(out))
}

/// A tree entry: a subtree's id, or a non-tree entry's id and mode (a mode change is a change).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    Tree(gix::ObjectId),
    Other(gix::ObjectId, u16),
}

fn split(item: Option<Item>) -> (Option<gix::ObjectId>, Option<(gix::ObjectId, u16)>) {
    match item {
        Some(Item::Tree(id)) => (Some(id), None),
        Some(Item::Other(id, mode)) => (None, Some((id, mode))),
        None => (None, None),
    }
}

fn entries(repo: &gix::Repository, id: gix::ObjectId) -> Result<BTreeMap<String, Item>, String> {
    let tree = repo
        .find_tree(id)
        .map_err(|e| format!("failed to read tree {id}: {e}"))?;
    let mut out = BTreeMap::new();
    for entry in tree.iter() {
        let entry = entry.map_err(|e| format!("failed to read tree {id}: {e}"))?;
        let mode = entry.mode();
        let item = if mode.is_tree() {
            Item::Tree(entry.object_id())
        } else {
            Item::Other(entry.object_id(), mode.value())
        };
        out.insert(entry.filename().to_string(), item);
    }
    Ok(out)
}
