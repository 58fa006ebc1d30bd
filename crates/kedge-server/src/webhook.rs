//! `POST /api/webhook`: push events from GitHub, GitLab, Gitea/Forgejo and Bitbucket refresh the applications that
//! track the pushed repository and branch at once, instead of at the next poll.
//!
//! Secrets come from Secret `kedge-webhook` in the server's namespace, one key per provider (`github`, `gitlab`,
//! `gitea` for Gitea, Forgejo and Gogs, `bitbucket` for Bitbucket Cloud and Server). A push is verified with its
//! provider's secret; a missing or wrong signature is refused (401). A push from a provider without a secret is
//! refused too (401 when other providers have one, 403 with how to configure one when none has), unless `kedge run`
//! was given `--webhook-allow-unsigned`: then such pushes are accepted unsigned (a push only triggers a comparison
//! with Git, never a change of its own, but unsigned ones let anyone make the controller fetch at will).

use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use kedge_api::Application;
use kube::ResourceExt;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::auth::read_secret;
use crate::error::ApiError;
use crate::{AppState, WEBHOOK_SECRET};

/// The webhook route (bodies are limited to [`crate::ServerConfig::webhook_body_limit`]).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/webhook", post(receive))
}

/// The sender of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// GitHub (`X-GitHub-Event`, `X-Hub-Signature-256`).
    GitHub,
    /// GitLab (`X-Gitlab-Event`, `X-Gitlab-Token`).
    GitLab,
    /// Gitea or Forgejo (`X-Gitea-Event`/`X-Forgejo-Event`, `X-Gitea-Signature`/`X-Forgejo-Signature`).
    Gitea,
    /// Bitbucket Cloud or Server (`X-Event-Key`, `X-Hub-Signature`).
    Bitbucket,
}

impl Provider {
    /// Tells the provider from the headers.
    pub fn detect(headers: &HeaderMap) -> Option<Provider> {
        let has = |h: &str| headers.contains_key(h);
        if has("x-gitea-event") || has("x-forgejo-event") || has("x-gogs-event") {
            Some(Provider::Gitea)
        } else if has("x-gitlab-event") {
            Some(Provider::GitLab)
        } else if has("x-event-key") {
            Some(Provider::Bitbucket)
        } else if has("x-github-event") {
            Some(Provider::GitHub)
        } else {
            None
        }
    }

