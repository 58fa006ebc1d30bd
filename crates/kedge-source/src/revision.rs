//! Revisions: what the user asks for (branch, tag, SHA, HEAD, semver constraint) and what it resolved to.

use semver::{Version, VersionReq};

/// A requested revision, parsed from the user's string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionSpec {
    /// The remote's default branch (`HEAD` or empty).
    Head,
    /// A full ref name such as `refs/heads/main` or `refs/tags/v1`.
    Ref(String),
    /// A short name: a branch (preferred) or a tag.
    Name(String),
    /// A full 40-hex commit id.
    Sha(String),
    /// A highest-matching-tag semver constraint such as `>=1.2.0 <2` or `1.4.*`.
    Semver(String),
}

/// The revision string could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("failed to parse revision {revision:?}: {reason}")]
pub struct RevisionSyntaxError {
    /// The revision as given.
    pub revision: String,
    /// Why.
    pub reason: String,
}

impl RevisionSpec {
    /// Parses a revision string. Short hex strings are treated as names first and as abbreviated SHAs
    /// when no ref of that name exists.
    pub fn parse(s: &str) -> Result<Self, RevisionSyntaxError> {
        let s = s.trim();
        if s.is_empty() || s == "HEAD" {
            return Ok(RevisionSpec::Head);
        }
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(RevisionSpec::Sha(s.to_ascii_lowercase()));
        }
        if let Some(rest) = s.strip_prefix("refs/") {
            if rest.is_empty() {
                return Err(RevisionSyntaxError {
                    revision: s.into(),
                    reason: "empty ref name".into(),
                });
            }
            return Ok(RevisionSpec::Ref(s.into()));
        }
        if looks_like_constraint(s) {
            match parse_constraint(s) {
                Ok(_) => return Ok(RevisionSpec::Semver(s.into())),
                // Only an `x` part made it look like one: `release-1.x` is a branch, not a broken constraint.
                Err(_) if !has_operator(s) => {}
                Err(reason) => {
                    return Err(RevisionSyntaxError {
                        revision: s.into(),
                        reason,
                    });
                }
            }
        }
        if s.contains("..") || s.contains(' ') || s.starts_with('-') || s.contains(':') {
            return Err(RevisionSyntaxError {
                revision: s.into(),
                reason: "not a valid ref name".into(),
            });
        }
        Ok(RevisionSpec::Name(s.into()))
    }

    /// Whether this could also be an abbreviated commit id.
    pub(crate) fn short_sha(&self) -> Option<&str> {
        match self {
            RevisionSpec::Name(n) if n.len() >= 4 && n.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(n)
            }
            _ => None,
        }
    }
}

fn looks_like_constraint(s: &str) -> bool {
    has_operator(s) || s.split('.').any(|p| p == "x" || p == "X")
}

/// Characters that only a version constraint holds (never a ref name Kedge accepts).
fn has_operator(s: &str) -> bool {
    s.contains(['>', '<', '=', '~', '^', '*', ',', ' '])
}

/// Turns `>=1.2.0 <2`, `>= v1.2, < 2`, `1.4.*` into a `semver::VersionReq`.
pub(crate) fn parse_constraint(s: &str) -> Result<VersionReq, String> {
    let mut comparators: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for token in s.split([' ', ',']).filter(|t| !t.is_empty()) {
        let op_len = token
            .find(|c: char| !matches!(c, '>' | '<' | '=' | '~' | '^'))
            .unwrap_or(token.len());
        let (op, version) = token.split_at(op_len);
        pending_op.push_str(op);
        if version.is_empty() {
            continue;
        }
        let version = version.strip_prefix(['v', 'V']).unwrap_or(version);
        comparators.push(format!("{pending_op}{version}"));
        pending_op.clear();
    }
    if !pending_op.is_empty() || comparators.is_empty() {
        return Err("incomplete version constraint".into());
    }
    VersionReq::parse(&comparators.join(", ")).map_err(|e| e.to_string())
}

