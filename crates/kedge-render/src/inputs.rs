//! Finding the directories a kustomize build reads, for the cache key and to refuse references outside the
//! repository.

use std::collections::{BTreeSet, HashMap, VecDeque};

use kedge_source::{DirEntry, EntryKind, FileTree, tree::clean_relative};
use serde_json::Value;

use crate::error::RenderError;
use crate::kustomize::KUSTOMIZATION_FILES;
use crate::parse::parse_yaml;

/// The most kustomizations followed before giving up and keying on the whole repository.
const MAX_KUSTOMIZATIONS: usize = 512;

/// Fields of a kustomization that name files or directories. A value of one of them that is absolute or leaves
/// the repository is an error: kustomize would read it from the host.
const PATH_LISTS: [&str; 9] = [
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "patchesStrategicMerge",
];

/// Joins `dir` and a relative reference; `None` when the result leaves the root.
fn join(dir: &str, reference: &str) -> Option<String> {
    let joined = if dir.is_empty() {
        reference.to_owned()
    } else {
        format!("{dir}/{reference}")
    };
    clean_relative(&joined).ok().map(|parts| parts.join("/"))
}

fn parent_and_name(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

/// Strings that kustomize treats as remote (git or HTTP) references rather than local paths.
pub(crate) fn is_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("git@")
        || s.starts_with("git::")
        || s.starts_with("gh:")
        || s.contains("?ref=")
        || s.contains("//")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|h| s.starts_with(h))
}

/// `host.domain/path...`: what kustomize reads as a Git repository when no such file or directory exists.
fn looks_like_host_path(s: &str) -> bool {
    s.split_once('/').is_some_and(|(first, rest)| {
        !rest.is_empty() && first.contains('.') && first != "." && first != ".."
    })
}

/// Could this string be a local path reference at all?
fn candidate(s: &str) -> bool {
    !s.is_empty() && s.len() < 4096 && !s.contains('\n') && !is_remote(s)
}

/// The kustomization file of a directory listing, if any.
pub(crate) fn kustomization_file(entries: &[DirEntry]) -> Option<&'static str> {
    KUSTOMIZATION_FILES.iter().copied().find(|name| {
        entries
            .iter()
            .any(|e| e.kind == EntryKind::File && e.name == *name)
    })
}

struct Walker<'a> {
    tree: &'a dyn FileTree,
    listings: HashMap<String, Option<Vec<DirEntry>>>,
}

impl Walker<'_> {
    fn listing(&mut self, dir: &str) -> Option<&[DirEntry]> {
        if !self.listings.contains_key(dir) {
            let l = self.tree.read_dir(dir).ok();
            self.listings.insert(dir.to_owned(), l);
        }
        self.listings.get(dir).and_then(|l| l.as_deref())
    }

    fn kind_of(&mut self, path: &str) -> Option<EntryKind> {
        if path.is_empty() {
            return Some(EntryKind::Dir);
        }
        let (parent, name) = parent_and_name(path);
        self.listing(parent)?
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.kind)
    }
}

/// The outcome of a walk: the directories to key on, or "the whole repository".
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KustomizeInputs {
    /// These directories (minimal: none is inside another).
    Dirs(Vec<String>),
    /// The walk could not be completed (unparsable kustomization, too many); key on the repository root.
    WholeTree,
}

