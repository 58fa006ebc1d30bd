//! The policies of projects (`spec.policies`): OPA Gatekeeper templates and constraints read from Git paths and
//! ConfigMaps of Kedge's namespace, compiled once per project and version of its sources, and evaluated against
//! every rendered object of the project's applications before anything is planned (see `reconcile::permitted`).
//!
//! Each source is resolved at most once per poll interval (a Git source's ref through the shared source, with the
//! repository Secrets of the project's namespace; a ConfigMap by a read); the compiled set is kept per project,
//! keyed by the project's generation and what each source resolved to (commit, resourceVersion), so that a pass in
//! the steady state fetches and compiles nothing. A source that cannot be read or holds an invalid policy refuses
//! the syncs of the project's applications (never silently skipped); a failed fetch is tried again at the next
//! pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kedge_api::{PolicyOrigin, Project, RepositorySecrets};
use kedge_policy::{EnforcementAction, Evaluation, PolicyDocument, PolicySet};
use kedge_source::repo::RepoSpec;
use kedge_source::source::{FetchRequest, Source};
use kedge_source::tree::{EntryKind, FileTree};
use kube::ResourceExt;
use kube::api::Api;

use crate::pipeline::PipelineError;

/// Most violations one message names.
const NAMED: usize = 20;

/// Most live objects of one kind read into `data.inventory`.
pub const LIVE_OBJECTS_PER_KIND: u32 = 1000;

/// A project's compiled policies, and a digest of what they were compiled from.
#[derive(Debug)]
pub struct ProjectPolicies {
    /// The templates and constraints.
    pub set: Arc<PolicySet>,
    /// Equal digests mean the same policies (the project's generation and each source's version).
    pub digest: u64,
}

/// What a project's compiled policies were made from: when it changes, they are compiled again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    /// The project's `metadata.generation`.
    pub generation: Option<i64>,
    /// Each source (as [`PolicyOrigin`] shows it) with the version it resolved to: a commit, or a ConfigMap's
    /// resourceVersion.
    pub versions: Vec<(String, String)>,
}

impl PolicyKey {
    /// A digest of the key (for the quiet mark of a pass).
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// One source, resolved: its version and documents (read only when the version changed).
struct Resolved {
    version: String,
    at: Instant,
    documents: Arc<Vec<PolicyDocument>>,
}

/// What is kept per project.
#[derive(Default)]
struct Slot {
    compiled: Option<(PolicyKey, Result<Arc<PolicySet>, String>)>,
}

/// Loads and caches the policies of projects.
pub struct PolicyLoader {
    client: kube::Client,
    source: Source,
    secrets: RepositorySecrets,
    refresh: Duration,
    /// Sources by `namespace` and [`PolicyOrigin`] shown.
    resolved: Mutex<HashMap<(String, String), Arc<Resolved>>>,
    /// Per project (`namespace/name`); a project's sources are loaded by one pass at a time.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl PolicyLoader {
    /// A loader reading ConfigMaps with `client`, Git sources through `source` with the credentials of `secrets`;
    /// a source resolved less than `refresh` ago is not resolved again.
    pub fn new(
        client: kube::Client,
        source: Source,
        secrets: RepositorySecrets,
        refresh: Duration,
    ) -> Self {
        Self {
            client,
            source,
            secrets,
            refresh,
            resolved: Mutex::default(),
            slots: Mutex::default(),
        }
    }

