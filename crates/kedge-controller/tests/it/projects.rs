//! Projects end to end: what a project does not allow is refused before any request about the objects (checked in
//! the API server's audit log), a changed project releases its applications at once, and applications outside
//! Kedge's namespace belong to a project only where it lists their namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_api::{Application, Project};
use kedge_testkit::wait_for;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_bounds_sources_destinations_and_kinds_before_anything_is_sent() {
    let env = Env::audited("proj").await;
    let ns = env.ns().to_owned();
    apply_project(
        &env,
        "team-a",
        json!({
            "sourceRepos": [env.repo_url],
            "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": ns }],
        }),
    )
    .await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let v1 = env.commit_push("allowed");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "web",
        "app",
        automated(true, true),
        json!({ "project": "team-a", "destination": { "namespace": ns } }),
        json!({}),
    )
    .await;
    env.wait_synced("web", &v1).await;

    // A cluster-scoped kind the project does not list, and a ConfigMap it would allow: nothing of the sync is sent.
    // Cluster-scoped: named after the test's namespace, and deleted at the end.
    let role = format!("{ns}-admin");
    env.write(
        "app/role.yaml",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules: []\n"
        ),
    );
    env.write("app/extra.yaml", &config_map("extra", "k", "v"));
    env.commit_push("a cluster role");
    let message = wait_refused(&env, "web", "NotPermitted", "ClusterRole").await;
    assert!(
        message.contains(&format!(
            "project team-a does not allow ClusterRole {role} (spec.clusterResourceWhitelist)"
        )),
        "{message}"
    );
    assert!(message.contains("nothing was applied"), "{message}");
    assert!(env.config_map_data("extra").await.is_none());
    assert!(
        requests_about(&env, &ns, "extra").is_empty(),
        "requests were sent about an object of a refused sync: {:?}",
        requests_about(&env, &ns, "extra")
    );
    // Events are published in the background: they may follow the status.
    let refused = wait_for(STEP, POLL, || async {
        env.events("web").await.into_iter().find(|e| {
            e.reason.as_deref() == Some("NotPermitted")
                || e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("ClusterRole"))
        })
    })
    .await;
    assert!(refused.is_ok(), "{:#?}", env.events("web").await);

    // The project allows the kind: the application syncs without anything else happening to it.
    apply_project(
        &env,
        "team-a",
        json!({
            "sourceRepos": [env.repo_url],
            "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": ns }],
            "clusterResourceWhitelist": [{ "group": "rbac.authorization.k8s.io", "kind": "ClusterRole" }],
        }),
    )
    .await;
    let app = env
        .wait_app("web", "synced once the project allows it", |a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.sync.status == kedge_api::SyncCode::Synced)
        })
        .await;
    assert!(condition(&app, "Stalled").is_none_or(|c| c.status != "True"));
    env.wait_config_map("extra", "k", "v").await;

    // An object in a namespace outside the destinations is refused, naming the object.
    env.write(
        "app/elsewhere.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: elsewhere\n  namespace: kube-system\ndata:\n  k: v\n",
    );
    env.commit_push("another namespace");
    let message = wait_refused(&env, "web", "NotPermitted", "kube-system").await;
    assert!(
        message.contains(
            "project team-a does not allow destination in-cluster/kube-system for ConfigMap \
             kube-system/elsewhere (spec.destinations)"
        ),
        "{message}"
    );

    // A repository and a project the application may not use.
    env.create_app_with(
        "other-repo",
        "app",
        automated(true, true),
        json!({ "project": "team-a", "source": { "repoURL": env.servers.http.url("app.git"), "targetRevision": "main", "path": "app" } }),
        json!({}),
    )
    .await;
    let message = wait_refused(&env, "other-repo", "NotPermitted", "spec.sourceRepos").await;
    assert!(message.contains("does not allow repository"), "{message}");
    env.create_app_with(
        "nowhere",
        "app",
        automated(true, true),
        json!({ "project": "missing" }),
        json!({}),
    )
    .await;
    wait_refused(&env, "nowhere", "NotPermitted", "project missing not found").await;

    // The project's status says whether its rules can be read.
    let projects: Api<Project> = Api::namespaced(env.client.clone(), &ns);
    wait_for(DEADLINE, POLL, || async {
        let p = projects.get("team-a").await.ok()?;
        p.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await
    .expect("the project is Ready");
    apply_project(&env, "broken", json!({ "sourceRepos": ["[unclosed"] })).await;
    let message = wait_for(DEADLINE, POLL, || async {
        let p = projects.get("broken").await.ok()?;
        p.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .map(|c| c.message)
    })
    .await
    .expect("the broken project is reported");
    assert!(message.contains("spec.sourceRepos"), "{message}");
    drop(_controller);
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(env.client.clone());
    roles
        .delete(&role, &Default::default())
        .await
        .expect("delete the cluster role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_in_other_namespaces_need_the_controller_and_the_project_to_allow_them() {
    let env = Env::new("proj-ns").await;
    let kedge_ns = env.ns().to_owned();
    let team = env
        .cluster
        .namespace(&format!("{kedge_ns}-team"))
        .await
        .expect("team namespace");
    let outside = env
        .cluster
        .namespace(&format!("{kedge_ns}-outside"))
        .await
        .expect("outside namespace");
    apply_project(
        &env,
        "team-a",
        json!({
            "sourceRepos": ["*"],
            "destinations": [{ "name": "in-cluster", "namespace": "*" }],
        }),
    )
    .await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let v1 = env.commit_push("first");
    let mut rc = env.run_config("c1");
    rc.namespace = None;
    rc.application_namespaces = vec![format!("{kedge_ns}-team*")];
    let _controller = RunningController::start(env.cluster.kubeconfig(), rc);
    let create_in = |ns: String, name: &'static str| {
        let env = &env;
        async move {
            let app: Application = serde_json::from_value(json!({
                "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
                "metadata": { "name": name, "namespace": ns },
                "spec": {
                    "project": "team-a",
                    "source": { "repoURL": env.repo_url, "targetRevision": "main", "path": "app" },
                    "destination": { "namespace": ns },
                    "syncPolicy": automated(true, true),
                }
            }))
            .expect("application");
            Api::<Application>::namespaced(env.client.clone(), &ns)
                .create(&PostParams::default(), &app)
                .await
                .expect("create application");
        }
    };
    create_in(team.name().to_owned(), "web").await;
    create_in(outside.name().to_owned(), "web").await;
    let team_apps: Api<Application> = Api::namespaced(env.client.clone(), team.name());
    // The controller serves the team's namespace, but the project does not list it yet.
    let message = wait_for(DEADLINE, POLL, || async {
        let app = team_apps.get("web").await.ok()?;
        let c = condition(&app, "Ready")?.clone();
        (c.reason == "NotPermitted").then_some(c.message)
    })
    .await
    .expect("refused by the project");
    assert!(message.contains("spec.sourceNamespaces"), "{message}");
    apply_project(
        &env,
        "team-a",
        json!({
            "sourceRepos": ["*"],
            "destinations": [{ "name": "in-cluster", "namespace": "*" }],
            "sourceNamespaces": [format!("{kedge_ns}-team*")],
        }),
    )
    .await;
    wait_for(DEADLINE, POLL, || async {
        let app = team_apps.get("web").await.ok()?;
        synced_at(&app, &v1).then_some(())
    })
    .await
    .expect("the team's application syncs");
    // The namespace the controller does not serve is left alone: no status, nothing deployed there.
    let outside_app = Api::<Application>::namespaced(env.client.clone(), outside.name())
        .get("web")
        .await
        .expect("outside application");
    assert!(
        outside_app
            .status
            .as_ref()
            .is_none_or(|s| s.conditions.is_empty()),
        "{:?}",
        outside_app.status
    );
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), outside.name());
    assert!(cms.get_opt("settings").await.expect("read").is_none());
}

