//! ApplicationSets reconciled by the controller: a list generator makes Applications that sync; an element removed
//! deletes its Application; a generation that fails keeps what was made and says why; an Application of the same
//! name that the set did not make is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

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

/// A `RollingSync` set of three environments, each its own step.
fn rolling_set(env: &Env) -> ApplicationSet {
    let mut s = set(
        env,
        json!([{ "list": { "elements": [
            { "name": "dev", "env": "dev" },
            { "name": "staging", "env": "staging" },
            { "name": "prod", "env": "prod" },
        ] } }]),
    );
    s.spec.template.metadata.labels = [("env".to_owned(), "{{env}}".to_owned())].into();
    s.spec.strategy = Some(
        serde_json::from_value(json!({
            "type": "RollingSync",
            "rollingSync": { "steps": [
                { "matchExpressions": [{ "key": "env", "operator": "In", "values": ["dev"] }] },
                { "matchExpressions": [{ "key": "env", "operator": "In", "values": ["staging"] }], "maxUpdate": 1 },
                { "matchExpressions": [{ "key": "env", "operator": "In", "values": ["prod"] }], "maxUpdate": "50%" },
            ] },
        }))
        .expect("strategy"),
    );
    s
}

fn deployed_at(app: &Application) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.history.last())
        .map(|h| h.deployed_at.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_sync_goes_step_by_step_and_a_degraded_step_stops_it() {
    let env = Env::new("roll").await;
    for name in ["dev", "staging", "prod"] {
        env.write(
            &format!("apps/{name}/web.yaml"),
            &deployment(name, 1, "nginx"),
        );
    }
    let first = env.commit_push("v1");
    let _controller = env.start_controller("c1");
    apply(&env, &rolling_set(&env)).await;

    // Each environment after the one before it is Synced and Healthy.
    let dev = env.wait_synced("dev", &first).await;
    let staging = env.wait_synced("staging", &first).await;
    let prod = env.wait_synced("prod", &first).await;
    assert!(deployed_at(&dev) <= deployed_at(&staging));
    assert!(deployed_at(&staging) <= deployed_at(&prod));
    let complete = wait_condition(&env, "RolloutProgressing", "False", "every step").await;
    assert!(complete.contains("of 3"), "{complete}");
    let status = status_of(&env).await;
    let steps: Vec<(&str, &str, &str)> = status
        .application_status
        .iter()
        .map(|e| (e.application.as_str(), e.step.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("dev", "1", "Healthy"),
            ("prod", "3", "Healthy"),
            ("staging", "2", "Healthy")
        ]
    );

    // A commit that breaks dev and changes the others: dev takes it and turns Degraded; the rollout stops there,
    // and staging and prod wait at the revision they run, saying why.
    env.write("apps/dev/web.yaml", &deployment("dev", 1, "nginx-fail"));
    env.write("apps/staging/web.yaml", &deployment("staging", 2, "nginx"));
    env.write("apps/prod/web.yaml", &deployment("prod", 2, "nginx"));
    let second = env.commit_push("v2");
    env.wait_app("dev", "dev Degraded at v2", |a| {
        a.status.as_ref().is_some_and(|s| {
            s.sync.revision.as_deref() == Some(second.as_str())
                && s.sync.status == kedge_api::SyncCode::Synced
                && s.health.status == kedge_api::HealthCode::Degraded
        })
    })
    .await;
    let stopped = wait_condition(&env, "RolloutProgressing", "True", "stopped").await;
    assert!(
        stopped.contains("step 1 of 3: dev (it is Degraded)"),
        "{stopped}"
    );
    let staging = env
        .wait_app("staging", "waiting for the rollout", |a| {
            condition(a, "WaitingForRollout").is_some_and(|c| c.status == "True")
        })
        .await;
    let waiting = condition(&staging, "WaitingForRollout")
        .unwrap()
        .message
        .clone();
    assert!(
        waiting.contains("the rollout of application set fleet has not reached revision")
            && waiting.contains("dev"),
        "{waiting}"
    );
    assert_eq!(env.replicas("staging").await, Some(1), "staging kept v1");
    assert_eq!(env.replicas("prod").await, Some(1), "prod kept v1");
    env.wait_event("staging", "WaitingForRollout", |m| m.contains("fleet"))
        .await;

    // Passed by a person (what `kedge appset rollout fleet --resume` writes): staging, then prod, take v2.
    let sets: Api<ApplicationSet> = Api::namespaced(env.client.clone(), env.ns());
    sets.patch(
        "fleet",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "annotations": {
            kedge_api::ROLLOUT_SKIP_ANNOTATION: format!("dev@{second}") } } })),
    )
    .await
    .expect("skip dev");
    let staging = env.wait_synced("staging", &second).await;
    let prod = env.wait_synced("prod", &second).await;
    assert!(deployed_at(&staging) <= deployed_at(&prod));
    assert!(condition(&prod, "WaitingForRollout").is_none());
    assert_eq!(env.replicas("prod").await, Some(2));
}