    /// The key of the provider's secret in the webhook Secret.
    pub fn key(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn hmac_sha256(secret: &str, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex_matches(given: &str, expected: &[u8]) -> bool {
    match hex::decode(given.trim()) {
        Ok(g) => !expected.is_empty() && bool::from(g.as_slice().ct_eq(expected)),
        Err(_) => false,
    }
}

/// Checks the request's signature or token against `secret`.
pub fn verify(provider: Provider, headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    let expected = || hmac_sha256(secret, body);
    match provider {
        Provider::GitHub => header(headers, "x-hub-signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|s| hex_matches(s, &expected())),
        Provider::Gitea => header(headers, "x-gitea-signature")
            .or_else(|| header(headers, "x-forgejo-signature"))
            .or_else(|| header(headers, "x-gogs-signature"))
            .is_some_and(|s| hex_matches(s.strip_prefix("sha256=").unwrap_or(s), &expected())),
        Provider::Bitbucket => header(headers, "x-hub-signature")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|s| hex_matches(s, &expected())),
        Provider::GitLab => header(headers, "x-gitlab-token")
            .is_some_and(|t| !t.is_empty() && bool::from(t.as_bytes().ct_eq(secret.as_bytes()))),
    }
}

/// What a push event says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Push {
    /// Every URL the payload gives for the repository (clone, ssh, web).
    pub urls: Vec<String>,
    /// Pushed refs (`refs/heads/main`, `refs/tags/v1`).
    pub refs: Vec<String>,
    /// The repository's default branch, when the payload tells it.
    pub default_branch: Option<String>,
    /// The files the pushed commits added, modified or removed, when the payload lists them (GitHub, Gitea,
    /// GitLab); they decide which applications are compared first.
    pub changed_files: Option<Vec<String>>,
}

/// The files listed in a payload's `commits[].added|modified|removed`, or `None` without a commit list.
fn changed_files(v: &Value) -> Option<Vec<String>> {
    let commits = v.get("commits")?.as_array()?;
    let mut files = BTreeSet::new();
    for c in commits {
        for key in ["added", "modified", "removed"] {
            for f in c.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Some(f) = f.as_str() {
                    files.insert(f.to_owned());
                }
            }
        }
    }
    Some(files.into_iter().collect())
}

fn strings(v: &Value, pointers: &[&str]) -> Vec<String> {
    pointers
        .iter()
        .filter_map(|p| v.pointer(p).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a push event; `Ok(None)` for other events (ping, issues, ...).
pub fn parse(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Push>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed webhook payload: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "malformed webhook payload: not a JSON object",
        ));
    }
    let event = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::Gitea => header(headers, "x-gitea-event")
            .or_else(|| header(headers, "x-forgejo-event"))
            .or_else(|| header(headers, "x-gogs-event")),
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Bitbucket => header(headers, "x-event-key"),
    }
    .unwrap_or("");
    let push = match provider {
        Provider::GitHub | Provider::Gitea => {
            if event != "push" {
                return Ok(None);
            }
            Push {
                urls: strings(
                    &v,
                    &[
                        "/repository/clone_url",
                        "/repository/ssh_url",
                        "/repository/git_url",
                        "/repository/html_url",
                        "/repository/url",
                    ],
                ),
                refs: strings(&v, &["/ref"]),
                default_branch: strings(&v, &["/repository/default_branch"])
                    .into_iter()
                    .next(),
                changed_files: changed_files(&v),
            }
        }
        Provider::GitLab => {
            if event != "Push Hook" && event != "Tag Push Hook" {
                return Ok(None);
            }
            Push {
                urls: strings(
                    &v,
                    &[
                        "/project/git_http_url",
                        "/project/git_ssh_url",
                        "/project/web_url",
                        "/repository/git_http_url",
                        "/repository/git_ssh_url",
                        "/repository/homepage",
                    ],
                ),
                refs: strings(&v, &["/ref"]),
                default_branch: strings(&v, &["/project/default_branch"]).into_iter().next(),
                changed_files: changed_files(&v),
            }
        }
        Provider::Bitbucket => match event {
            // Bitbucket Cloud.
            "repo:push" => {
                let mut urls = strings(&v, &["/repository/links/html/href"]);
                if let Some(full) = v.pointer("/repository/full_name").and_then(Value::as_str) {
                    urls.push(format!("https://bitbucket.org/{full}"));
                }
                let refs = v
                    .pointer("/push/changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        let new = c.get("new")?;
                        let name = new.get("name")?.as_str()?;
                        let kind = new.get("type").and_then(Value::as_str).unwrap_or("branch");
                        Some(if kind == "tag" {
                            format!("refs/tags/{name}")
                        } else {
                            format!("refs/heads/{name}")
                        })
                    })
                    .collect();
                Push {
                    urls,
                    refs,
                    default_branch: None,
                    changed_files: None,
                }
            }
            // Bitbucket Server / Data Center.
            "repo:refs_changed" => {
                let urls = v
                    .pointer("/repository/links/clone")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.get("href").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                let refs = v
                    .pointer("/changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        c.pointer("/ref/id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect();
                Push {
                    urls,
                    refs,
                    default_branch: None,
                    changed_files: None,
                }
            }
            _ => return Ok(None),
        },
    };
    if push.urls.is_empty() {
        return Err(ApiError::bad_request(
            "malformed push event: no repository URL",
        ));
    }
    Ok(Some(push))
}

