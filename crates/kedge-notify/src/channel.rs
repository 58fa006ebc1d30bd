//! What each kind of channel is sent for a notice: the URL, headers and body, as each service documents them. Pure:
//! no I/O, so that every shape is unit-tested.

use hmac::{Hmac, Mac};
use kedge_api::{NoticeKind, ProviderType};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::git::{self, RepoPath};
use crate::notice::Notice;

/// A Provider with its Secret read: everything a delivery needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Channel {
    /// The kind of channel.
    pub type_: ProviderType,
    /// Where to send (a URL; may be a secret, as Slack's webhook URLs are).
    pub address: Option<String>,
    /// Slack: the channel.
    pub channel: Option<String>,
    /// Slack: the name to post as.
    pub username: Option<String>,
    /// The token (Git hosts; the HMAC key).
    pub token: Option<String>,
    /// Extra headers (generic types): the Secret's, then the spec's templates.
    pub headers: Vec<(String, String)>,
    /// The body template (generic types).
    pub body: Option<String>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the address, the token or header values: any of them may be a secret.
        f.debug_struct("Channel")
            .field("type", &self.type_)
            .field("channel", &self.channel)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One HTTP POST to make.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The URL.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The body (JSON, or what the body template produced).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish_non_exhaustive()
    }
}

/// What an Alert adds to a notice.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras<'a> {
    /// The Alert's summary line.
    pub summary: Option<&'a str>,
    /// The application's page in Kedge's UI.
    pub link: Option<&'a str>,
}

/// Why a notice cannot be turned into a request. Messages never hold the address, a token or a header value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    /// No address in the spec or the Secret.
    #[error("no address: set spec.address or the Secret's `address` key")]
    MissingAddress,
    /// The address is not an http(s) URL.
    #[error("the address is not an http:// or https:// URL")]
    BadAddress,
    /// No token where the channel needs one.
    #[error("no token: the Secret's `token` key is required for {0}")]
    MissingToken(ProviderType),
    /// The body or a header template failed.
    #[error("template: {0}")]
    Template(String),
    /// The application's repository is not one the Git host's API can name.
    #[error("repository {0}: {1}")]
    Repository(String, String),
}

/// The request `channel` gets for `notice`; `None` when this channel does not take this kind of notice (commit
/// statuses take only syncs; Alertmanager only problems and their ends; nothing without a revision for statuses).
pub fn build(
    channel: &Channel,
    notice: &Notice,
    extras: Extras<'_>,
) -> Result<Option<Outgoing>, ChannelError> {
    let address = || -> Result<String, ChannelError> {
        let a = channel
            .address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or(ChannelError::MissingAddress)?;
        if !(a.starts_with("http://") || a.starts_with("https://")) {
            return Err(ChannelError::BadAddress);
        }
        Ok(a.trim_end_matches('/').to_owned())
    };
    let token = || {
        channel
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ChannelError::MissingToken(channel.type_))
    };
    let text = message_text(notice, extras);
    Ok(Some(match channel.type_ {
        ProviderType::Generic | ProviderType::GenericHmac => {
            let context = template_context(notice, extras);
            let body = match &channel.body {
                Some(t) => render(t, &context)?.into_bytes(),
                None => serde_json::to_vec(&generic_event(notice, extras)).unwrap_or_default(),
            };
            let mut headers = Vec::new();
            for (k, v) in &channel.headers {
                headers.push((k.clone(), render(v, &context)?));
            }
            if channel.type_ == ProviderType::GenericHmac {
                headers.push(("X-Signature".into(), sign(token()?, &body)));
            }
            Outgoing {
                url: address()?,
                headers,
                body,
            }
        }
        ProviderType::Slack => Outgoing {
            url: address()?,
            headers: Vec::new(),
            body: json_bytes(slack(channel, notice, extras, &text)),
        },
        ProviderType::Msteams => Outgoing {
            url: address()?,
            headers: Vec::new(),
            body: json_bytes(teams(notice, extras, &text)),
        },
        ProviderType::Alertmanager => {
            let Some(alert) = alertmanager(notice, extras) else {
                return Ok(None);
            };
            let mut url = address()?;
            if !url.ends_with("/api/v2/alerts") {
                url.push_str("/api/v2/alerts");
            }
            Outgoing {
                url,
                headers: Vec::new(),
                body: json_bytes(json!([alert])),
            }
        }
        ProviderType::Github
        | ProviderType::Gitlab
        | ProviderType::Gitea
        | ProviderType::Bitbucket => {
            let Some(state) = CommitState::of(notice.kind) else {
                return Ok(None);
            };
            let Some(sha) = notice.revision.as_deref().filter(|r| git::is_commit(r)) else {
                return Ok(None);
            };
            let repo = RepoPath::parse(&notice.app.repo_url)
                .map_err(|e| ChannelError::Repository(notice.app.repo_url.clone(), e))?;
            let base = match &channel.address {
                Some(a) if !a.trim().is_empty() => address()?,
                _ => repo.default_api(channel.type_),
            };
            commit_status(
                channel.type_,
                &base,
                &repo,
                sha,
                state,
                notice,
                extras,
                token()?,
            )
            .map_err(|e| ChannelError::Repository(notice.app.repo_url.clone(), e))?
        }
    }))
}

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The notice's title, message and summary as plain text lines.
fn message_text(notice: &Notice, extras: Extras<'_>) -> String {
    let mut text = notice.message.clone();
    if let Some(summary) = extras.summary.filter(|s| !s.is_empty()) {
        text = format!("{summary}\n{text}");
    }
    text
}

