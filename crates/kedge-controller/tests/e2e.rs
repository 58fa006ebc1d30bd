//! End-to-end tests of the GitOps loop: the controller runs in-process against the test cluster and loopback git
//! servers; each test has its own namespace (Applications, objects, Lease), repository and controller.
//!
//! Run: `cargo test -p kedge-controller --test e2e -- --test-threads 8` (the tests mostly wait on the cluster, so
//! more threads than cores is fine). `RUST_LOG=kedge_controller=debug` shows the controller's log.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use kedge_api::{HealthCode, SyncCode};
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
        .map(|r| (r.object.kind.clone(), r.object.name.clone(), r.status))
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
    assert_eq!(last.result, "Succeeded");
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