/// Reduces a repository URL to `host/path` in lower case ([`kedge_source::RepoUrl::identity`]): no scheme, user,
/// port, trailing slash or `.git`, so that the https, ssh (`ssh://git@host/path`, `git@host:path`) and git forms of
/// one repository compare equal. A URL that cannot be read safely is kept as it is (trimmed), so it equals only itself.
pub fn normalize_repo_url(url: &str) -> String {
    kedge_source::RepoUrl::parse(url).map_or_else(|_| url.trim().to_owned(), |u| u.identity())
}

/// Whether the source reads `rev` as a version constraint over tags (so that any tag push may move it): the same
/// reading the fetch makes, not a look-alike.
fn looks_like_constraint(rev: &str) -> bool {
    matches!(
        kedge_source::RevisionSpec::parse(rev),
        Ok(kedge_source::RevisionSpec::Semver(_))
    )
}

/// Whether an application with `target` revision follows one of the pushed `refs`.
pub fn revision_matches(target: &str, push: &Push) -> bool {
    let target = target.trim();
    for r in &push.refs {
        if let Some(branch) = r.strip_prefix("refs/heads/") {
            let head = target.is_empty() || target == "HEAD";
            if head && push.default_branch.as_deref().is_none_or(|d| d == branch) {
                return true;
            }
            if target == branch || target == r {
                return true;
            }
        } else if let Some(tag) = r.strip_prefix("refs/tags/")
            && (target == tag || target == r || looks_like_constraint(target))
        {
            return true;
        }
    }
    false
}

