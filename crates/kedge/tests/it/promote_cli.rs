//! `kedge app promote`, `kedge app promotions` and `kedge appset rollout` against the controller: a pending candidate
//! approved from the CLI with the user recorded, the chain printed, and clear refusals when there is nothing to do.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use cli::kedge;
use common::*;
use kedge_api::ApplicationSet;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_candidate_is_approved_from_the_cli_and_the_chain_is_shown() {
    let env = Env::new("promcli").await;
    let cache = tempfile::tempdir().unwrap();
    env.write("envs/dev/cm.yaml", &config_map("dev-cm", "v", "1"));
    env.write("envs/prod/cm.yaml", &config_map("prod-cm", "v", "1"));
    let v1 = env.commit_push("v1");
    let _controller = env.start_controller("c1");

    // Not a stage: refused, saying why.
    env.create_app("dev", "envs/dev", automated(true, true))
        .await;
    let run = kedge(&env, cache.path(), &["app", "promote", "dev"]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("application dev has no spec.promotion"),
        "{}",
        run.stderr
    );

    env.create_app_with(
        "prod",
        "envs/prod",
        automated(true, true),
        json!({ "promotion": { "from": { "name": "dev" }, "approval": "Manual" } }),
        json!({}),
    )
    .await;
    env.wait_app("prod", "a pending candidate", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.promotion.as_ref())
            .is_some_and(|p| p.pending.as_deref() == Some(v1.as_str()))
    })
    .await;
    let run = kedge(&env, cache.path(), &["app", "promotions", "prod"]).await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("STAGE"), "{}", run.stdout);
    assert!(
        lines[1].starts_with("dev") && lines[1].contains("source") && lines[1].contains(&v1[..7]),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("prod")
            && lines[2].contains("Manual")
            && lines[2].contains("waits for approval"),
        "{}",
        run.stdout
    );

    let run = kedge(&env, cache.path(), &["app", "promote", "prod"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains(&format!("revision {v1} promoted")),
        "{}",
        run.stdout
    );
    let prod = env.wait_synced("prod", &v1).await;
    let record = prod
        .status
        .unwrap()
        .promotion
        .unwrap()
        .history
        .pop()
        .unwrap();
    assert!(record.approved_by.starts_with("cli"), "{record:?}");

    // Nothing pending any more: refused.
    let run = kedge(&env, cache.path(), &["app", "promote", "prod"]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("no candidate waiting for approval"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appset_rollout_refuses_what_it_cannot_do() {
    let env = Env::new("rollcli").await;
    let cache = tempfile::tempdir().unwrap();
    let run = kedge(&env, cache.path(), &["appset", "rollout", "missing"]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("application set missing not found"),
        "{}",
        run.stderr
    );
    let sets: Api<ApplicationSet> = Api::namespaced(env.client.clone(), env.ns());
    let set = |strategy: serde_json::Value| {
        json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "ApplicationSet",
            "metadata": { "name": "fleet" },
            "spec": {
                "generators": [{ "list": { "elements": [] } }],
                "template": { "metadata": { "name": "{{name}}" }, "spec": { "source": { "repoURL": env.repo_url } } },
                "strategy": strategy,
            },
        })
    };
    sets.patch(
        "fleet",
        &PatchParams::apply("test").force(),
        &Patch::Apply(set(json!({ "type": "AllAtOnce" }))),
    )
    .await
    .unwrap();
    let run = kedge(&env, cache.path(), &["appset", "rollout", "fleet"]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("has no RollingSync strategy"),
        "{}",
        run.stderr
    );
    sets.patch(
        "fleet",
        &PatchParams::apply("test").force(),
        &Patch::Apply(set(json!({ "type": "RollingSync", "rollingSync": { "steps": [{ "matchExpressions": [] }] } }))),
    )
    .await
    .unwrap();
    let run = kedge(
        &env,
        cache.path(),
        &["appset", "rollout", "fleet", "--resume"],
    )
    .await;
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("not stopped by any Application: nothing to resume"),
        "{}",
        run.stderr
    );
    let run = kedge(
        &env,
        cache.path(),
        &["appset", "rollout", "fleet", "--restart"],
    )
    .await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("waits for every Application again"),
        "{}",
        run.stdout
    );
}
