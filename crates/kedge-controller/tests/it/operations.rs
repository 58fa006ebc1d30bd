//! End-to-end tests of requested operations: recorded as Running (with what they wait for) before their annotation
//! is cleared, a newer request written meanwhile kept, an operation left Running by a controller that went away
//! finished by the next one; and of the test cluster's autoscalers, which must get a status as in a real cluster.
//!
//! Run: `cargo test -p kedge-controller --test it operations::`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use kedge_api::{
    Application, OPERATION_ANNOTATION, Operation, OperationPhase, SyncOperation,
    TERMINATE_ANNOTATION,
};
use kedge_testkit::{TestCluster, wait_for};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

/// A Sync hook Job in wave 0 that does not complete while it is suspended: a sync waits on it.
const GATE: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: gate\n  annotations:\n    kedge.dev/hook: Sync\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: busybox\n";

fn request(who: &str, at: &str) -> Operation {
    Operation {
        sync: Some(SyncOperation::default()),
        initiated_by: who.into(),
        requested_at: at.into(),
        ..Default::default()
    }
}

async fn ask(env: &Env, name: &str, op: &Operation) {
    env.patch_app(
        name,
        json!({ "metadata": { "annotations": { OPERATION_ANNOTATION: op.to_annotation() } } }),
    )
    .await;
}

/// Whether the application's operation is `op` in `phase`.
fn operation_is(app: &Application, op: &Operation, phase: OperationPhase) -> bool {
    app.status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .is_some_and(|o| o.phase == phase && o.operation.as_ref() == Some(op))
}

fn operation_message(app: &Application) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .map(|o| o.message.clone())
        .unwrap_or_default()
}

