//! Shared harness of the end-to-end tests: a namespace on the test cluster, loopback git servers with a work tree
//! to push from, and the controller running in-process on its own tokio runtime (so that a test can stop it
//! gracefully or kill it outright).
//!
//! Also compiled into the `kedge` crate's CLI tests and the `kedge-server` tests (`#[path]`), so it only uses crates
//! all three packages depend on.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kedge_api::{Application, Condition};
use kedge_controller::runner::{RunConfig, run};
use kedge_testkit::{GitFixture, GitServers, HttpAuth, TestCluster, TestNamespace, wait_for};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long a step may take before the test fails (generous: the machine is shared; steps take ~1-3 s).
pub const STEP: Duration = Duration::from_secs(40);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(100);

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=kedge_controller=debug`).
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// The name of the suite's test cluster (`KEDGE_TEST_CLUSTER`, else `default`); clusters started beside it are
/// named after it.
pub fn suite_cluster() -> String {
    std::env::var(kedge_testkit::CLUSTER_ENV)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// A second test cluster beside the suite's (its name plus `-east`), for tests of the cluster registry.
pub async fn east_cluster() -> TestCluster {
    TestCluster::get(&format!("{}-east", suite_cluster()))
        .await
        .expect("east cluster")
}

/// The value of `key: value` in a kubeconfig's text (the test clusters write one of each).
pub fn kubeconfig_field<'a>(kubeconfig: &'a str, key: &str) -> &'a str {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in the kubeconfig"))
}

/// A third test cluster (the suite's name plus `-west`), for tests that stop a cluster.
pub async fn west_cluster() -> TestCluster {
    TestCluster::get(&format!("{}-west", suite_cluster()))
        .await
        .expect("west cluster")
}

/// One test's world: a namespace (Applications, their objects and the Lease live there), git servers with a bare
/// repository `app.git`, and a work tree pushing to it.
pub struct Env {
    pub cluster: TestCluster,
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub servers: GitServers,
    pub work: GitFixture,
    /// The repository over git:// (no auth), as Applications see it.
    pub repo_url: String,
    cache: tempfile::TempDir,
}

impl Env {
    /// Starts everything; `prefix` names the namespace.
    pub async fn new(prefix: &str) -> Self {
        Self::with_auth(prefix, HttpAuth::basic("kedge", "not-used")).await
    }

    /// Like [`new`](Self::new) with the HTTP server accepting `auth`.
    pub async fn with_auth(prefix: &str, auth: HttpAuth) -> Self {
        let cluster = TestCluster::from_env().await.expect("test cluster");
        Self::on(cluster, prefix, auth).await
    }

    /// Like [`new`](Self::new) on a cluster of its own (the test cluster's name plus `-audit`) whose API server
    /// keeps an audit log of every write (see [`TestCluster::audit_events`]).
    pub async fn audited(prefix: &str) -> Self {
        let cluster = TestCluster::get_audited(&format!("{}-audit", suite_cluster()))
            .await
            .expect("audited test cluster");
        Self::on(cluster, prefix, HttpAuth::basic("kedge", "not-used")).await
    }

    /// Like [`new`](Self::new) on a cluster of its own (the test cluster's name plus `-rbac`) whose API server
    /// enforces RBAC and impersonation for everyone but the admin (see [`TestCluster::get_rbac`]).
    pub async fn rbac(prefix: &str) -> Self {
        let cluster = TestCluster::get_rbac(&format!("{}-rbac", suite_cluster()))
            .await
            .expect("RBAC test cluster");
        Self::on(cluster, prefix, HttpAuth::basic("kedge", "not-used")).await
    }

    async fn on(cluster: TestCluster, prefix: &str, auth: HttpAuth) -> Self {
        init_tracing();
        kedge_source::install_crypto_provider();
        let client = cluster.client();
        install_crd(&client).await;
        let ns = cluster.namespace(prefix).await.expect("namespace");
        let servers = GitServers::start(auth).expect("git servers");
        servers.root.create_bare_repo("app.git").expect("bare repo");
        let repo_url = servers.daemon.url("app.git");
        let work = GitFixture::new().expect("work tree");
        let cache = tempfile::Builder::new()
            .prefix("kedge-e2e-cache-")
            .tempdir()
            .expect("cache dir");
        Self {
            cluster,
            client,
            ns,
            servers,
            work,
            repo_url,
            cache,
        }
    }

    /// The namespace's name.
    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// Writes a file in the work tree.
    pub fn write(&self, rel: &str, contents: &str) {
        self.work.write(rel, contents).expect("write file");
    }

    /// Commits everything and pushes `main`; returns the commit.
    pub fn commit_push(&self, message: &str) -> String {
        let sha = self.work.commit(message).expect("commit");
        self.push();
        sha
    }

    /// Pushes `main`.
    pub fn push(&self) {
        self.work.push(&self.repo_url, "main").expect("push");
    }

    /// The settings of an in-process controller for this test: this namespace only, the Lease here, 1 s polls.
    pub fn run_config(&self, identity: &str) -> RunConfig {
        let mut rc = RunConfig::new(self.cache.path().join(identity), identity);
        rc.namespace = Some(self.ns().to_owned());
        rc.lease_namespace = self.ns().to_owned();
        rc.poll_interval = Duration::from_secs(1);
        rc.resync_interval = Duration::from_secs(30);
        rc
    }

    /// Starts a controller with identity `identity`.
    pub fn start_controller(&self, identity: &str) -> RunningController {
        RunningController::start(self.cluster.kubeconfig(), self.run_config(identity))
    }

    /// Starts a controller that, with other replicas, leads or stands by (replicas do not share the applications).
    pub fn start_standby_controller(&self, identity: &str) -> RunningController {
        let mut rc = self.run_config(identity);
        rc.sharing = kedge_controller::runner::Sharing::Off;
        RunningController::start(self.cluster.kubeconfig(), rc)
    }

    /// The Applications API of this namespace.
    pub fn apps(&self) -> Api<Application> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// Creates an Application `name` on this test's repository (`main`, `path`) with the given `syncPolicy`
    /// and extra spec fields merged in.
    pub async fn create_app(&self, name: &str, path: &str, sync_policy: Value) -> Application {
        self.create_app_with(name, path, sync_policy, json!({}), json!({}))
            .await
    }

    /// Creates an Application; `spec_extra` and `meta_extra` are merged into spec and metadata.
    pub async fn create_app_with(
        &self,
        name: &str,
        path: &str,
        sync_policy: Value,
        spec_extra: Value,
        meta_extra: Value,
    ) -> Application {
        let mut value = json!({
            "apiVersion": "kedge.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": name, "namespace": self.ns() },
            "spec": {
                "source": { "repoURL": self.repo_url, "targetRevision": "main", "path": path },
                "syncPolicy": sync_policy,
            }
        });
        merge(&mut value["spec"], spec_extra);
        merge(&mut value["metadata"], meta_extra);
        let app: Application = serde_json::from_value(value).expect("application");
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .expect("create application")
    }

    /// Creates an Application `name` on this test's repository that deploys `path` to the registered cluster
    /// `cluster`, namespace `namespace`.
    pub async fn create_app_on(
        &self,
        name: &str,
        path: &str,
        sync_policy: Value,
        cluster: &str,
        namespace: &str,
    ) -> Application {
        self.create_app_with(
            name,
            path,
            sync_policy,
            json!({ "destination": { "name": cluster, "namespace": namespace } }),
            json!({}),
        )
        .await
    }

    /// Registers `cluster` as Cluster `name` in this test's namespace, reached with its admin kubeconfig kept in
    /// Secret `NAME-creds`.
    pub async fn register_cluster(&self, name: &str, cluster: &TestCluster) {
        let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig");
        let server = kubeconfig_field(&kubeconfig, "server").to_owned();
        self.register_cluster_at(name, &server, json!({ "kubeconfig": kubeconfig }))
            .await;
    }

    /// Registers Cluster `name` at `server` with Secret `NAME-creds` holding `secret_data` (string data).
    pub async fn register_cluster_at(&self, name: &str, server: &str, secret_data: Value) {
        let secret = format!("{name}-creds");
        self.create_secret(&secret, secret_data).await;
        let cluster: kedge_api::Cluster = serde_json::from_value(json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster",
            "metadata": { "name": name },
            "spec": { "server": server, "secretRef": { "name": secret } }
        }))
        .expect("cluster");
        Api::<kedge_api::Cluster>::namespaced(self.client.clone(), self.ns())
            .create(&PostParams::default(), &cluster)
            .await
            .expect("create cluster");
    }

    /// Creates Secret `name` in this test's namespace with `string_data`.
    pub async fn create_secret(&self, name: &str, string_data: Value) {
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name },
            "stringData": string_data,
        }))
        .expect("secret");
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), self.ns())
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }

    /// The Application `name` now.
    pub async fn app(&self, name: &str) -> Application {
        self.apps().get(name).await.expect("get application")
    }

    /// Merge-patches the Application `name`.
    pub async fn patch_app(&self, name: &str, patch: Value) {
        self.apps()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch application");
    }

    /// Waits until the Application satisfies `cond`; on timeout, fails showing its last status.
    #[track_caller]
    pub fn wait_app<'a>(
        &'a self,
        name: &'a str,
        what: &'a str,
        cond: impl Fn(&Application) -> bool + 'a,
    ) -> impl std::future::Future<Output = Application> + 'a {
        let location = std::panic::Location::caller();
        async move {
            let api = self.apps();
            let got = wait_for(STEP, POLL, || async {
                api.get_opt(name).await.ok().flatten().filter(|a| cond(a))
            })
            .await;
            match got {
                Ok(app) => app,
                Err(timeout) => {
                    let last = api.get_opt(name).await.ok().flatten();
                    let status = last
                        .as_ref()
                        .map(|a| serde_json::to_string_pretty(&a.status).unwrap_or_default())
                        .unwrap_or_else(|| "<application not found>".into());
                    let events = self
                        .events(name)
                        .await
                        .iter()
                        .map(|e| {
                            format!(
                                "{} {}: {}",
                                e.type_.clone().unwrap_or_default(),
                                e.reason.clone().unwrap_or_default(),
                                e.message.clone().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    panic!(
                        "{location}: application {name}: {what}: {timeout}\nstatus: {status}\nevents:\n{events}"
                    )
                }
            }
        }
    }

    /// Waits until `name` is Synced and Healthy at `sha`.
    #[track_caller]
    pub fn wait_synced<'a>(
        &'a self,
        name: &'a str,
        sha: &'a str,
    ) -> impl std::future::Future<Output = Application> + 'a {
        self.wait_app(name, "Synced and Healthy", move |a| synced_at(a, sha))
    }

    /// The Events about Application `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), self.ns());
        let mut events: Vec<Event> = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Application")
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
    }

    /// Waits for an Event about `name` with `reason` whose message satisfies `cond`; returns it.
    #[track_caller]
    pub fn wait_event<'a>(
        &'a self,
        name: &'a str,
        reason: &'a str,
        cond: impl Fn(&str) -> bool + 'a,
    ) -> impl std::future::Future<Output = Event> + 'a {
        let location = std::panic::Location::caller();
        async move {
            let got = wait_for(STEP, POLL, || async {
                self.events(name).await.into_iter().find(|e| {
                    e.reason.as_deref() == Some(reason) && cond(e.message.as_deref().unwrap_or(""))
                })
            })
            .await;
            match got {
                Ok(e) => e,
                Err(timeout) => {
                    let all: Vec<String> = self
                        .events(name)
                        .await
                        .iter()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e.reason.clone().unwrap_or_default(),
                                e.message.clone().unwrap_or_default()
                            )
                        })
                        .collect();
                    panic!(
                        "{location}: no {reason} event on {name}: {timeout}\nevents:\n{}",
                        all.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for a Warning Event about `name` whose message contains `needle`; returns it.
    pub async fn wait_warning(&self, name: &str, needle: &str) -> Event {
        let got = wait_for(STEP, POLL, || async {
            self.events(name).await.into_iter().find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.message.as_deref().is_some_and(|m| m.contains(needle))
            })
        })
        .await;
        match got {
            Ok(e) => e,
            Err(t) => panic!("no Warning event on {name} mentioning {needle}: {t}"),
        }
    }

    /// Number of events about `name` with `reason`.
    pub async fn count_events(&self, name: &str, reason: &str) -> usize {
        self.events(name)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count()
    }

    /// A namespaced object of this namespace (core group when `group` is empty), if it exists.
    pub async fn object(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        name: &str,
    ) -> Option<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::<DynamicObject>::namespaced_with(self.client.clone(), self.ns(), &ar)
            .get_opt(name)
            .await
            .expect("get object")
    }

    /// The `data` of ConfigMap `name`, if it exists.
    pub async fn config_map_data(&self, name: &str) -> Option<Value> {
        self.object("", "v1", "ConfigMap", name)
            .await
            .map(|o| o.data["data"].clone())
    }

    /// Waits until ConfigMap `name` has `data.key == value`.
    #[track_caller]
    pub fn wait_config_map<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> impl std::future::Future<Output = ()> + 'a {
        let location = std::panic::Location::caller();
        async move {
            let res = wait_for(STEP, POLL, || async {
                self.config_map_data(name)
                    .await
                    .is_some_and(|d| d[key] == value)
            })
            .await;
            if let Err(t) = res {
                panic!(
                    "{location}: ConfigMap {name} never had {key}={value} (now {:?}): {t}",
                    self.config_map_data(name).await
                );
            }
        }
    }

    /// Waits until the object is gone.
    #[track_caller]
    pub fn wait_gone<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
        kind: &'a str,
        name: &'a str,
    ) -> impl std::future::Future<Output = ()> + 'a {
        let location = std::panic::Location::caller();
        async move {
            let res = wait_for(STEP, POLL, || async {
                self.object(group, version, kind, name).await.is_none()
            })
            .await;
            if let Err(t) = res {
                panic!("{location}: {kind} {name} still exists: {t}");
            }
        }
    }

    /// `spec.replicas` of Deployment `name`.
    pub async fn replicas(&self, name: &str) -> Option<i64> {
        self.object("apps", "v1", "Deployment", name)
            .await
            .and_then(|d| d.data["spec"]["replicas"].as_i64())
    }

    /// Patches `spec.replicas` of Deployment `name` as field manager `manager` (as `kubectl edit` would).
    pub async fn set_replicas(&self, name: &str, replicas: i64, manager: &str) {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
        Api::<DynamicObject>::namespaced_with(self.client.clone(), self.ns(), &ar)
            .patch(
                name,
                &PatchParams {
                    field_manager: Some(manager.to_owned()),
                    ..Default::default()
                },
                &Patch::Merge(&json!({ "spec": { "replicas": replicas } })),
            )
            .await
            .expect("patch replicas");
    }
}

