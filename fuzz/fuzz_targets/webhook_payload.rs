//! A webhook body as every provider's parser reads it (GitHub, Gitea/Forgejo/Gogs, GitLab, Bitbucket Cloud and
//! Server), and the revision match of what it reports.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use kedge_server::webhook::{Provider, parse, revision_matches};
use libfuzzer_sys::fuzz_target;

const EVENTS: &[(&str, &str)] = &[
    ("x-github-event", "push"),
    ("x-gitea-event", "push"),
    ("x-forgejo-event", "push"),
    ("x-gitlab-event", "Push Hook"),
    ("x-gitlab-event", "Tag Push Hook"),
    ("x-event-key", "repo:push"),
    ("x-event-key", "repo:refs_changed"),
];

fuzz_target!(|data: &[u8]| {
    for (name, value) in EVENTS {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        let Some(provider) = Provider::detect(&headers) else {
            continue;
        };
        if let Ok(Some(push)) = parse(provider, &headers, data) {
            for target in ["", "HEAD", "main", ">=1.0.0", "v1.2.3"] {
                let _ = revision_matches(target, &push);
            }
        }
    }
});