    /// The compiled policies of `project`; `None` when it lists none. A source that cannot be read or compiled
    /// is an error naming it (and the file).
    pub async fn load(&self, project: &Project) -> Result<Option<ProjectPolicies>, PipelineError> {
        if project.spec.policies.is_empty() {
            return Ok(None);
        }
        let name = project.name_any();
        let namespace = project.namespace().unwrap_or_default();
        let failed = |message: String, retryable: bool| PipelineError::Policies {
            project: name.clone(),
            message,
            retryable,
        };
        let origins = project
            .policy_origins()
            .map_err(|e| failed(e.to_string(), false))?;
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry(format!("{namespace}/{name}"))
                .or_default()
                .clone()
        };
        let mut slot = slot.lock().await;
        let mut key = PolicyKey {
            generation: project.metadata.generation,
            versions: Vec::with_capacity(origins.len()),
        };
        let mut sources = Vec::with_capacity(origins.len());
        for origin in &origins {
            let resolved =
                self.resolve(&namespace, origin)
                    .await
                    .map_err(|(message, retryable)| {
                        failed(format!("policy source {origin}: {message}"), retryable)
                    })?;
            key.versions
                .push((origin.to_string(), resolved.version.clone()));
            sources.push(resolved);
        }
        let digest = key.digest();
        if let Some((k, compiled)) = &slot.compiled
            && *k == key
        {
            return match compiled {
                Ok(set) => Ok(Some(ProjectPolicies {
                    set: set.clone(),
                    digest,
                })),
                Err(message) => Err(failed(message.clone(), false)),
            };
        }
        let documents: Vec<PolicyDocument> = sources
            .iter()
            .flat_map(|s| s.documents.iter().cloned())
            .collect();
        let compiled = tokio::task::spawn_blocking(move || PolicySet::load_documents(documents))
            .await
            .map_err(|e| PipelineError::Task(e.to_string()))?
            .map(Arc::new)
            .map_err(|e| crate::reconcile::error_chain(&e));
        if let Ok(set) = &compiled {
            let without = set.referential_without_sync_data();
            if !without.is_empty() {
                tracing::warn!(
                    project = %name,
                    templates = ?without,
                    "referential templates without the metadata.gatekeeper.sh/requires-sync-data annotation see \
                     only the application's own objects in data.inventory"
                );
            }
        }
        slot.compiled = Some((key, compiled.clone()));
        match compiled {
            Ok(set) => Ok(Some(ProjectPolicies { set, digest })),
            Err(message) => Err(failed(message, false)),
        }
    }

    /// The source's version and documents: reused while younger than the refresh interval, read again only when
    /// the version moved. Errors say whether trying again may help.
    async fn resolve(
        &self,
        namespace: &str,
        origin: &PolicyOrigin<'_>,
    ) -> Result<Arc<Resolved>, (String, bool)> {
        let cache_key = (namespace.to_owned(), origin.to_string());
        let previous = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            .cloned();
        if let Some(p) = &previous
            && p.at.elapsed() < self.refresh
        {
            return Ok(p.clone());
        }
        let resolved = match origin {
            PolicyOrigin::Git {
                repo_url,
                revision,
                path,
            } => {
                self.resolve_git(namespace, repo_url, revision, path, previous)
                    .await?
            }
            PolicyOrigin::ConfigMap { name } => self.resolve_config_map(namespace, name).await?,
        };
        let resolved = Arc::new(resolved);
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, resolved.clone());
        Ok(resolved)
    }

    async fn resolve_git(
        &self,
        namespace: &str,
        repo_url: &str,
        revision: &str,
        path: &str,
        previous: Option<Arc<Resolved>>,
    ) -> Result<Resolved, (String, bool)> {
        let repo = RepoSpec::new(repo_url).map_err(|e| (e.to_string(), false))?;
        let (credentials, insecure) =
            crate::pipeline::credentials_for(&self.secrets, namespace, repo_url)
                .await
                .map_err(|e| (e.to_string(), true))?;
        let request = FetchRequest::new(
            repo.with_credentials(credentials).insecure(insecure),
            revision,
        )
        .with_path(path);
        let source = self.source.clone();
        let (repo_url, revision, path) =
            (repo_url.to_owned(), revision.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || {
            let snapshot = source.fetch(&request).map_err(|e| {
                let retryable = e.is_retryable();
                (crate::reconcile::error_chain(&e), retryable)
            })?;
            let sha = snapshot.revision().sha.clone();
            if let Some(p) = previous
                && p.version == sha
            {
                return Ok(Resolved {
                    version: sha,
                    at: Instant::now(),
                    documents: p.documents.clone(),
                });
            }
            let mut files = Vec::new();
            tree_files(&snapshot, &path, &mut files).map_err(|e| (e.to_string(), false))?;
            let mut documents = Vec::new();
            for file in files {
                let bytes = snapshot
                    .read_file(&file)
                    .map_err(|e| (format!("{file}: {e}"), false))?;
                let shown = format!("{repo_url}@{revision}:{file}");
                documents.extend(parse_documents(&shown, &file, &bytes)?);
            }
            Ok(Resolved {
                version: sha,
                at: Instant::now(),
                documents: Arc::new(documents),
            })
        })
        .await
        .map_err(|e| (e.to_string(), true))?
    }

    async fn resolve_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Resolved, (String, bool)> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cm = api
            .get_opt(name)
            .await
            .map_err(|e| (format!("cannot be read: {e}"), true))?
            .ok_or_else(|| (format!("not found in namespace {namespace}"), true))?;
        let mut documents = Vec::new();
        for (key, value) in cm.data.iter().flatten() {
            let shown = format!("ConfigMap {name} key {key}");
            documents.extend(parse_documents(&shown, key, value.as_bytes())?);
        }
        Ok(Resolved {
            version: cm.resource_version().unwrap_or_default(),
            at: Instant::now(),
            documents: Arc::new(documents),
        })
    }
}

