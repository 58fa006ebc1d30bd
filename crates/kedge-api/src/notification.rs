//! The `Provider` and `Alert` custom resources: where Kedge sends word of what happened to applications, and which
//! applications and events go there. Shaped like Flux's notification API (a Provider is a channel with its
//! credentials in a Secret; an Alert routes events of selected sources to one Provider), so that Flux users read them
//! at once; the event names are Kedge's own.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, LocalSecretReference};

/// A channel notifications are delivered to, with the Secret holding its credentials.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kedge.dev",
    version = "v1alpha1",
    kind = "Provider",
    plural = "providers",
    namespaced,
    status = "ProviderStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The kind of channel.
    #[serde(rename = "type")]
    pub type_: ProviderType,
    /// Where to send: the webhook URL (generic, Slack, Teams), the Alertmanager's URL (its `/api/v2/alerts` path
    /// is added when missing), or for commit statuses the Git host's base URL (default: the host of the
    /// application's repository). May instead come from the Secret's `address` key, which wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Slack only: the channel to post to (an incoming webhook posts to its own channel without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Slack only: the name to post as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The Secret in the Provider's namespace with the credentials: `token` (the Git host's token, Bitbucket's as
    /// `user:app-password`; the HMAC key of `generic-hmac`), `address` (a webhook URL that is itself a secret, as
    /// Slack's is), `headers` (YAML map of extra headers, generic types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalSecretReference>,
    /// How long one delivery attempt may take, e.g. `15s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Generic types only: the request body as a template (Jinja syntax: `{{ app.name }}`, `{{ event.message |
    /// tojson }}`); without it the body is Kedge's JSON event. See docs/notifications.md for the variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Generic types only: extra request headers (values may be templates like the body).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Deliver nothing while true (events are dropped, not queued).
    #[serde(default)]
    pub suspend: bool,
}

/// The kinds of channel.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderType {
    /// A JSON POST of the event (or of `body`).
    Generic,
    /// As `generic`, signed: header `X-Signature: sha256=<hex HMAC-SHA256 of the body>` keyed by the Secret's
    /// `token`.
    GenericHmac,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams workflow webhook (an Adaptive Card message).
    Msteams,
    /// Prometheus Alertmanager's `/api/v2/alerts`: problems fire, their recoveries resolve them.
    Alertmanager,
    /// Commit statuses on GitHub (and GitHub Enterprise).
    Github,
    /// Commit statuses on GitLab.
    Gitlab,
    /// Commit statuses on Gitea and Forgejo.
    Gitea,
    /// Build statuses on Bitbucket Cloud.
    Bitbucket,
}

impl ProviderType {
    /// Whether this channel posts commit statuses (only sync events, for the synced commit).
    pub fn is_commit_status(self) -> bool {
        matches!(
            self,
            Self::Github | Self::Gitlab | Self::Gitea | Self::Bitbucket
        )
    }

    /// Whether this channel takes `body` and `headers`.
    pub fn is_generic(self) -> bool {
        matches!(self, Self::Generic | Self::GenericHmac)
    }
}

impl std::fmt::Display for ProviderType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Generic => "generic",
            Self::GenericHmac => "generic-hmac",
            Self::Slack => "slack",
            Self::Msteams => "msteams",
            Self::Alertmanager => "alertmanager",
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
        })
    }
}

/// What Kedge last saw of a Provider: whether its spec and Secret are usable and how the last delivery went.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// `Ready`: False with `InvalidSpec` or `SecretError` when the Provider cannot be used, `DeliveryFailed` when
    /// the last delivery failed after its retries; True with `Delivered` or `Valid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the last notification was delivered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered: Option<String>,
    /// When the last delivery failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed: Option<String>,
}

/// Routes the events of selected applications to one Provider.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kedge.dev",
    version = "v1alpha1",
    kind = "Alert",
    plural = "alerts",
    namespaced,
    status = "AlertStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.providerRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The Provider (in the Alert's namespace) to deliver to.
    pub provider_ref: LocalSecretReference,
    /// `info` (the default): every selected event; `error`: only the problems (sync failed, health degraded, drift
    /// detected).
    #[serde(default)]
    pub event_severity: EventSeverity,
    /// The applications whose events go out (any one matching is enough).
    #[schemars(length(min = 1))]
    pub event_sources: Vec<EventSource>,
    /// The events to send; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NoticeKind>,
    /// Only applications of these projects; any project when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    /// A line added to every message of this Alert (e.g. `production cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Send nothing while true.
    #[serde(default)]
    pub suspend: bool,
}

