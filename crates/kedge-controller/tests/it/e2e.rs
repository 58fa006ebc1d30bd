//! End-to-end tests of the GitOps loop: the controller runs in-process against the test cluster and loopback git
//! servers; each test has its own namespace (Applications, objects, Lease), repository and controller.
//!
//! Run: `cargo test -p kedge-controller --test it e2e:: -- --test-threads 8` (the tests mostly wait on the cluster, so
//! more threads than cores is fine). `RUST_LOG=kedge_controller=debug` shows the controller's log.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kedge_api::{
    Application, HealthCode, OPERATION_ANNOTATION, Operation, RESOURCES_FINALIZER, ResourceStatus,
    RollbackOperation, SyncCode,
};
use kedge_testkit::{HttpAuth, wait_for};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_is_synced_and_reported() {
    let env = Env::new("e2e-sync").await;
    env.write(
        "app/settings.yaml",
        &config_map("settings", "color", "blue"),
    );
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    let first = env.commit_push("first");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;

    let app = env.wait_synced("demo", &first).await;
    let status = app.status.expect("status");
    assert_eq!(status.health.status, HealthCode::Healthy);
    let mut listed: Vec<(String, String, SyncCode)> = status
        .resources
        .iter()
        .map(|r| {
            (
                r.object.kind.to_string(),
                r.object.name.to_string(),
                r.status,
            )
        })
        .collect();
    listed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        listed,
        vec![
            ("ConfigMap".into(), "settings".into(), SyncCode::Synced),
            ("Deployment".into(), "web".into(), SyncCode::Synced),
        ]
    );
    assert_eq!(status.inventory.len(), 2, "{:?}", status.inventory);
    let last = status.history.last().expect("a history entry");
    assert_eq!(last.revision, first);
    assert_eq!(last.result, kedge_api::HistoryResult::Succeeded);
    assert_eq!(last.initiated_by, "automated");
    env.wait_event("demo", "SyncStarted", |m| m.contains(&first[..7]))
        .await;
    env.wait_event("demo", "SyncSucceeded", |m| m.contains(&first[..7]))
        .await;
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "color": "blue" }))
    );
    assert_eq!(env.replicas("web").await, Some(1));
    let live = env
        .object("", "v1", "ConfigMap", "settings")
        .await
        .expect("settings");
    let tracking = live
        .metadata
        .annotations
        .unwrap_or_default()
        .get("kedge.dev/tracking-id")
        .cloned()
        .unwrap_or_default();
    assert!(tracking.contains("demo"), "tracking id: {tracking:?}");

    // A second commit is picked up by the poller and synced.
    env.write(
        "app/settings.yaml",
        &config_map("settings", "color", "green"),
    );
    let second = env.commit_push("second");
    env.wait_synced("demo", &second).await;
    env.wait_config_map("settings", "color", "green").await;
    let app = env.app("demo").await;
    let history = app.status.expect("status").history;
    assert_eq!(
        history
            .iter()
            .map(|h| h.revision.as_str())
            .collect::<Vec<_>>(),
        vec![first.as_str(), second.as_str()]
    );
}

/// Asks for a comparison now and waits until the controller has done it (the annotation is cleared and the status
/// written after it): lets a test assert that something did *not* happen without sleeping.
async fn refresh_and_wait(env: &Env, name: &str) {
    let before = env
        .app(name)
        .await
        .status
        .and_then(|s| s.reconciled_at)
        .unwrap_or_default();
    env.patch_app(
        name,
        json!({ "metadata": { "annotations": { "kedge.dev/refresh": "normal" } } }),
    )
    .await;
    env.wait_app(name, "refreshed", |a| {
        !a.metadata
            .annotations
            .as_ref()
            .is_some_and(|m| m.contains_key("kedge.dev/refresh"))
            && a.status
                .as_ref()
                .and_then(|s| s.reconciled_at.as_deref())
                .is_some_and(|t| t != before)
    })
    .await;
}