/// Lets the gate Job complete: resumes it whenever it exists suspended (a sync that recreates it recreates it
/// suspended, as Git has it). Runs until aborted.
fn open_gate(env: &Env) -> tokio::task::JoinHandle<()> {
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), env.ns());
    tokio::spawn(async move {
        loop {
            if let Ok(Some(job)) = jobs.get_opt("gate").await
                && job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
            {
                let _ = jobs
                    .patch(
                        "gate",
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "spec": { "suspend": false } })),
                    )
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

/// Commits a ConfigMap, the gate hook in wave 0 and ConfigMap `after` in wave 1, starts a controller and creates
/// application `demo` (no automation), compared once.
async fn two_waves_held_by_a_hook(env: &Env) -> RunningController {
    env.write("app/settings.yaml", &config_map("settings", "k", "v"));
    env.write("app/gate.yaml", GATE);
    env.write(
        "app/after.yaml",
        &config_map_annotated("after", "1", &[("kedge.dev/sync-wave", "1")]),
    );
    env.commit_push("two waves, the first held by its hook");
    let controller = env.start_controller("c1");
    env.create_app("demo", "app", json!({})).await;
    env.wait_app("demo", "compared", |a| {
        a.status.as_ref().is_some_and(|s| s.sync.revision.is_some())
    })
    .await;
    controller
}

/// Waits until `op` runs, held by the gate hook.
async fn wait_held(env: &Env, op: &Operation) {
    env.wait_app("demo", "the operation waits for its hook", |a| {
        operation_is(a, op, OperationPhase::Running)
            && operation_message(a).contains("waiting for Job gate")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_operation_says_what_it_waits_for_and_a_newer_request_is_not_lost() {
    let env = Env::new("op-queue").await;
    env.write("app/settings.yaml", &config_map("settings", "k", "v"));
    env.write("app/gate.yaml", GATE);
    env.commit_push("a sync held by its hook");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", json!({})).await;
    env.wait_app("demo", "compared", |a| {
        a.status.as_ref().is_some_and(|s| s.sync.revision.is_some())
    })
    .await;

    let first = request("first", "2026-01-01T00:00:01Z");
    ask(&env, "demo", &first).await;
    // Running, with the request recorded and its annotation cleared, and saying what it waits for.
    let app = env
        .wait_app("demo", "the first operation waits for its hook", |a| {
            operation_is(a, &first, OperationPhase::Running)
                && operation_message(a).contains("waiting for Job gate")
        })
        .await;
    assert!(
        operation_message(&app).starts_with("Sync hook"),
        "{}",
        operation_message(&app)
    );
    let started_at = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.clone())
        .and_then(|o| o.started_at);
    assert!(started_at.is_some());

    // A second request while the first runs: it stays until the first is done, then runs.
    let second = request("second", "2026-01-01T00:00:02Z");
    ask(&env, "demo", &second).await;
    let held = env.app("demo").await;
    assert!(operation_is(&held, &first, OperationPhase::Running));
    assert!(
        held.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OPERATION_ANNOTATION))
    );
    let gate = open_gate(&env);
    env.wait_app("demo", "the second operation ran", |a| {
        operation_is(a, &second, OperationPhase::Succeeded)
    })
    .await;
    gate.abort();
    let app = env.app("demo").await;
    assert!(
        app.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(OPERATION_ANNOTATION)),
        "the second request was cleared once recorded"
    );
    // Events are published in the background: they may follow the status.
    let synced = wait_for(STEP, POLL, || async {
        Some(env.count_events("demo", "SyncSucceeded").await).filter(|n| *n >= 2)
    })
    .await;
    assert!(
        synced.is_ok(),
        "both requests synced ({} SyncSucceeded events)",
        env.count_events("demo", "SyncSucceeded").await
    );
    // Two syncs of one revision: one history entry.
    let history = app.status.map(|s| s.history).unwrap_or_default();
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(history[0].attempts >= 2, "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_interrupted_by_a_crash_is_finished_by_the_next_controller() {
    let env = Env::new("op-resume").await;
    let controller = two_waves_held_by_a_hook(&env).await;
    let op = request("user", "2026-01-01T00:00:03Z");
    ask(&env, "demo", &op).await;
    wait_held(&env, &op).await;
    controller.kill();

    // The crash leaves the operation Running, its annotation gone: only the status remembers it.
    let app = env.app("demo").await;
    assert!(operation_is(&app, &op, OperationPhase::Running));
    assert!(
        app.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(OPERATION_ANNOTATION))
    );
    assert!(
        env.config_map_data("after").await.is_none(),
        "wave 1 was applied"
    );

    let gate = open_gate(&env);
    let _controller = env.start_controller("c1");
    let app = env
        .wait_app("demo", "the next controller finished the operation", |a| {
            operation_is(a, &op, OperationPhase::Succeeded)
        })
        .await;
    gate.abort();
    let state = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.clone())
        .expect("state");
    assert_eq!(state.resumed, 1);
    assert!(state.finished_at.is_some());
    assert!(
        env.config_map_data("after").await.is_some(),
        "wave 1 applied by the resumed sync"
    );
    env.wait_event("demo", "OperationResumed", |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_sync_stops_where_it_was_and_is_not_resumed() {
    let env = Env::new("op-terminate").await;
    let controller = two_waves_held_by_a_hook(&env).await;

    // Terminated while it waits on its hook: Failed, wave 1 never applied, the request cleared.
    let op = request("user", "2026-01-01T00:00:04Z");
    ask(&env, "demo", &op).await;
    wait_held(&env, &op).await;
    env.patch_app(
        "demo",
        json!({ "metadata": { "annotations": { TERMINATE_ANNOTATION: "2026-01-01T00:00:05Z" } } }),
    )
    .await;
    let app = env
        .wait_app("demo", "the operation terminated", |a| {
            operation_is(a, &op, OperationPhase::Failed)
                && a.metadata
                    .annotations
                    .as_ref()
                    .is_none_or(|m| !m.contains_key(TERMINATE_ANNOTATION))
        })
        .await;
    assert!(
        operation_message(&app).contains("terminated on request"),
        "{}",
        operation_message(&app)
    );
    assert!(
        env.config_map_data("after").await.is_none(),
        "wave 1 was applied"
    );
    env.wait_event("demo", "OperationTerminated", |m| {
        m.contains("stopped where it was")
    })
    .await;
    assert_eq!(env.count_events("demo", "SyncSucceeded").await, 0);

    // Terminated while no controller runs it (left Running by a crash): not resumed by the next one.
    let again = request("user", "2026-01-01T00:00:06Z");
    ask(&env, "demo", &again).await;
    wait_held(&env, &again).await;
    controller.kill();
    env.patch_app(
        "demo",
        json!({ "metadata": { "annotations": { TERMINATE_ANNOTATION: "2026-01-01T00:00:07Z" } } }),
    )
    .await;
    let _controller = env.start_controller("c2");
    let app = env
        .wait_app(
            "demo",
            "the interrupted operation ended, not resumed",
            |a| operation_is(a, &again, OperationPhase::Failed),
        )
        .await;
    assert!(
        operation_message(&app).contains("terminated on request"),
        "{}",
        operation_message(&app)
    );
    assert_eq!(env.count_events("demo", "OperationResumed").await, 0);
    assert!(
        env.config_map_data("after").await.is_none(),
        "wave 1 was applied"
    );
}

/// The test cluster gives HorizontalPodAutoscalers the status the HPA controller writes, so that they become
/// Healthy as in a real cluster (without it, every sync with an autoscaler waited out the wave timeout). Runs on
/// the suite's cluster (`testcluster/up` warns when a running one is older than the simulator's sources).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscalers_get_a_status_and_become_healthy() {
    let cluster = TestCluster::from_env().await.expect("test cluster");
    let client = cluster.client();
    let ns = cluster.namespace("hpa").await.expect("namespace");
    let apply = |value: serde_json::Value| {
        let client = client.clone();
        let ns = ns.name().to_owned();
        async move {
            let obj: DynamicObject = serde_json::from_value(value).expect("object");
            let (group, version) = obj
                .types
                .as_ref()
                .map(|t| match t.api_version.split_once('/') {
                    Some((g, v)) => (g.to_owned(), v.to_owned()),
                    None => (String::new(), t.api_version.clone()),
                })
                .expect("types");
            let kind = obj.types.as_ref().map(|t| t.kind.clone()).expect("kind");
            let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &kind);
            let (ar, _) = kube::discovery::pinned_kind(&client, &gvk)
                .await
                .expect("kind");
            let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
            api.create(&PostParams::default(), &obj)
                .await
                .expect("create");
        }
    };
    apply(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "web" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
            "minReplicas": 2, "maxReplicas": 4,
        }
    }))
    .await;
    apply(web_deployment()).await;
    let hpas: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
        )),
    );
    let engine_health = kedge_engine::HealthChecker::new(&[]).expect("health checker");
    let live = wait_for(Duration::from_secs(40), POLL, || async {
        let hpa = hpas.get_opt("web").await.ok().flatten()?;
        let value = serde_json::to_value(&hpa).ok()?;
        (engine_health.assess(Some(&value)).status == kedge_engine::HealthStatus::Healthy)
            .then_some(value)
    })
    .await
    .expect("the autoscaler becomes Healthy");
    let status = &live["status"];
    assert_eq!(status["currentReplicas"], 3, "{status}");
    assert_eq!(status["desiredReplicas"], 3, "{status}");
    let conditions: Vec<(String, String)> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (t, s) in [
        ("AbleToScale", "True"),
        ("ScalingActive", "True"),
        ("ScalingLimited", "False"),
    ] {
        assert!(
            conditions.contains(&(t.to_owned(), s.to_owned())),
            "{conditions:?}"
        );
    }

    // An autoscaler whose target never appears reports it, as the HPA controller does: Degraded, not waiting.
    apply(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "orphan" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "missing" },
            "maxReplicas": 2,
        }
    }))
    .await;
    let degraded = wait_for(Duration::from_secs(40), POLL, || async {
        let hpa = hpas.get_opt("orphan").await.ok().flatten()?;
        let value = serde_json::to_value(&hpa).ok()?;
        let h = engine_health.assess(Some(&value));
        (h.status == kedge_engine::HealthStatus::Degraded).then_some(h.message)
    })
    .await
    .expect("the orphan autoscaler becomes Degraded");
    assert!(degraded.contains("FailedGetScale"), "{degraded}");
    ns.cleanup().await.expect("cleanup");
}

fn web_deployment() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [ { "name": "web", "image": "nginx:1.27" } ] }
            }
        }
    })
}
