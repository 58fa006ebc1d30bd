//! Benchmark against the test cluster: Kedge vs `kubectl apply --server-side` vs raw parallel SSA.
//!
//! Run: `cargo run --release -p kedge-engine --example bench [-- OBJECTS]` (default 1000 objects, half
//! ConfigMaps, half Deployments). Uses `KEDGE_TEST_KUBECONFIG` or starts the test cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use kedge_engine::{
    AppRef, AppSpec, DesiredObject, Engine, EngineConfig, SyncOptions, SyncPhase, WatchLiveObjects,
};
use kedge_testkit::TestCluster;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn objects(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")},
                    "data": {"index": i.to_string(), "payload": "x".repeat(64)}})
            } else {
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("web-{i}")},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("web-{i}")}},
                        "template": {"metadata": {"labels": {"app": format!("web-{i}")}},
                            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
            }
        })
        .collect()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("OBJECTS must be a number")?
        .unwrap_or(1000);
    let cluster = TestCluster::from_env().await?;
    let set = objects(n);
    println!(
        "objects: {n} ({} ConfigMaps, {} Deployments)",
        n.div_ceil(2),
        n / 2
    );

    // 1. Kedge: plan (dry-run every object) + sync.
    let ns_kedge = cluster.namespace("bench-kedge").await?;
    let (kc, counter) = kedge_testkit::recorded_client(cluster.kubeconfig()).await?;
    let engine = Engine::new(kc.clone(), EngineConfig::default())?;
    let spec = AppSpec::new(AppRef::new("kedge", "bench"), ns_kedge.name());
    let desired =
        || -> Vec<DesiredObject> { set.iter().cloned().map(DesiredObject::new).collect() };
    let t = Instant::now();
    let r0 = counter.len();
    let plan = engine.plan(&spec, desired(), &[]).await?;
    let plan_time = t.elapsed();
    let plan_requests = counter.len() - r0;
    let t_sync = Instant::now();
    let r1 = counter.len();
    let result = engine.sync(&plan, &SyncOptions::default()).await?;
    let sync_time = t_sync.elapsed();
    let sync_requests = counter.len() - r1;
    let kedge_time = t.elapsed();
    anyhow::ensure!(
        result.phase == SyncPhase::Succeeded,
        "sync failed: {}",
        result.message
    );
    println!(
        "kedge first sync: {:.2}s total (plan {:.2}s, {} requests; sync {:.2}s, {} requests)",
        secs(kedge_time),
        secs(plan_time),
        plan_requests,
        secs(sync_time),
        sync_requests
    );

    // 2. Replan of the unchanged set (GET-based live reads).
    // Let the simulator bring every Deployment up, so the live objects stop changing.
    let t = Instant::now();
    let settle =
        kedge_testkit::wait_for(Duration::from_secs(300), Duration::from_secs(1), || async {
            engine
                .health(&spec, &result.inventory)
                .await
                .is_ok_and(|h| h.status == kedge_engine::HealthStatus::Healthy)
        })
        .await;
    anyhow::ensure!(settle.is_ok(), "objects did not become healthy");
    println!(
        "all objects healthy {:.1}s after the sync",
        secs(t.elapsed())
    );
    let _ = engine.plan(&spec, desired(), &result.inventory).await?; // refresh after the rollout
    let stats = engine.stats();
    let r2 = counter.len();
    let t = Instant::now();
    let replan = engine.plan(&spec, desired(), &result.inventory).await?;
    let replan_time = t.elapsed();
    let replan_requests = counter.len() - r2;
    let delta = engine.stats().since(&stats);
    println!(
        "kedge replan (unchanged, GET reads): {:.3}s, {} requests ({} dry-runs, {} writes), synced={}",
        secs(replan_time),
        replan_requests,
        delta.dry_runs,
        delta.applies,
        replan.is_synced()
    );

    // 2b. Replan with watch-backed reads (what the controller uses): no request at all.
    let watched = Arc::new(WatchLiveObjects::new(kc.clone()));
    let cached = Engine::with_live_objects(kc.clone(), EngineConfig::default(), watched)?;
    let _ = cached.plan(&spec, desired(), &result.inventory).await?; // starts the watches, fills its cache
    let r3 = counter.len();
    let t = Instant::now();
    let replan2 = cached.plan(&spec, desired(), &result.inventory).await?;
    let replan2_time = t.elapsed();
    println!(
        "kedge replan (unchanged, watch-backed reads): {:.3}s, {} requests, synced={}",
        secs(replan2_time),
        counter.len() - r3,
        replan2.is_synced()
    );

    // 3. kubectl apply --server-side of the same files.
    let ns_kubectl = cluster.namespace("bench-kubectl").await?;
    let dir = tempfile::tempdir()?;
    for (i, o) in set.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("{i:05}.json")),
            serde_json::to_vec(o)?,
        )?;
    }
    let t = Instant::now();
    let out = cluster
        .kubectl([
            "apply",
            "--server-side",
            "-n",
            ns_kubectl.name(),
            "-f",
            &dir.path().display().to_string(),
        ])
        .await?;
    let kubectl_time = t.elapsed();
    anyhow::ensure!(out.success, "kubectl failed: {}", out.stderr);
    println!("kubectl apply --server-side: {:.2}s", secs(kubectl_time));

    // 4. Raw ceiling: every object as one SSA PATCH, all in parallel.
    let ns_raw = cluster.namespace("bench-raw").await?;
    let rc = cluster.client();
    let t = Instant::now();
    let futs = set.iter().map(|o| {
        let rc = rc.clone();
        let ns = ns_raw.name().to_string();
        async move {
            let kind = o["kind"].as_str().unwrap_or_default();
            let group = if kind == "Deployment" { "apps" } else { "" };
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
            let api: Api<DynamicObject> = Api::namespaced_with(rc, &ns, &ar);
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            api.patch(name, &PatchParams::apply("raw").force(), &Patch::Apply(o))
                .await
                .map(|_| ())
        }
    });
    let results = futures::future::join_all(futs).await;
    let raw_time = t.elapsed();
    let raw_failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "raw parallel SSA ({n} PATCHes at once): {:.2}s, {raw_failed} failed",
        secs(raw_time)
    );

    println!("ratios:");
    println!(
        "  kubectl / kedge (first sync incl. plan): {:.2}x",
        secs(kubectl_time) / secs(kedge_time)
    );
    println!(
        "  kedge (first sync incl. plan) / raw ceiling: {:.2}x",
        secs(kedge_time) / secs(raw_time)
    );
    println!(
        "  kedge sync alone / raw ceiling: {:.2}x",
        secs(sync_time) / secs(raw_time)
    );
    println!(
        "  kedge replan / first sync: {:.3}x",
        secs(replan_time) / secs(kedge_time)
    );
    for ns in [ns_kedge, ns_kubectl, ns_raw] {
        ns.cleanup().await?;
    }
    Ok(())
}
