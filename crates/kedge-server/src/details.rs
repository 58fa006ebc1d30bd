//! Details of one application: diff against Git, resource tree, events, history with commit information, and live
//! manifests of its objects (Secret values masked).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kedge_api::{Application, HistoryEntry, ObjectRef, ResourceStatus};
use kedge_engine::plan::{PruneAction, SyncStatus as PlanStatus};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::apps::{health_name, sync_name};
use crate::error::ApiError;

/// Placeholder for masked Secret values.
pub const MASK: &str = "********";

/// The diff of one object.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiffView {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Synced`, `OutOfSync`, `Missing` or `Error`.
    pub status: String,
    /// Health of the live object.
    pub health: String,
    /// Why, when not healthy.
    pub health_message: String,
    /// Details or the error.
    pub message: String,
    /// Unified diff of live vs desired as YAML (Secret values masked).
    pub diff: String,
    /// Who changed the differing fields (drift attribution).
    pub drift: Vec<String>,
    /// File the desired object came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// An object that is no longer in Git.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneView {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What a pruning sync does with it.
    pub action: String,
}

/// The comparison of an application with Git.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffResult {
    /// The commit compared.
    pub revision: String,
    /// The ref it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_name: Option<String>,
    /// Whether nothing differs.
    pub in_sync: bool,
    /// Every desired object.
    pub objects: Vec<ObjectDiffView>,
    /// Objects removed from Git.
    pub prune: Vec<PruneView>,
    /// Manifests that could not be used.
    pub invalid: Vec<String>,
}

/// Compares an application with Git at `revision` (default: the revision it is synced to, else its target).
pub async fn diff(
    state: &AppState,
    app: &Application,
    revision: Option<&str>,
) -> Result<DiffResult, ApiError> {
    let rev = revision
        .map(str::to_owned)
        .or_else(|| app.status.as_ref().and_then(|s| s.sync.revision.clone()));
    let cmp = state
        .handles()
        .pipeline
        .compare(app, rev.as_deref(), None)
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                format!(
                    "failed to compare with Git: {}",
                    kedge_controller::reconcile::error_chain(&e)
                ),
            )
        })?;
    let mut in_sync = cmp.plan.prune.is_empty();
    let objects = cmp
        .plan
        .objects
        .iter()
        .map(|o| {
            if o.status != PlanStatus::Synced {
                in_sync = false;
            }
            let (_, version) = kedge_engine::object::split_api_version(&o.api_version);
            ObjectDiffView {
                group: o.id.group.clone(),
                version: version.to_owned(),
                kind: o.id.kind.clone(),
                namespace: o.id.namespace.clone().unwrap_or_default(),
                name: o.id.name.clone(),
                status: format!("{:?}", o.status),
                health: format!("{:?}", o.health.status),
                health_message: o.health.message.clone(),
                message: o.message.clone(),
                diff: o.diff.as_ref().map(|d| d.text.clone()).unwrap_or_default(),
                drift: o.drift.iter().map(|a| a.message()).collect(),
                source: o.source.clone(),
            }
        })
        .collect();
    let prune = cmp
        .plan
        .prune
        .iter()
        .map(|p| PruneView {
            group: p.id.group.clone(),
            kind: p.id.kind.clone(),
            namespace: p.id.namespace.clone().unwrap_or_default(),
            name: p.id.name.clone(),
            action: match &p.action {
                PruneAction::Delete => "delete when pruning".into(),
                PruneAction::Keep => "kept (Prune=false)".into(),
                PruneAction::Refuse(why) => format!("not deleted: {why}"),
                PruneAction::Gone => "already gone".into(),
                PruneAction::KindNotServed => {
                    "kept in the inventory: its kind is not served by the API server".into()
                }
            },
        })
        .collect();
    Ok(DiffResult {
        revision: cmp.revision.sha.clone(),
        ref_name: cmp.revision.ref_name.clone(),
        in_sync: in_sync && cmp.plan.invalid.is_empty(),
        objects,
        prune,
        invalid: cmp.plan.invalid.clone(),
    })
}

/// A node of the resource tree.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeNode {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Sync state (objects of the application only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// Health state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Details (health message, what differs, who changed it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Owned objects (ReplicaSets, Pods, Jobs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TreeNode>,
}

const OWNER_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

fn owned_by(refs: &Option<Vec<OwnerReference>>, kind: &str, name: &str) -> bool {
    refs.iter()
        .flatten()
        .any(|r| r.kind == kind && r.name == name)
}