/// Merges the keys of `extra` into `target` (one level).
fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        for (k, v) in e {
            t.insert(k, v);
        }
    }
}

/// Applies the Application and Cluster CRDs (idempotent; concurrent tests apply the same objects) and waits until
/// they serve.
pub async fn install_crd(client: &kube::Client) {
    let crd = kedge_controller::install::crd();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "applications.kedge.dev",
        &PatchParams::apply("kedge-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the Application CRD");
    api.patch(
        "clusters.kedge.dev",
        &PatchParams::apply("kedge-e2e").force(),
        &Patch::Apply(&kedge_controller::install::cluster_crd()),
    )
    .await
    .expect("apply the Cluster CRD");
    let [provider, alert] = kedge_controller::install::notification_crds();
    for crd in [
        provider,
        alert,
        kedge_controller::install::project_crd(),
        kedge_controller::install::applicationset_crd(),
    ] {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        api.patch(
            &name,
            &PatchParams::apply("kedge-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply a notification CRD");
    }
    let clusters: Api<kedge_api::Cluster> = Api::all(client.clone());
    wait_for(STEP, POLL, || async {
        clusters.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("Cluster CRD served");
    let apps: Api<Application> = Api::all(client.clone());
    wait_for(STEP, POLL, || async {
        apps.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("Application CRD served");
}

/// `syncPolicy` with automated sync.
pub fn automated(prune: bool, self_heal: bool) -> Value {
    json!({ "automated": { "prune": prune, "selfHeal": self_heal } })
}

/// Whether the Application is Synced and Healthy at `sha` with Ready=True.
pub fn synced_at(app: &Application, sha: &str) -> bool {
    app.status.as_ref().is_some_and(|s| {
        s.sync.status == kedge_api::SyncCode::Synced
            && s.sync.revision.as_deref() == Some(sha)
            && s.health.status == kedge_api::HealthCode::Healthy
            && condition(app, "Ready").is_some_and(|c| c.status == "True")
            && s.operation_state
                .as_ref()
                .is_none_or(|o| o.phase.is_completed())
    })
}

/// The condition `type_` of an Application.
pub fn condition<'a>(app: &'a Application, type_: &str) -> Option<&'a Condition> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// A ConfigMap manifest.
pub fn config_map(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {key}: \"{value}\"\n"
    )
}

/// `  annotations:` and one line a pair, as the metadata of a manifest holds them (nothing when there are none).
fn annotations_yaml(annotations: &[(&str, &str)]) -> String {
    if annotations.is_empty() {
        return String::new();
    }
    let mut s = "  annotations:\n".to_owned();
    for (k, v) in annotations {
        s.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    s
}

/// A ConfigMap manifest with annotations (`key: value` pairs).
pub fn config_map_annotated(name: &str, value: &str, annotations: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    s.push_str(&annotations_yaml(annotations));
    s.push_str(&format!("data:\n  value: \"{value}\"\n"));
    s
}

/// A Job manifest that runs once (`backoffLimit: 0`), with annotations (`key: value` pairs, e.g. a hook); the
/// simulator completes it, or fails it when `image` names "fail".
pub fn job_annotated(name: &str, image: &str, annotations: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n");
    s.push_str(&annotations_yaml(annotations));
    s.push_str(&format!(
        "spec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        \
         - name: run\n          image: {image}\n"
    ));
    s
}

/// A Deployment manifest (the simulator makes it Available about a second after it is applied).
pub fn deployment(name: &str, replicas: i64, image: &str) -> String {
    deployment_annotated(name, replicas, image, &[])
}

/// A Deployment manifest with annotations.
pub fn deployment_annotated(
    name: &str,
    replicas: i64,
    image: &str,
    annotations: &[(&str, &str)],
) -> String {
    let mut s = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n");
    s.push_str(&annotations_yaml(annotations));
    s.push_str(&format!(
        "spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: main\n          image: {image}\n"
    ));
    s
}

/// A controller running in-process on its own multi-threaded tokio runtime.
///
/// [`stop`](Self::stop) cancels it the way SIGTERM does (the leader releases its Lease); [`kill`](Self::kill) drops
/// the runtime with every task mid-flight, as a crash would (the Lease stays held until it expires). Dropping the
/// handle stops it.
pub struct RunningController {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    identity: String,
    /// How long a graceful stop may take: the shutdown grace period, the rest of the shutdown, a margin.
    stop_within: Duration,
}

impl RunningController {
    /// Starts `kedge run` in-process against the cluster of `kubeconfig`.
    pub fn start(kubeconfig: &Path, config: RunConfig) -> Self {
        Self::start_with_routes(kubeconfig, config, None)
    }

    /// Like [`start`](Self::start), serving `routes` (API, UI, webhooks) too when `config.listen` is set.
    pub fn start_with_routes(
        kubeconfig: &Path,
        config: RunConfig,
        routes: Option<kedge_controller::runner::RouteBuilder>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("kedge-{}", config.identity))
            .enable_all()
            .build()
            .expect("controller runtime");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let kubeconfig: PathBuf = kubeconfig.to_owned();
        let identity = config.identity.clone();
        let stop_within = config.shutdown_grace
            + kedge_controller::runner::SHUTDOWN_TAIL
            + Duration::from_secs(5);
        let task = runtime.spawn(async move {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?;
            let kube_config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| e.to_string())?;
            run(kube_config, config, token, routes)
                .await
                .map_err(|e| kedge_controller::reconcile::error_chain(&e))
        });
        Self {
            runtime: Some(runtime),
            shutdown,
            task: Some(task),
            identity,
            stop_within,
        }
    }

    /// This controller's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Graceful stop: cancels, waits for `run` to return (it must within its shutdown grace period and a few
    /// seconds), then drops the runtime.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let within = self.stop_within;
            let res = tokio::time::timeout(within, task)
                .await
                .unwrap_or_else(|_| panic!("controller did not stop within {within:?}"));
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("controller {} failed: {e}", self.identity),
                Err(e) => panic!("controller {} panicked: {e}", self.identity),
            }
        }
        // As when a process exits after `run` returned: whatever `run` left running stops now.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Crash: every task of the controller stops where it is, nothing is cleaned up.
    pub fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Whether `run` returned (it only does on shutdown or a startup failure).
    pub fn finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A namespaced CRD `widgets.GROUP` (kind Widget, v1, any spec).
pub fn widget_crd(group: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"
    )
}