fn resource<'a>(app: &'a Application, kind: &str, name: &str) -> Option<&'a ResourceStatus> {
    app.status
        .as_ref()?
        .resources
        .iter()
        .find(|r| r.object.kind == kind && r.object.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_edit_is_reverted_with_attribution() {
    let env = Env::new("e2e-heal").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    env.write(
        "app/settings.yaml",
        &config_map("settings", "color", "blue"),
    );
    let sha = env.commit_push("first");
    let (_controller, addr) = start_with_metrics(&env, "c1", |_| {});
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &sha).await;

    env.set_replicas("web", 3, "kubectl-edit").await;
    let edited = Instant::now();
    wait_for(STEP, Duration::from_millis(20), || async {
        env.replicas("web").await == Some(1)
    })
    .await
    .expect("the edit is reverted");
    let took = edited.elapsed();
    eprintln!("drift reverted in {took:?}");
    assert!(took < Duration::from_secs(10), "revert took {took:?}");
    let event = env
        .wait_event("demo", "DriftDetected", |m| {
            m.contains("kubectl-edit") && m.contains("spec.replicas")
        })
        .await;
    assert!(
        event.message.unwrap_or_default().contains("Deployment"),
        "the event names the object"
    );
    env.wait_event("demo", "DriftReverted", |_| true).await;
    let reverted = format!(
        "kedge_app_drift_reverted_total{{namespace=\"{}\",name=\"demo\",project=\"default\",\
         cluster=\"in-cluster\",phase=\"Succeeded\"}}",
        env.ns()
    );
    assert_eq!(metric(addr, &reverted), 1.0, "{reverted}");
    // An object deleted by hand is recreated.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), env.ns());
    let uid = cms.get("settings").await.expect("settings").metadata.uid;
    cms.delete("settings", &DeleteParams::default())
        .await
        .expect("delete by hand");
    let deleted = Instant::now();
    wait_for(STEP, Duration::from_millis(20), || async {
        cms.get_opt("settings")
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.metadata.uid != uid)
    })
    .await
    .expect("the deleted ConfigMap is recreated");
    // By the watch, not by the periodic resync (30 s here).
    assert!(
        deleted.elapsed() < Duration::from_secs(10),
        "recreated after {:?}",
        deleted.elapsed()
    );
    // The reverts are recorded as self-heal syncs, and the application is clean again.
    env.wait_app("demo", "a self-heal in the history, Synced", |a| {
        synced_at(a, &sha)
            && a.status
                .as_ref()
                .and_then(|s| s.history.last())
                .is_some_and(|h| {
                    h.initiated_by == "self-heal" && h.result == kedge_api::HistoryResult::Succeeded
                })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_edit_without_self_heal_is_reported_not_reverted() {
    let env = Env::new("e2e-noheal").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    let sha = env.commit_push("first");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, false)).await;
    env.wait_synced("demo", &sha).await;

    env.set_replicas("web", 3, "kubectl-edit").await;
    let app = env
        .wait_app("demo", "OutOfSync with the drift attributed", |a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.sync.status == SyncCode::OutOfSync)
                && resource(a, "Deployment", "web").is_some_and(|r| {
                    r.status == SyncCode::OutOfSync
                        && r.message.as_deref().is_some_and(|m| {
                            m.contains("kubectl-edit") && m.contains("spec.replicas")
                        })
                })
        })
        .await;
    assert_eq!(
        condition(&app, "Ready").map(|c| c.reason.as_str()),
        Some("OutOfSync")
    );
    // Another full comparison later, the edit is still there and nothing was synced.
    refresh_and_wait(&env, "demo").await;
    assert_eq!(env.replicas("web").await, Some(3));
    assert_eq!(env.count_events("demo", "SyncStarted").await, 1);
    // The drift is reported once (an Event, and a notice for Alerts), not at every comparison that still sees it.
    assert_eq!(env.count_events("demo", "DriftDetected").await, 1);
    let app = env.app("demo").await;
    assert_eq!(app.status.expect("status").sync.status, SyncCode::OutOfSync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_removed_from_git_is_pruned_or_reported() {
    let env = Env::new("e2e-prune").await;
    env.write("pruned/a.yaml", &config_map("pa", "v", "1"));
    env.write("pruned/b.yaml", &config_map("pb", "v", "1"));
    env.write("kept/a.yaml", &config_map("ka", "v", "1"));
    env.write("kept/b.yaml", &config_map("kb", "v", "1"));
    let first = env.commit_push("first");
    let _controller = env.start_controller("c1");
    env.create_app("pruner", "pruned", automated(true, true))
        .await;
    env.create_app("keeper", "kept", automated(false, true))
        .await;
    env.wait_synced("pruner", &first).await;
    env.wait_synced("keeper", &first).await;

    env.work.remove("pruned/b.yaml").expect("remove");
    env.work.remove("kept/b.yaml").expect("remove");
    let second = env.commit_push("remove b");

    // With prune: deleted, and the application is clean again.
    env.wait_gone("", "v1", "ConfigMap", "pb").await;
    env.wait_event("pruner", "Pruned", |m| m.contains("pb"))
        .await;
    let app = env.wait_synced("pruner", &second).await;
    let status = app.status.expect("status");
    assert!(
        status.inventory.iter().all(|r| r.name != "pb"),
        "{:?}",
        status.inventory
    );
    assert!(env.config_map_data("pa").await.is_some());

    // Without prune: still there, reported OutOfSync, for as long as it stays in the cluster.
    let app = env
        .wait_app("keeper", "reports kb as removed from Git", |a| {
            a.status.as_ref().is_some_and(|s| {
                s.sync.revision.as_deref() == Some(second.as_str())
                    && s.sync.status == SyncCode::OutOfSync
            }) && resource(a, "ConfigMap", "kb").is_some_and(|r| {
                r.message
                    .as_deref()
                    .is_some_and(|m| m.contains("removed from Git; requires pruning"))
            })
        })
        .await;
    assert_eq!(
        condition(&app, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    refresh_and_wait(&env, "keeper").await;
    assert!(env.config_map_data("kb").await.is_some(), "kb was pruned");
    let app = env.app("keeper").await;
    assert_eq!(
        app.status.as_ref().map(|s| s.sync.status),
        Some(SyncCode::OutOfSync)
    );
    assert!(resource(&app, "ConfigMap", "kb").is_some());
    assert_eq!(env.count_events("keeper", "Pruned").await, 0);
    // Nothing a self-heal could fix without prune: no self-heal churn.
    assert_eq!(env.count_events("keeper", "DriftDetected").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_revert_restores_the_previous_state() {
    let env = Env::new("e2e-revert").await;
    env.write(
        "app/settings.yaml",
        &config_map("settings", "color", "blue"),
    );
    let first = env.commit_push("blue");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &first).await;

    env.write("app/settings.yaml", &config_map("settings", "color", "red"));
    env.write("app/extra.yaml", &config_map("extra", "v", "1"));
    let second = env.commit_push("red");
    env.wait_synced("demo", &second).await;
    env.wait_config_map("settings", "color", "red").await;
    assert!(env.config_map_data("extra").await.is_some());

    env.work
        .git(["revert", "--no-edit", "HEAD"])
        .expect("git revert");
    let reverted = env.work.head().expect("head");
    env.push();
    env.wait_synced("demo", &reverted).await;
    env.wait_config_map("settings", "color", "blue").await;
    env.wait_gone("", "v1", "ConfigMap", "extra").await;
}

/// Asks for a rollback of application `name` to history entry `id`, as `kedge app rollback` does.
async fn request_rollback(env: &Env, name: &str, id: i64) {
    let op = Operation {
        rollback: Some(RollbackOperation { id, prune: false }),
        initiated_by: "e2e".into(),
        ..Default::default()
    };
    env.patch_app(
        name,
        json!({ "metadata": { "annotations": { OPERATION_ANNOTATION: op.to_annotation() } } }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_history_entry_suspends_then_resume_returns_to_head() {
    let env = Env::new("e2e-rollback").await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let v1 = env.commit_push("v1");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &v1).await;
    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    let v2 = env.commit_push("v2");
    let app = env.wait_synced("demo", &v2).await;
    let history = app.status.expect("status").history;
    let entry = history
        .iter()
        .find(|h| h.revision == v1)
        .expect("v1 in history");

    request_rollback(&env, "demo", entry.id).await;
    env.wait_config_map("settings", "version", "1").await;
    let app = env
        .wait_app("demo", "suspended after the rollback", |a| {
            a.spec.suspend
                && condition(a, "Suspended").is_some_and(|c| c.status == "True")
                && a.status
                    .as_ref()
                    .and_then(|s| s.history.last())
                    .is_some_and(|h| h.revision == v1 && h.initiated_by == "rollback")
        })
        .await;
    assert!(
        !app.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(OPERATION_ANNOTATION),
        "the operation annotation is cleared"
    );
    env.wait_event("demo", "RolledBack", |m| {
        m.contains(&format!("history id {}", entry.id))
    })
    .await;
    // Suspended: HEAD (v2) is not applied again.
    refresh_and_wait(&env, "demo").await;
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "version": "1" }))
    );

    env.patch_app("demo", json!({ "spec": { "suspend": false } }))
        .await;
    env.wait_synced("demo", &v2).await;
    env.wait_config_map("settings", "version", "2").await;
    let app = env.app("demo").await;
    assert!(condition(&app, "Suspended").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_new_commits_until_resumed() {
    let env = Env::new("e2e-suspend").await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let v1 = env.commit_push("v1");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &v1).await;

    env.patch_app("demo", json!({ "spec": { "suspend": true } }))
        .await;
    env.wait_app("demo", "Suspended condition", |a| {
        condition(a, "Suspended").is_some_and(|c| c.status == "True")
    })
    .await;
    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    let v2 = env.commit_push("v2");
    env.wait_app("demo", "sees v2 but does not apply it", |a| {
        a.status.as_ref().is_some_and(|s| {
            s.sync.revision.as_deref() == Some(v2.as_str()) && s.sync.status == SyncCode::OutOfSync
        })
    })
    .await;
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "version": "1" }))
    );
    // Self-heal is suspended too.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), env.ns());
    cms.patch(
        "settings",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(&json!({ "data": { "version": "edited" } })),
    )
    .await
    .expect("edit");
    refresh_and_wait(&env, "demo").await;
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "version": "edited" }))
    );
    assert_eq!(env.count_events("demo", "SyncStarted").await, 1);

    env.patch_app("demo", json!({ "spec": { "suspend": false } }))
        .await;
    env.wait_synced("demo", &v2).await;
    env.wait_config_map("settings", "version", "2").await;
}