fn sync_request(who: &str) -> kedge_api::Operation {
    kedge_api::Operation {
        sync: Some(kedge_api::SyncOperation::default()),
        initiated_by: who.into(),
        requested_at: jiff::Timestamp::now().to_string(),
        ..Default::default()
    }
}

async fn ask_sync(env: &Env, name: &str, who: &str) {
    env.patch_app(
        name,
        json!({ "metadata": { "annotations": {
            kedge_api::OPERATION_ANNOTATION: sync_request(who).to_annotation() } } }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_windows_hold_syncs_until_they_allow_them() {
    let env = Env::new("proj-win").await;
    let base = json!({
        "sourceRepos": ["*"],
        "destinations": [{ "name": "in-cluster", "namespace": "*" }],
    });
    let with_windows = |windows: Value| {
        let mut spec = base.clone();
        spec["syncWindows"] = windows;
        spec
    };
    // A deny window open all the time for this application.
    apply_project(
        &env,
        "team-a",
        with_windows(json!([{ "kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["web"] }])),
    )
    .await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let v1 = env.commit_push("first");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "web",
        "app",
        automated(true, true),
        json!({ "project": "team-a" }),
        json!({}),
    )
    .await;
    let held = env
        .wait_app("web", "held by the deny window", |a| {
            condition(a, "SyncWindow").is_some_and(|c| c.status == "True" && c.reason == "Held")
        })
        .await;
    let message = condition(&held, "SyncWindow")
        .expect("condition")
        .message
        .clone();
    assert!(
        message.starts_with(
            "sync held by a sync window: deny window \"* * * * *\" (1h, UTC) is open until "
        ),
        "{message}"
    );
    assert_eq!(
        held.status.as_ref().map(|s| s.sync.status),
        Some(kedge_api::SyncCode::OutOfSync)
    );
    assert!(env.config_map_data("settings").await.is_none());
    // A requested sync is held too, and ends saying so.
    ask_sync(&env, "web", "alice").await;
    let app = env
        .wait_app("web", "the requested sync ends held", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| {
                    o.phase == kedge_api::OperationPhase::Failed
                        && o.message.contains("sync held by a sync window")
                })
        })
        .await;
    assert!(
        env.config_map_data("settings").await.is_none(),
        "{:?}",
        app.status
    );
    // manualSync: the same request goes through while automation still waits.
    apply_project(
        &env,
        "team-a",
        with_windows(json!([{ "kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["web"],
                              "manualSync": true }])),
    )
    .await;
    ask_sync(&env, "web", "bob").await;
    env.wait_synced("web", &v1).await;
    env.wait_config_map("settings", "color", "blue").await;

    // An allow window that opens in one to two minutes (its schedule has whole minutes: at least 60 s from now, so
    // that a slow machine still sees the commit wait): a new commit waits for it, then syncs by itself when it
    // opens.
    let opens = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(120))
        .expect("time");
    let opens_at = opens.to_zoned(jiff::tz::TimeZone::UTC);
    apply_project(
        &env,
        "team-a",
        with_windows(json!([{ "kind": "allow", "schedule": format!("{} {} * * *", opens_at.minute(), opens_at.hour()),
                              "duration": "1h", "applications": ["w*"] }])),
    )
    .await;
    env.write("app/cm.yaml", &config_map("settings", "color", "green"));
    let v2 = env.commit_push("second");
    let held = env
        .wait_app("web", "waiting for the allow window", |a| {
            condition(a, "SyncWindow")
                .is_some_and(|c| c.message.contains("outside the allow windows"))
        })
        .await;
    let message = condition(&held, "SyncWindow")
        .expect("condition")
        .message
        .clone();
    assert!(message.contains("opens at "), "{message}");
    assert_eq!(
        env.config_map_data("settings").await.expect("config map")["color"],
        "blue"
    );
    let app = wait_for(
        Duration::from_secs(150),
        Duration::from_millis(500),
        || async {
            let a = env.apps().get("web").await.ok()?;
            synced_at(&a, &v2).then_some(a)
        },
    )
    .await
    .expect("synced once the allow window opened");
    let now = jiff::Timestamp::now();
    let opened = opens_at
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("time")
        .timestamp();
    assert!(
        now >= opened,
        "synced at {now}, before the window opened at {opened}"
    );
    assert!(condition(&app, "SyncWindow").is_none(), "{:?}", app.status);
    env.wait_config_map("settings", "color", "green").await;
}
