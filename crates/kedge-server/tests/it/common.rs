//! Harness of the server tests: the end-to-end harness of the controller tests (a namespace on the test cluster,
//! loopback git servers, a work tree, the controller in-process), with the API/UI routes served on a free loopback
//! port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../../kedge-controller/tests/it/common.rs"]
mod harness;

use std::time::Duration;

pub use harness::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::{Application, Cluster};
use kedge_controller::runner::RunConfig;
use kedge_testkit::wait_for;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde_json::{Value, json};

/// What the server tests add to the shared [`Env`].
pub trait ServerEnv {
    /// Creates an Application on this test's repository with `labels`.
    async fn create_labeled_app(
        &self,
        name: &str,
        path: &str,
        sync_policy: Value,
        labels: Value,
    ) -> Application;
    /// Creates or replaces the Secret `name` with `data`.
    async fn put_secret(&self, name: &str, data: &[(&str, &str)]);
    /// One key of a Secret, if it exists.
    async fn secret_value(&self, name: &str, key: &str) -> Option<String>;
    /// Starts the controller with the server (polling every `poll`), waits until it is ready and has generated the
    /// admin password; returns it with the password.
    async fn start_ready(&self, poll: Duration) -> (Running, String);
    /// [`Self::start_ready`] with server settings changed by `configure`.
    async fn start_ready_with(
        &self,
        poll: Duration,
        configure: impl FnOnce(&mut kedge_server::ServerConfig),
    ) -> (Running, String);
    /// [`Self::start_ready_with`] with the controller's settings changed by `run` too.
    async fn start_ready_configured(
        &self,
        poll: Duration,
        run: impl FnOnce(&mut RunConfig),
        configure: impl FnOnce(&mut kedge_server::ServerConfig),
    ) -> (Running, String);
}

impl ServerEnv for Env {
    async fn create_labeled_app(
        &self,
        name: &str,
        path: &str,
        sync_policy: Value,
        labels: Value,
    ) -> Application {
        self.create_app_with(
            name,
            path,
            sync_policy,
            json!({}),
            json!({ "labels": labels }),
        )
        .await
    }

    async fn put_secret(&self, name: &str, data: &[(&str, &str)]) {
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

    async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns());
        let s = api.get_opt(name).await.ok().flatten()?;
        s.data?
            .get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    }

    async fn start_ready(&self, poll: Duration) -> (Running, String) {
        self.start_ready_with(poll, |_| {}).await
    }

    async fn start_ready_with(
        &self,
        poll: Duration,
        configure: impl FnOnce(&mut kedge_server::ServerConfig),
    ) -> (Running, String) {
        self.start_ready_configured(poll, |_| {}, configure).await
    }

    async fn start_ready_configured(
        &self,
        poll: Duration,
        run: impl FnOnce(&mut RunConfig),
        configure: impl FnOnce(&mut kedge_server::ServerConfig),
    ) -> (Running, String) {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let port = free_port();
        let metrics_port = free_port();
        let mut config = self.run_config("server-test");
        config.poll_interval = poll;
        config.resync_interval = Duration::from_secs(3600);
        config.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        config.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)));
        run(&mut config);
        // `run` may choose the address (a test that must know it before the server starts).
        let port = config.listen.map_or(port, |a| a.port());
        let mut server = kedge_server::ServerConfig::new(self.ns());
        configure(&mut server);
        let routes = kedge_server::route_builder(server);
        let running = Running {
            base: format!("http://127.0.0.1:{port}"),
            metrics_base: format!("http://127.0.0.1:{metrics_port}"),
            controller: RunningController::start_with_routes(
                self.cluster.kubeconfig(),
                config,
                Some(routes),
            ),
        };
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

/// Registers Cluster `name` at `server` (e.g. an address nothing listens on) with Secret `{name}-creds`, which holds
/// the test cluster's kubeconfig (the controller connects to `server` whatever the kubeconfig says) and `marker`
/// under another key, for checks that no Secret value is shown.
pub async fn register_cluster(env: &Env, name: &str, server: &str, marker: &str) {
    let kubeconfig = std::fs::read_to_string(env.cluster.kubeconfig()).expect("kubeconfig");
    env.register_cluster_at(
        name,
        server,
        json!({ "kubeconfig": kubeconfig, "note": marker }),
    )
    .await;
}

/// Waits until the controller has found Cluster `name` not connected; returns the reason of its condition.
pub async fn wait_not_connected(env: &Env, name: &str) -> String {
    let api = Api::<Cluster>::namespaced(env.client.clone(), env.ns());
    let found = wait_cluster(&api, name, "not connected", |c| {
        connected(c).is_some_and(|c| c.status == "False")
    })
    .await;
    connected(&found)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The controller with the server.
pub struct Running {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the metrics listener.
    pub metrics_base: String,
    controller: RunningController,
}

impl Running {
    /// Graceful stop; fails the test if the controller failed.
    pub async fn stop(self) {
        self.controller.stop().await;
    }
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

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The UI's live-update stream of one session, and what it has sent so far.
pub struct Live {
    /// The response being read.
    pub response: reqwest::Response,
    /// Everything read so far.
    pub seen: String,
}

impl Live {
    /// Opens the stream of the session `cookie` and reads until its hello.
    pub async fn open(c: &reqwest::Client, base: &str, cookie: &str) -> Live {
        let response = c
            .get(format!("{base}/ui/events"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("event stream");
        assert_eq!(response.status(), 200);
        let mut live = Live {
            response,
            seen: String::new(),
        };
        live.until("event: hello").await;
        live
    }

    /// Reads until `want` has been sent (within [`STEP`]).
    pub async fn until(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + STEP;
        while !self.seen.contains(want) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("{want:?} in time; read: {}", self.seen))
                .expect("stream")
                .expect("chunk");
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// The text of a UI page read with the session `cookie`.
pub async fn page_text(c: &reqwest::Client, url: String, cookie: &str) -> String {
    c.get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page text")
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
