//! Shared helpers of the engine's cluster tests: a client whose requests are recorded, and object builders.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use kedge_engine::{AppRef, AppSpec, DesiredObject, Engine, EngineConfig};
use kedge_testkit::{RequestLog, SentRequest, TestCluster};
use serde_json::{Value, json};

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
    let (client, log) = kedge_testkit::recorded_client(cluster.kubeconfig())
        .await
        .unwrap();
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

    /// Plans `objects` for `spec` from an empty inventory and syncs them with the default options; the sync
    /// must succeed.
    pub async fn sync_new(&self, spec: &AppSpec, objects: Vec<Value>) -> kedge_engine::SyncResult {
        let plan = self.engine.plan(spec, desired(objects), &[]).await.unwrap();
        let options = kedge_engine::SyncOptions::default();
        let result = self.engine.sync(&plan, &options).await.unwrap();
        assert_eq!(
            result.phase,
            kedge_engine::SyncPhase::Succeeded,
            "{}",
            result.message
        );
        result
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
pub fn dry_runs(seen: &[SentRequest]) -> usize {
    seen.iter()
        .filter(|s| s.method == http::Method::PATCH && s.is_dry_run())
        .count()
}

/// Requests that write (PATCH without dry-run, POST, PUT, DELETE).
pub fn writes(seen: &[SentRequest]) -> usize {
    seen.iter().filter(|s| s.is_write()).count()
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
