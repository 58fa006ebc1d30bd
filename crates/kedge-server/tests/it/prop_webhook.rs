//! Property tests of webhook payload parsing: push payloads built for each provider yield the repository URLs,
//! refs, default branch and changed files they were built from; arbitrary JSON or bytes never panic; a target the
//! source reads as a version constraint is refreshed by a tag push.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use kedge_server::webhook::{Provider, Push, parse, revision_matches};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Repository URLs in the forms providers send, or any non-empty text (the parser passes them through).
fn url() -> impl Strategy<Value = String> {
    let host = "[a-z]{1,8}\\.(com|org|test)";
    let part = "[A-Za-z0-9_.-]{1,10}";
    prop_oneof![
        (host, part, part).prop_map(|(h, o, r)| format!("https://{h}/{o}/{r}.git")),
        (host, part, part).prop_map(|(h, o, r)| format!("git@{h}:{o}/{r}.git")),
        (host, part, part).prop_map(|(h, o, r)| format!("ssh://git@{h}:22/{o}/{r}")),
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn git_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        "refs/heads/[a-z0-9/._-]{1,12}",
        "refs/tags/v?[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn non_empty() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("non-empty", |s| !s.is_empty())
}

/// `commits[]`: each with added, modified and removed files.
fn commits() -> impl Strategy<Value = Option<Vec<[Vec<String>; 3]>>> {
    let files = || {
        prop::collection::vec(
            prop_oneof!["[a-z]{1,3}/[a-z]{1,3}\\.yaml", any::<String>()],
            0..3,
        )
    };
    prop::option::of(prop::collection::vec(
        (files(), files(), files()).prop_map(|(a, m, r)| [a, m, r]),
        0..4,
    ))
}

fn commits_json(commits: &[[Vec<String>; 3]]) -> Value {
    Value::Array(
        commits
            .iter()
            .map(|[a, m, r]| json!({"id": "0123abc", "added": a, "modified": m, "removed": r}))
            .collect(),
    )
}

fn expected_files(commits: &Option<Vec<[Vec<String>; 3]>>) -> Option<Vec<String>> {
    commits.as_ref().map(|cs| {
        cs.iter()
            .flat_map(|c| c.iter().flatten().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    })
}

/// Fields no parser reads, with arbitrary content: they must not change the result.
fn noise() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::collection::btree_map("[a-z]{1,4}", any::<String>(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())),
    ]
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), Value::from(v.clone()));
    }
}