/// The documents of one file (JSON when it ends with `.json`, else a YAML stream), each named `shown` (with
/// `#N` when the file holds several).
fn parse_documents(
    shown: &str,
    file: &str,
    bytes: &[u8],
) -> Result<Vec<PolicyDocument>, (String, bool)> {
    let docs = if file.ends_with(".json") {
        kedge_render::parse::parse_json(shown, bytes)
    } else {
        kedge_render::parse::parse_yaml(shown, bytes)
    }
    .map_err(|e| (crate::reconcile::error_chain(&e), false))?;
    let many = docs.len() > 1;
    Ok(docs
        .into_iter()
        .map(|d| PolicyDocument {
            origin: if many {
                format!("{shown}#{}", d.index + 1)
            } else {
                shown.to_owned()
            },
            value: d.value,
        })
        .collect())
}

/// Every `.yaml`, `.yml` and `.json` file at or under `path` (hidden ones left out), in path order.
fn tree_files(
    tree: &dyn FileTree,
    path: &str,
    out: &mut Vec<String>,
) -> Result<(), kedge_source::tree::TreeError> {
    if is_policy_file(path) {
        match tree.read_dir(path) {
            Err(kedge_source::tree::TreeError::WrongType { .. }) => {
                out.push(path.to_owned());
                return Ok(());
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    for entry in tree.read_dir(path)? {
        if entry.name.starts_with('.') {
            continue;
        }
        let child = if path.is_empty() {
            entry.name.clone()
        } else {
            format!("{path}/{}", entry.name)
        };
        match entry.kind {
            EntryKind::Dir => tree_files(tree, &child, out)?,
            EntryKind::File if is_policy_file(&child) => out.push(child),
            EntryKind::File => {}
        }
    }
    Ok(())
}

fn is_policy_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json")
}

/// `K8sRequiredLabels/must-have-owner on ConfigMap shop/web: you must provide labels: {"owner"}`.
pub fn describe_violation(v: &kedge_policy::Violation) -> String {
    format!("{} on {}: {}", v.constraint, v.object, v.message)
}

/// `K8sUniqueLabel/unique on ConfigMap shop/web: evaluation failed: ...`.
pub fn describe_error(e: &kedge_policy::EvaluationError) -> String {
    format!(
        "{} on {}: evaluation failed: {}",
        e.constraint, e.object, e.message
    )
}

/// What blocks the sync (violations and evaluation errors of `deny` constraints), and what is only reported
/// (`warn` and `dryrun`, each line starting with its action), as lines.
pub fn split(evaluation: &Evaluation) -> (Vec<String>, Vec<String>) {
    let mut denied = Vec::new();
    let mut reported = Vec::new();
    for v in &evaluation.violations {
        match v.action {
            EnforcementAction::Deny => denied.push(describe_violation(v)),
            action => reported.push(format!("{action} {}", describe_violation(v))),
        }
    }
    for e in &evaluation.errors {
        match e.action {
            EnforcementAction::Deny => denied.push(describe_error(e)),
            action => reported.push(format!("{action} {}", describe_error(e))),
        }
    }
    (denied, reported)
}

/// One message for lines: the first few, then how many more.
pub fn bounded(lines: &[String]) -> String {
    let mut message = lines
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > NAMED {
        message.push_str(&format!("; and {} more", lines.len() - NAMED));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_change_with_generation_and_versions_only() {
        let key = |generation, sha: &str| PolicyKey {
            generation: Some(generation),
            versions: vec![
                ("https://g/p.git@main:lib".into(), sha.into()),
                ("ConfigMap extra".into(), "41".into()),
            ],
        };
        assert_eq!(key(1, "abc").digest(), key(1, "abc").digest());
        assert_ne!(key(1, "abc").digest(), key(2, "abc").digest());
        assert_ne!(key(1, "abc").digest(), key(1, "abd").digest());
        assert_eq!(key(1, "abc"), key(1, "abc"));
    }

    fn evaluation() -> Evaluation {
        let template = json!({
            "apiVersion": "templates.gatekeeper.sh/v1",
            "kind": "ConstraintTemplate",
            "metadata": {"name": "k8sdenyall"},
            "spec": {
                "crd": {"spec": {"names": {"kind": "K8sDenyAll"}}},
                "targets": [{
                    "target": "admission.k8s.gatekeeper.sh",
                    "rego": "package k8sdenyall\nviolation[{\"msg\": msg}] {\n  msg := sprintf(\"%v is denied\", [input.review.object.metadata.name])\n}\n",
                }],
            },
        });
        let constraint = |name: &str, action: &str, kind: &str| {
            json!({
                "apiVersion": "constraints.gatekeeper.sh/v1beta1",
                "kind": "K8sDenyAll",
                "metadata": {"name": name},
                "spec": {"enforcementAction": action, "match": {"kinds": [{"apiGroups": ["*"], "kinds": [kind]}]}},
            })
        };
        let set = PolicySet::load(vec![
            template,
            constraint("no-config-maps", "deny", "ConfigMap"),
            constraint("no-deployments", "warn", "Deployment"),
        ])
        .expect("policies");
        let mut objects: Vec<serde_json::Value> = (0..22)
            .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i:02}"), "namespace": "shop"}}))
            .collect();
        objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}}));
        set.evaluate(&objects, &kedge_policy::Inventory::new())
    }

    #[test]
    fn violations_are_described_and_bounded() {
        let (denied, reported) = split(&evaluation());
        assert_eq!(denied.len(), 22);
        assert_eq!(
            denied[0],
            "K8sDenyAll/no-config-maps on ConfigMap shop/cm00: cm00 is denied"
        );
        assert_eq!(
            reported,
            ["warn K8sDenyAll/no-deployments on Deployment.apps shop/web: web is denied"]
        );
        let message = bounded(&denied);
        assert!(
            message.ends_with("shop/cm19: cm19 is denied; and 2 more"),
            "{message}"
        );
        assert!(!message.contains("cm20"), "{message}");
        assert_eq!(bounded(&reported), reported[0]);
    }

    #[test]
    fn documents_are_named_after_their_file_and_index() {
        let docs = parse_documents(
            "ConfigMap p key labels.yaml",
            "labels.yaml",
            b"a: 1\n---\nb: 2\n",
        )
        .expect("parsed");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].origin, "ConfigMap p key labels.yaml#2");
        let one = parse_documents("x", "t.json", br#"{"a": 1}"#).expect("json");
        assert_eq!(one[0].origin, "x");
        let (message, retryable) =
            parse_documents("ConfigMap p key bad", "bad", b"a: [1\n").expect_err("invalid");
        assert!(message.contains("ConfigMap p key bad"), "{message}");
        assert!(!retryable);
    }
}
