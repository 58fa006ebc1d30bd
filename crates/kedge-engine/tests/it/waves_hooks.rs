//! Sync waves and hooks against the test cluster (whose simulator completes Jobs and Deployments after ~1 s).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_engine::{Action, HookPhase, SyncOptions, SyncPhase};
use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn api(client: &kube::Client, ns: &str, group: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn job(name: &str, image: &str, annotations: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "run", "image": image}]}}}})
}

fn wave(obj: Value, w: i64) -> Value {
    with_annotations(obj, json!({"kedge.dev/sync-wave": w.to_string()}))
}

fn options() -> SyncOptions {
    SyncOptions {
        wave_timeout: Duration::from_secs(20),
        hook_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn waves_and_hooks_run_in_order() {
    let ctx = setup("eng-waves").await;
    let spec = ctx.spec("waves");
    let set = desired(vec![
        wave(config_map("late", json!({})), 1),
        deployment("app", "nginx:1.27", 1),
        wave(config_map("early", json!({})), -1),
        job(
            "migrate",
            "migrate:1",
            json!({"kedge.dev/hook": "PreSync", "kedge.dev/hook-delete-policy": "HookSucceeded"}),
        ),
        job("smoke", "smoke:1", json!({"kedge.dev/hook": "PostSync"})),
    ]);
    let plan = ctx.engine.plan(&spec, set, &[]).await.unwrap();
    assert_eq!(plan.hooks.len(), 2);
    assert_eq!(plan.objects.len(), 3);
    let result = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);

    let hooks: Vec<(&str, HookPhase, bool)> = result
        .hooks
        .iter()
        .map(|h| (h.id.name.as_str(), h.phase, h.succeeded))
        .collect();
    assert_eq!(
        hooks,
        vec![
            ("migrate", HookPhase::PreSync, true),
            ("smoke", HookPhase::PostSync, true)
        ]
    );
    let order: Vec<&str> = result.outcomes.iter().map(|o| o.id.name.as_str()).collect();
    assert_eq!(order, vec!["early", "app", "late"]);
    // Hooks are not part of the inventory.
    let mut names: Vec<&str> = result.inventory.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["app", "early", "late"]);

    // Wave 1 started only once the wave-0 Deployment was available: the cluster's last write of the Deployment
    // (its status as available; nothing changes it after) has an older resourceVersion than the creation of the
    // wave-1 ConfigMap (etcd's revisions order every write of the cluster).
    let deploy = api(&ctx.client, ctx.ns.name(), "apps", "Deployment")
        .get("app")
        .await
        .unwrap();
    assert!(
        deploy.data["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True")
    );
    let late = api(&ctx.client, ctx.ns.name(), "", "ConfigMap")
        .get("late")
        .await
        .unwrap();
    let revision = |o: &DynamicObject| -> u64 {
        o.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(
        revision(&late) > revision(&deploy),
        "wave 1 (revision {}) written before the Deployment became available (revision {})",
        revision(&late),
        revision(&deploy)
    );

    // The PreSync Job was deleted after it succeeded; the PostSync one was kept.
    let jobs = api(&ctx.client, ctx.ns.name(), "batch", "Job");
    kedge_testkit::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { jobs.get_opt("migrate").await.unwrap().is_none() },
    )
    .await
    .unwrap();
    assert!(jobs.get_opt("smoke").await.unwrap().is_some());

    // A second sync recreates hooks (BeforeHookCreation is the default for "smoke").
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![
                wave(config_map("late", json!({})), 1),
                deployment("app", "nginx:1.27", 1),
                wave(config_map("early", json!({})), -1),
                job("smoke", "smoke:1", json!({"kedge.dev/hook": "PostSync"})),
            ]),
            &result.inventory,
        )
        .await
        .unwrap();
    let uid_before = jobs.get("smoke").await.unwrap().metadata.uid;
    let again = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(again.phase, SyncPhase::Succeeded, "{}", again.message);
    assert!(again.outcomes.iter().all(|o| o.action == Action::Unchanged));
    let uid_after = jobs.get("smoke").await.unwrap().metadata.uid;
    assert_ne!(uid_before, uid_after);
}

#[tokio::test]
async fn failing_presync_hook_stops_the_sync() {
    let ctx = setup("eng-presync").await;
    let spec = ctx.spec("presync");
    let set = desired(vec![
        config_map("payload", json!({})),
        job(
            "check",
            "fail-check:1",
            json!({"kedge.dev/hook": "PreSync"}),
        ),
        with_annotations(
            config_map("alert", json!({"sync": "failed"})),
            json!({"kedge.dev/hook": "SyncFail"}),
        ),
    ]);
    let plan = ctx.engine.plan(&spec, set, &[]).await.unwrap();
    let result = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Failed);
    assert!(result.message.contains("PreSync"), "{}", result.message);
    let hooks: Vec<(&str, HookPhase, bool)> = result
        .hooks
        .iter()
        .map(|h| (h.id.name.as_str(), h.phase, h.succeeded))
        .collect();
    assert_eq!(
        hooks,
        vec![
            ("check", HookPhase::PreSync, false),
            ("alert", HookPhase::SyncFail, true)
        ]
    );
    assert!(
        result.hooks[0].message.contains("BackoffLimitExceeded"),
        "{:?}",
        result.hooks[0]
    );
    assert_eq!(result.outcomes[0].action, Action::Skipped);
    assert!(result.inventory.is_empty());
    let cms = api(&ctx.client, ctx.ns.name(), "", "ConfigMap");
    assert!(cms.get_opt("payload").await.unwrap().is_none());
    assert!(cms.get_opt("alert").await.unwrap().is_some());
}

#[tokio::test]
async fn a_degraded_wave_blocks_the_next() {
    let ctx = setup("eng-gate").await;
    let spec = ctx.spec("gate");
    let set = desired(vec![
        deployment("broken", "registry/fail-app:1", 1),
        wave(config_map("after", json!({})), 1),
    ]);
    let plan = ctx.engine.plan(&spec, set, &[]).await.unwrap();
    let result = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Failed);
    assert!(result.message.contains("Degraded"), "{}", result.message);
    assert!(
        result.message.contains("ProgressDeadlineExceeded"),
        "{}",
        result.message
    );
    let action = |name: &str| {
        result
            .outcomes
            .iter()
            .find(|o| o.id.name == name)
            .map(|o| o.action)
    };
    assert_eq!(action("broken"), Some(Action::Created));
    assert_eq!(action("after"), Some(Action::Skipped));
    let names: Vec<&str> = result.inventory.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["broken"]);
    assert!(
        api(&ctx.client, ctx.ns.name(), "", "ConfigMap")
            .get_opt("after")
            .await
            .unwrap()
            .is_none()
    );
}
