//! `spec.dependsOn`: an application waits, without an error, until those it depends on are Synced and Healthy, and
//! goes as soon as they are; a cycle is refused with the cycle named; a `readyExpr` decides instead when given.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_waits_for_its_dependencies_and_cycles_are_refused() {
    let env = Env::new("deps").await;
    let ns = env.ns().to_owned();
    env.write("db/db.yaml", &deployment("db", 1, "postgres"));
    env.write("web/cm.yaml", &config_map("web", "k", "v"));
    env.write("a/cm.yaml", &config_map("a", "k", "v"));
    env.write("b/cm.yaml", &config_map("b", "k", "v"));
    for name in ["d", "e", "f"] {
        env.write(&format!("{name}/cm.yaml"), &config_map(name, "k", "v"));
    }
    let sha = env.commit_push("apps");
    let _controller = env.start_controller("c1");

    // web depends on db, which does not exist yet: web waits, and says for what.
    env.create_app_with(
        "web",
        "web",
        automated(true, true),
        json!({ "dependsOn": [{ "name": "db" }] }),
        json!({}),
    )
    .await;
    let waiting = env
        .wait_app("web", "waiting for db", |a| {
            condition(a, "WaitingForDependencies").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(
        condition(&waiting, "WaitingForDependencies")
            .unwrap()
            .message,
        format!("waiting for {ns}/db (not found)")
    );
    assert!(
        waiting.status.as_ref().unwrap().history.is_empty(),
        "nothing synced"
    );
    env.wait_event("web", "WaitingForDependencies", |m| m.contains("db"))
        .await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.client.clone(), &ns);
    assert!(
        cms.get_opt("web").await.unwrap().is_none(),
        "web applied nothing"
    );

    // db comes and becomes healthy: web syncs right after, and no longer waits.
    env.create_app("db", "db", automated(true, true)).await;
    let db = env.wait_synced("db", &sha).await;
    let web = env.wait_synced("web", &sha).await;
    assert!(condition(&web, "WaitingForDependencies").is_none());
    let db_ready = db.status.as_ref().unwrap().history[0].deployed_at.clone();
    let web_started = web.status.as_ref().unwrap().history[0].deployed_at.clone();
    assert!(
        web_started >= db_ready,
        "web ({web_started}) synced after db ({db_ready})"
    );
    assert!(cms.get_opt("web").await.unwrap().is_some());

    // a -> b -> a: both refused, the cycle named.
    env.create_app_with(
        "a",
        "a",
        automated(true, true),
        json!({ "dependsOn": [{ "name": "b" }] }),
        json!({}),
    )
    .await;
    env.create_app_with(
        "b",
        "b",
        automated(true, true),
        json!({ "dependsOn": [{ "name": "a", "namespace": ns }] }),
        json!({}),
    )
    .await;
    let cycle = format!("dependency cycle: {ns}/a -> {ns}/b -> {ns}/a");
    env.wait_event("a", "SyncFailed", |m| m.contains(&cycle))
        .await;
    assert!(cms.get_opt("a").await.unwrap().is_none());

    // readyExpr decides instead of the built-in check: true goes, false waits and says so, one that cannot be read
    // is refused by its path.
    let depends = |expr: &str| json!({ "dependsOn": [{ "name": "db", "readyExpr": expr }] });
    env.create_app_with(
        "d",
        "d",
        automated(true, true),
        depends("dep.status.health.status == 'Healthy' && self.metadata.name == 'd'"),
        json!({}),
    )
    .await;
    env.create_app_with(
        "e",
        "e",
        automated(true, true),
        depends("dep.status.sync.status == 'OutOfSync'"),
        json!({}),
    )
    .await;
    env.create_app_with(
        "f",
        "f",
        automated(true, true),
        depends("dep.status.health.status =="),
        json!({}),
    )
    .await;
    env.wait_synced("d", &sha).await;
    let e = env
        .wait_app("e", "waiting for its readyExpr", |a| {
            condition(a, "WaitingForDependencies").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(
        condition(&e, "WaitingForDependencies").unwrap().message,
        format!("waiting for {ns}/db (its readyExpr is false)")
    );
    env.wait_event("f", "SyncFailed", |m| {
        m.contains("spec.dependsOn[0].readyExpr") && m.contains("does not compile")
    })
    .await;
    assert!(cms.get_opt("e").await.unwrap().is_none());
    assert!(cms.get_opt("f").await.unwrap().is_none());
}