/// Walks the kustomization in `app_dir` and every kustomization it references, transitively.
///
/// Every string of a kustomization that names an existing file or directory of the tree (relative to the
/// kustomization's directory, also after a `key=` prefix as in generator `files`) adds that directory, or the
/// file's directory, to the inputs. Strings that name nothing are ignored (they are labels, images, inline
/// patches); a reference that names nothing today makes kustomize fail, and failures are not cached.
///
/// Unless `allow_remote_bases`, every kustomization read must name only files and directories of the tree in the
/// fields kustomize may fetch from the network ([`check_remote`]); one that cannot be read or checked is an error.
pub(crate) fn kustomize_inputs(
    tree: &dyn FileTree,
    app_dir: &str,
    allow_remote_bases: bool,
) -> Result<KustomizeInputs, RenderError> {
    let mut w = Walker {
        tree,
        listings: HashMap::new(),
    };
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<String> = VecDeque::from([app_dir.to_owned()]);
    let mut visited: BTreeSet<String> = BTreeSet::new();
    while let Some(dir) = queue.pop_front() {
        if !visited.insert(dir.clone()) {
            continue;
        }
        dirs.insert(dir.clone());
        if visited.len() > MAX_KUSTOMIZATIONS {
            if !allow_remote_bases {
                return Err(RenderError::UncheckedKustomization {
                    kustomization: dir,
                    reason: format!("more than {MAX_KUSTOMIZATIONS} kustomizations"),
                });
            }
            return Ok(KustomizeInputs::WholeTree);
        }
        let Some(file) = w.listing(&dir).and_then(kustomization_file) else {
            continue;
        };
        let path = join(&dir, file).unwrap_or_default();
        let bytes = tree.read_file(&path).map_err(|source| RenderError::Tree {
            path: path.clone(),
            source,
        })?;
        let docs = match parse_yaml(&path, &bytes) {
            Ok(docs) => docs,
            Err(e) if !allow_remote_bases => {
                return Err(RenderError::UncheckedKustomization {
                    kustomization: path,
                    reason: e.to_string(),
                });
            }
            Err(_) => return Ok(KustomizeInputs::WholeTree),
        };
        let Some(doc) = docs.into_iter().next() else {
            continue;
        };
        check_known_paths(&path, &doc.value)?;
        if !allow_remote_bases {
            check_remote(&path, &dir, &doc.value, &mut w)?;
        }
        let mut strings = Vec::new();
        collect_strings(&doc.value, &mut strings);
        for s in strings {
            if !candidate(s) {
                continue;
            }
            let mut forms = vec![s];
            if let Some((_, rest)) = s.split_once('=') {
                forms.push(rest);
            }
            for form in forms {
                if form.starts_with('/') {
                    continue;
                }
                let Some(target) = join(&dir, form) else {
                    continue;
                };
                match w.kind_of(&target) {
                    Some(EntryKind::Dir) => queue.push_back(target),
                    Some(EntryKind::File) => {
                        dirs.insert(parent_and_name(&target).0.to_owned());
                    }
                    None => {}
                }
            }
        }
    }
    Ok(KustomizeInputs::Dirs(minimal(dirs)))
}

