//! Watch-backed live reads: a replan of an unchanged application makes no request at all.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kedge_engine::{
    Engine, EngineConfig, HealthStatus, SyncOptions, SyncPhase, SyncStatus, WatchLiveObjects,
};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

#[tokio::test]
async fn replans_from_watches_make_no_request() {
    let ctx = setup("eng-watch").await;
    let live = Arc::new(WatchLiveObjects::new(ctx.client.clone()));
    let engine =
        Engine::with_live_objects(ctx.client.clone(), EngineConfig::default(), live.clone())
            .unwrap();
    let spec = ctx.spec("watch");
    let set = || {
        desired(vec![
            deployment("web", "nginx:1.27", 1),
            config_map("a", json!({"k": "v"})),
            config_map("b", json!({"k": "w"})),
        ])
    };
    let plan = engine.plan(&spec, set(), &[]).await.unwrap();
    let result = engine.sync(&plan, &SyncOptions::default()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    kedge_testkit::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            engine
                .health(&spec, &result.inventory)
                .await
                .unwrap()
                .status
                == HealthStatus::Healthy
        },
    )
    .await
    .unwrap();
    // The watch cache catches up with the rollout; then replans are free.
    kedge_testkit::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let start = ctx.log.len();
            let plan = engine.plan(&spec, set(), &result.inventory).await.unwrap();
            plan.is_synced() && ctx.log.since(start).is_empty()
        },
    )
    .await
    .unwrap();
    let start = ctx.log.len();
    for _ in 0..3 {
        let plan = engine.plan(&spec, set(), &result.inventory).await.unwrap();
        assert!(plan.is_synced());
    }
    assert!(
        ctx.log.since(start).is_empty(),
        "{:?}",
        ctx.log.since(start)
    );
    // One watch per kind in the namespace.
    assert_eq!(live.watch_count(), 2);

    // Drift shows up through the watch.
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let cms: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ctx.ns.name(), &ar);
    let pp = PatchParams {
        field_manager: Some("someone".into()),
        ..Default::default()
    };
    cms.patch("b", &pp, &Patch::Merge(json!({"data": {"k": "drifted"}})))
        .await
        .unwrap();
    let drifted = kedge_testkit::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let plan = engine.plan(&spec, set(), &result.inventory).await.unwrap();
            plan.objects
                .into_iter()
                .find(|o| o.id.name == "b" && o.status == SyncStatus::OutOfSync)
        },
    )
    .await
    .unwrap();
    assert_eq!(drifted.drift[0].field, "data.k");
    assert_eq!(drifted.drift[0].managers[0].manager, "someone");
}
