//! The cluster registry against a second test cluster: a registered cluster is reached with the credentials of its
//! Secret and reports its version and applications; a wrong CA, a missing Secret and rotated credentials are
//! reported with their reason, and a fixed Secret is picked up without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use kedge_api::{CONNECTED, Cluster, Condition};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The value of `key: value` in a kubeconfig's text (the test cluster writes one of each).
fn field<'a>(kubeconfig: &'a str, key: &str) -> &'a str {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in the kubeconfig"))
}

fn connected(cluster: &Cluster) -> Option<&Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == CONNECTED)
}

async fn wait_cluster(
    api: &Api<Cluster>,
    name: &str,
    what: &str,
    cond: impl Fn(&Cluster) -> bool,
) -> Cluster {
    match kedge_testkit::wait_for(STEP, POLL, || async {
        api.get_opt(name).await.ok().flatten().filter(|c| cond(c))
    })
    .await
    {
        Ok(c) => c,
        Err(timeout) => {
            let last = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status);
            panic!("cluster {name}: {what}: {timeout}; last status {last:?}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_clusters_report_whether_kedge_reaches_them() {
    let env = Env::new("clusters").await;
    let east = east_cluster().await;
    let east_config = std::fs::read_to_string(east.kubeconfig()).expect("east kubeconfig");
    let hub_config = std::fs::read_to_string(env.cluster.kubeconfig()).expect("hub kubeconfig");
    let server = field(&east_config, "server").to_owned();
    let ca = "certificate-authority-data";
    let wrong_ca = east_config.replace(field(&east_config, ca), field(&hub_config, ca));
    assert_ne!(
        wrong_ca, east_config,
        "the two test clusters have their own CAs"
    );

    env.create_secret("east-creds", json!({ "kubeconfig": east_config }))
        .await;
    env.create_secret("wrong-ca-creds", json!({ "kubeconfig": wrong_ca }))
        .await;
    let clusters: Api<Cluster> = Api::namespaced(env.client.clone(), env.ns());
    for (name, secret) in [
        ("east", "east-creds"),
        ("wrong-ca", "wrong-ca-creds"),
        ("no-secret", "missing"),
    ] {
        let cluster: Cluster = serde_json::from_value(json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster",
            "metadata": { "name": name },
            "spec": { "server": server, "secretRef": { "name": secret } }
        }))
        .expect("cluster");
        clusters
            .create(&PostParams::default(), &cluster)
            .await
            .expect("create cluster");
    }
    env.create_app_with(
        "web",
        "app",
        json!({}),
        json!({ "destination": { "name": "east", "namespace": "web" } }),
        json!({}),
    )
    .await;
    let mut rc = env.run_config("c1");
    rc.cluster_check_interval = Duration::from_millis(500);
    let _controller = RunningController::start(env.cluster.kubeconfig(), rc);

    let reached = wait_cluster(&clusters, "east", "connected", |c| {
        connected(c).is_some_and(|c| c.status == "True")
    })
    .await;
    let status = reached.status.expect("status");
    let version = status.server_version.expect("a version");
    assert!(version.starts_with("v1."), "{version}");
    assert!(status.last_contact.is_some());
    assert_eq!(status.applications, 1, "the application naming east");

    let refused = wait_cluster(&clusters, "wrong-ca", "refused", |c| {
        connected(c).is_some_and(|c| c.status == "False")
    })
    .await;
    let condition = connected(&refused).expect("condition");
    assert_eq!(condition.reason, "Unreachable");
    assert!(
        condition.message.contains(&server)
            && condition.message.to_lowercase().contains("certificate"),
        "{}",
        condition.message
    );
    let missing = wait_cluster(&clusters, "no-secret", "no Secret", |c| {
        connected(c).is_some_and(|c| c.status == "False")
    })
    .await;
    let condition = connected(&missing).expect("condition");
    assert_eq!(condition.reason, "SecretUnavailable");
    assert!(
        condition.message.contains("missing"),
        "{}",
        condition.message
    );

    // Rotated to a token the cluster refuses: reported, then fixed without a restart.
    let token = field(&east_config, "token");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), env.ns());
    let set = |text: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    "east-creds",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "stringData": { "kubeconfig": text } })),
                )
                .await
                .expect("rotate credentials");
        }
    };
    set(east_config.replace(token, "not-the-token")).await;
    let rotated = wait_cluster(&clusters, "east", "refused after rotation", |c| {
        connected(c).is_some_and(|c| c.status == "False")
    })
    .await;
    let condition = connected(&rotated).expect("condition");
    assert_eq!(condition.reason, "Unreachable");
    assert!(
        condition.message.contains("401") || condition.message.contains("Unauthorized"),
        "{}",
        condition.message
    );
    assert!(
        !condition.message.contains(token) && !condition.message.contains("not-the-token"),
        "no credential in the message"
    );
    set(east_config.clone()).await;
    wait_cluster(&clusters, "east", "connected again", |c| {
        connected(c).is_some_and(|c| c.status == "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_deploys_to_a_registered_cluster_and_only_there() {
    let env = Env::new("deploy-east").await;
    let east = east_cluster().await;
    let target = east.namespace("from-hub").await.expect("east namespace");
    let east_config = std::fs::read_to_string(east.kubeconfig()).expect("east kubeconfig");
    env.create_secret("east-creds", json!({ "kubeconfig": east_config }))
        .await;
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "east" },
        "spec": { "server": field(&east_config, "server"), "secretRef": { "name": "east-creds" } }
    }))
    .expect("cluster");
    Api::<Cluster>::namespaced(env.client.clone(), env.ns())
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create cluster");
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let first = env.commit_push("one ConfigMap");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "web",
        "app",
        automated(true, true),
        json!({ "destination": { "name": "east", "namespace": target.name() } }),
        json!({}),
    )
    .await;
    env.wait_synced("web", &first).await;
    env.wait_event("web", "SyncStarted", |m| m.ends_with("on cluster east"))
        .await;

    let east_cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(east.client(), target.name());
    let read = || async {
        east_cms
            .get_opt("settings")
            .await
            .expect("read east")
            .and_then(|c| c.data)
            .and_then(|d| d.get("color").cloned())
    };
    assert_eq!(read().await.as_deref(), Some("blue"));
    let hub_cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), target.name());
    assert!(
        hub_cms.get_opt("settings").await.ok().flatten().is_none(),
        "nothing applied to the hub"
    );

    // A new commit reaches east; a file removed from Git is pruned there.
    env.write("app/cm.yaml", &config_map("settings", "color", "green"));
    env.write("app/extra.yaml", &config_map("extra", "k", "v"));
    let second = env.commit_push("green and extra");
    env.wait_synced("web", &second).await;
    assert_eq!(read().await.as_deref(), Some("green"));
    assert!(east_cms.get_opt("extra").await.unwrap().is_some());
    env.work.remove("app/extra.yaml").expect("remove");
    let third = env.commit_push("no extra");
    env.wait_synced("web", &third).await;
    kedge_testkit::wait_for(STEP, POLL, || async {
        east_cms
            .get_opt("extra")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await
    .expect("extra pruned in east");

    // Drift on east is seen by the watches there and reverted at once, not at the next resync (30 s here).
    let drift = |color: &'static str| {
        let east_cms = east_cms.clone();
        async move {
            east_cms
                .patch(
                    "settings",
                    &PatchParams::apply("someone").force(),
                    &Patch::Apply(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": { "name": "settings" }, "data": { "color": color }
                    })),
                )
                .await
                .expect("drift on east");
        }
    };
    let reverted = || async { (read().await.as_deref() == Some("green")).then_some(()) };
    drift("red").await;
    let edited = std::time::Instant::now();
    kedge_testkit::wait_for(Duration::from_secs(20), POLL, reverted)
        .await
        .expect("drift on east reverted");
    assert!(
        edited.elapsed() < Duration::from_secs(10),
        "drift on east reverted after {:?}",
        edited.elapsed()
    );

    // East stops answering (its Cluster now points where nothing listens): only its application turns Unknown,
    // naming the cluster; an application on the hub keeps syncing.
    let clusters: Api<Cluster> = Api::namespaced(env.client.clone(), env.ns());
    let point = |server: String| {
        let clusters = clusters.clone();
        async move {
            clusters
                .patch(
                    "east",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "server": server } })),
                )
                .await
                .expect("patch cluster");
        }
    };
    point("https://127.0.0.1:1".into()).await;
    env.patch_app(
        "web",
        json!({ "metadata": { "annotations": { "kedge.dev/refresh": "normal" } } }),
    )
    .await;
    let down = env
        .wait_app("web", "Unknown while east is away", |a| {
            a.status.as_ref().is_some_and(|s| {
                s.health.status == kedge_api::HealthCode::Unknown
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "ClusterUnavailable")
            })
        })
        .await;
    let ready = condition(&down, "Ready").expect("Ready");
    assert!(ready.message.contains("cluster east"), "{}", ready.message);
    env.write("local/cm.yaml", &config_map("here", "k", "v"));
    let fourth = env.commit_push("an application on the hub");
    env.create_app("local", "local", automated(true, true))
        .await;
    env.wait_synced("local", &fourth).await;
    // A change on east while Kedge cannot reach it.
    drift("purple").await;

    // Back: the application recovers without a restart, and reverts what changed meanwhile.
    point(field(&east_config, "server").to_owned()).await;
    env.patch_app(
        "web",
        json!({ "metadata": { "annotations": { "kedge.dev/refresh": "normal" } } }),
    )
    .await;
    env.wait_synced("web", &fourth).await;
    kedge_testkit::wait_for(Duration::from_secs(30), POLL, reverted)
        .await
        .expect("the change made while east was away reverted");
}