/// `sha256=<hex HMAC-SHA256 of body keyed by key>`.
pub fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Kedge's event as generic webhooks receive it (the shape of a Flux event, so receivers written for Flux read it).
pub fn generic_event(notice: &Notice, extras: Extras<'_>) -> Value {
    let mut metadata = serde_json::Map::new();
    if let Some(rev) = &notice.revision {
        metadata.insert("revision".into(), json!(rev));
    }
    metadata.insert("project".into(), json!(notice.app.project));
    metadata.insert("cluster".into(), json!(notice.app.cluster));
    if let Some(s) = extras.summary.filter(|s| !s.is_empty()) {
        metadata.insert("summary".into(), json!(s));
    }
    if let Some(link) = extras.link {
        metadata.insert("url".into(), json!(link));
    }
    json!({
        "involvedObject": {
            "apiVersion": "kedge.dev/v1alpha1",
            "kind": "Application",
            "namespace": notice.app.namespace,
            "name": notice.app.name,
        },
        "severity": notice.severity(),
        "timestamp": notice.time,
        "reason": notice.kind.as_str(),
        "message": notice.message,
        "reportingController": "kedge",
        "metadata": metadata,
    })
}

/// The variables of body and header templates.
fn template_context(notice: &Notice, extras: Extras<'_>) -> Value {
    json!({
        "app": {
            "namespace": notice.app.namespace,
            "name": notice.app.name,
            "project": notice.app.project,
            "cluster": notice.app.cluster,
            "labels": notice.app.labels,
            "repoURL": notice.app.repo_url,
        },
        "event": {
            "reason": notice.kind.as_str(),
            "severity": notice.severity(),
            "title": notice.title(),
            "message": notice.message,
            "revision": notice.revision.clone().unwrap_or_default(),
            "time": notice.time,
        },
        "summary": extras.summary.unwrap_or_default(),
        "url": extras.link.unwrap_or_default(),
    })
}

/// Renders a template; undefined variables are errors, so that a typo does not send an empty field.
pub fn render(template: &str, context: &Value) -> Result<String, ChannelError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, context)
        .map_err(|e| ChannelError::Template(e.to_string()))
}

/// Checks that a template parses (for the Provider's status).
pub fn check_template(template: &str) -> Result<(), ChannelError> {
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .map(|_| ())
        .map_err(|e| ChannelError::Template(e.to_string()))
}

/// Escapes `&`, `<` and `>` as Slack's message formatting asks.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Facts shown under the message: revision, project, cluster.
fn facts(notice: &Notice) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    if !notice.short_revision().is_empty() {
        facts.push(("Revision", notice.short_revision().to_owned()));
    }
    facts.push(("Project", notice.app.project.clone()));
    facts.push(("Cluster", notice.app.cluster.clone()));
    facts
}