fn pod_health(p: &Pod) -> (String, String) {
    let st = p.status.clone().unwrap_or_default();
    let phase = st.phase.clone().unwrap_or_else(|| "Pending".into());
    let ready = st
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let waiting: Vec<String> = st
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .collect();
    let health = match phase.as_str() {
        "Succeeded" => "Healthy",
        "Failed" => "Degraded",
        "Running" if ready => "Healthy",
        _ if waiting
            .iter()
            .any(|r| r.contains("BackOff") || r.contains("Err")) =>
        {
            "Degraded"
        }
        _ => "Progressing",
    };
    let mut msg = phase;
    if !waiting.is_empty() {
        msg = format!("{msg}: {}", waiting.join(", "));
    }
    (health.into(), msg)
}

/// The application's objects with the ReplicaSets, Pods and Jobs they own.
pub async fn tree(state: &AppState, app: &Application) -> Result<Vec<TreeNode>, ApiError> {
    let mut roots: Vec<TreeNode> = all_resources(state, app)
        .iter()
        .map(|r| TreeNode {
            group: r.object.group.to_string(),
            version: r.object.version.to_string(),
            kind: r.object.kind.to_string(),
            namespace: r.object.namespace.to_string(),
            name: r.object.name.to_string(),
            sync: Some(sync_name(r.status).into()),
            health: r.health.as_ref().map(|h| health_name(h.status).into()),
            message: r
                .message
                .clone()
                .or_else(|| r.health.as_ref().and_then(|h| h.message.clone()))
                .unwrap_or_default(),
            children: Vec::new(),
        })
        .collect();
    let namespaces: BTreeSet<String> = roots
        .iter()
        .filter(|n| OWNER_KINDS.contains(&n.kind.as_str()) && !n.namespace.is_empty())
        .map(|n| n.namespace.clone())
        .collect();
    let client = state.client();
    let mut rs_by_ns: BTreeMap<String, Vec<ReplicaSet>> = BTreeMap::new();
    let mut pods_by_ns: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    let mut jobs_by_ns: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for ns in &namespaces {
        let lp = ListParams::default();
        let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| ApiError::kube(&format!("list ReplicaSets in {ns}"), &e))?;
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| ApiError::kube(&format!("list Pods in {ns}"), &e))?;
        let jobs = Api::<Job>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| ApiError::kube(&format!("list Jobs in {ns}"), &e))?;
        rs_by_ns.insert(ns.clone(), rs.items);
        pods_by_ns.insert(ns.clone(), pods.items);
        jobs_by_ns.insert(ns.clone(), jobs.items);
    }
    let pods_of = |ns: &str, kind: &str, name: &str| -> Vec<TreeNode> {
        pods_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .filter(|p| owned_by(&p.metadata.owner_references, kind, name))
            .map(|p| {
                let (health, message) = pod_health(p);
                TreeNode {
                    version: "v1".into(),
                    kind: "Pod".into(),
                    namespace: ns.to_owned(),
                    name: p.name_any(),
                    health: Some(health),
                    message,
                    ..Default::default()
                }
            })
            .collect()
    };
    for root in &mut roots {
        let ns = root.namespace.clone();
        match root.kind.as_str() {
            "Deployment" => {
                for rs in rs_by_ns.get(&ns).into_iter().flatten() {
                    if !owned_by(&rs.metadata.owner_references, "Deployment", &root.name) {
                        continue;
                    }
                    let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    let ready = rs
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0);
                    // Old ReplicaSets scaled to zero are history; show them only while they still run pods.
                    let children = pods_of(&ns, "ReplicaSet", &rs.name_any());
                    if spec == 0 && children.is_empty() {
                        continue;
                    }
                    root.children.push(TreeNode {
                        group: "apps".into(),
                        version: "v1".into(),
                        kind: "ReplicaSet".into(),
                        namespace: ns.clone(),
                        name: rs.name_any(),
                        health: Some(
                            if ready >= spec {
                                "Healthy"
                            } else {
                                "Progressing"
                            }
                            .into(),
                        ),
                        message: format!("{ready}/{spec} ready"),
                        children,
                        ..Default::default()
                    });
                }
            }
            "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                root.children = pods_of(&ns, &root.kind, &root.name);
            }
            "CronJob" => {
                for job in jobs_by_ns.get(&ns).into_iter().flatten() {
                    if !owned_by(&job.metadata.owner_references, "CronJob", &root.name) {
                        continue;
                    }
                    let st = job.status.clone().unwrap_or_default();
                    let health = if st.failed.unwrap_or(0) > 0 {
                        "Degraded"
                    } else if st.succeeded.unwrap_or(0) > 0 {
                        "Healthy"
                    } else {
                        "Progressing"
                    };
                    root.children.push(TreeNode {
                        group: "batch".into(),
                        version: "v1".into(),
                        kind: "Job".into(),
                        namespace: ns.clone(),
                        name: job.name_any(),
                        health: Some(health.into()),
                        children: pods_of(&ns, "Job", &job.name_any()),
                        ..Default::default()
                    });
                }
            }
            _ => {}
        }
    }
    Ok(roots)
}