/// Deletes a cluster-scoped CRD when dropped (test namespaces do not cover it).
struct CrdGuard {
    kubeconfig: std::path::PathBuf,
    name: String,
}

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "crd",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A CustomResourceDefinition of kind `Widget` in `group` (v1, namespaced, any spec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_and_custom_resource_in_one_commit() {
    let env = Env::new("e2e-crd").await;
    let group = format!("{}.e2e.kedge.test", env.ns());
    let _guard = CrdGuard {
        kubeconfig: env.cluster.kubeconfig().to_owned(),
        name: format!("widgets.{group}"),
    };
    env.write("app/crd.yaml", &widget_crd(&group));
    env.write(
        "app/widget.yaml",
        &format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: gear\nspec:\n  size: 3\n"
        ),
    );
    let sha = env.commit_push("crd and cr");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    let app = env.wait_synced("demo", &sha).await;
    let widget = env
        .object(&group, "v1", "Widget", "gear")
        .await
        .expect("the Widget exists");
    assert_eq!(widget.data["spec"]["size"], 3);
    let mut kinds: Vec<String> = app
        .status
        .expect("status")
        .resources
        .iter()
        .map(|r| r.object.kind.to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, vec!["CustomResourceDefinition", "Widget"]);
    assert_eq!(env.count_events("demo", "SyncFailed").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_waves_and_presync_hook_run_in_order() {
    let env = Env::audited("e2e-waves").await;
    env.write(
        "app/migrate.yaml",
        "apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    kedge.dev/hook: PreSync
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: migrate:1
",
    );
    env.write(
        "app/early.yaml",
        &config_map_annotated("early", "1", &[("kedge.dev/sync-wave", "-1")]),
    );
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    env.write(
        "app/late.yaml",
        &config_map_annotated("late", "1", &[("kedge.dev/sync-wave", "1")]),
    );
    let sha = env.commit_push("waves");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    let app = env.wait_synced("demo", &sha).await;

    let result = app
        .status
        .expect("status")
        .operation_state
        .expect("operation state")
        .sync_result
        .expect("sync result");
    let hook = result
        .resources
        .iter()
        .find(|r| r.object.name == "migrate")
        .expect("the hook is reported");
    assert_eq!(
        (hook.hook_phase.as_str(), hook.status.as_str()),
        ("PreSync", "Succeeded")
    );
    let order: Vec<&str> = result
        .resources
        .iter()
        .filter(|r| r.hook_phase.is_empty())
        .map(|r| r.object.name.as_str())
        .collect();
    assert_eq!(order, vec!["early", "web", "late"]);

    // In the cluster, in the order the API server finished the requests (its audit log): the Job completed before
    // the first wave was written, the Deployment after it, and the last wave only once the Deployment's status
    // had been written as available.
    let events = env.cluster.audit_events().expect("audit log");
    let ns = env.ns();
    let is = |e: &kedge_testkit::AuditEvent, resource: &str, name: &str| {
        e.namespace == ns && e.resource == resource && e.name == name && e.is_write()
    };
    let by_kedge = |e: &kedge_testkit::AuditEvent| e.user_agent.starts_with("kedge/");
    let first = |resource: &str, name: &str| {
        events
            .iter()
            .position(|e| is(e, resource, name) && by_kedge(e))
            .unwrap_or_else(|| panic!("no write of {resource} {name} by the controller"))
    };
    let job_completed = events
        .iter()
        .rposition(|e| is(e, "jobs/status", "migrate"))
        .expect("the Job's status was written");
    // The test cluster writes a Deployment's status as unavailable, then as available, and then leaves it: its
    // last status write is the one that made it available.
    let available = events
        .iter()
        .rposition(|e| is(e, "deployments/status", "web"))
        .expect("the Deployment's status was written");
    let (early, web, late) = (
        first("configmaps", "early"),
        first("deployments", "web"),
        first("configmaps", "late"),
    );
    assert!(
        job_completed < early,
        "the hook completed after wave -1 was applied"
    );
    assert!(early < web, "wave 0 before wave -1");
    assert!(
        available < late,
        "wave 1 applied before the Deployment was available"
    );
    let web_obj = env
        .object("apps", "v1", "Deployment", "web")
        .await
        .expect("web");
    assert!(
        web_obj.data["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c
                .iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")),
        "the Deployment is available"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commits_leave_the_cluster_alone_and_a_good_one_recovers() {
    let env = Env::new("e2e-bad").await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let good = env.commit_push("good");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &good).await;
    let unchanged = || async {
        assert_eq!(
            env.config_map_data("settings").await,
            Some(json!({ "version": "1" })),
            "the cluster was changed by a bad commit"
        );
    };

    // 1. Invalid YAML next to a change: nothing of the commit is applied.
    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    env.write(
        "app/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
    );
    env.commit_push("invalid yaml");
    let failed = |reason: &'static str, needle: &'static str| {
        move |a: &Application| {
            condition(a, "Ready").is_some_and(|c| {
                c.status == "False" && c.reason == reason && c.message.contains(needle)
            })
        }
    };
    let app = env
        .wait_app(
            "demo",
            "RenderFailed on broken.yaml",
            failed("RenderFailed", "broken.yaml"),
        )
        .await;
    eprintln!(
        "invalid YAML: {:?}",
        condition(&app, "Ready").map(|c| &c.message)
    );
    let event = env
        .wait_event("demo", "RenderFailed", |m| m.contains("broken.yaml"))
        .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    unchanged().await;

    // 2. An unknown kind.
    env.work.remove("app/broken.yaml").expect("remove");
    env.write(
        "app/gizmo.yaml",
        "apiVersion: nope.kedge.test/v1\nkind: Gizmo\nmetadata:\n  name: g\n",
    );
    let unknown = env.commit_push("unknown kind");
    let app = env
        .wait_app("demo", "not Ready because of the Gizmo", |a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.sync.revision.as_deref() == Some(unknown.as_str()))
                && condition(a, "Ready")
                    .is_some_and(|c| c.status == "False" && c.message.contains("Gizmo"))
        })
        .await;
    eprintln!("unknown kind: {:?}", condition(&app, "Ready"));
    let event = env.wait_warning("demo", "Gizmo").await;
    eprintln!("unknown kind event: {:?} {:?}", event.reason, event.message);
    assert_eq!(event.reason.as_deref(), Some("SyncFailed"));
    assert!(
        event
            .message
            .as_deref()
            .is_some_and(|m| m.contains("nothing was applied")),
        "{event:?}"
    );
    // Retried passes over the same commit do not repeat the event.
    refresh_and_wait(&env, "demo").await;
    assert_eq!(env.count_events("demo", "SyncFailed").await, 1);
    unchanged().await;

    // 3. The application's path disappears from the commit.
    env.work.remove("app").expect("remove");
    env.write(
        "moved/settings.yaml",
        &config_map("settings", "version", "3"),
    );
    env.commit_push("path gone");
    let app = env
        .wait_app(
            "demo",
            "fails on the missing path",
            failed("SourceFailed", "path not found: app"),
        )
        .await;
    eprintln!("missing path: {:?}", condition(&app, "Ready"));
    let event = env.wait_warning("demo", "path not found: app").await;
    assert_eq!(event.reason.as_deref(), Some("SourceFailed"));
    unchanged().await;

    // 4. A good commit recovers.
    env.work.remove("moved").expect("remove");
    env.write("app/settings.yaml", &config_map("settings", "version", "4"));
    let fixed = env.commit_push("fixed");
    env.wait_synced("demo", &fixed).await;
    env.wait_config_map("settings", "version", "4").await;
    let app = env.app("demo").await;
    assert!(condition(&app, "Stalled").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_application_with_and_without_the_finalizer() {
    let env = Env::new("e2e-delete").await;
    env.write("owned/a.yaml", &config_map("owned-a", "v", "1"));
    env.write("owned/web.yaml", &deployment("owned-web", 1, "nginx:1.27"));
    env.write("orphaned/b.yaml", &config_map("orphaned-b", "v", "1"));
    let sha = env.commit_push("first");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), env.ns());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "bystander" }, "data": { "v": "1" }
        }))
        .expect("configmap"),
    )
    .await
    .expect("create bystander");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "owner",
        "owned",
        automated(true, true),
        json!({}),
        json!({ "finalizers": [RESOURCES_FINALIZER] }),
    )
    .await;
    env.create_app("loose", "orphaned", automated(true, true))
        .await;
    env.wait_synced("owner", &sha).await;
    env.wait_synced("loose", &sha).await;

    env.apps()
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    env.wait_gone("", "v1", "ConfigMap", "owned-a").await;
    env.wait_gone("apps", "v1", "Deployment", "owned-web").await;
    wait_for(STEP, POLL, || async {
        env.apps().get_opt("owner").await.ok().flatten().is_none()
    })
    .await
    .expect("the application is gone once its objects are");
    env.wait_event("owner", "ResourcesDeleted", |m| m.contains("owned-a"))
        .await;
    assert!(env.config_map_data("bystander").await.is_some());
    assert!(env.config_map_data("orphaned-b").await.is_some());

    env.apps()
        .delete("loose", &DeleteParams::default())
        .await
        .expect("delete loose");
    wait_for(STEP, POLL, || async {
        env.apps().get_opt("loose").await.ok().flatten().is_none()
    })
    .await
    .expect("the application is gone");
    assert!(env.config_map_data("orphaned-b").await.is_some());
    assert!(env.config_map_data("bystander").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_mid_sync_converges_after_restart() {
    let env = Env::new("e2e-kill").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    // Wave 0 ends with a Sync hook that does not complete while its Job is suspended: the sync cannot reach wave 1
    // until the test lets it.
    let gate = |suspend: bool| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: gate\n  annotations:\n    kedge.dev/hook: Sync\nspec:\n  suspend: {suspend}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: busybox\n"
        )
    };
    env.write("app/gate.yaml", &gate(true));
    env.write(
        "app/after.yaml",
        &config_map_annotated("after", "1", &[("kedge.dev/sync-wave", "1")]),
    );
    env.commit_push("two waves, the first held by its hook");
    let controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    wait_for(STEP, POLL, || async {
        env.object("apps", "v1", "Deployment", "web")
            .await
            .is_some()
            && env.object("batch", "v1", "Job", "gate").await.is_some()
    })
    .await
    .expect("wave 0 applied and its hook running");
    controller.kill();
    assert!(
        env.config_map_data("after").await.is_none(),
        "wave 1 was applied while wave 0's hook was running"
    );

    // The hook may complete from now on. The replacement (same identity, as a restarted pod, so it need not wait
    // for the Lease to expire) converges.
    env.write("app/gate.yaml", &gate(false));
    let sha = env.commit_push("let the hook complete");
    let _controller = env.start_controller("c1");
    let app = env.wait_synced("demo", &sha).await;
    assert!(env.config_map_data("after").await.is_some());
    let status = app.status.expect("status");
    assert_eq!(status.inventory.len(), 2);
    assert_eq!(
        status.history.last().map(|h| h.result),
        Some(kedge_api::HistoryResult::Succeeded)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_follower_takes_over() {
    let env = Env::new("e2e-leader").await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let v1 = env.commit_push("v1");
    let alpha = env.start_standby_controller("alpha");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &v1).await;
    let beta = env.start_standby_controller("beta");
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), env.ns());
    let holder = || async {
        leases
            .get_opt("kedge-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    assert_eq!(holder().await.as_deref(), Some("alpha"));

    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    let v2 = env.commit_push("v2");
    env.wait_synced("demo", &v2).await;
    refresh_and_wait(&env, "demo").await;
    // Events are published in the background: the status may show the sync before its events are there.
    env.wait_event("demo", "SyncStarted", |m| m.contains(&v2[..7]))
        .await;
    let events = env.events("demo").await;
    let instances: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.reporting_instance.clone())
        .collect();
    assert_eq!(instances, ["alpha".to_owned()].into());
    let syncs_of_v2 = events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("SyncStarted")
                && e.message.as_deref().is_some_and(|m| m.contains(&v2[..7]))
        })
        .count();
    assert_eq!(syncs_of_v2, 1, "one sync of v2, by the leader");

    alpha.stop().await;
    // Alpha released the lease on its way out (beta may have taken it already): beta need not wait for it to expire.
    let after_stop = holder().await;
    assert!(
        after_stop.as_deref() != Some("alpha"),
        "alpha still holds the lease after it stopped: {after_stop:?}"
    );
    wait_for(STEP, POLL, || async {
        holder().await.as_deref() == Some("beta")
    })
    .await
    .expect("beta takes the lease once alpha released it");
    env.write("app/settings.yaml", &config_map("settings", "version", "3"));
    let v3 = env.commit_push("v3");
    env.wait_synced("demo", &v3).await;
    env.wait_config_map("settings", "version", "3").await;
    env.wait_event("demo", "SyncStarted", |m| m.contains(&v3[..7]))
        .await;
    let by_beta = env
        .events("demo")
        .await
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("SyncStarted")
                && e.message.as_deref().is_some_and(|m| m.contains(&v3[..7]))
        })
        .map(|e| e.reporting_instance.unwrap_or_default())
        .collect::<Vec<_>>();
    assert_eq!(by_beta, vec!["beta".to_owned()]);
    beta.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_auth_with_repository_secret() {
    let password = format!(
        "pw-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let wrong = "wrong-password-4711";
    let env = Env::with_auth("e2e-creds", HttpAuth::basic("kedge", &password)).await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let sha = env.commit_push("first");
    let url = env.servers.http.url("app.git");
    // A source that fails for lack of credentials is retried only after the poll interval (60 s here); a change to a
    // repository Secret must retry it at once.
    let mut config = env.run_config("c1");
    config.poll_interval = Duration::from_secs(60);
    let _controller = RunningController::start(env.cluster.kubeconfig(), config);
    env.create_app_with(
        "demo",
        "app",
        automated(true, true),
        json!({ "source": { "repoURL": url, "targetRevision": "main", "path": "app" } }),
        json!({}),
    )
    .await;

    // No credentials: a clear failure.
    let app = env
        .wait_app("demo", "SourceFailed without credentials", |a| {
            condition(a, "Ready").is_some_and(|c| c.status == "False" && c.reason == "SourceFailed")
        })
        .await;
    let message = condition(&app, "Ready").expect("Ready").message.clone();
    eprintln!("without credentials: {message}");
    assert!(
        message.contains("AuthFailed") && message.contains("kedge.dev/secret-type=repository"),
        "the message says authentication failed and where credentials come from: {message}"
    );
    let event = env.wait_event("demo", "SourceFailed", |_| true).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // A wrong password: a failure again, the password not shown.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), env.ns());
    let secret = |pw: &str| -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "repo", "labels": { "kedge.dev/secret-type": "repository" } },
            "stringData": { "url": url, "username": "kedge", "password": pw }
        }))
        .expect("secret")
    };
    secrets
        .create(&PostParams::default(), &secret(wrong))
        .await
        .expect("create secret");
    refresh_and_wait(&env, "demo").await;
    let app = env.app("demo").await;
    assert_eq!(
        condition(&app, "Ready").map(|c| c.reason.as_str()),
        Some("SourceFailed")
    );

    // The right password: synced.
    secrets
        .patch(
            "repo",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "stringData": { "password": password } })),
        )
        .await
        .expect("fix secret");
    let fixed = Instant::now();
    env.wait_synced("demo", &sha).await;
    env.wait_config_map("settings", "version", "1").await;
    assert!(
        fixed.elapsed() < Duration::from_secs(20),
        "the fixed Secret was used only after {:?} (not at once)",
        fixed.elapsed()
    );

    // Neither password shows up in the status or any event.
    let status = serde_json::to_string(&env.app("demo").await.status).expect("json");
    let events: Api<Event> = Api::namespaced(env.client.clone(), env.ns());
    let events = serde_json::to_string(
        &events
            .list(&Default::default())
            .await
            .expect("events")
            .items,
    )
    .expect("json");
    for secret in [password.as_str(), wrong] {
        assert!(!status.contains(secret), "a password is in the status");
        assert!(!events.contains(secret), "a password is in an event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_takes_over_once_a_crashed_leaders_lease_expires() {
    let env = Env::new("e2e-crash").await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let v1 = env.commit_push("v1");
    let alpha = env.start_standby_controller("alpha");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &v1).await;
    let _beta = env.start_standby_controller("beta");

    // The leader crashes: its Lease is not released, so the follower waits for it to expire (15 s).
    alpha.kill();
    let crashed = Instant::now();
    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    let v2 = env.commit_push("v2");
    env.wait_synced("demo", &v2).await;
    let took = crashed.elapsed();
    eprintln!("beta synced v2 {took:?} after alpha crashed");
    assert!(
        took >= Duration::from_secs(10),
        "beta acted after {took:?}, before alpha's lease expired"
    );
    env.wait_event("demo", "SyncStarted", |m| m.contains(&v2[..7]))
        .await;
    let syncs: Vec<String> = env
        .events("demo")
        .await
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("SyncStarted")
                && e.message.as_deref().is_some_and(|m| m.contains(&v2[..7]))
        })
        .map(|e| e.reporting_instance.unwrap_or_default())
        .collect();
    assert_eq!(syncs, vec!["beta".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_application_is_rechecked_without_comparing_until_something_changes() {
    let env = Env::new("e2e-quiet").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    let sha = env.commit_push("first");
    let (_controller, addr) =
        start_with_metrics(&env, "c1", |c| c.resync_interval = Duration::from_secs(1));
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_app("demo", "Synced and Healthy", |a| {
        synced_at(a, &sha)
            && a.status
                .as_ref()
                .is_some_and(|s| s.health.status == HealthCode::Healthy)
    })
    .await;

    // The application's state as a series of its own, as dashboards and alerts read it.
    let info = |sha: &str| {
        format!(
            "kedge_app_info{{namespace=\"{}\",name=\"demo\",project=\"default\",cluster=\"in-cluster\",\
             sync_status=\"Synced\",health_status=\"Healthy\",revision=\"{}\"}}",
            env.ns(),
            &sha[..7]
        )
    };
    assert_eq!(metric(addr, &info(&sha)), 1.0, "{}", info(&sha));
    let synced = format!(
        "kedge_app_sync_total{{namespace=\"{}\",name=\"demo\",project=\"default\",cluster=\"in-cluster\",\
         phase=\"Succeeded\"}}",
        env.ns()
    );
    assert_eq!(metric(addr, &synced), 1.0, "{synced}");

    // Resyncs every second find nothing changed and skip the comparison.
    let before = metric(addr, "kedge_quiet_passes_total");
    wait_for(STEP, POLL, || async {
        (metric(addr, "kedge_quiet_passes_total") >= before + 3.0).then_some(())
    })
    .await
    .expect("quiet passes while nothing changes");

    // A commit elsewhere in the repository leaves this application's files as they were: its revision moves, it
    // stays Synced and Healthy, and nothing is synced.
    env.write("other/settings.yaml", &config_map("other", "k", "v"));
    let second = env.commit_push("another application");
    let app = env
        .wait_app("demo", "at the new revision", |a| synced_at(a, &second))
        .await;
    let status = app.status.expect("status");
    assert_eq!(status.health.status, HealthCode::Healthy);
    // The series moved to the new revision: the old one is gone.
    assert_eq!(metric(addr, &info(&second)), 1.0, "{}", info(&second));
    assert_eq!(
        metric(addr, &info(&sha)),
        0.0,
        "{} still exported",
        info(&sha)
    );
    assert_eq!(
        status.history.len(),
        1,
        "no second sync: {:?}",
        status.history
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.message.contains(&second[..7])),
        "{:?}",
        status.conditions
    );

    // A live edit is still seen at once and reverted: the watch marks the application changed.
    env.set_replicas("web", 4, "kubectl-edit").await;
    let edited = Instant::now();
    wait_for(STEP, Duration::from_millis(20), || async {
        env.replicas("web").await == Some(1)
    })
    .await
    .expect("the edit is reverted");
    assert!(
        edited.elapsed() < Duration::from_secs(10),
        "reverted after {:?}",
        edited.elapsed()
    );
    let app = env.app("demo").await;
    assert_eq!(
        app.status.as_ref().map(|s| s.sync.status),
        Some(kedge_api::SyncCode::Synced)
    );
    // The revert synced the new revision (the application had not synced it yet): a second successful sync.
    wait_for(STEP, POLL, || async {
        (metric(addr, &synced) == 2.0).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{synced} is {}", metric(addr, &synced)));
}

/// Runs git in the test's work tree with SSH signing by the private key at `key`.
fn git_signed(env: &Env, key: &str, args: &[&str]) {
    let signing = format!("user.signingkey={key}");
    let mut all = vec!["-c", "gpg.format=ssh", "-c", signing.as_str()];
    all.extend_from_slice(args);
    env.work.git(all).expect("signed git command");
}

/// A new ed25519 SSH key `name` in `dir`: (private key path, public key line).
fn ssh_keygen(dir: &std::path::Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("pub");
    (path.display().to_string(), public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_commits_signed_by_a_trusted_key_are_applied() {
    let env = Env::new("verify").await;
    let keys = tempfile::tempdir().expect("keys");
    let keygen = |name: &str| ssh_keygen(keys.path(), name);
    let (alice, alice_pub) = keygen("alice");
    let (mallory, _) = keygen("mallory");
    // Commits with `git commit -S` and an SSH signing key (None: unsigned), pushed.
    let commit_push = |message: &str, key: Option<&str>| -> String {
        match key {
            Some(key) => {
                git_signed(&env, key, &["commit", "-q", "-S", "-a", "-m", message]);
                env.push();
                env.work.head().expect("head")
            }
            None => env.commit_push(message),
        }
    };
    env.write("app/settings.yaml", &config_map("settings", "v", "1"));
    env.work.git(["add", "-A"]).expect("add");
    let signed = commit_push("signed by alice", Some(&alice));

    env.create_secret("trusted-keys", json!({ "alice.pub": alice_pub }))
        .await;
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "demo",
        "app",
        automated(true, true),
        json!({ "source": {
            "repoURL": env.repo_url, "targetRevision": "main", "path": "app",
            "verify": { "secretRef": { "name": "trusted-keys" } },
        } }),
        json!({}),
    )
    .await;
    let app = env.wait_synced("demo", &signed).await;
    let verified = condition(&app, "SourceVerified").expect("SourceVerified condition");
    assert_eq!(verified.status, "True", "{verified:?}");
    assert!(
        verified.message.contains(&signed[..7])
            && verified.message.contains("SSH key SHA256:")
            && verified.message.contains("trusted-keys/alice.pub"),
        "{}",
        verified.message
    );

    // An unsigned commit and one signed by an unknown key are refused; the cluster keeps the signed state.
    for (value, key, needle) in [
        ("2", None, "is not signed"),
        ("3", Some(mallory.as_str()), "not a trusted key"),
    ] {
        env.write("app/settings.yaml", &config_map("settings", "v", value));
        env.work.git(["add", "-A"]).expect("add");
        let sha = commit_push("not acceptable", key);
        let app = env
            .wait_app("demo", "verification failed", |a| {
                condition(a, "Ready").is_some_and(|c| {
                    c.reason == "VerificationFailed" && c.message.contains(&sha[..7])
                })
            })
            .await;
        let ready = condition(&app, "Ready").expect("ready");
        assert!(ready.message.contains(needle), "{}", ready.message);
        let verified = condition(&app, "SourceVerified").expect("SourceVerified condition");
        assert_eq!(verified.status, "False", "{verified:?}");
        assert!(ready.message.contains("trusted-keys"), "{}", ready.message);
        env.wait_warning("demo", &sha[..7]).await;
        assert_eq!(
            env.config_map_data("settings").await,
            Some(json!({ "v": "1" })),
            "nothing applied"
        );
    }

    // Signed again by alice: applied.
    env.write("app/settings.yaml", &config_map("settings", "v", "4"));
    env.work.git(["add", "-A"]).expect("add");
    let good = commit_push("signed by alice again", Some(&alice));
    env.wait_synced("demo", &good).await;
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "v": "4" }))
    );

    // Keys that cannot be read say so.
    env.create_app_with(
        "nokeys",
        "app",
        automated(true, true),
        json!({ "source": {
            "repoURL": env.repo_url, "targetRevision": "main", "path": "app",
            "verify": { "secretRef": { "name": "absent" } },
        } }),
        json!({}),
    )
    .await;
    env.wait_app("nokeys", "keys not found", |a| {
        condition(a, "Ready").is_some_and(|c| {
            c.reason == "VerificationFailed"
                && c.message
                    .contains("Secret absent (spec.source.verify.secretRef) not found")
        })
    })
    .await;
}

