//! Property tests of revision parsing and resolution against the advertised refs: the highest tag satisfying a
//! constraint is chosen (prereleases only when the constraint asks for them), constraint spelling does not change
//! its meaning, and SHAs, short SHAs, branches and tags are classified and resolved consistently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use semver::{Version, VersionReq};

use super::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A version with small numbers (so that constraints and tags often meet) and sometimes a prerelease.
fn version() -> impl Strategy<Value = Version> {
    (
        0..4u64,
        0..4u64,
        0..3u64,
        prop::option::weighted(0.25, prop::sample::select(vec!["rc.1", "rc.2", "alpha"])),
    )
        .prop_map(|(major, minor, patch, pre)| {
            let mut v = Version::new(major, minor, patch);
            if let Some(p) = pre {
                v.pre = semver::Prerelease::new(p).unwrap();
            }
            v
        })
}

fn commit_id(n: u32) -> String {
    format!("{n:040x}")
}

/// Tags (with or without a leading `v`, some not versions at all) and branches, each on a distinct commit.
fn refs() -> impl Strategy<Value = Vec<RemoteRef>> {
    let tag = prop_oneof![
        4 => (version(), any::<bool>()).prop_map(|(v, prefix)| if prefix { format!("v{v}") } else { v.to_string() }),
        1 => prop::sample::select(vec!["latest", "not-a-version", "release-1"]).prop_map(str::to_owned),
    ];
    (
        prop::collection::btree_set(tag, 0..10),
        // Two characters at least: a branch named `x` is the wildcard constraint (see below).
        prop::collection::btree_set("[a-z][a-z0-9-]{1,8}", 1..4),
    )
        .prop_map(|(tags, branches)| {
            let mut out = Vec::new();
            let mut n = 1;
            for b in branches {
                out.push(RemoteRef {
                    name: format!("refs/heads/{b}"),
                    commit: commit_id(n),
                    target: None,
                });
                n += 1;
            }
            for t in tags {
                out.push(RemoteRef {
                    name: format!("refs/tags/{t}"),
                    commit: commit_id(n),
                    target: None,
                });
                n += 1;
            }
            out
        })
}

/// One comparator: (operator, version text without `v`).
fn comparator() -> impl Strategy<Value = (&'static str, String)> {
    (
        prop::sample::select(vec![">=", ">", "<", "<=", "=", "~", "^"]),
        prop_oneof![
            version().prop_map(|v| v.to_string()),
            (0..4u64, 0..4u64).prop_map(|(a, b)| format!("{a}.{b}")),
            (0..4u64).prop_map(|a| a.to_string()),
        ],
    )
}

