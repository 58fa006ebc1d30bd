//! `kedge app` through the built binary against the test cluster, with the controller running in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use cli::kedge;
use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_diff_exit_codes_and_branch_preview() {
    let env = Env::new("cli-diff").await;
    let cache = tempfile::tempdir().expect("cache");
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let v1 = env.commit_push("v1");
    // A branch that is not merged: changes one object and adds another.
    env.work.switch_new("feature").expect("branch");
    env.write("app/settings.yaml", &config_map("settings", "version", "2"));
    env.write("app/extra.yaml", &config_map("extra", "v", "1"));
    let feature = env.work.commit("feature").expect("commit");
    env.work
        .push(&env.repo_url, "feature")
        .expect("push feature");
    env.work.switch("main").expect("switch");

    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    env.wait_synced("demo", &v1).await;

    // In sync: exit 0.
    let run = kedge(&env, cache.path(), &["app", "diff", "demo"]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("in sync"), "{}", run.stderr);
    assert!(run.stdout.trim().is_empty(), "{}", run.stdout);

    // Preview of the branch: exit 1, the change and the new object shown, nothing applied.
    let run = kedge(
        &env,
        cache.path(),
        &["app", "diff", "demo", "--revision", "feature"],
    )
    .await;
    run.expect_code(1);
    assert!(
        run.stderr.contains(&feature[..7]) && run.stderr.contains("out of sync"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("ConfigMap"), "{}", run.stdout);
    assert!(
        run.stdout.contains("settings") && run.stdout.contains("version"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("extra") && run.stdout.contains("missing"),
        "{}",
        run.stdout
    );
    assert_eq!(
        env.config_map_data("settings").await,
        Some(json!({ "version": "1" }))
    );
    assert!(env.config_map_data("extra").await.is_none());
    let app = env.app("demo").await;
    assert_eq!(
        app.status.and_then(|s| s.sync.revision).as_deref(),
        Some(v1.as_str()),
        "a preview does not move the application"
    );

    // A live edit (the application suspended so that it stays): exit 1 with the edit attributed.
    env.patch_app("demo", json!({ "spec": { "suspend": true } }))
        .await;
    env.wait_app("demo", "suspended", |a| {
        condition(a, "Suspended").is_some_and(|c| c.status == "True")
    })
    .await;
    Api::<ConfigMap>::namespaced(env.client.clone(), env.ns())
        .patch(
            "settings",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&json!({ "data": { "version": "edited" } })),
        )
        .await
        .expect("edit");
    let run = kedge(&env, cache.path(), &["app", "diff", "demo"]).await;
    run.expect_code(1);
    assert!(
        run.stdout.contains("kubectl-edit") && run.stdout.contains("data.version"),
        "{}",
        run.stdout
    );

    // An application that does not exist is an error, not a diff.
    let run = kedge(&env, cache.path(), &["app", "diff", "nope"]).await;
    assert_eq!(run.code, Some(2), "errors exit above 1, like kubectl diff");
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_wait_returns_once_synced_and_healthy_and_times_out_with_the_reason() {
    let env = Env::new("cli-wait").await;
    let cache = tempfile::tempdir().expect("cache");
    env.write("app/settings.yaml", &config_map("settings", "v", "1"));
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    env.commit_push("v1");
    let _controller = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    // Straight after creation: waits through the first sync and the Deployment becoming ready.
    let run = kedge(
        &env,
        cache.path(),
        &["app", "wait", "demo", "--timeout", "60s"],
    )
    .await;
    run.expect_code(0);
    assert!(run.stdout.contains("Synced, Healthy"), "{}", run.stdout);
    let app = env.app("demo").await;
    let status = app.status.expect("status");
    assert_eq!(status.sync.status, kedge_api::SyncCode::Synced);
    assert_eq!(status.health.status, kedge_api::HealthCode::Healthy);

    // A path that does not exist never syncs: exit 1 after the timeout, saying why.
    env.create_app("broken", "no-such-path", automated(true, true))
        .await;
    // The controller's verdict first (however loaded the machine), so that the 3 s timeout only waits for a sync
    // that never comes, and the message it prints is there to read.
    env.wait_app("broken", "the missing path reported", |a| {
        serde_json::to_string(&a.status).is_ok_and(|s| s.contains("no-such-path"))
    })
    .await;
    let run = kedge(
        &env,
        cache.path(),
        &["app", "wait", "broken", "--sync", "--timeout", "3s"],
    )
    .await;
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("timed out after 3s waiting for application broken"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no-such-path"), "{}", run.stderr);
    // An application that does not exist is an error at once.
    let run = kedge(
        &env,
        cache.path(),
        &["app", "wait", "nobody", "--timeout", "60s"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("application nobody not found"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_create_then_upsert() {
    let env = Env::new("cli-create").await;
    let cache = tempfile::tempdir().expect("cache");
    env.write("app/settings.yaml", &config_map("settings", "v", "1"));
    let sha = env.commit_push("v1");
    let _controller = env.start_controller("c1");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "app",
            "create",
            "demo",
            "--repo",
            env.repo_url.as_str(),
            "--revision",
            "main",
            "--path",
            "app",
            "--dest-namespace",
            env.ns(),
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run_with = |args: Vec<String>| {
        let env = &env;
        let cache = cache.path().to_owned();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            kedge(env, &cache, &refs).await
        }
    };

    let dry = run_with(create(&["--dry-run", "--sync-policy", "automated"])).await;
    dry.expect_code(0);
    assert!(
        dry.stdout.contains("repoURL") && dry.stdout.contains("automated"),
        "{}",
        dry.stdout
    );
    assert!(
        env.apps().get_opt("demo").await.expect("get").is_none(),
        "a dry run creates nothing"
    );

    let run = run_with(create(&[
        "--sync-policy",
        "automated",
        "--auto-prune",
        "--self-heal",
        "-l",
        "team=a",
    ]))
    .await;
    run.expect_code(0);
    let app = env.wait_synced("demo", &sha).await;
    assert_eq!(app.labels().get("team").map(String::as_str), Some("a"));
    let automated = app
        .spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.automated.clone())
        .expect("automated");
    assert!(automated.prune && automated.self_heal);

    // Again: refused, nothing changed.
    let again = run_with(create(&["--sync-policy", "automated"])).await;
    again.expect_code(1);
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("--upsert"),
        "{}",
        again.stderr
    );

    // --upsert applies what is given now: automated sync is turned off.
    let upsert = run_with(create(&["--upsert", "--sync-policy", "none"])).await;
    upsert.expect_code(0);
    let app = env.app("demo").await;
    assert!(
        app.spec.sync_policy.and_then(|p| p.automated).is_none(),
        "automated removed by the upsert"
    );

    // Bad input is said clearly.
    let bad = run_with(create(&["--upsert", "-l", "no-equals-sign"])).await;
    bad.expect_code(1);
    assert!(bad.stderr.contains("not key=value"), "{}", bad.stderr);
}