/// A drift watcher of its own on the test's cluster, watching ConfigMaps and Deployments; cancel the token to stop it.
async fn watching_config_maps_and_deployments(
    env: &Env,
) -> (
    kedge_controller::drift::DriftWatcher,
    tokio_util::sync::CancellationToken,
) {
    let admission = kedge_controller::admission::Admission::new(1);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (drift, _rx) = kedge_controller::drift::DriftWatcher::new(
        env.client.clone(),
        "kedge",
        admission,
        shutdown.clone(),
    );
    let kind = |v: &str, k: &str| (v.to_owned(), k.to_owned());
    assert!(
        drift
            .ensure_kinds([kind("v1", "ConfigMap"), kind("apps/v1", "Deployment")].into_iter())
            .await
    );
    (drift, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_watches_say_when_a_kind_cannot_be_watched() {
    let env = Env::new("kinds").await;
    let (drift, shutdown) = watching_config_maps_and_deployments(&env).await;
    let kind = |v: &str, k: &str| (v.to_owned(), k.to_owned());
    // A kind the server does not serve (a CRD not created yet): not watched, and said so.
    assert!(
        !drift
            .ensure_kinds([kind("v1", "ConfigMap"), kind("example.test/v1", "Nothing")].into_iter())
            .await
    );
    shutdown.cancel();
}

/// Deployments are watched whole: a read of a tracked one at the version the watch saw is answered from the watch's
/// copy, with no request, through each step of its rollout; untracked ones and kinds watched by metadata are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_deployments_are_read_from_the_watch() {
    use kedge_engine::LiveObjects;
    let env = Env::new("whole").await;
    let ns = env.ns().to_owned();
    let (drift, shutdown) = watching_config_maps_and_deployments(&env).await;
    let live = kedge_engine::VersionedLiveObjects::new(env.client.clone(), drift.versions());
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(env.client.clone(), &ns);
    let deployment = |name: &str, tracked: bool| {
        let annotations = if tracked {
            json!({ kedge_api::TRACKING_ANNOTATION:
                format!("{ns}/app:apps/Deployment:{ns}/{name}") })
        } else {
            json!({})
        };
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "namespace": ns, "annotations": annotations },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "c", "image": "example.test/c:1" }] },
                },
            },
        })
    };
    let apply = PatchParams::apply("someone-else");
    for (name, tracked) in [("tracked", true), ("untracked", false)] {
        deployments
            .patch(name, &apply, &Patch::Apply(deployment(name, tracked)))
            .await
            .expect("create deployment");
    }
    let resolved = |group: &str, version: &str, kind: &str, plural: &str| kedge_engine::Resolved {
        resource: kube::api::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.into(),
            plural: plural.into(),
        },
        namespaced: true,
    };
    let deploy = resolved("apps", "v1", "Deployment", "deployments");
    // The workload simulator moves the tracked Deployment through its rollout; each version the watch reports is
    // read from its copy, and is the object the API server holds.
    let versions = drift.versions();
    // Waits until the watch has reported the object (until then its answer is that it does not exist).
    let watch_sees = |group: &'static str, kind: &'static str, name: &'static str| {
        let (versions, ns) = (versions.clone(), ns.clone());
        wait_for(STEP, Duration::from_millis(20), move || {
            let (versions, ns) = (versions.clone(), ns.clone());
            async move {
                kedge_engine::ObjectVersions::version(
                    versions.as_ref(),
                    group,
                    kind,
                    Some(&ns),
                    name,
                )
                .flatten()
                .is_some()
            }
        })
    };
    // The version of the tracked Deployment the watch reports now.
    let watched = || {
        kedge_engine::ObjectVersions::version(
            versions.as_ref(),
            "apps",
            "Deployment",
            Some(&ns),
            "tracked",
        )
        .flatten()
    };
    // Reads the tracked Deployment, asserting that the watch's copy answered.
    let read_from_watch = || async {
        let before = live.served_by_watch();
        let read = live
            .get(&deploy, Some(&ns), "tracked")
            .await
            .expect("read")
            .expect("present");
        assert_eq!(live.served_by_watch(), before + 1, "read from the watch");
        read
    };
    let version_of = |v: &serde_json::Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let seen = std::sync::atomic::AtomicUsize::new(0);
    wait_for(STEP, Duration::from_millis(20), || async {
        let Ok(server) = deployments.get("tracked").await else {
            return false;
        };
        let current = server.metadata.resource_version.clone();
        if current.is_none() || watched() != current {
            return false;
        }
        let read = read_from_watch().await;
        assert_eq!(Some(version_of(&read)), current);
        assert_eq!(read["kind"], "Deployment");
        assert_eq!(read["apiVersion"], "apps/v1");
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        read.pointer("/status/readyReplicas")
            .and_then(|v| v.as_i64())
            == Some(1)
    })
    .await
    .expect("the tracked Deployment becomes ready, read from the watch");
    assert!(seen.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // An apply's result is held at once; a version the watch reported before it is never served in its place.
    let applied = deployments
        .patch(
            "tracked",
            &PatchParams::apply("kedge"),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "tracked", "namespace": ns, "labels": { "applied": "yes" } },
            })),
        )
        .await
        .expect("apply");
    let applied = serde_json::to_value(&applied).expect("json");
    let held_version = version_of(&applied);
    live.remember(&deploy, Some(&ns), "tracked", &applied);
    let read = live
        .get(&deploy, Some(&ns), "tracked")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        version_of(&read),
        held_version,
        "the applied version, not an older one the watch had"
    );
    assert_eq!(read["metadata"]["labels"]["applied"], "yes");
    // Once the watch reports the version held, its copy answers and the held one goes: not kept twice.
    wait_for(STEP, Duration::from_millis(20), || async {
        let Ok(server) = deployments.get("tracked").await else {
            return false;
        };
        let current = server.metadata.resource_version.clone();
        current.as_deref() == Some(held_version.as_str()) && watched() == current
    })
    .await
    .expect("the watch reports the applied version, which stays current");
    let read = read_from_watch().await;
    assert_eq!(version_of(&read), held_version);
    assert_eq!(live.held(), 0, "the held copy went once the watch had it");
    // Held again, then moved on by another writer: the watch's newer copy answers, and the older one held goes.
    live.remember(&deploy, Some(&ns), "tracked", &read);
    assert_eq!(live.held(), 1);
    deployments
        .patch(
            "tracked",
            &PatchParams {
                field_manager: Some("someone-else".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "metadata": { "labels": { "edited": "yes" } } })),
        )
        .await
        .expect("edit");
    wait_for(STEP, Duration::from_millis(20), || async {
        watched().is_some_and(|v| v != held_version)
    })
    .await
    .expect("the watch reports the edit");
    let read = read_from_watch().await;
    assert_eq!(read["metadata"]["labels"]["edited"], "yes");
    assert_eq!(live.held(), 0, "the older copy held went");
    // Not tracked: the watch keeps no copy, so it is read.
    watch_sees("apps", "Deployment", "untracked")
        .await
        .expect("the watch sees the untracked Deployment");
    let before = live.served_by_watch();
    let read = live
        .get(&deploy, Some(&ns), "untracked")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read["metadata"]["name"], "untracked");
    assert_eq!(
        live.served_by_watch(),
        before,
        "an untracked object is read"
    );
    // ConfigMaps are watched by metadata only: no copy either.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns);
    cms.patch(
        "settings",
        &apply,
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "settings", "annotations": { kedge_api::TRACKING_ANNOTATION:
                format!("{ns}/app:/ConfigMap:{ns}/settings") } },
            "data": { "k": "v" },
        })),
    )
    .await
    .expect("create config map");
    watch_sees("", "ConfigMap", "settings")
        .await
        .expect("the watch sees the ConfigMap");
    let cm = resolved("", "v1", "ConfigMap", "configmaps");
    let before = live.served_by_watch();
    let read = live
        .get(&cm, Some(&ns), "settings")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read["data"]["k"], "v");
    assert_eq!(live.served_by_watch(), before, "a ConfigMap is read");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rollback_still_suspends_automated_sync() {
    let env = Env::new("e2e-rollback-refused").await;
    // v1 also has a Widget, whose CRD (not part of the application) is gone by the time of the rollback: v1
    // cannot be applied again.
    let group = format!("{}.e2e.kedge.test", env.ns());
    let crd = format!("widgets.{group}");
    let _guard = CrdGuard {
        kubeconfig: env.cluster.kubeconfig().to_owned(),
        name: crd.clone(),
    };
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(env.cluster.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl");
        assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    };
    let crd_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(crd_file.path(), widget_crd(&group)).expect("write crd");
    kubectl(&["apply", "-f", crd_file.path().to_str().expect("utf-8 path")]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{crd}"),
    ]);
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    env.write(
        "app/widget.yaml",
        &format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: gear\nspec:\n  size: 3\n"
        ),
    );
    let v1 = env.commit_push("v1");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &v1).await;
    env.work.remove("app/widget.yaml").expect("remove");
    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    let v2 = env.commit_push("v2");
    let app = env.wait_synced("demo", &v2).await;
    let entry = app
        .status
        .expect("status")
        .history
        .into_iter()
        .find(|h| h.revision == v1)
        .expect("v1 in history");
    kubectl(&["delete", "crd", &crd, "--wait=true", "--timeout=60s"]);

    request_rollback(&env, "demo", entry.id).await;
    let app = env
        .wait_app("demo", "rollback refused and suspended", |a| {
            a.spec.suspend
                && a.status
                    .as_ref()
                    .and_then(|s| s.operation_state.as_ref())
                    .is_some_and(|o| {
                        o.phase == kedge_api::OperationPhase::Failed
                            && o.message.contains("refused")
                    })
        })
        .await;
    let message = app
        .status
        .and_then(|s| s.operation_state)
        .map(|o| o.message)
        .unwrap_or_default();
    assert!(message.contains("Widget"), "{message}");
    env.wait_event("demo", "RolledBack", |m| {
        m.contains(&format!("rollback to history id {} refused", entry.id))
    })
    .await;
    // Nothing of v1 was applied, and automated sync stays off: v2 stays as it is.
    refresh_and_wait(&env, "demo").await;
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "version": "2" }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sops_encrypted_secrets_are_decrypted_with_the_applications_age_key() {
    let env = Env::new("sops").await;
    let key = kedge_testkit::AgeKey::generate();
    let plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: s3cr3t\n";
    let encrypted = kedge_testkit::sops_encrypt(
        plain,
        "yaml",
        &key.recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    )
    .expect("sops");
    env.write("app/secret.yaml", &encrypted);
    let sha = env.commit_push("encrypted secret");
    env.create_secret(
        "sops-age",
        json!({ "age.agekey": format!("# test key\n{}\n", key.identity) }),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), env.ns());
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "demo",
        "app",
        automated(true, true),
        json!({ "decryption": { "provider": "sops", "secretRef": { "name": "sops-age" } } }),
        json!({}),
    )
    .await;
    env.wait_synced("demo", &sha).await;
    let applied = secrets.get("db").await.expect("the Secret is applied");
    let password = applied
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    assert_eq!(password.as_deref(), Some("s3cr3t"));
    assert!(
        applied
            .metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.contains("sops")),
        "no SOPS metadata on the object"
    );

    // Without keys the encrypted document is refused, and nothing encrypted is applied.
    env.create_app("nokeys", "app", automated(true, true)).await;
    let app = env
        .wait_app("nokeys", "decryption refused", |a| {
            condition(a, "Ready")
                .is_some_and(|c| c.status == "False" && c.message.contains("spec.decryption"))
        })
        .await;
    let ready = condition(&app, "Ready").expect("ready");
    assert!(
        ready.message.contains("app/secret.yaml"),
        "{}",
        ready.message
    );
    assert!(
        !ready.message.contains("s3cr3t") && !ready.message.contains("AGE-SECRET-KEY"),
        "{}",
        ready.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_mode_applies_only_signed_annotated_tags() {
    let env = Env::new("verify-tag").await;
    let keys = tempfile::tempdir().expect("keys");
    let (release, release_pub) = ssh_keygen(keys.path(), "release");
    env.write("app/settings.yaml", &config_map("settings", "v", "1"));
    let commit = env.commit_push("v1 (the commit itself unsigned)");
    git_signed(
        &env,
        &release,
        &["tag", "-s", "v1.0.0", "-m", "release 1.0.0"],
    );
    env.work
        .git(["tag", "-a", "v0.9.0", "-m", "unsigned"])
        .expect("annotated tag");
    env.work.tag("v0.8.0").expect("lightweight tag");
    env.work.push_all(&env.repo_url).expect("push tags");
    env.create_secret("release-keys", json!({ "release.pub": release_pub }))
        .await;
    let _controller = env.start_controller("c1");
    let app = |name: &'static str, revision: &'static str| {
        let env = &env;
        async move {
            env.create_app_with(
                name,
                "app",
                automated(true, true),
                json!({ "source": {
                    "repoURL": env.repo_url, "targetRevision": revision, "path": "app",
                    "verify": { "mode": "Tag", "secretRef": { "name": "release-keys" } },
                } }),
                json!({}),
            )
            .await
        }
    };
    app("signed", "v1.0.0").await;
    let synced = env.wait_synced("signed", &commit).await;
    let verified = condition(&synced, "SourceVerified").expect("SourceVerified");
    assert!(
        verified.message.contains("tag v1.0.0 signed with SSH key"),
        "{}",
        verified.message
    );

    for (name, revision, needle) in [
        ("unsigned", "v0.9.0", "tag v0.9.0 is not signed"),
        ("lightweight", "v0.8.0", "tag v0.8.0 is a lightweight tag"),
        ("branch", "main", "is not a tag"),
    ] {
        app(name, revision).await;
        env.wait_app(name, needle, |a| {
            condition(a, "Ready")
                .is_some_and(|c| c.reason == "VerificationFailed" && c.message.contains(needle))
        })
        .await;
    }
}

/// Automated sync runs once per commit and spec, as Argo CD's does once per commit and parameters: a spec change at
/// the same commit is synced without self-heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_spec_at_the_same_commit_is_synced_automatically() {
    let env = Env::new("e2e-spec").await;
    env.write("app/a.yaml", &config_map("a", "k", "v"));
    env.write("app/b.yaml", &config_map("b", "k", "v"));
    let sha = env.commit_push("two files");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "demo",
        "app",
        automated(true, false),
        json!({ "source": {
            "repoURL": env.repo_url, "targetRevision": "main", "path": "app",
            "directory": { "include": "a.yaml" }
        } }),
        json!({}),
    )
    .await;
    env.wait_synced("demo", &sha).await;
    assert!(env.config_map_data("b").await.is_none());

    env.patch_app(
        "demo",
        json!({ "spec": { "source": { "directory": { "include": "*.yaml" } } } }),
    )
    .await;
    env.wait_config_map("b", "k", "v").await;
    let app = env
        .wait_app("demo", "synced for the new spec", |a| {
            synced_at(a, &sha)
                && a.status
                    .as_ref()
                    .and_then(|s| s.operation_state.as_ref())
                    .and_then(|o| o.sync_result.as_ref())
                    .is_some_and(|r| r.generation == a.metadata.generation)
        })
        .await;
    let history = app.status.expect("status").history;
    assert_eq!(history.len(), 1, "one revision, one entry: {history:?}");
    assert_eq!(history[0].attempts, 2);
    assert_eq!(history[0].initiated_by, "automated");
}