/// Parses a tag name as a version, with or without a leading `v`.
pub(crate) fn tag_version(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    Version::parse(t).ok()
}

/// One ref the remote advertised, peeled to the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full name, e.g. `refs/heads/main` or `HEAD`.
    pub name: String,
    /// The commit (annotated tags are peeled).
    pub commit: String,
    /// For symbolic refs (`HEAD`), the ref they point to.
    pub target: Option<String>,
}

/// What a revision spec resolved to on the remote, before fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// A ref of the remote and its commit.
    Ref { name: String, commit: String },
    /// A commit id not advertised by any ref.
    Sha(String),
    /// An abbreviated id no advertised ref matches: needs history to resolve.
    ShortSha(String),
}

/// Resolves a spec against the advertised refs.
pub(crate) fn resolve_remote(spec: &RevisionSpec, refs: &[RemoteRef]) -> Result<Wanted, String> {
    let by_name = |name: &str| refs.iter().find(|r| r.name == name);
    let wanted_ref = |r: &RemoteRef| Wanted::Ref {
        name: r.target.clone().unwrap_or_else(|| r.name.clone()),
        commit: r.commit.clone(),
    };
    match spec {
        RevisionSpec::Head => by_name("HEAD")
            .map(wanted_ref)
            .ok_or_else(|| "the remote has no HEAD".to_owned()),
        RevisionSpec::Ref(name) => by_name(name)
            .map(wanted_ref)
            .ok_or_else(|| format!("no ref {name} on the remote")),
        RevisionSpec::Name(name) => {
            if let Some(r) = by_name(&format!("refs/heads/{name}"))
                .or_else(|| by_name(&format!("refs/tags/{name}")))
            {
                return Ok(wanted_ref(r));
            }
            if let Some(short) = spec.short_sha() {
                let short = short.to_ascii_lowercase();
                let mut tips: Vec<&str> = refs
                    .iter()
                    .filter(|r| r.commit.starts_with(&short))
                    .map(|r| r.commit.as_str())
                    .collect();
                tips.sort_unstable();
                tips.dedup();
                return match tips.as_slice() {
                    [one] => Ok(Wanted::Sha((*one).to_owned())),
                    [] => Ok(Wanted::ShortSha(short)),
                    _ => Err(format!("abbreviated commit id {short} is ambiguous")),
                };
            }
            Err(format!("no branch or tag named {name} on the remote"))
        }
        RevisionSpec::Sha(sha) => {
            // Prefer naming the ref it came from when a tip matches.
            let named = refs
                .iter()
                .filter(|r| &r.commit == sha && r.name != "HEAD")
                .min_by_key(|r| (!r.name.starts_with("refs/heads/"), r.name.clone()));
            Ok(match named {
                Some(r) => Wanted::Ref {
                    name: r.name.clone(),
                    commit: sha.clone(),
                },
                None => Wanted::Sha(sha.clone()),
            })
        }
        RevisionSpec::Semver(constraint) => {
            let req = parse_constraint(constraint)?;
            refs.iter()
                .filter_map(|r| {
                    let tag = r.name.strip_prefix("refs/tags/")?;
                    let v = tag_version(tag)?;
                    req.matches(&v).then_some((v, r))
                })
                .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.name.cmp(&a.1.name)))
                .map(|(_, r)| wanted_ref(r))
                .ok_or_else(|| format!("no tag matches the version constraint {constraint}"))
        }
    }
}

/// How the tracked ref moved relative to the previously applied commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryChange {
    /// No previous commit was given.
    NotChecked,
    /// The ref still points at the previous commit.
    Unchanged,
    /// The previous commit is an ancestor of the new one.
    FastForward,
    /// The previous commit is not in the history of the new one: the ref was force-pushed (rewritten).
    Rewritten,
}