/// A Slack incoming-webhook message: `text` (the notification's fallback) and Block Kit blocks.
fn slack(channel: &Channel, notice: &Notice, extras: Extras<'_>, text: &str) -> Value {
    let title = slack_escape(&notice.title());
    let heading = match extras.link {
        Some(link) => format!("*<{link}|{title}>*"),
        None => format!("*{title}*"),
    };
    let context = facts(notice)
        .into_iter()
        .map(|(k, v)| format!("{k}: `{}`", slack_escape(&v)))
        .collect::<Vec<_>>()
        .join(" · ");
    let mut body = json!({
        "text": notice.title(),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": truncate(&format!("{heading}\n{}", slack_escape(text)), 3000),
                },
            },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] },
        ],
    });
    if let Some(c) = channel.channel.as_deref().filter(|c| !c.is_empty()) {
        body["channel"] = json!(c);
    }
    if let Some(u) = channel.username.as_deref().filter(|u| !u.is_empty()) {
        body["username"] = json!(u);
    }
    body
}

/// A Microsoft Teams workflow message: one Adaptive Card.
fn teams(notice: &Notice, extras: Extras<'_>, text: &str) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": notice.title(),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": true,
                "color": if notice.kind.is_problem() { "Attention" } else { "Good" },
            },
            { "type": "TextBlock", "text": text, "wrap": true },
            {
                "type": "FactSet",
                "facts": facts(notice)
                    .into_iter()
                    .map(|(k, v)| json!({ "title": k, "value": v }))
                    .collect::<Vec<_>>(),
            },
        ],
    });
    if let Some(link) = extras.link {
        card["actions"] =
            json!([{ "type": "Action.OpenUrl", "title": "Open in Kedge", "url": link }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// How long a firing alert lasts unless it is resolved or sent again: a day, so that a problem that stays is not
/// resolved by Alertmanager's own timeout while nothing changes.
const ALERT_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The Alertmanager alert for a problem (firing) or for the end of one (resolved: `endsAt` now); `None` for other
/// notices.
fn alertmanager(notice: &Notice, extras: Extras<'_>) -> Option<Value> {
    let (problem, firing) = if notice.kind.is_problem() {
        (notice.kind, true)
    } else {
        (notice.kind.resolves()?, false)
    };
    let alertname = match problem {
        NoticeKind::SyncFailed => "KedgeSyncFailed",
        NoticeKind::HealthDegraded => "KedgeApplicationDegraded",
        _ => "KedgeDriftDetected",
    };
    let starts: jiff::Timestamp = notice
        .time
        .parse()
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let ends = if firing {
        starts.checked_add(ALERT_LIFETIME).unwrap_or(starts)
    } else {
        // Never in the future: Alertmanager takes an end still to come as "firing until then".
        starts.min(jiff::Timestamp::now())
    };
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), json!(notice.title()));
    annotations.insert("description".into(), json!(message_text(notice, extras)));
    if let Some(rev) = &notice.revision {
        annotations.insert("revision".into(), json!(rev));
    }
    let mut alert = json!({
        "labels": {
            "alertname": alertname,
            "namespace": notice.app.namespace,
            "application": notice.app.name,
            "project": notice.app.project,
            "cluster": notice.app.cluster,
            "severity": "warning",
        },
        "annotations": annotations,
        "endsAt": ends.to_string(),
    });
    if firing {
        alert["startsAt"] = json!(starts.to_string());
    }
    if let Some(link) = extras.link {
        alert["generatorURL"] = json!(link);
    }
    Some(alert)
}

/// The state a sync puts its commit in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitState {
    Pending,
    Success,
    Failure,
}

impl CommitState {
    fn of(kind: NoticeKind) -> Option<Self> {
        match kind {
            NoticeKind::SyncStarted => Some(Self::Pending),
            NoticeKind::SyncSucceeded => Some(Self::Success),
            NoticeKind::SyncFailed => Some(Self::Failure),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Pending => "Kedge is syncing",
            Self::Success => "Kedge synced",
            Self::Failure => "Kedge sync failed",
        }
    }
}