/// The value at `key` of ConfigMap `name` in namespace `ns` of the cluster `client` reaches; `None` when either is missing.
pub async fn config_map_value(
    client: kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Option<String> {
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .data?
        .remove(key)
}

/// Starts controller `identity` serving `/metrics` on a free loopback port, with `edit` applied to its settings.
pub fn start_with_metrics(
    env: &Env,
    identity: &str,
    edit: impl FnOnce(&mut kedge_controller::runner::RunConfig),
) -> (RunningController, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = env.run_config(identity);
    config.metrics_listen = Some(addr);
    edit(&mut config);
    (
        RunningController::start(env.cluster.kubeconfig(), config),
        addr,
    )
}

/// The whole response (status line, headers, body) to `GET path` from a controller's endpoint at `addr`, in plain
/// HTTP/1.0 over loopback, read for at most 5 s.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// A metric of a controller's `/metrics` at `addr` (plain HTTP/1.0 over loopback): the series `name` when it
/// names labels, else the sum of all its series; 0 when there is none.
pub fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = http_get(addr, "/metrics").expect("a response from the metrics endpoint");
    // A name with labels is one series; a bare name sums all of its series.
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix(' ') {
                Some(v) => v,
                None if !name.contains('{') && rest.starts_with('{') => rest.rsplit_once("} ")?.1,
                None => return None,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The `Connected` condition of a Cluster, once the controller has checked it.
pub fn connected(cluster: &kedge_api::Cluster) -> Option<&kedge_api::Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kedge_api::CONNECTED)
}