/// Drops every directory that lies inside another of the set (the outer id covers it).
fn minimal(dirs: BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        let covered = out.iter().any(|o| {
            o.is_empty()
                || d == *o
                || (d.starts_with(o.as_str()) && d.as_bytes().get(o.len()) == Some(&b'/'))
        });
        if !covered {
            out.push(d);
        }
    }
    out
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Fields whose entries kustomize loads as a file, a directory or, when neither exists, a remote base (a Git
/// repository or an HTTP URL).
const LOADED_LISTS: [&str; 6] = [
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Refuses what kustomize would fetch from the network: an entry of [`LOADED_LISTS`] that is not a file or
/// directory of the tree (kustomize tries such an entry as a remote base: `github.com/org/repo`,
/// `https://...`, `git::...`), and Helm charts with a `repo`. Inline objects (maps) in those lists are not
/// references.
fn check_remote(
    kustomization: &str,
    dir: &str,
    doc: &Value,
    w: &mut Walker<'_>,
) -> Result<(), RenderError> {
    let refuse = |field: &str, reference: &str, why: &str| RenderError::RemoteBase {
        kustomization: kustomization.to_owned(),
        field: field.to_owned(),
        reference: reference.to_owned(),
        why: why.to_owned(),
    };
    for field in LOADED_LISTS {
        let Some(Value::Array(items)) = doc.get(field) else {
            continue;
        };
        for r in items.iter().filter_map(Value::as_str) {
            if is_remote(r) || r.starts_with("git::") {
                return Err(refuse(field, r, "a URL"));
            }
            // Absolute and escaping references are refused by `check_known_paths`; a missing plain path
            // (`missing.yaml`, `../base`) is left to kustomize, which reports it as not found.
            let exists = join(dir, r).is_some_and(|target| w.kind_of(&target).is_some());
            if !exists && looks_like_host_path(r) {
                return Err(refuse(
                    field,
                    r,
                    "not a file or directory of the repository, so kustomize would fetch it",
                ));
            }
        }
    }
    if let Some(Value::Array(charts)) = doc.get("helmCharts") {
        for c in charts {
            if let Some(repo) = c.get("repo").and_then(Value::as_str)
                && !repo.trim().is_empty()
            {
                return Err(refuse("helmCharts[].repo", repo, "a chart repository"));
            }
        }
    }
    Ok(())
}

/// Refuses absolute references and references that leave the repository in the fields that name paths.
fn check_known_paths(kustomization: &str, doc: &Value) -> Result<(), RenderError> {
    let dir = parent_and_name(kustomization).0;
    let mut refs: Vec<&str> = Vec::new();
    for field in PATH_LISTS {
        if let Some(Value::Array(items)) = doc.get(field) {
            refs.extend(items.iter().filter_map(Value::as_str));
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        if let Some(Value::Array(items)) = doc.get(field) {
            refs.extend(
                items
                    .iter()
                    .filter_map(|i| i.get("path"))
                    .filter_map(Value::as_str),
            );
        }
    }
    if let Some(p) = doc
        .get("openapi")
        .and_then(|o| o.get("path"))
        .and_then(Value::as_str)
    {
        refs.push(p);
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        if let Some(Value::Array(gens)) = doc.get(field) {
            for g in gens {
                for list in ["files", "envs"] {
                    if let Some(Value::Array(items)) = g.get(list) {
                        refs.extend(
                            items
                                .iter()
                                .filter_map(Value::as_str)
                                .map(|s| s.split_once('=').map_or(s, |(_, p)| p)),
                        );
                    }
                }
                if let Some(p) = g.get("env").and_then(Value::as_str) {
                    refs.push(p);
                }
            }
        }
    }
    if let Some(p) = doc
        .get("helmGlobals")
        .and_then(|h| h.get("chartHome"))
        .and_then(Value::as_str)
    {
        refs.push(p);
    }
    if let Some(Value::Array(charts)) = doc.get("helmCharts") {
        for c in charts {
            if let Some(p) = c.get("valuesFile").and_then(Value::as_str) {
                refs.push(p);
            }
            if let Some(Value::Array(items)) = c.get("additionalValuesFiles") {
                refs.extend(items.iter().filter_map(Value::as_str));
            }
        }
    }
    for r in refs {
        if !candidate(r) {
            continue;
        }
        if r.starts_with('/') || join(dir, r).is_none() {
            return Err(RenderError::OutsideRepository {
                kustomization: kustomization.to_owned(),
                reference: r.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minimal_drops_nested_dirs() {
        let set: BTreeSet<String> = ["a", "a/b", "ab", "c/d", "c/d/e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(minimal(set), vec!["a", "ab", "c/d"]);
        let set: BTreeSet<String> = ["", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(minimal(set), vec![""]);
    }

    #[test]
    fn remote_references_are_not_paths() {
        assert!(is_remote("https://github.com/org/repo//deploy?ref=v1"));
        assert!(is_remote("github.com/org/repo/deploy?ref=v1"));
        assert!(is_remote("git@github.com:org/repo.git"));
        assert!(!is_remote("../base"));
        assert!(!is_remote("deployment.yaml"));
        assert!(looks_like_host_path("example.org/team/app"));
        assert!(!looks_like_host_path("../base"));
        assert!(!looks_like_host_path("./base/x"));
        assert!(!looks_like_host_path("missing.yaml"));
        assert!(!looks_like_host_path("base/missing.yaml"));
    }

    #[test]
    fn escaping_references_are_refused() {
        let doc: Value = serde_json::json!({"resources": ["../../../etc"]});
        let err = check_known_paths("apps/a/kustomization.yaml", &doc).unwrap_err();
        assert!(
            matches!(err, RenderError::OutsideRepository { .. }),
            "{err:?}"
        );
        let doc: Value =
            serde_json::json!({"configMapGenerator": [{"name": "x", "files": ["k=/etc/passwd"]}]});
        assert!(check_known_paths("kustomization.yaml", &doc).is_err());
        let doc: Value = serde_json::json!({"resources": ["../base", "https://example.invalid/x.yaml"],
            "patches": [{"path": "p.yaml"}, {"patch": "- op: replace\n  path: /spec/replicas\n  value: 3"}]});
        assert!(check_known_paths("overlays/prod/kustomization.yaml", &doc).is_ok());
    }
}