/// A constraint as a list of comparators, or a wildcard (`1.*`, `1.2.x`).
#[derive(Debug, Clone)]
enum Constraint {
    Comparators(Vec<(&'static str, String)>),
    Wildcard(String),
}

impl Constraint {
    /// The requirement written the canonical way the semver crate reads (the model).
    fn canonical(&self) -> VersionReq {
        let text = match self {
            Constraint::Comparators(c) => c
                .iter()
                .map(|(op, v)| format!("{op}{v}"))
                .collect::<Vec<_>>()
                .join(", "),
            Constraint::Wildcard(w) => w.clone(),
        };
        VersionReq::parse(&text).unwrap()
    }

    /// The constraint as a user may write it: `v` prefixes, spaces after operators, commas or spaces between.
    fn written(&self, style: &Style) -> String {
        match self {
            Constraint::Comparators(c) => c
                .iter()
                .enumerate()
                .map(|(i, (op, v))| {
                    let v_prefix = if style.v_prefix.get(i).copied().unwrap_or(false) {
                        "v"
                    } else {
                        ""
                    };
                    let gap = if style.space_after_op { " " } else { "" };
                    format!("{op}{gap}{v_prefix}{v}")
                })
                .collect::<Vec<_>>()
                .join(style.separator),
            Constraint::Wildcard(w) => w.clone(),
        }
    }

    fn asks_prerelease(&self) -> bool {
        self.canonical()
            .comparators
            .iter()
            .any(|c| !c.pre.is_empty())
    }
}

#[derive(Debug, Clone)]
struct Style {
    v_prefix: Vec<bool>,
    space_after_op: bool,
    separator: &'static str,
}

fn constraint() -> impl Strategy<Value = Constraint> {
    prop_oneof![
        3 => prop::collection::vec(comparator(), 1..3).prop_map(Constraint::Comparators),
        1 => (0..4u64, prop::option::of(0..4u64), prop::sample::select(vec!["*", "x", "X"])).prop_map(
            |(a, b, w)| Constraint::Wildcard(match b {
                Some(b) => format!("{a}.{b}.{w}"),
                None => format!("{a}.{w}"),
            })
        ),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop::collection::vec(any::<bool>(), 2),
        any::<bool>(),
        prop::sample::select(vec![" ", ", ", ",", "  "]),
    )
        .prop_map(|(v_prefix, space_after_op, separator)| Style {
            v_prefix,
            space_after_op,
            separator,
        })
}

proptest! {
    #![proptest_config(config(512))]

    /// However the constraint is spelled, it means what the canonical form means.
    #[test]
    fn constraint_spelling_does_not_change_its_meaning(c in constraint(), style in style()) {
        let written = c.written(&style);
        let spec = RevisionSpec::parse(&written).unwrap();
        prop_assert_eq!(&spec, &RevisionSpec::Semver(written.clone()));
        prop_assert_eq!(parse_constraint(&written).unwrap(), c.canonical(), "{}", written);
    }

    /// The tag chosen is the highest one whose version satisfies the constraint (among equal versions, the
    /// smallest name); none matching is an error; prereleases only when a comparator names one.
    #[test]
    fn the_highest_matching_tag_is_chosen(refs in refs(), c in constraint(), style in style()) {
        let written = c.written(&style);
        let req = c.canonical();
        let spec = RevisionSpec::parse(&written).unwrap();
        let mut best: Option<(Version, &RemoteRef)> = None;
        for r in &refs {
            let Some(tag) = r.name.strip_prefix("refs/tags/") else { continue };
            let Ok(v) = Version::parse(tag.strip_prefix('v').unwrap_or(tag)) else { continue };
            if !req.matches(&v) {
                continue;
            }
            let better = match &best {
                None => true,
                Some((bv, br)) => v > *bv || (v == *bv && r.name < br.name),
            };
            if better {
                best = Some((v, r));
            }
        }
        match (resolve_remote(&spec, &refs), best) {
            (Ok(got), Some((v, r))) => {
                prop_assert_eq!(got, Wanted::Ref { name: r.name.clone(), commit: r.commit.clone() });
                if !c.asks_prerelease() {
                    prop_assert!(v.pre.is_empty(), "prerelease {} chosen for {}", v, written);
                }
            }
            (Err(e), None) => prop_assert!(e.contains("no tag matches"), "{}", e),
            (got, want) => prop_assert!(false, "{}: got {:?}, expected {:?}", written, got, want.map(|w| w.1)),
        }
    }

    /// A full commit id in any case is a SHA (lower-cased), and resolves to a branch holding it (preferred, first
    /// by name), else a tag, else the bare commit.
    #[test]
    fn full_commit_ids_are_shas_and_name_their_ref(
        refs in refs(),
        pick in prop::option::of(any::<prop::sample::Index>()),
        upper in any::<bool>(),
        extra in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        // Other refs on the same commit as the picked one (branches and tags sharing a tip).
        let mut refs = refs;
        let sha = match pick {
            Some(i) => refs[i.index(refs.len())].commit.clone(),
            None => commit_id(0xdead_beef),
        };
        for e in extra {
            let i = e.index(refs.len());
            refs[i].commit = sha.clone();
        }
        let text = if upper { sha.to_ascii_uppercase() } else { sha.clone() };
        let spec = RevisionSpec::parse(&text).unwrap();
        prop_assert_eq!(&spec, &RevisionSpec::Sha(sha.clone()));
        let holders: Vec<&RemoteRef> = refs.iter().filter(|r| r.commit == sha).collect();
        let branch = holders.iter().filter(|r| r.name.starts_with("refs/heads/")).map(|r| &r.name).min();
        let tag = holders.iter().map(|r| &r.name).min();
        let expected = match branch.or(tag) {
            Some(name) => Wanted::Ref { name: name.clone(), commit: sha.clone() },
            None => Wanted::Sha(sha.clone()),
        };
        prop_assert_eq!(resolve_remote(&spec, &refs).unwrap(), expected);
    }

    /// A short hex name that is no ref resolves to the one tip it abbreviates, is ambiguous when it abbreviates
    /// several, and otherwise needs history.
    #[test]
    fn short_commit_ids_resolve_to_the_unique_tip(
        refs in refs(),
        prefix in "[0-9a-f]{4,8}",
        tips in prop::collection::vec(("[0-9a-f]{36}", any::<prop::sample::Index>()), 0..3),
    ) {
        let mut refs = refs;
        // Put the prefix at the start of some tips.
        for (rest, at) in &tips {
            let i = at.index(refs.len());
            refs[i].commit = format!("{prefix}{rest}")[..40].to_owned();
        }
        let spec = RevisionSpec::parse(&prefix).unwrap();
        prop_assert_eq!(&spec, &RevisionSpec::Name(prefix.clone()));
        let mut matching: Vec<&str> = refs
            .iter()
            .filter(|r| r.commit.starts_with(&prefix))
            .map(|r| r.commit.as_str())
            .collect();
        matching.sort_unstable();
        matching.dedup();
        let named = refs
            .iter()
            .find(|r| r.name == format!("refs/heads/{prefix}"))
            .or_else(|| refs.iter().find(|r| r.name == format!("refs/tags/{prefix}")));
        let got = resolve_remote(&spec, &refs);
        match (named, matching.as_slice()) {
            (Some(r), _) => prop_assert_eq!(got.unwrap(), Wanted::Ref { name: r.name.clone(), commit: r.commit.clone() }),
            (None, []) => prop_assert_eq!(got.unwrap(), Wanted::ShortSha(prefix.clone())),
            (None, [one]) => prop_assert_eq!(got.unwrap(), Wanted::Sha((*one).to_owned())),
            (None, _) => prop_assert!(got.unwrap_err().contains("ambiguous")),
        }
    }

    /// A branch name resolves to the branch, even when a tag of the same name exists; a tag name with no such
    /// branch to the tag; `refs/...` names only the ref itself.
    #[test]
    fn names_resolve_to_the_branch_first_then_the_tag(
        refs in refs(),
        pick in any::<prop::sample::Index>(),
        shadow in any::<bool>(),
    ) {
        let mut refs = refs;
        let picked = refs[pick.index(refs.len())].clone();
        let short = picked.name.strip_prefix("refs/heads/").or_else(|| picked.name.strip_prefix("refs/tags/")).unwrap().to_owned();
        if shadow {
            // A tag named like the branch, or a branch named like the tag.
            let other = if picked.name.starts_with("refs/heads/") { "tags" } else { "heads" };
            let name = format!("refs/{other}/{short}");
            if !refs.iter().any(|r| r.name == name) {
                refs.push(RemoteRef { name, commit: commit_id(0xfeed), target: None });
            }
        }
        let spec = RevisionSpec::parse(&short).unwrap();
        let full = RevisionSpec::parse(&picked.name).unwrap();
        prop_assert_eq!(&full, &RevisionSpec::Ref(picked.name.clone()));
        prop_assert_eq!(
            resolve_remote(&full, &refs).unwrap(),
            Wanted::Ref { name: picked.name.clone(), commit: picked.commit.clone() }
        );
        match spec {
            RevisionSpec::Name(_) => {
                let branch = format!("refs/heads/{short}");
                let expected = refs
                    .iter()
                    .find(|r| r.name == branch)
                    .or_else(|| refs.iter().find(|r| r.name == format!("refs/tags/{short}")))
                    .unwrap();
                prop_assert_eq!(
                    resolve_remote(&spec, &refs).unwrap(),
                    Wanted::Ref { name: expected.name.clone(), commit: expected.commit.clone() }
                );
            }
            // A plain version tag (`1.2.0`) is a name too; anything else is a mistake of the classification.
            other => prop_assert!(false, "{} parsed as {:?}", short, other),
        }
    }

    /// A branch named like a maintenance line (`release-1.x`, `stable.X`) is a name when the text is no valid
    /// version constraint, not an error; it resolves to the branch. (Text that is a valid constraint, such as
    /// `v1.x` or `x`, stays a constraint.)
    #[test]
    fn names_with_wildcard_parts_that_are_no_constraint_are_names(
        name in "[a-z][a-z0-9-]{0,8}\\.(x|X)(\\.[a-z0-9]{1,3})?",
        refs in refs(),
    ) {
        prop_assume!(parse_constraint(&name).is_err());
        let spec = RevisionSpec::parse(&name);
        prop_assert!(matches!(&spec, Ok(RevisionSpec::Name(n)) if *n == name), "{}: {:?}", name, spec);
        let mut refs = refs;
        refs.push(RemoteRef { name: format!("refs/heads/{name}"), commit: commit_id(0xbeef), target: None });
        prop_assert_eq!(
            resolve_remote(&spec.unwrap(), &refs).unwrap(),
            Wanted::Ref { name: format!("refs/heads/{name}"), commit: commit_id(0xbeef) }
        );
    }

    /// HEAD, the empty string and blanks are the default branch, which resolves through the symbolic ref.
    #[test]
    fn head_and_blank_are_the_default_branch(refs in refs(), blanks in "[ \t]{0,3}", head in any::<bool>()) {
        let text = if head { format!("{blanks}HEAD{blanks}") } else { blanks };
        let spec = RevisionSpec::parse(&text).unwrap();
        prop_assert_eq!(&spec, &RevisionSpec::Head);
        let main = refs[0].clone();
        let mut refs = refs;
        prop_assert!(resolve_remote(&spec, &refs).is_err());
        refs.push(RemoteRef { name: "HEAD".into(), commit: main.commit.clone(), target: Some(main.name.clone()) });
        prop_assert_eq!(resolve_remote(&spec, &refs).unwrap(), Wanted::Ref { name: main.name, commit: main.commit });
    }

    /// Parsing any text never panics, and whatever parses resolves (or fails) without panicking.
    #[test]
    fn any_text_parses_or_fails_cleanly(text in any::<String>(), refs in refs()) {
        if let Ok(spec) = RevisionSpec::parse(&text) {
            let _ = resolve_remote(&spec, &refs);
        }
    }

    /// Text made of the characters constraints use never panics either.
    #[test]
    fn constraint_like_text_parses_or_fails_cleanly(text in "[<>=~^*xXv0-9., -]{0,16}", refs in refs()) {
        if let Ok(spec) = RevisionSpec::parse(&text) {
            let _ = resolve_remote(&spec, &refs);
        }
    }
}
