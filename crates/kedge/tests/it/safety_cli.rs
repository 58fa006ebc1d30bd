//! Prune and adoption safety and secret masking end to end: the controller runs in-process, `kedge app` is the
//! built binary, and everything is read back from the test cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use cli::kedge;
use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Creates ConfigMap `name` as `kubectl` would (its own field manager, no tracking id).
async fn create_by_hand(env: &Env, name: &str, value: &str) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name }, "data": { "value": value }
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), env.ns())
        .create(
            &PostParams {
                field_manager: Some("kubectl-client-side-apply".into()),
                ..Default::default()
            },
            &cm,
        )
        .await
        .expect("create by hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_is_reported_and_fail_on_shared_resource_refuses_it() {
    let env = Env::new("cli-adopt").await;
    env.write(
        "app/legacy.yaml",
        &config_map("legacy", "value", "from-git"),
    );
    env.write(
        "strict/other.yaml",
        &config_map("other", "value", "from-git"),
    );
    let sha = env.commit_push("adopt");
    create_by_hand(&env, "legacy", "by-hand").await;
    create_by_hand(&env, "other", "by-hand").await;
    let _controller = env.start_controller("c1");
    env.create_app("adopter", "app", automated(true, true))
        .await;
    let mut strict = automated(true, true);
    strict["syncOptions"] = json!(["FailOnSharedResource=true"]);
    env.create_app("strict", "strict", strict).await;

    // Adopted: applied, tracked, and an Adopted event naming the previous manager.
    env.wait_synced("adopter", &sha).await;
    let event = env
        .wait_event("adopter", "Adopted", |m| m.contains("legacy"))
        .await;
    let message = event.message.unwrap_or_default();
    assert!(
        message
            .contains("adopted existing object, previously managed by kubectl-client-side-apply"),
        "{message}"
    );
    assert_eq!(
        env.config_map_data("legacy").await,
        Some(json!({ "value": "from-git" }))
    );

    // Refused: the sync fails at plan time naming the object, and the object is left exactly as it was.
    let warning = env.wait_warning("strict", "FailOnSharedResource").await;
    let message = warning.message.unwrap_or_default();
    assert!(
        message.contains("other") && message.contains("nothing was applied"),
        "{message}"
    );
    let other = env.object("", "v1", "ConfigMap", "other").await.unwrap();
    assert_eq!(other.data["data"]["value"], "by-hand");
    assert!(
        other
            .metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| k != "kedge.dev/tracking-id")
    );
    assert_eq!(env.count_events("strict", "Adopted").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_of_most_objects_waits_for_sync_prune_confirm() {
    let env = Env::new("cli-mass").await;
    let cache = tempfile::tempdir().expect("cache");
    for i in 0..12 {
        env.write(
            &format!("app/cm-{i}.yaml"),
            &config_map(&format!("cm-{i}"), "i", &i.to_string()),
        );
    }
    let first = env.commit_push("twelve");
    let _controller = env.start_controller("c1");
    env.create_app("mass", "app", automated(true, true)).await;
    env.wait_synced("mass", &first).await;

    // 11 of 12 files disappear (a broken overlay, a wrong path...): automated prune is held.
    for i in 1..12 {
        env.work
            .remove(&format!("app/cm-{i}.yaml"))
            .expect("remove");
    }
    env.commit_push("lose eleven");
    let warning = env
        .wait_warning("mass", "would prune 11 of 12 objects")
        .await;
    let message = warning.message.unwrap_or_default();
    assert!(
        message.contains("kedge app sync mass") && message.contains("--prune --confirm"),
        "{message}"
    );
    for i in 1..12 {
        assert!(
            env.config_map_data(&format!("cm-{i}")).await.is_some(),
            "cm-{i} was pruned without confirmation"
        );
    }
    // A plain manual sync with prune is held the same way.
    let run = kedge(
        &env,
        cache.path(),
        &["app", "sync", "mass", "--prune", "--timeout", "60s"],
    )
    .await;
    assert_ne!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(env.config_map_data("cm-5").await.is_some());

    // Confirmed: pruned.
    let run = kedge(
        &env,
        cache.path(),
        &[
            "app",
            "sync",
            "mass",
            "--prune",
            "--confirm",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for i in 1..12 {
        env.wait_gone("", "v1", "ConfigMap", &format!("cm-{i}"))
            .await;
    }
    assert!(env.config_map_data("cm-0").await.is_some());
    // `--confirm` means nothing without `--prune`: refused by the command line.
    let run = kedge(&env, cache.path(), &["app", "sync", "mass", "--confirm"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_render_prunes_only_with_allow_empty() {
    let env = Env::new("cli-empty").await;
    env.write("app/a.yaml", &config_map("ea", "v", "1"));
    env.write("app/b.yaml", &config_map("eb", "v", "1"));
    env.write("app/README.md", "kept so that the directory stays\n");
    let first = env.commit_push("two");
    let _controller = env.start_controller("c1");
    env.create_app("empty", "app", automated(true, true)).await;
    env.wait_synced("empty", &first).await;

    env.work.remove("app/a.yaml").expect("remove");
    env.work.remove("app/b.yaml").expect("remove");
    env.commit_push("nothing left");
    env.wait_warning("empty", "allow_empty").await;
    assert!(env.config_map_data("ea").await.is_some());
    assert!(env.config_map_data("eb").await.is_some());

    env.patch_app(
        "empty",
        json!({ "spec": { "syncPolicy": { "automated": { "prune": true, "selfHeal": true, "allowEmpty": true } } } }),
    )
    .await;
    env.wait_gone("", "v1", "ConfigMap", "ea").await;
    env.wait_gone("", "v1", "ConfigMap", "eb").await;
    let app = env
        .wait_app("empty", "inventory emptied", |a| {
            a.status.as_ref().is_some_and(|s| s.inventory.is_empty())
        })
        .await;
    assert!(app.status.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypted_values_of_a_config_map_never_show_in_app_diff_or_status() {
    const FIRST: &str = "hunter2-first-password";
    const SECOND: &str = "x9";
    let env = Env::new("cli-mask").await;
    let cache = tempfile::tempdir().expect("cache");
    let key = kedge_testkit::AgeKey::generate();
    let encrypt = |password: &str| {
        let plain = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db-config\ndata:\n  url: postgres://db/shop\n  password: {password}\n"
        );
        kedge_testkit::sops_encrypt(
            &plain,
            "yaml",
            &key.recipient,
            &["--encrypted-regex", "^data$"],
        )
        .expect("sops")
    };
    env.write("app/config.yaml", &encrypt(FIRST));
    env.write("app/plain.yaml", &config_map("plain", "v", "1"));
    let first = env.commit_push("encrypted config map");
    env.create_secret(
        "sops-age",
        json!({ "age.agekey": format!("{}\n", key.identity) }),
    )
    .await;
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "demo",
        "app",
        automated(true, true),
        json!({ "decryption": { "provider": "sops", "secretRef": { "name": "sops-age" } } }),
        json!({}),
    )
    .await;
    env.wait_synced("demo", &first).await;
    assert_eq!(
        env.config_map_data("db-config").await.unwrap()["password"],
        FIRST
    );

    // A new value, of another length, waits (suspended) so that the diff shows a change.
    env.patch_app("demo", json!({ "spec": { "suspend": true } }))
        .await;
    env.wait_app("demo", "suspended", |a| {
        condition(a, "Suspended").is_some_and(|c| c.status == "True")
    })
    .await;
    env.write("app/config.yaml", &encrypt(SECOND));
    let second = env.commit_push("rotate the password");
    let run = kedge(
        &env,
        cache.path(),
        &["app", "diff", "demo", "--revision", &second],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let shown = format!("{}\n{}", run.stdout, run.stderr);
    assert!(shown.contains("password"), "{shown}");
    assert!(!shown.contains(FIRST), "{shown}");
    assert!(!shown.contains(&format!("password: {SECOND}")), "{shown}");
    // Fixed-length masks: the old and the new value show as masks that say only that the value changes.
    let line = |sign: char| {
        shown
            .lines()
            .find(|l| l.starts_with(sign) && l.contains("password"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line('-').contains("++++++++") && !line('-').contains("++++++++++++"),
        "{shown}"
    );
    assert!(line('+').contains("++++++++++++"), "{shown}");
    // Every encrypted field is masked, changed or not (the url was encrypted too).
    assert!(!shown.contains("postgres://db/shop"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("url:") && l.contains("++++++++") && !l.contains("++++++++++++")),
        "{shown}"
    );

    // Nothing in the Application (status, conditions) nor its events holds the value either.
    let app = env.app("demo").await;
    let status = serde_json::to_string(&app.status).unwrap();
    assert!(!status.contains(FIRST), "{status}");
    for e in env.events("demo").await {
        assert!(!e.message.unwrap_or_default().contains(FIRST));
    }
}
