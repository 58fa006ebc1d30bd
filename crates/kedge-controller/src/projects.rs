//! Projects, as the controller enforces them: a watch-backed cache of the Projects in Kedge's namespace, the checks a
//! pass makes before it fetches (the application's namespace, sources, destination) and before it plans (every
//! rendered object's kind and namespace), and a watch that queues a project's applications when it changes.

use std::sync::Arc;

use futures::StreamExt;
use kedge_api::{Application, ClusterRef, DEFAULT_PROJECT, Project, ProjectDenied};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The Projects of Kedge's namespace.
#[derive(Clone)]
pub struct Projects {
    store: Store<Project>,
    namespace: String,
}

/// Most refusals one message names.
const NAMED: usize = 20;

/// How soon a project's status that could not be written is tried again.
const STATUS_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

impl Projects {
    /// Watches the Projects of `namespace` (reads with `read`, writes their status with `write`), queueing through
    /// `triggers` the applications of a project that changes, until `shutdown`.
    pub fn spawn(
        read: Client,
        write: Client,
        namespace: String,
        apps: Store<Application>,
        triggers: tokio::sync::mpsc::UnboundedSender<ObjectRef<Application>>,
        shutdown: CancellationToken,
    ) -> Self {
        let (store, writer) = reflector::store::<Project>();
        let api = Api::<Project>::namespaced(read, &namespace);
        let changes = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects()
            .predicate_filter(kube::runtime::predicates::generation, Default::default());
        let status_api = Api::<Project>::namespaced(write, &namespace);
        let retry_store = store.clone();
        let retry_namespace = namespace.clone();
        tokio::spawn(async move {
            let mut changes = std::pin::pin!(changes);
            // Status writes that failed (e.g. before this replica may write) are tried again from the cache, since
            // the watch reports a project again only when its spec changes.
            // The project as last seen is kept too: the cache may not hold it yet (it is filled once the first list
            // is complete, which can come after the first failed write).
            let mut unwritten = std::collections::BTreeMap::<String, Project>::new();
            let mut retry = tokio::time::interval(STATUS_RETRY);
            retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = retry.tick(), if !unwritten.is_empty() => {
                        for (name, seen) in std::mem::take(&mut unwritten) {
                            let key = ObjectRef::<Project>::new(&name).within(&retry_namespace);
                            let project = retry_store.get(&key).map_or(seen, |p| (*p).clone());
                            if !report_validity(&status_api, &project).await {
                                unwritten.insert(name, project);
                            }
                        }
                        continue;
                    }
                    next = changes.next() => next,
                };
                match next {
                    None => return,
                    Some(Ok(project)) => {
                        if !report_validity(&status_api, &project).await {
                            unwritten.insert(project.name_any(), project.clone());
                        }
                        let name = project.name_any();
                        for app in apps.state() {
                            if app.spec.project == name {
                                let _ = triggers.send(ObjectRef::from_obj(app.as_ref()));
                            }
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "cannot watch the projects"),
                }
            }
        });
        Self { store, namespace }
    }

    /// A cache that is never filled (tests of other parts): every application is in the implicit default project.
    pub fn none(namespace: impl Into<String>) -> Self {
        let (store, _writer) = reflector::store::<Project>();
        Self {
            store,
            namespace: namespace.into(),
        }
    }

    /// The Project named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Project>> {
        self.store
            .get(&ObjectRef::<Project>::new(name).within(&self.namespace))
    }

    /// The application's project, checked against the application's namespace, sources and destination; `None`
    /// when it is the default project and no Project of that name exists (everything is allowed, as before
    /// projects existed).
    pub fn admit_app(&self, app: &Application) -> Result<Option<Arc<Project>>, ProjectDenied> {
        let name = app.spec.project.as_str();
        let found = self
            .store
            .get(&ObjectRef::<Project>::new(name).within(&self.namespace));
        let project = match found {
            Some(p) => p,
            None if name == DEFAULT_PROJECT || name.is_empty() => return Ok(None),
            None => return Err(ProjectDenied::NotFound(name.to_owned())),
        };
        project.validate()?;
        project.check_namespace(
            app.namespace().as_deref().unwrap_or_default(),
            &self.namespace,
        )?;
        for source in app.spec.all_sources() {
            project.check_source(&source.repo_url)?;
        }
        let namespace = app
            .spec
            .destination
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty());
        project.check_destination(cluster_of(app), namespace, None)?;
        project.service_account_for(cluster_of(app), namespace)?;
        Ok(Some(project))
    }

    /// The ServiceAccount (namespace, name) the application's requests impersonate, if its project maps its
    /// destination to one.
    pub fn service_account(
        &self,
        app: &Application,
    ) -> Result<Option<(String, String)>, ProjectDenied> {
        let Some(project) = self
            .store
            .get(&ObjectRef::<Project>::new(&app.spec.project).within(&self.namespace))
        else {
            return Ok(None);
        };
        project.service_account_for(
            cluster_of(app),
            app.spec
                .destination
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty()),
        )
    }
}

impl Projects {
    /// What the sync windows of the application's project allow it at `now` (nothing held without a project, or
    /// when its windows cannot be read: the pass refuses such a project before it gets here).
    pub fn window_verdict(
        &self,
        app: &Application,
        now: jiff::Timestamp,
    ) -> kedge_api::WindowVerdict {
        let Some(project) = self
            .store
            .get(&ObjectRef::<Project>::new(&app.spec.project).within(&self.namespace))
        else {
            return kedge_api::WindowVerdict::default();
        };
        project
            .window_verdict(
                &app.name_any(),
                app.spec
                    .destination
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty()),
                cluster_of(app),
                now,
            )
            .unwrap_or_default()
    }
}

