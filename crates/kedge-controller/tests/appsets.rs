//! ApplicationSets reconciled by the controller: a list generator makes Applications that sync; an element removed
//! deletes its Application; a generation that fails keeps what was made and says why; an Application of the same
//! name that the set did not make is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use kedge_api::{Application, ApplicationSet};
use kedge_testkit::wait_for;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

fn set(env: &Env, generators: Value) -> ApplicationSet {
    serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "ApplicationSet",
        "metadata": { "name": "fleet", "namespace": env.ns() },
        "spec": {
            "generators": generators,
            "template": {
                "metadata": { "name": "{{name}}", "labels": { "tier": "web" } },
                "spec": {
                    "source": { "repoURL": env.repo_url, "targetRevision": "main", "path": "apps/{{name}}" },
                    "destination": { "namespace": env.ns() },
                    "syncPolicy": { "automated": { "prune": true, "selfHeal": true } },
                },
            },
        },
    }))
    .expect("set")
}

async fn apply(env: &Env, set: &ApplicationSet) {
    Api::<ApplicationSet>::namespaced(env.client.clone(), env.ns())
        .patch(
            "fleet",
            &PatchParams::apply("test").force(),
            &Patch::Apply(set),
        )
        .await
        .expect("apply the set");
}

async fn status_of(env: &Env) -> kedge_api::ApplicationSetStatus {
    Api::<ApplicationSet>::namespaced(env.client.clone(), env.ns())
        .get("fleet")
        .await
        .expect("set")
        .status
        .unwrap_or_default()
}

async fn wait_condition(env: &Env, type_: &str, status: &str, needle: &str) -> String {
    wait_for(STEP, POLL, || async {
        status_of(env)
            .await
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_ && c.status == status && c.message.contains(needle))
            .map(|c| c.message)
    })
    .await
    .unwrap_or_else(|_| panic!("{type_}={status} with {needle:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_makes_changes_and_deletes_its_applications_and_keeps_them_on_errors() {
    let env = Env::new("aset").await;
    env.write("apps/one/cm.yaml", &config_map("one", "k", "v"));
    env.write("apps/two/cm.yaml", &config_map("two", "k", "v"));
    let sha = env.commit_push("apps");
    let _controller = env.start_controller("c1");
    let list = |names: &[&str]| json!([{ "list": { "elements": names.iter().map(|n| json!({ "name": n })).collect::<Vec<_>>() } }]);
    apply(&env, &set(&env, list(&["one", "two"]))).await;
    for name in ["one", "two"] {
        let app = env.wait_synced(name, &sha).await;
        assert_eq!(
            app.labels()
                .get("kedge.dev/application-set")
                .map(String::as_str),
            Some("fleet")
        );
        assert_eq!(app.labels().get("tier").map(String::as_str), Some("web"));
    }
    wait_condition(&env, "ResourcesUpToDate", "True", "2 application(s)").await;
    assert_eq!(status_of(&env).await.applications, ["one", "two"]);

    // An element removed: its Application goes.
    apply(&env, &set(&env, list(&["one"]))).await;
    let apps: Api<Application> = env.apps();
    wait_for(STEP, POLL, || async {
        apps.get_opt("two").await.unwrap().is_none().then_some(())
    })
    .await
    .expect("two deleted");
    assert!(apps.get_opt("one").await.unwrap().is_some());

    // A Git generator that cannot read its repository: nothing changes, the error says why.
    let broken = json!([{ "git": {
        "repoURL": format!("{}-missing", env.repo_url), "revision": "main",
        "directories": [{ "path": "apps/*" }],
    } }]);
    let mut failing = set(&env, broken);
    failing.spec.template.metadata.name = Some("{{path.basename}}".into());
    apply(&env, &failing).await;
    let error = wait_condition(&env, "ErrorOccurred", "True", "missing").await;
    assert!(!error.is_empty());
    wait_condition(
        &env,
        "ResourcesUpToDate",
        "False",
        "the Applications made before stay",
    )
    .await;
    assert!(apps.get_opt("one").await.unwrap().is_some(), "kept");

    // A name taken by an Application the set did not make: left alone, and said.
    env.create_app("three", "apps/two", json!({})).await;
    apply(&env, &set(&env, list(&["one", "three"]))).await;
    wait_condition(
        &env,
        "ErrorOccurred",
        "True",
        "not made by this set have the names it generates, left alone: three",
    )
    .await;
    let three = apps.get("three").await.unwrap();
    assert!(three.labels().get("kedge.dev/application-set").is_none());
}