/// Waits until Cluster `name` meets `cond` (`what` says what for the failure message); panics with its last status.
pub async fn wait_cluster(
    api: &Api<kedge_api::Cluster>,
    name: &str,
    what: &str,
    cond: impl Fn(&kedge_api::Cluster) -> bool,
) -> kedge_api::Cluster {
    match kedge_testkit::wait_for(STEP, POLL, || async {
        api.get_opt(name).await.ok().flatten().filter(|c| cond(c))
    })
    .await
    {
        Ok(c) => c,
        Err(timeout) => {
            let last = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status);
            panic!("cluster {name}: {what}: {timeout}; last status {last:?}")
        }
    }
}

/// A binary under `$KEDGE_CACHE/bin` (where the install scripts put them), if it is there.
pub fn cache_binary(name: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("KEDGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kedge")))?;
    let candidate = cache.join("bin").join(name);
    candidate.exists().then_some(candidate)
}

/// A free loopback address (the port is free when this returns).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A server process the test started on a loopback port (Prometheus, Alertmanager), with its folder; killed when
/// dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `binary` with `args`, its standard error in `NAME.log` of `dir`.
    pub fn start(
        binary: &Path,
        args: Vec<String>,
        addr: std::net::SocketAddr,
        dir: tempfile::TempDir,
    ) -> Self {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log file");
        let child = std::process::Command::new(binary)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { child, addr, dir }
    }

    /// `GET path`; the JSON answer (errors included), `None` when it does not answer with JSON (yet).
    pub fn get(&self, path: &str) -> Option<Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Applies Project `name` with `spec` in the test's namespace (Kedge's, in these tests).