/// A Kubernetes event about the application.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// CamelCase reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// How often it happened.
    pub count: i32,
    /// When it last happened (RFC 3339).
    pub last_timestamp: String,
    /// Who reported it.
    pub source: String,
}

/// The events on an application, newest first.
pub async fn events(state: &AppState, app: &Application) -> Result<Vec<EventView>, ApiError> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let api: Api<Event> = Api::namespaced(state.client().clone(), &ns);
    let selected = ListParams::default().fields(&format!(
        "involvedObject.kind=Application,involvedObject.name={name}"
    ));
    let list = match api.list(&selected).await {
        Ok(l) => l,
        // Field selectors on events are optional for API servers; fall back to filtering here.
        Err(_) => api
            .list(&ListParams::default())
            .await
            .map_err(|e| ApiError::kube(&format!("list events in {ns}"), &e))?,
    };
    let mut out: Vec<EventView> = list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Application")
                && e.involved_object.name.as_deref() == Some(name.as_str())
        })
        .map(|e| {
            let last = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| {
                    e.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default();
            EventView {
                type_: e.type_.unwrap_or_else(|| "Normal".into()),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
                count: e.count.unwrap_or(1),
                last_timestamp: last,
                source: e
                    .reporting_component
                    .or_else(|| e.source.and_then(|s| s.component))
                    .unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.last_timestamp.cmp(&a.last_timestamp));
    out.truncate(200);
    Ok(out)
}

/// Commit metadata read from the controller's Git mirror.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitInfo {
    /// The author's name.
    pub author: String,
    /// The first line of the message.
    pub subject: String,
    /// Commit date (RFC 3339).
    pub date: String,
}

/// Commit information for `sha` from the mirror of the application's repository, when the mirror has it.
pub async fn commit_info(state: &AppState, app: &Application, sha: &str) -> Option<CommitInfo> {
    if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let repo_url = &app.spec.git_source().repo_url;
    let key = format!("{repo_url}@{sha}");
    if let Some(hit) = state
        .inner
        .commits
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return Some(hit);
    }
    let repo = kedge_source::repo::RepoSpec::new(repo_url).ok()?;
    let mirror = state.handles().pipeline.source().mirror_path(&repo);
    let out = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(&mirror)
        .args(["show", "-s", "--format=%an%x1f%s%x1f%cI", sha, "--"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let info = out.status.success().then(|| {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.trim_end().splitn(3, '\u{1f}');
        CommitInfo {
            author: parts.next().unwrap_or("").to_owned(),
            subject: parts.next().unwrap_or("").to_owned(),
            date: parts.next().unwrap_or("").to_owned(),
        }
    });
    // Only remember hits: a commit the mirror lacks now may be fetched later.
    if let Some(info) = &info {
        state
            .inner
            .commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, info.clone());
    }
    info
}

/// How many commits' details the server remembers (a few hundred bytes each).
const COMMIT_CACHE_ENTRIES: usize = 4096;

/// Details of commits by `repo@sha`, at most [`COMMIT_CACHE_ENTRIES`]: the oldest are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct CommitCache {
    map: std::collections::HashMap<String, CommitInfo>,
    order: std::collections::VecDeque<String>,
}

impl CommitCache {
    fn get(&self, key: &str) -> Option<CommitInfo> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: String, info: CommitInfo) {
        if self.map.insert(key.clone(), info).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > COMMIT_CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// A history entry with its commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    /// The entry.
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// The commit, when the mirror has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
}

/// The sync history, newest first.
pub async fn history(state: &AppState, app: &Application) -> Vec<HistoryView> {
    let entries = app.status.clone().unwrap_or_default().history;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries.into_iter().rev() {
        let commit = commit_info(state, app, &entry.revision).await;
        out.push(HistoryView { entry, commit });
    }
    out
}

/// Every object of the application with its state: the status lists them all up to a bound; beyond it, the
/// controller of this replica keeps the full list (a replica that has not compared the application serves what the
/// status lists).
pub fn all_resources(state: &AppState, app: &Application) -> Arc<Vec<ResourceStatus>> {
    state
        .handles()
        .all_resources(app)
        .unwrap_or_else(|| Arc::new(app.status.clone().unwrap_or_default().resources))
}

/// Whether `obj` is one of the application's objects (only those may be read through the server).
pub fn belongs(state: &AppState, app: &Application, obj: &ObjectRef) -> Option<ObjectRef> {
    let st = app.status.as_ref()?;
    // An inventory that cannot be read lends no object (the status says why).
    let inventory = st.inventory_refs().unwrap_or_default();
    all_resources(state, app)
        .iter()
        .map(|r| &r.object)
        .chain(inventory.iter())
        .find(|o| {
            o.group == obj.group
                && o.kind == obj.kind
                && o.namespace == obj.namespace
                && o.name == obj.name
        })
        .cloned()
}