/// A resolved revision: one commit of one repository, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The repository URL without credentials.
    pub repo: String,
    /// The revision as requested.
    pub requested: String,
    /// The full commit id.
    pub sha: String,
    /// The ref it came from (`refs/heads/main`, `refs/tags/v1.2.0`), if any.
    pub ref_name: Option<String>,
    /// The id of the commit's root tree.
    pub tree: String,
    /// Whether the local mirror holds truncated history (a shallow fetch really was shallow).
    pub shallow: bool,
    /// Movement relative to the previously applied commit, when one was given.
    pub history: HistoryChange,
    /// Whether this request transferred objects from the remote (false when the mirror already had the commit).
    pub fetched: bool,
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ref_name {
            Some(r) => write!(f, "{}@{} ({})", self.repo, self.sha, r),
            None => write!(f, "{}@{}", self.repo, self.sha),
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(name: &str, commit: &str) -> RemoteRef {
        RemoteRef {
            name: name.into(),
            commit: commit.into(),
            target: None,
        }
    }

    fn refs() -> Vec<RemoteRef> {
        vec![
            RemoteRef {
                name: "HEAD".into(),
                commit: "a".repeat(40),
                target: Some("refs/heads/main".into()),
            },
            r("refs/heads/main", &"a".repeat(40)),
            r("refs/heads/dev", &"b".repeat(40)),
            r("refs/tags/v1.2.0", &"c".repeat(40)),
            r("refs/tags/1.3.0", &"d".repeat(40)),
            r("refs/tags/v1.4.2", &"e".repeat(40)),
            r("refs/tags/v2.0.0", &"f".repeat(40)),
            r("refs/tags/v1.5.0-rc.1", &"1".repeat(40)),
            r("refs/tags/not-a-version", &"2".repeat(40)),
        ]
    }

    fn want(spec: &str) -> Wanted {
        resolve_remote(&RevisionSpec::parse(spec).unwrap(), &refs()).unwrap()
    }

    #[test]
    fn parses_kinds() {
        assert_eq!(RevisionSpec::parse("").unwrap(), RevisionSpec::Head);
        assert_eq!(
            RevisionSpec::parse("main").unwrap(),
            RevisionSpec::Name("main".into())
        );
        assert!(matches!(
            RevisionSpec::parse(">=1.2.0 <2").unwrap(),
            RevisionSpec::Semver(_)
        ));
        assert!(matches!(
            RevisionSpec::parse("1.4.*").unwrap(),
            RevisionSpec::Semver(_)
        ));
        assert!(matches!(
            RevisionSpec::parse(&"A".repeat(40)).unwrap(),
            RevisionSpec::Sha(_)
        ));
        assert!(RevisionSpec::parse(">=").is_err());
        assert!(RevisionSpec::parse("a..b").is_err());
    }

    #[test]
    fn resolves_names_head_and_semver() {
        assert_eq!(
            want("HEAD"),
            Wanted::Ref {
                name: "refs/heads/main".into(),
                commit: "a".repeat(40)
            }
        );
        assert_eq!(
            want("dev"),
            Wanted::Ref {
                name: "refs/heads/dev".into(),
                commit: "b".repeat(40)
            }
        );
        assert_eq!(
            want("v1.2.0"),
            Wanted::Ref {
                name: "refs/tags/v1.2.0".into(),
                commit: "c".repeat(40)
            }
        );
        assert_eq!(
            want(">=1.2.0 <2"),
            Wanted::Ref {
                name: "refs/tags/v1.4.2".into(),
                commit: "e".repeat(40)
            }
        );
        assert_eq!(
            want("1.3.*"),
            Wanted::Ref {
                name: "refs/tags/1.3.0".into(),
                commit: "d".repeat(40)
            }
        );
        assert_eq!(
            want(">= v2"),
            Wanted::Ref {
                name: "refs/tags/v2.0.0".into(),
                commit: "f".repeat(40)
            }
        );
        assert_eq!(want("eeee"), Wanted::Sha("e".repeat(40)));
        assert_eq!(want("abcd12"), Wanted::ShortSha("abcd12".into()));
        assert!(resolve_remote(&RevisionSpec::parse(">=3").unwrap(), &refs()).is_err());
        assert!(resolve_remote(&RevisionSpec::parse("nope").unwrap(), &refs()).is_err());
    }
}