pub async fn apply_project(env: &Env, name: &str, spec: Value) {
    let p: kedge_api::Project = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Project",
        "metadata": { "name": name, "namespace": env.ns() }, "spec": spec,
    }))
    .expect("project");
    Api::<kedge_api::Project>::namespaced(env.client.clone(), env.ns())
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&p))
        .await
        .expect("apply project");
}

/// Waits until Application `name` is refused with `reason` and a message containing `needle`; returns the
/// message. The refusal stalls it (Ready=False, Stalled=True with the same reason).
pub async fn wait_refused(env: &Env, name: &str, reason: &str, needle: &str) -> String {
    let app = env
        .wait_app(name, "refused", |a| {
            condition(a, "Ready").is_some_and(|c| c.reason == reason && c.message.contains(needle))
        })
        .await;
    let ready = condition(&app, "Ready").expect("ready").clone();
    assert_eq!(ready.status, "False");
    let stalled = condition(&app, "Stalled").expect("stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reason)
    );
    ready.message
}

/// Requests the audit log shows about ConfigMap `name` of namespace `ns` (dry-runs included).
pub fn requests_about(env: &Env, ns: &str, name: &str) -> Vec<String> {
    env.cluster
        .audit_events()
        .expect("audit log")
        .into_iter()
        .filter(|e| e.namespace == ns && e.name == name && e.resource == "configmaps")
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect()
}