/// The applications among `apps` that a push concerns.
pub fn matching_apps<'a>(
    apps: &'a [std::sync::Arc<Application>],
    push: &Push,
) -> Vec<&'a Application> {
    let urls: BTreeSet<String> = push.urls.iter().map(|u| normalize_repo_url(u)).collect();
    apps.iter()
        .map(AsRef::as_ref)
        .filter(|a| {
            // Any of its sources (a chart's value files in Git too).
            a.spec.all_sources().iter().any(|s| {
                urls.contains(&normalize_repo_url(&s.repo_url))
                    && revision_matches(&s.target_revision, push)
            })
        })
        .collect()
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config().webhook_body_limit;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("webhook payload larger than {limit} bytes"),
        ));
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("webhook payload larger than {limit} bytes or unreadable"),
        )
    })?;
    let provider = Provider::detect(&headers).ok_or_else(|| {
        ApiError::bad_request(
            "unknown webhook sender: no GitHub, GitLab, Gitea or Bitbucket event header",
        )
    })?;
    let secrets = read_secret(state.client(), &state.config().namespace, WEBHOOK_SECRET).await?;
    let configured: Vec<&(String, String)> = secrets
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let secret = configured
        .iter()
        .find(|(k, _)| k == provider.key())
        .map(|(_, v)| v.trim());
    let namespace = &state.config().namespace;
    match secret {
        Some(secret) => {
            if !verify(provider, &headers, &body, secret) {
                tracing::warn!(
                    provider = provider.key(),
                    "webhook signature missing or invalid"
                );
                return Err(ApiError::unauthorized(
                    "webhook signature missing or invalid",
                ));
            }
        }
        None if state.config().webhook_allow_unsigned => {}
        None if !configured.is_empty() => {
            return Err(ApiError::unauthorized(format!(
                "no {key} webhook secret is configured (other providers have one); refusing an unsigned payload: \
                 add key {key} to Secret {namespace}/{WEBHOOK_SECRET}",
                key = provider.key()
            )));
        }
        None => {
            tracing::warn!(
                provider = provider.key(),
                "refused an unsigned webhook push: no webhook secret is configured"
            );
            return Err(ApiError::forbidden(format!(
                "no webhook secret is configured: refusing an unsigned push. Put the secret under key {key} in Secret \
                 {namespace}/{WEBHOOK_SECRET} (and in the webhook settings of the Git server), or start kedge run with \
                 --webhook-allow-unsigned to accept unsigned pushes",
                key = provider.key()
            )));
        }
    }
    let Some(push) = parse(provider, &headers, &body)? else {
        return Ok((
            StatusCode::OK,
            Json(json!({ "refreshed": 0, "message": "event ignored (not a push)" })),
        )
            .into_response());
    };
    let apps = state.handles().store.state();
    let matched = matching_apps(&apps, &push);
    state
        .handles()
        .queue_pushed(&matched, push.changed_files.as_deref());
    let names: Vec<String> = matched
        .iter()
        .map(|app| format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any()))
        .collect();
    tracing::info!(
        provider = provider.key(),
        repo = %kedge_source::repo::strip_userinfo(push.urls.first().map(String::as_str).unwrap_or("")),
        refs = ?push.refs,
        applications = names.len(),
        "webhook push"
    );
    Ok((
        StatusCode::OK,
        Json(json!({ "refreshed": names.len(), "applications": names })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_push_to_any_source_of_an_application_matches_it() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "kedge"},
            "spec": {"sources": [
                {"repoURL": "https://charts.example.test", "chart": "shop", "targetRevision": "1.x"},
                {"repoURL": "https://git.example.test/team/config.git", "targetRevision": "main", "ref": "values"}
            ]}
        }))
        .expect("application");
        let apps = vec![std::sync::Arc::new(app)];
        let push = |url: &str, r: &str| Push {
            urls: vec![url.to_owned()],
            refs: vec![r.to_owned()],
            ..Push::default()
        };
        let to_values = push("https://git.example.test/team/config", "refs/heads/main");
        assert_eq!(matching_apps(&apps, &to_values).len(), 1);
        let other_branch = push("https://git.example.test/team/config", "refs/heads/dev");
        assert!(matching_apps(&apps, &other_branch).is_empty());
        let other_repo = push("https://git.example.test/team/other", "refs/heads/main");
        assert!(matching_apps(&apps, &other_repo).is_empty());
    }

    #[test]
    fn urls_of_one_repository_normalize_alike() {
        let forms = [
            "https://GitHub.com/Org/Repo.git",
            "https://user:tok@github.com/org/repo/",
            "ssh://git@github.com:22/org/repo.git",
            "git@github.com:org/repo.git",
            "git://github.com/org/repo",
            "http://github.com:80/org/repo",
        ];
        for f in forms {
            assert_eq!(normalize_repo_url(f), "github.com/org/repo", "{f}");
        }
        assert_ne!(
            normalize_repo_url("https://github.com/org/other"),
            "github.com/org/repo"
        );
    }

    #[test]
    fn branches_tags_and_head_match() {
        let push = |r: &str, d: Option<&str>| Push {
            urls: vec![],
            refs: vec![r.into()],
            default_branch: d.map(Into::into),
            changed_files: None,
        };
        assert!(revision_matches("main", &push("refs/heads/main", None)));
        assert!(!revision_matches("dev", &push("refs/heads/main", None)));
        assert!(revision_matches(
            "HEAD",
            &push("refs/heads/main", Some("main"))
        ));
        assert!(!revision_matches(
            "HEAD",
            &push("refs/heads/feature", Some("main"))
        ));
        assert!(revision_matches("v1.2.0", &push("refs/tags/v1.2.0", None)));
        assert!(revision_matches(
            ">=1.0.0 <2",
            &push("refs/tags/v1.3.0", None)
        ));
        assert!(!revision_matches("main", &push("refs/tags/v1", None)));
    }

    #[test]
    fn signatures_are_checked_per_provider() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = hex::encode(hmac_sha256("s3cret", body));
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&format!("sha256={sig}")).expect("header"),
        );
        assert!(verify(Provider::GitHub, &h, body, "s3cret"));
        assert!(!verify(Provider::GitHub, &h, body, "other"));
        assert!(!verify(Provider::GitHub, &h, b"tampered", "s3cret"));
        assert!(!verify(Provider::GitHub, &HeaderMap::new(), body, "s3cret"));
        let mut l = HeaderMap::new();
        l.insert("x-gitlab-token", HeaderValue::from_static("s3cret"));
        assert!(verify(Provider::GitLab, &l, body, "s3cret"));
        assert!(!verify(Provider::GitLab, &l, body, "s3cret2"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    // The expected signatures below were computed independently of this module, with
    // `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"`.
    const PUSH: &str = r#"{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example.org/team/apps.git"}}"#;

    #[test]
    fn github_signature_matches_the_published_example() {
        // The example of GitHub's documentation on validating webhook deliveries.
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert!(verify(
            Provider::GitHub,
            &h,
            b"Hello, World!",
            "It's a Secret to Everybody"
        ));
        assert!(!verify(
            Provider::GitHub,
            &h,
            b"Hello, World?",
            "It's a Secret to Everybody"
        ));
    }

    #[test]
    fn gitea_forgejo_and_gogs_signatures_are_checked() {
        let cases = [
            (
                "x-gitea-event",
                "x-gitea-signature",
                "gitea-s3cret",
                "18ae61c0c22ef27bd71f8ab436fa80fa9bac9ab27ef30771fbd5e402d9ef9572",
            ),
            (
                "x-forgejo-event",
                "x-forgejo-signature",
                "forgejo-s3cret",
                "2d4df9091a1b3e1e3e594ed1f216981e535c9268708632484aa1a04562a88a93",
            ),
            (
                "x-gogs-event",
                "x-gogs-signature",
                "gogs-s3cret",
                "4d9b2d581541d489b02ec203033504c9d231fb2b98a5006f7162db5ff71640d8",
            ),
        ];
        for (event, header, secret, signature) in cases {
            let h = headers(&[(event, "push"), (header, signature)]);
            assert_eq!(Provider::detect(&h), Some(Provider::Gitea), "{event}");
            assert!(
                verify(Provider::Gitea, &h, PUSH.as_bytes(), secret),
                "{header}"
            );
            // Negative cases: another secret, an altered body, an altered signature, no signature.
            assert!(
                !verify(Provider::Gitea, &h, PUSH.as_bytes(), "wrong-secret"),
                "{header}"
            );
            assert!(
                !verify(Provider::Gitea, &h, &PUSH.as_bytes()[1..], secret),
                "{header}"
            );
            let mut altered = signature.to_owned();
            altered.replace_range(0..1, if signature.starts_with('0') { "1" } else { "0" });
            let bad = headers(&[(event, "push"), (header, &altered)]);
            assert!(
                !verify(Provider::Gitea, &bad, PUSH.as_bytes(), secret),
                "{header}"
            );
            let unsigned = headers(&[(event, "push")]);
            assert!(
                !verify(Provider::Gitea, &unsigned, PUSH.as_bytes(), secret),
                "{header}"
            );
            // A signature made for another of these providers does not pass.
            for (_, _, _, other_sig) in cases {
                if other_sig != signature {
                    let h = headers(&[(event, "push"), (header, other_sig)]);
                    assert!(
                        !verify(Provider::Gitea, &h, PUSH.as_bytes(), secret),
                        "{header}"
                    );
                }
            }
        }
    }

    #[test]
    fn bitbucket_server_and_cloud_signatures_are_checked() {
        let server = r#"{"eventKey":"repo:refs_changed","repository":{"links":{"clone":[{"href":"https://bb.example.org/scm/team/apps.git","name":"http"}]}},"changes":[{"ref":{"id":"refs/heads/main"}}]}"#;
        let cloud = r#"{"repository":{"full_name":"team/apps","links":{"html":{"href":"https://bitbucket.org/team/apps"}}},"push":{"changes":[{"new":{"type":"branch","name":"main"}}]}}"#;
        let cases = [
            (
                "repo:refs_changed",
                server,
                "bitbucket-server-s3cret",
                "e58258999a4438187af78825c8d88e9a1af547300d6df1990fa5ce0e6c25d342",
            ),
            (
                "repo:push",
                cloud,
                "bitbucket-cloud-s3cret",
                "9ff2e3f93ddf141db2cce3b0228aa64654576727aa9d9cdae6e4dc093299152e",
            ),
        ];
        for (event, body, secret, signature) in cases {
            let signed = format!("sha256={signature}");
            let h = headers(&[("x-event-key", event), ("x-hub-signature", &signed)]);
            assert_eq!(Provider::detect(&h), Some(Provider::Bitbucket));
            assert!(
                verify(Provider::Bitbucket, &h, body.as_bytes(), secret),
                "{event}"
            );
            assert!(
                !verify(Provider::Bitbucket, &h, body.as_bytes(), "wrong"),
                "{event}"
            );
            assert!(
                !verify(Provider::Bitbucket, &h, PUSH.as_bytes(), secret),
                "{event}"
            );
            // The hex alone, without the algorithm prefix Bitbucket sends, is not accepted.
            let bare = headers(&[("x-event-key", event), ("x-hub-signature", signature)]);
            assert!(
                !verify(Provider::Bitbucket, &bare, body.as_bytes(), secret),
                "{event}"
            );
            let unsigned = headers(&[("x-event-key", event)]);
            assert!(
                !verify(Provider::Bitbucket, &unsigned, body.as_bytes(), secret),
                "{event}"
            );
            // The payload of each is read as a push of main.
            let push = parse(Provider::Bitbucket, &h, body.as_bytes())
                .expect("parses")
                .expect("a push");
            assert_eq!(push.refs, ["refs/heads/main"], "{event}");
        }
    }

    #[test]
    fn payloads_of_each_provider_parse() {
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-event", HeaderValue::from_static("Push Hook"));
        let p = parse(
            Provider::GitLab,
            &h,
            br#"{"ref":"refs/heads/main","project":{"git_http_url":"https://gl.test/g/r.git","default_branch":"main"}}"#,
        )
        .expect("parses")
        .expect("push");
        assert_eq!(p.refs, ["refs/heads/main"]);
        assert_eq!(p.default_branch.as_deref(), Some("main"));
        let mut b = HeaderMap::new();
        b.insert("x-event-key", HeaderValue::from_static("repo:push"));
        let p = parse(
            Provider::Bitbucket,
            &b,
            br#"{"repository":{"full_name":"team/r","links":{"html":{"href":"https://bitbucket.org/team/r"}}},"push":{"changes":[{"new":{"type":"branch","name":"dev"}}]}}"#,
        )
        .expect("parses")
        .expect("push");
        assert_eq!(p.refs, ["refs/heads/dev"]);
        assert_eq!(p.changed_files, None, "Bitbucket lists no files");
        let mut gh = HeaderMap::new();
        gh.insert("x-github-event", HeaderValue::from_static("push"));
        let p = parse(
            Provider::GitHub,
            &gh,
            br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://gh.test/o/r.git"},
                "commits":[{"added":["apps/a/new.yaml"],"modified":["apps/b/cm.yaml"],"removed":[]},
                           {"added":[],"modified":["apps/b/cm.yaml"],"removed":["apps/c/old.yaml"]}]}"#,
        )
        .expect("parses")
        .expect("push");
        assert_eq!(
            p.changed_files.as_deref(),
            Some(
                &[
                    "apps/a/new.yaml".to_owned(),
                    "apps/b/cm.yaml".into(),
                    "apps/c/old.yaml".into()
                ][..]
            )
        );
        let mut gh = HeaderMap::new();
        gh.insert("x-github-event", HeaderValue::from_static("ping"));
        assert_eq!(parse(Provider::GitHub, &gh, b"{}").expect("parses"), None);
        assert!(parse(Provider::GitHub, &gh, b"{not json").is_err());
    }
}