/// `automated.enabled: false` (Argo CD 3) keeps the settings but syncs nothing by itself; turned on, it syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_sync_turned_off_syncs_nothing_until_turned_on() {
    let env = Env::new("e2e-enabled").await;
    env.write("app/cm.yaml", &config_map("settings", "k", "v"));
    let sha = env.commit_push("one ConfigMap");
    let _controller = env.start_controller("c1");
    env.create_app(
        "demo",
        "app",
        json!({ "automated": { "prune": true, "selfHeal": true, "enabled": false } }),
    )
    .await;
    env.wait_app("demo", "compared", |a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.sync.status == SyncCode::OutOfSync)
    })
    .await;
    refresh_and_wait(&env, "demo").await;
    assert!(
        env.config_map_data("settings").await.is_none(),
        "synced while off"
    );
    env.patch_app(
        "demo",
        json!({ "spec": { "syncPolicy": { "automated": { "enabled": true } } } }),
    )
    .await;
    env.wait_synced("demo", &sha).await;
    env.wait_config_map("settings", "k", "v").await;
}

/// The status code of `GET path` from a controller's probes at `addr`; `None` while nothing answers.
fn probe(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A push that lands after an application's pass and before the controller's first look at its repository is still
/// applied at that look: the poller has no earlier tips to compare with, so it compares what each application last
/// resolved with the refs it follows. (Replicas meet this when one gains a share and a push follows at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_before_the_first_look_at_a_repository_is_applied_at_that_look() {
    let env = Env::new("e2e-first-look").await;
    env.write("app/cm.yaml", &config_map("cm", "version", "1"));
    let v1 = env.commit_push("v1");
    let poll = Duration::from_secs(8);
    let listen = free_addr();
    let (_controller, metrics) = start_with_metrics(&env, "c1", |c| {
        c.poll_interval = poll;
        // No resync before the test ends: only the poller can bring the push.
        c.resync_interval = Duration::from_secs(600);
        c.listen = Some(listen);
    });
    // Ready once the poller's first round (with no application, so no repository) is done.
    wait_for(STEP, POLL, || async {
        (probe(listen, "/readyz") == Some(200)).then_some(())
    })
    .await
    .expect("controller ready");
    env.create_app("demo", "app", automated(true, false)).await;
    env.wait_synced("demo", &v1).await;
    let looks = "kedge_git_fetch_duration_seconds_count";
    assert_eq!(
        metric(metrics, looks),
        0.0,
        "the poller looked at the repository within {poll:?} of its first round, before the push below"
    );
    env.write("app/cm.yaml", &config_map("cm", "version", "2"));
    let v2 = env.commit_push("v2");
    let pushed = Instant::now();
    wait_for(poll * 3, POLL, || async {
        (metric(metrics, looks) >= 1.0).then_some(())
    })
    .await
    .expect("the poller's first look at the repository");
    env.wait_synced("demo", &v2).await;
    env.wait_config_map("cm", "version", "2").await;
    assert!(
        pushed.elapsed() < poll * 2 + Duration::from_secs(10),
        "v2 applied {:?} after the push",
        pushed.elapsed()
    );
}