/// Expected result: the URLs given (in the parser's documented order), or an error when there is none.
fn check(
    got: Result<Option<Push>, kedge_server::ApiError>,
    expected: Push,
) -> Result<(), TestCaseError> {
    if expected.urls.is_empty() {
        prop_assert!(
            got.is_err(),
            "a push without any repository URL is refused: {:?}",
            got.ok()
        );
    } else {
        let got = got.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(got, Some(expected));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn github_and_gitea_pushes_yield_what_they_were_built_from(
        urls in prop::collection::vec(prop::option::of(url()), 5),
        r in git_ref(),
        default_branch in prop::option::of(non_empty()),
        commits in commits(),
        noise in noise(),
        header in prop::sample::select(vec!["x-github-event", "x-gitea-event", "x-forgejo-event", "x-gogs-event"]),
    ) {
        let mut repo = Map::new();
        for (key, u) in ["clone_url", "ssh_url", "git_url", "html_url", "url"].iter().zip(&urls) {
            insert_some(&mut repo, key, u);
        }
        insert_some(&mut repo, "default_branch", &default_branch);
        repo.insert("owner".into(), noise.clone());
        let mut body = json!({"ref": r, "before": "0000", "repository": repo, "sender": noise});
        if let Some(c) = &commits {
            body["commits"] = commits_json(c);
        }
        let h = headers(&[(header, "push")]);
        let provider = Provider::detect(&h).unwrap();
        prop_assert_eq!(provider, if header == "x-github-event" { Provider::GitHub } else { Provider::Gitea });
        let expected = Push {
            urls: urls.into_iter().flatten().collect(),
            refs: vec![r],
            default_branch,
            changed_files: expected_files(&commits),
        };
        check(parse(provider, &h, body.to_string().as_bytes()), expected)?;
        // Any other event of the same payload is not a push.
        let other = headers(&[(header, "issues")]);
        prop_assert_eq!(parse(provider, &other, body.to_string().as_bytes()).unwrap(), None);
    }

    #[test]
    fn gitlab_pushes_yield_what_they_were_built_from(
        project_urls in prop::collection::vec(prop::option::of(url()), 3),
        repository_urls in prop::collection::vec(prop::option::of(url()), 3),
        r in git_ref(),
        default_branch in prop::option::of(non_empty()),
        commits in commits(),
        event in prop::sample::select(vec!["Push Hook", "Tag Push Hook"]),
    ) {
        let mut project = Map::new();
        for (key, u) in ["git_http_url", "git_ssh_url", "web_url"].iter().zip(&project_urls) {
            insert_some(&mut project, key, u);
        }
        insert_some(&mut project, "default_branch", &default_branch);
        let mut repository = Map::new();
        for (key, u) in ["git_http_url", "git_ssh_url", "homepage"].iter().zip(&repository_urls) {
            insert_some(&mut repository, key, u);
        }
        let mut body = json!({"object_kind": "push", "ref": r, "project": project, "repository": repository});
        if let Some(c) = &commits {
            body["commits"] = commits_json(c);
        }
        let h = headers(&[("x-gitlab-event", event)]);
        prop_assert_eq!(Provider::detect(&h), Some(Provider::GitLab));
        let expected = Push {
            urls: project_urls.into_iter().chain(repository_urls).flatten().collect(),
            refs: vec![r],
            default_branch,
            changed_files: expected_files(&commits),
        };
        check(parse(Provider::GitLab, &h, body.to_string().as_bytes()), expected)?;
    }

    #[test]
    fn bitbucket_cloud_pushes_yield_their_refs(
        html in prop::option::of(url()),
        full_name in prop::option::of("[a-z]{1,6}/[a-z]{1,6}"),
        changes in prop::collection::vec(
            prop::option::of((prop::option::of(prop::sample::select(vec!["branch", "tag", "named_branch"])), non_empty())),
            0..4,
        ),
    ) {
        let mut repository = json!({"type": "repository"});
        if let Some(h) = &html {
            repository["links"] = json!({"html": {"href": h}});
        }
        if let Some(f) = &full_name {
            repository["full_name"] = json!(f);
        }
        let changes_json: Vec<Value> = changes
            .iter()
            .map(|c| match c {
                // A deleted branch: no `new`.
                None => json!({"new": null, "old": {"type": "branch", "name": "gone"}}),
                Some((kind, name)) => {
                    let mut new = json!({"name": name});
                    if let Some(k) = kind {
                        new["type"] = json!(k);
                    }
                    json!({"new": new})
                }
            })
            .collect();
        let body = json!({"repository": repository, "push": {"changes": changes_json}});
        let h = headers(&[("x-event-key", "repo:push")]);
        prop_assert_eq!(Provider::detect(&h), Some(Provider::Bitbucket));
        let mut urls: Vec<String> = html.into_iter().collect();
        urls.extend(full_name.map(|f| format!("https://bitbucket.org/{f}")));
        let refs = changes
            .iter()
            .flatten()
            .map(|(kind, name)| match kind {
                Some("tag") => format!("refs/tags/{name}"),
                _ => format!("refs/heads/{name}"),
            })
            .collect();
        let expected = Push { urls, refs, default_branch: None, changed_files: None };
        check(parse(Provider::Bitbucket, &h, body.to_string().as_bytes()), expected)?;
    }

    #[test]
    fn bitbucket_server_pushes_yield_their_refs(
        clones in prop::collection::vec(url(), 0..3),
        refs in prop::collection::vec(git_ref(), 0..4),
    ) {
        let links: Vec<Value> = clones.iter().map(|u| json!({"href": u, "name": "http"})).collect();
        let changes: Vec<Value> = refs
            .iter()
            .map(|r| json!({"ref": {"id": r, "displayId": "x", "type": "BRANCH"}, "type": "UPDATE"}))
            .collect();
        let body = json!({"eventKey": "repo:refs_changed", "repository": {"links": {"clone": links}}, "changes": changes});
        let h = headers(&[("x-event-key", "repo:refs_changed")]);
        let expected = Push { urls: clones, refs, default_branch: None, changed_files: None };
        check(parse(Provider::Bitbucket, &h, body.to_string().as_bytes()), expected)?;
    }
}

/// JSON whose keys are the ones the parsers look for, holding values of every type (often the wrong one).
fn payload_like() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "ref",
        "repository",
        "project",
        "clone_url",
        "ssh_url",
        "html_url",
        "url",
        "git_http_url",
        "homepage",
        "default_branch",
        "commits",
        "added",
        "modified",
        "removed",
        "push",
        "changes",
        "new",
        "name",
        "type",
        "links",
        "html",
        "href",
        "clone",
        "full_name",
        "id",
        "other",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        Just(Value::from("tag")),
    ];
    leaf.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn all_events() -> Vec<HeaderMap> {
    [
        ("x-github-event", "push"),
        ("x-gitea-event", "push"),
        ("x-gitlab-event", "Push Hook"),
        ("x-gitlab-event", "Tag Push Hook"),
        ("x-event-key", "repo:push"),
        ("x-event-key", "repo:refs_changed"),
        ("x-github-event", "ping"),
    ]
    .iter()
    .map(|p| headers(&[*p]))
    .collect()
}

proptest! {
    #![proptest_config(config(512))]

    /// Whatever the JSON, every provider's parser answers without panicking: a push always has a URL.
    #[test]
    fn arbitrary_json_never_panics(v in payload_like()) {
        let body = v.to_string();
        for h in all_events() {
            let provider = Provider::detect(&h).unwrap();
            match parse(provider, &h, body.as_bytes()) {
                Ok(Some(push)) => prop_assert!(!push.urls.is_empty()),
                Ok(None) => {}
                Err(_) => {}
            }
        }
    }

    /// Arbitrary bytes (mostly not JSON) are refused, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for h in all_events() {
            let provider = Provider::detect(&h).unwrap();
            let _ = parse(provider, &h, &bytes);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A target that the source resolves as a version constraint follows tags: a pushed tag must refresh it (the
    /// new tag may be the highest match). The webhook and the source must agree on what a constraint is.
    #[test]
    fn a_tag_push_refreshes_every_target_the_source_reads_as_a_constraint(
        target in prop_oneof![
            "(>=|<=|>|<|~|\\^|=)?v?[0-9]\\.[0-9]",
            "[0-9](\\.[0-9])?\\.(x|X|\\*)",
            "(x|X|\\*)",
            ">=[0-9] <[0-9]",
            ">=[0-9], <[0-9]",
        ],
        tag in "v?[0-9]\\.[0-9]\\.[0-9]",
    ) {
        let is_constraint = matches!(
            kedge_source::RevisionSpec::parse(&target),
            Ok(kedge_source::RevisionSpec::Semver(_))
        );
        let push = Push {
            urls: vec!["https://git.test/o/r".into()],
            refs: vec![format!("refs/tags/{tag}")],
            default_branch: None,
            changed_files: None,
        };
        if is_constraint {
            prop_assert!(revision_matches(&target, &push), "{} is a constraint to the source", target);
        }
    }
}
