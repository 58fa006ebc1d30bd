//! Shared helpers of the engine's cluster tests: a request-counting client and object builders.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use kedge_engine::{AppRef, AppSpec, DesiredObject, Engine, EngineConfig};
use kedge_testkit::TestCluster;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// One request seen by the counting layer.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub path_and_query: String,
}

/// Records every request that goes through the client.
#[derive(Clone, Default)]
pub struct RequestLog(pub Arc<Mutex<Vec<Seen>>>);

impl RequestLog {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn since(&self, start: usize) -> Vec<Seen> {
        self.0.lock().unwrap()[start..].to_vec()
    }
}

impl<S> tower::Layer<S> for RequestLog {
    type Service = Counting<S>;
    fn layer(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            log: self.clone(),
        }
    }
}

/// The service wrapper that records requests.
#[derive(Clone)]
pub struct Counting<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<http::Request<B>> for Counting<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.log.0.lock().unwrap().push(Seen {
            method: req.method().clone(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        });
        self.inner.call(req)
    }
}

/// A client for the test cluster whose requests are recorded.
pub async fn counting_client(cluster: &TestCluster) -> (kube::Client, RequestLog) {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let log = RequestLog::default();
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&log)
        .build();
    (client, log)
}

pub struct Ctx {
    pub cluster: TestCluster,
    pub ns: kedge_testkit::TestNamespace,
    pub engine: Engine,
    pub log: RequestLog,
    pub client: kube::Client,
}

pub async fn setup(prefix: &str) -> Ctx {
    let cluster = TestCluster::from_env().await.unwrap();
    let ns = cluster.namespace(prefix).await.unwrap();
    let (client, log) = counting_client(&cluster).await;
    let config = EngineConfig {
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let engine = Engine::new(client.clone(), config).unwrap();
    Ctx {
        cluster,
        ns,
        engine,
        log,
        client,
    }
}

impl Ctx {
    pub fn spec(&self, app: &str) -> AppSpec {
        AppSpec::new(AppRef::new("kedge", app), self.ns.name())
    }
}

pub fn desired(objects: Vec<Value>) -> Vec<DesiredObject> {
    objects
        .into_iter()
        .enumerate()
        .map(|(i, object)| DesiredObject {
            object,
            source: Some(format!("test/{i}.yaml")),
        })
        .collect()
}

pub fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// A Deployment written with none of the server defaults.
pub fn deployment(name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

pub fn with_annotations(mut obj: Value, ann: Value) -> Value {
    obj["metadata"]["annotations"] = ann;
    obj
}

/// Requests that are server-side apply dry-runs.
pub fn dry_runs(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| s.method == http::Method::PATCH && s.path_and_query.contains("dryRun=All"))
        .count()
}

/// Requests that write (PATCH without dry-run, POST, PUT, DELETE).
pub fn writes(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| {
            matches!(
                s.method,
                http::Method::PATCH | http::Method::POST | http::Method::PUT | http::Method::DELETE
            ) && !s.path_and_query.contains("dryRun=All")
        })
        .count()
}

/// A unique suffix for cluster-scoped names.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}{}",
        std::process::id() % 10000,
        (nanos / 1000 + N.fetch_add(1, Ordering::Relaxed)) % 100000
    )
}
