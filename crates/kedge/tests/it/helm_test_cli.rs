//! Helm test hooks: a sync never applies them (one is named with `randAlphaNum`, so it would differ forever), and
//! `kedge app test` runs them on request as `helm test` does.
//!
//! Run: `cargo nextest run -p kedge -E 'test(/^helm_test_cli::/)'` (needs helm: scripts/install-helm).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use std::path::Path;

use cli::{Run, copy_dir, kedge};
use common::*;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::ApiResource;
use serde_json::json;

async fn job_names(env: &Env) -> Vec<String> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("batch", "v1", "Job"));
    let mut names: Vec<String> =
        Api::<DynamicObject>::namespaced_with(env.client.clone(), env.ns(), &ar)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_tests_are_never_synced_and_run_on_request() {
    let env = Env::new("helm-test").await;
    let cache = tempfile::tempdir().expect("cache");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kedge-helm/tests/fixtures");
    copy_dir(&env, &fixtures.join("tested"), "charts/tested");
    let sha = env.commit_push("chart with tests");
    let _controller = env.start_controller("helm-test");

    // Never deployed: nothing to test yet.
    env.create_app("tested", "charts/tested", json!({})).await;
    let Run { code, stderr, .. } = kedge(&env, cache.path(), &["app", "test", "tested"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not been deployed"), "{stderr}");

    env.patch_app(
        "tested",
        json!({"spec": {"syncPolicy": automated(true, false)}}),
    )
    .await;
    let app = env.wait_synced("tested", &sha).await;
    let kinds: Vec<String> = app
        .status
        .unwrap()
        .resources
        .into_iter()
        .map(|r| format!("{} {}", r.object.kind, r.object.name))
        .collect();
    assert_eq!(kinds, vec!["ConfigMap tested-config"]);
    assert!(
        job_names(&env).await.is_empty(),
        "a sync applies no test hook"
    );
    // Each render names the smoke test anew; the application is still in sync.
    let Run {
        code,
        stdout,
        stderr,
    } = kedge(&env, cache.path(), &["app", "diff", "tested"]).await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");

    // On request: by weight (smoke at 0, check at 1); check is deleted once it succeeded, smoke stays.
    let Run {
        code,
        stdout,
        stderr,
    } = kedge(&env, cache.path(), &["app", "test", "tested"]).await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("Job tested-smoke-") && lines[0].contains("Succeeded"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("Job tested-check: Succeeded"),
        "{stdout}"
    );
    let jobs = job_names(&env).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0].starts_with("tested-smoke-"), "{jobs:?}");

    // A failing test: exit 1, named; the failed Job is kept (no hook-failed policy) for inspection.
    env.patch_app(
        "tested",
        json!({"spec": {"source": {"helm": {"parameters": [{"name": "testImage", "value": "fail:1"}]}}}}),
    )
    .await;
    env.wait_app("tested", "compared with the new parameters", |a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == a.metadata.generation)
    })
    .await;
    let Run {
        code,
        stdout,
        stderr,
    } = kedge(&env, cache.path(), &["app", "test", "tested"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("Job tested-check: Failed"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("tests failed"), "{stderr}");
    assert!(job_names(&env).await.contains(&"tested-check".to_owned()));
}