/// Labels Cluster `name` (the fleet label on or off), as a platform team would.
async fn label_cluster(env: &Env, name: &str, fleet: Option<&str>) {
    Api::<kedge_api::Cluster>::namespaced(env.client.clone(), env.ns())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "fleet": fleet } } })),
        )
        .await
        .expect("label the cluster");
}

/// Annotates Cluster `name` with the namespace its applications deploy to.
async fn annotate_cluster(env: &Env, name: &str, namespace: &str) {
    Api::<kedge_api::Cluster>::namespaced(env.client.clone(), env.ns())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { "fleet/namespace": namespace } } }),
            ),
        )
        .await
        .expect("annotate the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_labelled_clusters_gets_each_app_and_follows_the_label() {
    let env = Env::new("fleet").await;
    let east = east_cluster().await;
    let west = west_cluster().await;
    let east_ns = east.namespace("fleet-east").await.expect("east namespace");
    let west_ns = west.namespace("fleet-west").await.expect("west namespace");
    env.register_cluster("east", &east).await;
    env.register_cluster("west", &west).await;
    annotate_cluster(&env, "east", east_ns.name()).await;
    annotate_cluster(&env, "west", west_ns.name()).await;
    label_cluster(&env, "east", Some("web")).await;
    env.write("apps/guestbook/cm.yaml", &config_map("guestbook", "k", "v"));
    env.write("apps/frontend/cm.yaml", &config_map("frontend", "k", "v"));
    let sha = env.commit_push("two apps");
    let _controller = env.start_controller("c1");

    // Every labelled cluster times every directory of apps/: the matrix of a clusters and a git generator.
    let set: ApplicationSet = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "ApplicationSet",
        "metadata": { "name": "fleet", "namespace": env.ns() },
        "spec": {
            "generators": [{ "matrix": { "generators": [
                { "clusters": { "selector": { "matchLabels": { "fleet": "web" } } } },
                { "git": { "repoURL": env.repo_url, "revision": "main",
                           "directories": [{ "path": "apps/*" }] } },
            ] } }],
            "template": {
                "metadata": {
                    "name": "{{name}}-{{path.basename}}",
                    "finalizers": [kedge_api::RESOURCES_FINALIZER],
                },
                "spec": {
                    "source": { "repoURL": env.repo_url, "targetRevision": "main", "path": "{{path}}" },
                    "destination": { "name": "{{name}}", "namespace": "{{metadata.annotations.fleet/namespace}}" },
                    "syncPolicy": { "automated": { "prune": true, "selfHeal": true } },
                },
            },
        },
    }))
    .expect("set");
    apply(&env, &set).await;
    for name in ["east-frontend", "east-guestbook"] {
        env.wait_synced(name, &sha).await;
    }
    let on = |cluster: &kedge_testkit::TestCluster, ns: &str, name: &str| {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(cluster.client(), ns);
        let name = name.to_owned();
        async move { api.get_opt(&name).await.expect("read").is_some() }
    };
    assert!(on(&east, east_ns.name(), "guestbook").await);
    assert!(on(&east, east_ns.name(), "frontend").await);
    assert!(
        !on(&west, west_ns.name(), "guestbook").await,
        "west is not labelled"
    );
    let apps: Api<Application> = env.apps();

    // West gets the label: its applications come within seconds, and sync.
    let labelled = std::time::Instant::now();
    label_cluster(&env, "west", Some("web")).await;
    wait_for(STEP, POLL, || async {
        apps.get_opt("west-guestbook").await.ok().flatten()
    })
    .await
    .expect("west-guestbook made");
    let took = labelled.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "the set made west's application {took:?} after the label"
    );
    env.wait_synced("west-guestbook", &sha).await;
    env.wait_synced("west-frontend", &sha).await;
    assert!(on(&west, west_ns.name(), "guestbook").await);

    // The label removed: west's applications go, and (their finalizer says so) their objects with them.
    label_cluster(&env, "west", None).await;
    wait_for(STEP, POLL, || async {
        let gone = apps.get_opt("west-guestbook").await.ok()?.is_none()
            && apps.get_opt("west-frontend").await.ok()?.is_none();
        gone.then_some(())
    })
    .await
    .expect("west's applications deleted");
    wait_for(STEP, POLL, || async {
        (!on(&west, west_ns.name(), "guestbook").await).then_some(())
    })
    .await
    .expect("west's objects deleted with its applications");
    assert!(
        on(&east, east_ns.name(), "guestbook").await,
        "east untouched"
    );

    // No labelled cluster at all: a generator that returns nothing deletes nothing.
    label_cluster(&env, "east", None).await;
    let why = wait_condition(&env, "ErrorOccurred", "True", "returned no Applications").await;
    assert!(why.contains("the 2 made before stay"), "{why}");
    wait_condition(
        &env,
        "ResourcesUpToDate",
        "False",
        "the Applications made before stay",
    )
    .await;
    for name in ["east-frontend", "east-guestbook"] {
        assert!(apps.get_opt(name).await.unwrap().is_some(), "{name} kept");
    }
    assert!(on(&east, east_ns.name(), "guestbook").await);
}
