//! The clusters applications deploy to: `in-cluster` (the cluster Kedge runs in) and every registered `Cluster` of
//! the controller's namespace, with whether Kedge reaches them, their version and how many applications deploy
//! there. Only the Cluster objects are read, never their credentials Secrets.

use std::sync::Arc;
use std::time::Duration;

use kedge_api::{Application, CONNECTED, Cluster, IN_CLUSTER_NAME, IN_CLUSTER_SERVER};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::apps;
use crate::error::ApiError;

/// How long asking the API server of the cluster Kedge runs in for its version may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// One cluster as the page and the API show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `in-cluster`, or the Cluster's name.
    pub name: String,
    /// Its API server, as applications name it in `destination.server`.
    pub server: String,
    /// Whether it is the cluster Kedge runs in (not a registered Cluster).
    pub in_cluster: bool,
    /// Whether Kedge reaches it; `None` while a registered cluster has not been checked yet.
    pub connected: Option<bool>,
    /// The reason of the `Connected` condition (e.g. `Unreachable`, `SecretUnavailable`).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub reason: String,
    /// Its message.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
    /// The Kubernetes version its API server reports.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_version: Option<String>,
    /// When Kedge last reached it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_contact: Option<String>,
    /// When the Cluster was registered (RFC 3339); none for `in-cluster`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_at: Option<String>,
    /// How many applications deploy to it: those `GET /api/v1/applications?cluster=NAME` lists.
    pub applications: usize,
}

impl ClusterView {
    /// The state in one word: `Connected`, the reason it is not, or `Unknown` before the first check.
    pub fn state(&self) -> &str {
        match self.connected {
            Some(true) => "Connected",
            Some(false) if !self.reason.is_empty() => &self.reason,
            Some(false) => "NotConnected",
            None => "Unknown",
        }
    }
}

/// What asking the cluster Kedge runs in for its version gave: the version, or why there is none.
pub type LocalCheck = Result<String, String>;

fn count(apps: &[Arc<Application>], cluster: &str) -> usize {
    apps.iter().filter(|a| apps::deploys_to(a, cluster)).count()
}

/// The rows: `in-cluster` first (from `local`, checked at `now`), then the registered clusters by name, each with the
/// number of `apps` deploying there (counted by [`apps::deploys_to`], as the list's `cluster` filter does).
pub fn views(
    registered: &[Cluster],
    apps: &[Arc<Application>],
    local: &LocalCheck,
    now: &str,
) -> Vec<ClusterView> {
    let mut out = vec![ClusterView {
        name: IN_CLUSTER_NAME.to_owned(),
        server: IN_CLUSTER_SERVER.to_owned(),
        in_cluster: true,
        connected: Some(local.is_ok()),
        reason: if local.is_ok() {
            String::new()
        } else {
            "Unreachable".to_owned()
        },
        message: local.as_ref().err().cloned().unwrap_or_default(),
        server_version: local.as_ref().ok().cloned(),
        last_contact: local.is_ok().then(|| now.to_owned()),
        created_at: None,
        applications: count(apps, IN_CLUSTER_NAME),
    }];
    let mut registered: Vec<&Cluster> = registered.iter().collect();
    registered.sort_by_key(|c| c.name_any());
    for c in registered {
        let name = c.name_any();
        let status = c.status.clone().unwrap_or_default();
        let condition = status.conditions.iter().find(|c| c.type_ == CONNECTED);
        let connected = condition.and_then(|c| match c.status.as_str() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        });
        let (reason, message) = match (connected, condition) {
            (Some(false), Some(c)) => (c.reason.clone(), c.message.clone()),
            _ => (String::new(), String::new()),
        };
        out.push(ClusterView {
            applications: count(apps, &name),
            name,
            server: c.spec.server.clone(),
            in_cluster: false,
            connected,
            reason,
            message,
            server_version: status.server_version.filter(|v| !v.is_empty()),
            last_contact: status.last_contact.filter(|t| !t.is_empty()),
            created_at: c
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
        });
    }
    out
}

/// The version of the cluster Kedge runs in, or why it did not answer.
async fn local_check(state: &AppState) -> LocalCheck {
    match tokio::time::timeout(VERSION_TIMEOUT, state.client().apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(format!("cannot reach the API server: {e}")),
        Err(_) => Err(format!(
            "the API server did not answer within {} s",
            VERSION_TIMEOUT.as_secs()
        )),
    }
}