/// An application whose objects stay unhealthy is not compared again on a timer while every kind of them is watched:
/// a change of its objects would queue it. (With 10,000 applications waiting for their Deployments, a re-check every
/// 30 s of each took a third of the controller's CPU and found nothing the watches had not reported.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_application_waits_for_its_objects_not_for_a_timer() {
    let env = Env::new("e2e-waits").await;
    // The test cluster never makes a Deployment of a "fail" image available: it reports ProgressDeadlineExceeded.
    env.write(
        "app/web.yaml",
        &deployment("web", 1, "registry.invalid/fail:1"),
    );
    let sha = env.commit_push("first");
    let (_controller, addr) = start_with_metrics(&env, "c1", |c| {
        // Only a change can bring a pass within the test.
        c.resync_interval = Duration::from_secs(600);
    });
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_app("demo", "Synced and Degraded", |a| {
        a.status.as_ref().is_some_and(|s| {
            s.sync.status == SyncCode::Synced
                && s.sync.revision.as_deref() == Some(sha.as_str())
                && s.health.status == HealthCode::Degraded
        })
    })
    .await;
    let passes = "kedge_reconcile_duration_seconds_count";
    let before = metric(addr, passes);
    assert!(before >= 1.0, "{before} passes");
    // Longer than the 30 s after which such an application used to be compared again.
    let window = Duration::from_secs(35);
    let started = Instant::now();
    while started.elapsed() < window {
        let now = metric(addr, passes);
        assert_eq!(
            now,
            before,
            "a pass ran {:?} after the application was Degraded, with nothing changed",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A change of the Deployment still queues a pass at once.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(env.client.clone(), env.ns());
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "someone": "else" } } })),
        )
        .await
        .expect("label the Deployment");
    wait_for(STEP, POLL, || async {
        (metric(addr, passes) > before).then_some(())
    })
    .await
    .expect("a pass after the Deployment changed");
}