/// The commit status request of each Git host.
#[allow(clippy::too_many_arguments)]
fn commit_status(
    type_: ProviderType,
    base: &str,
    repo: &RepoPath,
    sha: &str,
    state: CommitState,
    notice: &Notice,
    extras: Extras<'_>,
    token: &str,
) -> Result<Outgoing, String> {
    let context = format!("kedge/{}/{}", notice.app.namespace, notice.app.name);
    let description = if state == CommitState::Failure {
        format!("{}: {}", state.describe(), notice.message)
    } else {
        format!(
            "{} {}",
            state.describe(),
            context.trim_start_matches("kedge/")
        )
    };
    let base = base.trim_end_matches('/');
    Ok(match type_ {
        ProviderType::Github => {
            let (owner, name) = repo.owner_and_name()?;
            let mut body = json!({
                "state": match state {
                    CommitState::Pending => "pending",
                    CommitState::Success => "success",
                    CommitState::Failure => "failure",
                },
                "description": truncate(&description, 140),
                "context": context,
            });
            if let Some(link) = extras.link {
                body["target_url"] = json!(link);
            }
            Outgoing {
                url: format!("{base}/repos/{owner}/{name}/statuses/{sha}"),
                headers: vec![
                    ("Authorization".into(), format!("Bearer {token}")),
                    ("Accept".into(), "application/vnd.github+json".into()),
                    ("X-GitHub-Api-Version".into(), "2022-11-28".into()),
                ],
                body: json_bytes(body),
            }
        }
        ProviderType::Gitlab => {
            let mut body = json!({
                "state": match state {
                    CommitState::Pending => "running",
                    CommitState::Success => "success",
                    CommitState::Failure => "failed",
                },
                "name": context,
                "description": truncate(&description, 255),
            });
            if let Some(link) = extras.link {
                body["target_url"] = json!(link);
            }
            Outgoing {
                url: format!(
                    "{base}/projects/{}/statuses/{sha}",
                    git::encode_component(&repo.path)
                ),
                headers: vec![("PRIVATE-TOKEN".into(), token.to_owned())],
                body: json_bytes(body),
            }
        }
        ProviderType::Gitea => {
            let (owner, name) = repo.owner_and_name()?;
            let mut body = json!({
                "state": match state {
                    CommitState::Pending => "pending",
                    CommitState::Success => "success",
                    CommitState::Failure => "failure",
                },
                "description": truncate(&description, 255),
                "context": context,
            });
            if let Some(link) = extras.link {
                body["target_url"] = json!(link);
            }
            Outgoing {
                url: format!("{base}/repos/{owner}/{name}/statuses/{sha}"),
                headers: vec![("Authorization".into(), format!("token {token}"))],
                body: json_bytes(body),
            }
        }
        _ => {
            let (workspace, slug) = repo.owner_and_name()?;
            // Bitbucket's key identifies the status (at most 40 characters); its URL is required.
            let key = if context.len() <= 40 {
                context.clone()
            } else {
                use sha2::Digest;
                format!(
                    "kedge-{}",
                    &hex::encode(Sha256::digest(context.as_bytes()))[..32]
                )
            };
            let body = json!({
                "state": match state {
                    CommitState::Pending => "INPROGRESS",
                    CommitState::Success => "SUCCESSFUL",
                    CommitState::Failure => "FAILED",
                },
                "key": key,
                "name": context,
                "url": extras.link.unwrap_or(&notice.app.repo_url),
                "description": truncate(&description, 255),
            });
            let auth = match token.split_once(':') {
                Some(_) => {
                    use base64::Engine;
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(token)
                    )
                }
                None => format!("Bearer {token}"),
            };
            Outgoing {
                url: format!("{base}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build"),
                headers: vec![("Authorization".into(), auth)],
                body: json_bytes(body),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::tests::notice;

    fn channel(type_: ProviderType) -> Channel {
        Channel {
            type_,
            address: Some("http://127.0.0.1:9/hook".into()),
            channel: None,
            username: None,
            token: Some("s3cret".into()),
            headers: Vec::new(),
            body: None,
        }
    }

    fn body(o: &Outgoing) -> Value {
        serde_json::from_slice(&o.body).expect("json body")
    }

    const LINK: Extras<'static> = Extras {
        summary: None,
        link: Some("http://kedge.example/applications/team-a/web"),
    };

    #[test]
    fn generic_events_carry_the_application_and_hmac_signs_the_exact_body() {
        let n = notice(NoticeKind::SyncFailed);
        let out = build(&channel(ProviderType::GenericHmac), &n, LINK)
            .expect("built")
            .expect("sent");
        let b = body(&out);
        assert_eq!(b["involvedObject"]["name"], "web");
        assert_eq!(b["reason"], "SyncFailed");
        assert_eq!(b["severity"], "error");
        assert_eq!(b["metadata"]["revision"], n.revision.clone().expect("rev"));
        let sig = &out
            .headers
            .iter()
            .find(|(k, _)| k == "X-Signature")
            .expect("signature")
            .1;
        assert_eq!(*sig, sign("s3cret", &out.body));
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        // A different key signs differently.
        assert_ne!(*sig, sign("other", &out.body));
    }

    #[test]
    fn body_and_header_templates_render_and_undefined_variables_are_errors() {
        let mut ch = channel(ProviderType::Generic);
        ch.body = Some(r#"{"text": {{ event.title | tojson }}, "app": "{{ app.name }}"}"#.into());
        ch.headers = vec![("X-App".into(), "{{ app.namespace }}/{{ app.name }}".into())];
        let out = build(&ch, &notice(NoticeKind::HealthDegraded), Extras::default())
            .expect("built")
            .expect("sent");
        assert_eq!(
            body(&out),
            json!({ "text": "team-a/web is Degraded", "app": "web" })
        );
        assert_eq!(out.headers, vec![("X-App".into(), "team-a/web".into())]);
        ch.body = Some("{{ app.nmae }}".into());
        assert!(matches!(
            build(&ch, &notice(NoticeKind::HealthDegraded), Extras::default()),
            Err(ChannelError::Template(_))
        ));
        assert!(check_template("{{ app.name").is_err());
    }

    #[test]
    fn slack_messages_are_block_kit_with_a_fallback_text() {
        let mut ch = channel(ProviderType::Slack);
        ch.channel = Some("#deploys".into());
        let mut n = notice(NoticeKind::SyncFailed);
        n.message = "apply of Deployment web failed: <bad> & worse".into();
        let out = build(&ch, &n, LINK).expect("built").expect("sent");
        assert_eq!(
            body(&out),
            json!({
                "channel": "#deploys",
                "text": "team-a/web: sync of 1a2b3c4 failed",
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text":
                        "*<http://kedge.example/applications/team-a/web|team-a/web: sync of 1a2b3c4 failed>*\n\
                         apply of Deployment web failed: &lt;bad&gt; &amp; worse" } },
                    { "type": "context", "elements": [ { "type": "mrkdwn",
                        "text": "Revision: `1a2b3c4` · Project: `default` · Cluster: `east`" } ] }
                ]
            })
        );
    }

    #[test]
    fn teams_messages_are_adaptive_cards() {
        let out = build(
            &channel(ProviderType::Msteams),
            &notice(NoticeKind::SyncSucceeded),
            LINK,
        )
        .expect("built")
        .expect("sent");
        let b = body(&out);
        assert_eq!(b["type"], "message");
        let att = &b["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(att["content"]["type"], "AdaptiveCard");
        assert_eq!(
            att["content"]["body"][0]["text"],
            "team-a/web: synced 1a2b3c4"
        );
        assert_eq!(
            att["content"]["actions"][0]["url"],
            LINK.link.expect("link")
        );
    }

    #[test]
    fn alertmanager_fires_problems_and_resolves_them_with_the_same_labels() {
        let ch = channel(ProviderType::Alertmanager);
        let fire = build(&ch, &notice(NoticeKind::HealthDegraded), LINK)
            .expect("built")
            .expect("sent");
        assert_eq!(fire.url, "http://127.0.0.1:9/hook/api/v2/alerts");
        let resolve = build(&ch, &notice(NoticeKind::HealthRecovered), LINK)
            .expect("built")
            .expect("sent");
        let (f, r) = (body(&fire), body(&resolve));
        assert_eq!(f[0]["labels"], r[0]["labels"]);
        assert_eq!(f[0]["labels"]["alertname"], "KedgeApplicationDegraded");
        assert_eq!(f[0]["startsAt"], "2026-12-04T03:00:00Z");
        assert_eq!(f[0]["endsAt"], "2026-12-05T03:00:00Z");
        assert_eq!(r[0]["endsAt"], "2026-12-04T03:00:00Z");
        assert!(
            build(&ch, &notice(NoticeKind::SyncStarted), LINK)
                .expect("built")
                .is_none()
        );
    }

    #[test]
    fn commit_statuses_follow_each_hosts_api() {
        let n = notice(NoticeKind::SyncStarted);
        let sha = n.revision.clone().expect("rev");
        let mut gh = channel(ProviderType::Github);
        gh.address = None;
        let out = build(&gh, &n, LINK).expect("built").expect("sent");
        assert_eq!(
            out.url,
            format!("https://api.github.com/repos/acme/deploy/statuses/{sha}")
        );
        assert_eq!(
            body(&out),
            json!({ "state": "pending", "description": "Kedge is syncing team-a/web",
                    "context": "kedge/team-a/web", "target_url": LINK.link })
        );
        assert!(
            out.headers
                .contains(&("Authorization".into(), "Bearer s3cret".into()))
        );

        let mut gl = channel(ProviderType::Gitlab);
        gl.address = Some("https://gitlab.example/api/v4".into());
        let mut n2 = notice(NoticeKind::SyncFailed);
        n2.app.repo_url = "git@gitlab.example:group/sub/deploy.git".into();
        let out = build(&gl, &n2, Extras::default())
            .expect("built")
            .expect("sent");
        assert_eq!(
            out.url,
            format!("https://gitlab.example/api/v4/projects/group%2Fsub%2Fdeploy/statuses/{sha}")
        );
        assert_eq!(body(&out)["state"], "failed");

        let gt = channel(ProviderType::Gitea);
        let out = build(&gt, &notice(NoticeKind::SyncSucceeded), LINK)
            .expect("built")
            .expect("sent");
        assert_eq!(
            out.url,
            format!("http://127.0.0.1:9/hook/repos/acme/deploy/statuses/{sha}")
        );
        assert_eq!(body(&out)["state"], "success");
        assert!(
            out.headers
                .contains(&("Authorization".into(), "token s3cret".into()))
        );

        let mut bb = channel(ProviderType::Bitbucket);
        bb.address = None;
        bb.token = Some("me:app-pass".into());
        let out = build(&bb, &notice(NoticeKind::SyncSucceeded), LINK)
            .expect("built")
            .expect("sent");
        assert_eq!(
            out.url,
            format!(
                "https://api.bitbucket.org/2.0/repositories/acme/deploy/commit/{sha}/statuses/build"
            )
        );
        assert_eq!(body(&out)["state"], "SUCCESSFUL");
        assert_eq!(body(&out)["key"], "kedge/team-a/web");
        assert!(
            out.headers
                .contains(&("Authorization".into(), "Basic bWU6YXBwLXBhc3M=".into()))
        );

        // Not a sync: no status. No token: an error naming the key.
        assert!(
            build(&gt, &notice(NoticeKind::HealthDegraded), LINK)
                .expect("built")
                .is_none()
        );
        let mut no_token = channel(ProviderType::Github);
        no_token.token = None;
        assert_eq!(
            build(&no_token, &n, LINK),
            Err(ChannelError::MissingToken(ProviderType::Github))
        );
    }

    #[test]
    fn errors_never_show_the_address() {
        let mut ch = channel(ProviderType::Slack);
        ch.address = Some("ftp://hooks.example/T000/B000/XXXXSECRET".into());
        let err = build(&ch, &notice(NoticeKind::SyncFailed), LINK).expect_err("refused");
        assert!(!err.to_string().contains("SECRET"));
        assert!(!format!("{ch:?}").contains("SECRET") && !format!("{ch:?}").contains("s3cret"));
    }
}