/// Every cluster: `in-cluster` and the Clusters registered in the controller's namespace (none when the Cluster
/// resource is not installed).
pub async fn list(state: &AppState) -> Result<Vec<ClusterView>, ApiError> {
    let ns = &state.config().namespace;
    let api: Api<Cluster> = Api::namespaced(state.client().clone(), ns);
    let params = ListParams::default();
    let (registered, local) = tokio::join!(api.list(&params), local_check(state));
    let registered = match registered {
        Ok(l) => l.items,
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => {
            return Err(ApiError::kube(
                &format!("list the clusters registered in {ns}"),
                &e,
            ));
        }
    };
    let apps = state.handles().store.state();
    let now = jiff::Timestamp::now().to_string();
    Ok(views(&registered, &apps, &local, &now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::{ClusterSpec, ClusterStatus, Condition};

    fn app(name: &str, dest_name: Option<&str>, dest_server: Option<&str>) -> Arc<Application> {
        let mut a = Application::new(name, Default::default());
        a.metadata.namespace = Some("apps".into());
        a.spec.destination.name = dest_name.map(Into::into);
        a.spec.destination.server = dest_server.map(Into::into);
        Arc::new(a)
    }

    fn cluster(name: &str, server: &str, status: Option<ClusterStatus>) -> Cluster {
        let mut c = Cluster::new(
            name,
            ClusterSpec {
                server: server.into(),
                ..ClusterSpec::default()
            },
        );
        c.status = status;
        c
    }

    fn connected(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: CONNECTED.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            ..Condition::default()
        }
    }

    #[test]
    fn in_cluster_comes_first_then_registered_clusters_by_name_with_their_counts() {
        let apps = vec![
            app("a", None, None),
            app("b", None, Some("https://kubernetes.default.svc")),
            app("c", Some("west"), None),
            app("d", None, Some("https://east.test:6443/")),
            app("e", Some("east"), None),
            app("f", Some("east"), None),
        ];
        let registered = vec![
            cluster(
                "west",
                "https://west.test",
                Some(ClusterStatus {
                    conditions: vec![connected(
                        "False",
                        "Unreachable",
                        "cannot reach https://west.test: connection refused",
                    )],
                    server_version: Some("v1.35.0".into()),
                    last_contact: Some("2026-01-01T00:00:00Z".into()),
                    applications: 7,
                    objects: 3,
                }),
            ),
            cluster(
                "east",
                "https://east.test:6443",
                Some(ClusterStatus {
                    conditions: vec![connected("True", "Connected", "reached")],
                    server_version: Some("v1.36.0".into()),
                    ..ClusterStatus::default()
                }),
            ),
            cluster("new", "https://new.test", None),
        ];
        let rows = views(
            &registered,
            &apps,
            &Ok("v1.36.1".into()),
            "2026-02-02T00:00:00Z",
        );
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["in-cluster", "east", "new", "west"]);

        let local = &rows[0];
        assert!(local.in_cluster);
        assert_eq!(local.server, IN_CLUSTER_SERVER);
        assert_eq!(local.applications, 2, "no destination, and by its server");
        assert_eq!(local.state(), "Connected");
        assert_eq!(local.server_version.as_deref(), Some("v1.36.1"));
        assert_eq!(local.last_contact.as_deref(), Some("2026-02-02T00:00:00Z"));

        // Counted as the list filter by name lists them: the application naming east by its server is not one.
        let east = &rows[1];
        assert_eq!(east.applications, 2);
        assert_eq!(east.state(), "Connected");
        assert!(east.reason.is_empty() && east.message.is_empty());

        let new = &rows[2];
        assert_eq!(new.connected, None);
        assert_eq!(new.state(), "Unknown");
        assert_eq!(new.applications, 0);

        // The counts come from the applications, not from the status the controller last wrote.
        let west = &rows[3];
        assert_eq!(west.applications, 1);
        assert_eq!(west.connected, Some(false));
        assert_eq!(west.state(), "Unreachable");
        assert!(west.message.contains("connection refused"));
        assert_eq!(west.server_version.as_deref(), Some("v1.35.0"));
        assert!(!west.in_cluster);
    }

    #[test]
    fn an_unanswered_version_request_shows_in_cluster_as_not_connected() {
        let rows = views(&[], &[], &Err("timed out".into()), "now");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].connected, Some(false));
        assert_eq!(rows[0].state(), "Unreachable");
        assert_eq!(rows[0].message, "timed out");
        assert_eq!(rows[0].last_contact, None);
        assert_eq!(rows[0].server_version, None);
    }

    #[test]
    fn a_condition_without_reason_still_reads_as_not_connected() {
        let mut c = cluster("x", "https://x.test", None);
        c.status = Some(ClusterStatus {
            conditions: vec![connected("False", "", "")],
            ..ClusterStatus::default()
        });
        let rows = views(&[c], &[], &Ok("v1".into()), "now");
        assert_eq!(rows[1].state(), "NotConnected");
        let json = serde_json::to_value(&rows[1]).expect("json");
        assert_eq!(json["connected"], false);
        assert_eq!(json["inCluster"], false);
        assert!(json.get("reason").is_none());
    }
}