/// The application's cluster by the names it goes by: the cluster Kedge runs in by both.
pub fn cluster_of(app: &Application) -> ClusterRef<'_> {
    if app.spec.is_in_cluster() {
        return ClusterRef {
            name: Some(kedge_api::IN_CLUSTER_NAME),
            server: Some(kedge_api::IN_CLUSTER_SERVER),
        };
    }
    ClusterRef {
        name: app.spec.destination_name(),
        server: app.spec.destination_server(),
    }
}

/// One rendered object as the checks see it.
pub struct ObjectFacts<'a> {
    /// `group/version` or `version`.
    pub api_version: &'a str,
    /// The kind.
    pub kind: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The namespace it names, if any.
    pub namespace: Option<&'a str>,
}

impl<'a> ObjectFacts<'a> {
    /// Reads them from a manifest.
    pub fn of(object: &'a Value) -> Self {
        let s = |v: &'a Value| v.as_str().unwrap_or_default();
        Self {
            api_version: s(&object["apiVersion"]),
            kind: s(&object["kind"]),
            name: s(&object["metadata"]["name"]),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty()),
        }
    }

    /// The API group.
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

/// Checks every object against the project; `scope` says whether a kind is namespaced (`None`: unknown, then
/// namespaced if the object names a namespace). All refusals at once, so that one sync attempt shows every problem.
pub fn check_objects<'a>(
    project: &Project,
    app: &Application,
    objects: impl IntoIterator<Item = ObjectFacts<'a>>,
    scope: impl Fn(&ObjectFacts<'a>) -> Option<bool>,
) -> Result<(), Vec<ProjectDenied>> {
    let cluster = cluster_of(app);
    let default_ns = app
        .spec
        .destination
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty());
    let mut denied = Vec::new();
    for o in objects {
        let namespaced = scope(&o).unwrap_or(o.namespace.is_some());
        let namespace = if namespaced {
            o.namespace.or(default_ns)
        } else {
            None
        };
        let label = match namespace {
            Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
            None => format!("{} {}", o.kind, o.name),
        };
        if let Err(e) = project.check_kind(o.group(), o.kind, namespaced, &label) {
            denied.push(e);
            continue;
        }
        if namespaced
            && let Some(ns) = namespace
            && let Err(e) = project.check_destination(cluster, Some(ns), Some(&label))
        {
            denied.push(e);
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(denied)
    }
}

/// One message for refusals: the first few, then how many more.
pub fn describe(denied: &[ProjectDenied]) -> String {
    let named: Vec<String> = denied.iter().take(NAMED).map(|d| d.to_string()).collect();
    let mut message = named.join("; ");
    if denied.len() > NAMED {
        message.push_str(&format!("; and {} more", denied.len() - NAMED));
    }
    message
}

/// Writes whether the Project's patterns can be read in its `Ready` condition, when that changed; false when the
/// write failed (and should be tried again: not when the project is gone).
async fn report_validity(api: &Api<Project>, project: &Project) -> bool {
    let (ok, reason, message) = match (project.validate(), project.validate_roles()) {
        (Ok(()), Ok(())) => (true, "Valid", "the project's rules are in force".to_owned()),
        (Err(e), _) => (
            false,
            "InvalidSpec",
            format!("{e}; nothing is allowed until it is fixed"),
        ),
        // A role that cannot be read grants nothing; the applications still sync.
        (Ok(()), Err(e)) => (
            false,
            "InvalidRole",
            format!("{e}; the role grants nothing until it is fixed"),
        ),
    };
    let status = if ok { "True" } else { "False" };
    let current = project
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    if current.is_some_and(|c| {
        c.status == status
            && c.message == message
            && c.observed_generation == project.metadata.generation
    }) {
        return true;
    }
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let transition = current
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    let patch = json!({ "status": { "conditions": [{
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "observedGeneration": project.metadata.generation, "lastTransitionTime": transition,
    }] } });
    if let Err(e) = api
        .patch_status(
            &project.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(project = %project.name_any(), error = %e, "cannot write the project's status");
        return matches!(&e, kube::Error::Api(status) if status.code == 404);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(spec: Value) -> Application {
        let mut a: Application = serde_json::from_value(json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": { "name": "web", "namespace": "kedge" },
            "spec": spec,
        }))
        .expect("app");
        a.metadata.namespace = Some("kedge".into());
        a
    }

    #[test]
    fn objects_are_checked_by_kind_and_namespace_all_at_once() {
        let project: Project = Project::new(
            "team-a",
            serde_json::from_value(json!({
                "sourceRepos": ["*"],
                "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": "team-a" }],
            }))
            .expect("spec"),
        );
        let a = app(json!({
            "project": "team-a",
            "source": { "repoURL": "https://git.example/a.git", "path": "." },
            "destination": { "server": "https://kubernetes.default.svc", "namespace": "team-a" },
        }));
        let objects = [
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "ok" } }),
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "elsewhere", "namespace": "team-b" } }),
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": { "name": "admin" } }),
        ];
        let scope = |o: &ObjectFacts<'_>| Some(o.kind != "ClusterRole");
        let denied = check_objects(&project, &a, objects.iter().map(ObjectFacts::of), scope)
            .expect_err("two refused");
        assert_eq!(denied.len(), 2);
        let message = describe(&denied);
        assert!(message.contains("ConfigMap team-b/elsewhere"), "{message}");
        assert!(
            message.contains("ClusterRole admin (spec.clusterResourceWhitelist)"),
            "{message}"
        );
        assert!(
            check_objects(
                &project,
                &a,
                objects[..1].iter().map(ObjectFacts::of),
                scope
            )
            .is_ok()
        );
    }
}
