//! End to end: `spec.syncPolicy.retry` retries a failed sync `limit` times, as Argo CD does, and then stops until
//! something new comes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, automated, config_map, job_annotated};
use kedge_api::{Application, HistoryEntry, REFRESH_ANNOTATION};
use serde_json::json;

fn last_entry(app: &Application) -> Option<&HistoryEntry> {
    app.status.as_ref()?.history.last()
}

fn failures(app: &Application) -> u32 {
    last_entry(app).map(|e| e.failures).unwrap_or(0)
}

fn reconciled_at(app: &Application) -> Option<String> {
    app.status.as_ref()?.reconciled_at.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_retried_up_to_the_limit_then_left_alone() {
    let env = Env::new("retry").await;
    // A PreSync hook that always fails.
    env.write(
        "app/migrate.yaml",
        &job_annotated(
            "migrate",
            "migrate-fail:1",
            &[("argocd.argoproj.io/hook", "PreSync")],
        ),
    );
    env.write("app/settings.yaml", &config_map("settings", "mode", "x"));
    let sha = env.commit_push("failing hook");
    let mut policy = automated(true, false);
    policy["retry"] =
        json!({"limit": 2, "backoff": {"duration": "1s", "factor": 1, "maxDuration": "1s"}});
    env.create_app("web", "app", policy).await;
    let _controller = env.start_controller("c1");

    // The automated sync and its two retries: three failed syncs of the revision, one history entry.
    let app = env
        .wait_app("web", "three failed syncs", |a| failures(a) >= 3)
        .await;
    let entry = last_entry(&app).unwrap();
    assert_eq!((entry.revision.as_str(), entry.failures), (sha.as_str(), 3));
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("migrate")),
        "{entry:?}"
    );

    // Two more passes, each asked for and seen through (the status says when it compared): no fourth sync.
    for round in 0..2 {
        let before = reconciled_at(&env.app("web").await);
        env.patch_app(
            "web",
            json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}}),
        )
        .await;
        let app = env
            .wait_app("web", "a refreshed pass", |a| {
                reconciled_at(a) != before
                    && !a
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|m| m.contains_key(REFRESH_ANNOTATION))
            })
            .await;
        assert_eq!(
            failures(&app),
            3,
            "round {round}: no retry beyond the limit"
        );
    }
    assert!(
        env.config_map_data("settings").await.is_none(),
        "a failed PreSync hook stops the sync"
    );
}
