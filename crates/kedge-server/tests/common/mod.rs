//! Harness of the server tests: a namespace on the test cluster, a loopback git daemon with a work tree to push from,
//! and the controller with the API/UI routes running in-process on a free loopback port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kedge_api::Application;
use kedge_controller::runner::{RunConfig, run};
use kedge_testkit::{GitFixture, GitServers, HttpAuth, TestCluster, TestNamespace, wait_for};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const STEP: Duration = Duration::from_secs(40);
pub const POLL: Duration = Duration::from_millis(100);

pub struct Env {
    pub cluster: TestCluster,
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub servers: GitServers,
    pub work: GitFixture,
    pub repo_url: String,
    pub cache: tempfile::TempDir,
}

impl Env {
    pub async fn new(prefix: &str) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        kedge_source::install_crypto_provider();
        let cluster = TestCluster::from_env().await.expect("test cluster");
        let client = cluster.client();
        install_crd(&client).await;
        let ns = cluster.namespace(prefix).await.expect("namespace");
        let servers = GitServers::start(HttpAuth::basic("kedge", "unused")).expect("git servers");
        servers.root.create_bare_repo("app.git").expect("bare repo");
        let repo_url = servers.daemon.url("app.git");
        let work = GitFixture::new().expect("work tree");
        let cache = tempfile::Builder::new()
            .prefix("kedge-server-test-")
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

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    pub fn write(&self, rel: &str, contents: &str) {
        self.work.write(rel, contents).expect("write file");
    }

    pub fn commit_push(&self, message: &str) -> String {
        let sha = self.work.commit(message).expect("commit");
        self.work.push(&self.repo_url, "main").expect("push");
        sha
    }

    pub fn push_branch(&self, branch: &str) {
        self.work.push(&self.repo_url, branch).expect("push");
    }

    pub fn apps(&self) -> Api<Application> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    pub async fn create_app(
        &self,
        name: &str,
        path: &str,
        sync_policy: Value,
        labels: Value,
    ) -> Application {
        let value = json!({
            "apiVersion": "kedge.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": name, "namespace": self.ns(), "labels": labels },
            "spec": {
                "source": { "repoURL": self.repo_url, "targetRevision": "main", "path": path },
                "syncPolicy": sync_policy,
            }
        });
        let app: Application = serde_json::from_value(value).expect("application");
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .expect("create application")
    }

    pub async fn app(&self, name: &str) -> Application {
        self.apps().get(name).await.expect("get application")
    }

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
            match wait_for(STEP, POLL, || async {
                api.get_opt(name).await.ok().flatten().filter(|a| cond(a))
            })
            .await
            {
                Ok(app) => app,
                Err(t) => {
                    let last = api.get_opt(name).await.ok().flatten();
                    panic!(
                        "{location}: application {name}: {what}: {t}\nstatus: {}",
                        serde_json::to_string_pretty(&last.and_then(|a| a.status))
                            .unwrap_or_default()
                    )
                }
            }
        }
    }

    pub async fn put_secret(&self, name: &str, data: &[(&str, &str)]) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns());
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        api.patch(
            name,
            &PatchParams::apply("kedge-server-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply secret");
    }

    pub async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns());
        let s = api.get_opt(name).await.ok().flatten()?;
        s.data?
            .get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    }

    pub fn start(&self, poll: Duration) -> Running {
        Running::start(
            self.cluster.kubeconfig().to_owned(),
            self.ns().to_owned(),
            self.cache.path().join("c"),
            poll,
        )
    }

    /// Starts the controller and server, waits for readiness and the admin Secret.
    pub async fn start_ready(&self, poll: Duration) -> (Running, String) {
        let running = self.start(poll);
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", running.base);
        let ready = wait_for(STEP, POLL, || async {
            http.get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        if let Err(t) = ready {
            let last = match http.get(&url).send().await {
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => format!("{e:?}"),
            };
            panic!("server not ready: {t}; last answer: {last}");
        }
        let password = wait_for(STEP, POLL, || async {
            self.secret_value(kedge_server::ADMIN_SECRET, "password")
                .await
        })
        .await
        .expect("admin password generated");
        (running, password)
    }
}

/// The controller with the server, on its own runtime.
pub struct Running {
    pub base: String,
    runtime: Option<tokio::runtime::Runtime>,
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Running {
    fn start(kubeconfig: PathBuf, ns: String, cache: PathBuf, poll: Duration) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kedge-server-test")
            .enable_all()
            .build()
            .expect("runtime");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let task = runtime.spawn(async move {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut rc = RunConfig::new(cache, "server-test");
            rc.namespace = Some(ns.clone());
            rc.lease_namespace = ns.clone();
            rc.poll_interval = poll;
            rc.resync_interval = Duration::from_secs(3600);
            rc.listen = Some(listen);
            let routes = kedge_server::route_builder(kedge_server::ServerConfig::new(ns));
            run(config, rc, token, Some(routes))
                .await
                .map_err(|e| kedge_controller::reconcile::error_chain(&e))
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            runtime: Some(runtime),
            shutdown,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let res = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("stops within 20 s");
            res.expect("no panic")
                .expect("controller ran without error");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

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
    let apps: Api<Application> = Api::all(client.clone());
    wait_for(STEP, POLL, || async {
        apps.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("Application CRD served");
}

pub fn config_map(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {key}: \"{value}\"\n"
    )
}

pub fn secret(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  {key}: \"{value}\"\n"
    )
}

pub fn deployment(name: &str, replicas: i64) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: main\n          image: nginx:1.27\n"
    )
}

pub fn synced_at(app: &Application, sha: &str) -> bool {
    app.status.as_ref().is_some_and(|s| {
        s.sync.status == kedge_api::SyncCode::Synced && s.sync.revision.as_deref() == Some(sha)
    })
}

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Logs in over the API; returns (token, csrf token).
pub async fn login(base: &str, user: &str, password: &str) -> (String, String) {
    let r = http()
        .post(format!("{base}/api/v1/session"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .expect("login request");
    assert_eq!(r.status(), 200, "login of {user}");
    let v: Value = r.json().await.expect("login body");
    (
        v["token"].as_str().unwrap().to_owned(),
        v["csrfToken"].as_str().unwrap().to_owned(),
    )
}