/// Removes what must not leave the server: Secret values, the secret values of other kinds (the fields their
/// `kedge.dev/sensitive-fields` annotation names: decrypted SOPS values, Helm values from Secrets), last-applied
/// annotations (which may hold them) and the noisy managed fields. Every masked value reads [`MASK`], whatever its
/// length.
pub fn sanitize(mut obj: Value) -> Value {
    let is_secret = obj.get("kind").and_then(Value::as_str) == Some("Secret");
    for pointer in kedge_engine::diff::masked_pointers(std::iter::once(&obj)) {
        if let Some(v) = obj.pointer_mut(&pointer) {
            *v = Value::String(MASK.into());
        }
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove("kubectl.kubernetes.io/last-applied-configuration");
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if is_secret && let Some(map) = obj.as_object_mut() {
        for key in ["data", "stringData"] {
            if let Some(data) = map.get_mut(key).and_then(Value::as_object_mut) {
                for v in data.values_mut() {
                    *v = Value::String(MASK.into());
                }
            }
        }
    }
    obj
}

/// The live manifest of one of the application's objects as YAML, sanitized; `None` when it does not exist.
pub async fn live_manifest(
    state: &AppState,
    app: &Application,
    obj: &ObjectRef,
) -> Result<Option<String>, ApiError> {
    let Some(known) = belongs(state, app, obj) else {
        return Err(ApiError::not_found(format!(
            "{} {} is not an object of application {}",
            obj.kind,
            obj.name,
            app.name_any()
        )));
    };
    let version = if known.version.is_empty() {
        obj.version.clone()
    } else {
        known.version.clone()
    };
    let gvk = GroupVersionKind::gvk(&known.group, &version, &known.kind);
    let client = state.client().clone();
    let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk)
        .await
        .map_err(|e| ApiError::kube(&format!("discover {}", known.kind), &e))?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(client, &known.namespace, &resource)
    } else {
        Api::all_with(client, &resource)
    };
    let live = api
        .get_opt(&known.name)
        .await
        .map_err(|e| ApiError::kube(&format!("read {} {}", known.kind, known.name), &e))?;
    let Some(live) = live else { return Ok(None) };
    let value = serde_json::to_value(&live)
        .map_err(|e| ApiError::internal(format!("failed to encode: {e}")))?;
    let yaml = serde_saphyr::to_string(&sanitize(value))
        .map_err(|e| ApiError::internal(format!("failed to encode YAML: {e}")))?;
    Ok(Some(yaml))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_commit_cache_forgets_the_oldest_beyond_its_bound() {
        let info = |n: usize| CommitInfo {
            author: format!("a{n}"),
            subject: String::new(),
            date: String::new(),
        };
        let mut cache = CommitCache::default();
        for n in 0..COMMIT_CACHE_ENTRIES + 10 {
            cache.insert(format!("repo@{n}"), info(n));
        }
        assert_eq!(cache.map.len(), COMMIT_CACHE_ENTRIES);
        assert!(cache.get("repo@0").is_none(), "the oldest is gone");
        assert!(cache.get("repo@9").is_none());
        assert_eq!(cache.get("repo@10").map(|i| i.author), Some("a10".into()));
        // Inserting a known key again does not grow the order.
        cache.insert("repo@10".into(), info(10));
        assert_eq!(cache.order.len(), COMMIT_CACHE_ENTRIES);
    }

    #[test]
    fn secrets_and_last_applied_are_removed() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "managedFields": [{}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"p\":\"c2VjcmV0\"}}"}},
            "data": {"p": "c2VjcmV0"}, "stringData": {"q": "plain"}
        });
        let out = sanitize(obj).to_string();
        assert!(!out.contains("c2VjcmV0"));
        assert!(!out.contains("plain"));
        assert!(!out.contains("managedFields"));
        assert!(out.contains(MASK));
    }

    #[test]
    fn other_kinds_keep_their_data() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        assert_eq!(sanitize(obj)["data"]["k"], "v");
    }

    #[test]
    fn sensitive_fields_of_other_kinds_are_masked_with_one_length() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {
                "kedge.dev/sensitive-fields": "[\"/data/short\", \"/data/long\"]"}},
            "data": {"short": "abc", "long": "a-much-longer-decrypted-value", "k": "v"}});
        let out = sanitize(obj);
        assert_eq!(out["data"]["short"], MASK);
        assert_eq!(out["data"]["long"], MASK);
        assert_eq!(out["data"]["k"], "v");
        assert!(!out.to_string().contains("a-much-longer"));
    }
}