/// Severity filter of an Alert.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventSeverity {
    /// Every event.
    #[default]
    Info,
    /// Problems only.
    Error,
}

/// Applications whose events an Alert selects.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// Always `Application`.
    pub kind: EventSourceKind,
    /// The application's name, or `*` for any.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Its namespace; the Alert's when empty, `*` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels the application must have (with `name: "*"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// The kinds of object events come from.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EventSourceKind {
    /// An Application.
    Application,
}

/// What happened to an application, as notifications name it.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum NoticeKind {
    /// A sync began (commit statuses turn pending).
    SyncStarted,
    /// A sync applied everything.
    SyncSucceeded,
    /// A sync failed or was refused.
    SyncFailed,
    /// The application turned Degraded.
    HealthDegraded,
    /// A Degraded application is Healthy again.
    HealthRecovered,
    /// A live object was changed by someone else.
    DriftDetected,
    /// Self-heal put a changed object back.
    DriftReverted,
    /// A sync deployed a revision other than the one deployed before.
    RevisionDeployed,
}

impl NoticeKind {
    /// Every kind.
    pub const ALL: [Self; 8] = [
        Self::SyncStarted,
        Self::SyncSucceeded,
        Self::SyncFailed,
        Self::HealthDegraded,
        Self::HealthRecovered,
        Self::DriftDetected,
        Self::DriftReverted,
        Self::RevisionDeployed,
    ];

    /// Whether this is a problem (severity `error`).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Self::SyncFailed | Self::HealthDegraded | Self::DriftDetected
        )
    }

    /// The problem this event ends, if any.
    pub fn resolves(self) -> Option<Self> {
        match self {
            Self::SyncSucceeded => Some(Self::SyncFailed),
            Self::HealthRecovered => Some(Self::HealthDegraded),
            Self::DriftReverted => Some(Self::DriftDetected),
            _ => None,
        }
    }

    /// The name, as in `spec.events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyncStarted => "SyncStarted",
            Self::SyncSucceeded => "SyncSucceeded",
            Self::SyncFailed => "SyncFailed",
            Self::HealthDegraded => "HealthDegraded",
            Self::HealthRecovered => "HealthRecovered",
            Self::DriftDetected => "DriftDetected",
            Self::DriftReverted => "DriftReverted",
            Self::RevisionDeployed => "RevisionDeployed",
        }
    }
}

impl std::fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Kedge last saw of an Alert: whether its Provider exists and is usable.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `Ready`: False with `ProviderNotFound` or `ProviderNotReady`, True with `Valid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn provider_types_and_events_use_the_documented_names() {
        let p: ProviderSpec = serde_json::from_value(serde_json::json!({
            "type": "generic-hmac", "address": "http://127.0.0.1:1/hook"
        }))
        .expect("provider");
        assert_eq!(p.type_, ProviderType::GenericHmac);
        assert_eq!(p.type_.to_string(), "generic-hmac");
        for kind in NoticeKind::ALL {
            let json = serde_json::to_value(kind).expect("kind");
            assert_eq!(json, kind.as_str());
        }
        let crd = serde_json::to_string(&Provider::crd()).expect("crd");
        assert!(crd.contains("msteams") && crd.contains("bitbucket"));
    }

    #[test]
    fn an_alert_needs_a_provider_and_sources() {
        let err = serde_json::from_value::<AlertSpec>(serde_json::json!({ "eventSources": [] }));
        assert!(err.is_err());
        let alert: AlertSpec = serde_json::from_value(serde_json::json!({
            "providerRef": { "name": "slack" },
            "eventSources": [{ "kind": "Application", "name": "*" }],
            "events": ["SyncFailed", "HealthDegraded"]
        }))
        .expect("alert");
        assert_eq!(alert.event_severity, EventSeverity::Info);
        assert_eq!(alert.events.len(), 2);
        assert!(
            serde_json::from_value::<AlertSpec>(serde_json::json!({
                "providerRef": { "name": "slack" },
                "eventSources": [{ "kind": "Application", "name": "*" }],
                "events": ["PromotionPending"]
            }))
            .is_err()
        );
    }
}
