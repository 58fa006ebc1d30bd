//! The cluster registry against a second test cluster: a registered cluster is reached with the credentials of its
//! Secret and reports its version and applications; a wrong CA, a missing Secret and rotated credentials are
//! reported with their reason, and a fixed Secret is picked up without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_api::Cluster;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Waits until application `app` is Unknown because its cluster `cluster` cannot be reached, and checks that its
/// Ready condition names the cluster.
/// Rotates the kubeconfig held in cluster Secret `secret`.
async fn set_kubeconfig(env: &Env, secret: &str, kubeconfig: &str) {
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), env.ns())
        .patch(
            secret,
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "kubeconfig": kubeconfig } })),
        )
        .await
        .expect("rotate credentials");
}

async fn wait_unavailable(env: &Env, app: &str, cluster: &str) {
    let down = env
        .wait_app(app, "Unknown while its cluster is away", |a| {
            a.status.as_ref().is_some_and(|s| {
                s.health.status == kedge_api::HealthCode::Unknown
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "ClusterUnavailable")
            })
        })
        .await;
    let ready = condition(&down, "Ready").expect("Ready");
    assert!(
        ready.message.contains(&format!("cluster {cluster}")),
        "{}",
        ready.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_clusters_report_whether_kedge_reaches_them() {
    let env = Env::new("clusters").await;
    let east = east_cluster().await;
    let east_config = std::fs::read_to_string(east.kubeconfig()).expect("east kubeconfig");
    let hub_config = std::fs::read_to_string(env.cluster.kubeconfig()).expect("hub kubeconfig");
    let server = kubeconfig_field(&east_config, "server").to_owned();
    let ca = "certificate-authority-data";
    let wrong_ca = east_config.replace(
        kubeconfig_field(&east_config, ca),
        kubeconfig_field(&hub_config, ca),
    );
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
    env.create_app_on("web", "app", json!({}), "east", "web")
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
    let token = kubeconfig_field(&east_config, "token");
    set_kubeconfig(
        &env,
        "east-creds",
        &east_config.replace(token, "not-the-token"),
    )
    .await;
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
    set_kubeconfig(&env, "east-creds", &east_config).await;
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
    env.register_cluster("east", &east).await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let first = env.commit_push("one ConfigMap");
    let _controller = env.start_controller("c1");
    env.create_app_on("web", "app", automated(true, true), "east", target.name())
        .await;
    env.wait_synced("web", &first).await;
    env.wait_event("web", "SyncStarted", |m| m.ends_with("on cluster east"))
        .await;
    // Every event of the application carries its cluster, to select by.
    let events = env.events("web").await;
    assert!(!events.is_empty());
    for e in &events {
        let label = e
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kedge.dev/cluster"));
        assert_eq!(label.map(String::as_str), Some("east"), "{:?}", e.reason);
    }

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
    wait_unavailable(&env, "web", "east").await;
    env.write("local/cm.yaml", &config_map("here", "k", "v"));
    let fourth = env.commit_push("an application on the hub");
    env.create_app("local", "local", automated(true, true))
        .await;
    env.wait_synced("local", &fourth).await;
    // A change on east while Kedge cannot reach it.
    drift("purple").await;

    // Back: the application recovers without a restart, and reverts what changed meanwhile.
    point(kubeconfig_field(&east_config, "server").to_owned()).await;
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

/// Three clusters at once: the hub runs Kedge, east and west receive applications. West is stopped (its API server
/// and data gone) while its application has a new commit to apply: east's application syncs it as usual, west's
/// turns Unknown naming west. West comes back as a new, empty cluster with new credentials: once its Secret and
/// Cluster say so, its application recovers without a restart and puts back everything the cluster lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_cluster_holds_back_only_its_own_applications() {
    let env = Env::new("three").await;
    let east = east_cluster().await;
    let west = west_cluster().await;
    let east_ns = east.namespace("on-east").await.expect("east namespace");
    // A namespace name of its own, created by the sync (the cluster that comes back is empty).
    let west_ns = format!("on-west-{}", env.ns());
    env.register_cluster("east", &east).await;
    env.register_cluster("west", &west).await;
    env.write("east/cm.yaml", &config_map("settings", "color", "blue"));
    env.write("west/cm.yaml", &config_map("settings", "color", "blue"));
    let v1 = env.commit_push("blue everywhere");
    let mut rc = env.run_config("c1");
    rc.cluster_check_interval = Duration::from_millis(500);
    let _controller = RunningController::start(env.cluster.kubeconfig(), rc);
    let mut policy = automated(true, true);
    policy["syncOptions"] = json!(["CreateNamespace=true"]);
    env.create_app_on("e", "east", automated(true, true), "east", east_ns.name())
        .await;
    env.create_app_on("w", "west", policy, "west", &west_ns)
        .await;
    env.wait_synced("e", &v1).await;
    env.wait_synced("w", &v1).await;
    let color = |client: kube::Client, ns: String| async move {
        config_map_value(client, &ns, "settings", "color").await
    };
    assert_eq!(
        color(west.client(), west_ns.clone()).await.as_deref(),
        Some("blue")
    );

    // West goes away; both applications get a new commit.
    west.stop().await.expect("stop west");
    env.write("east/cm.yaml", &config_map("settings", "color", "green"));
    env.write("west/cm.yaml", &config_map("settings", "color", "green"));
    let v2 = env.commit_push("green everywhere");
    let pushed = std::time::Instant::now();
    env.wait_synced("e", &v2).await;
    let east_took = pushed.elapsed();
    assert_eq!(
        color(east.client(), east_ns.name().to_owned())
            .await
            .as_deref(),
        Some("green")
    );
    // East's application is not held up by west's timeouts: polls come every second here.
    assert!(
        east_took < Duration::from_secs(15),
        "east synced {east_took:?} after the push while west was down"
    );
    wait_unavailable(&env, "w", "west").await;
    let clusters: Api<Cluster> = Api::namespaced(env.client.clone(), env.ns());
    let gone = wait_cluster(&clusters, "west", "not connected", |c| {
        connected(c).is_some_and(|c| c.status == "False")
    })
    .await;
    assert_eq!(connected(&gone).expect("condition").reason, "Unreachable");
    eprintln!("east synced {east_took:?} after the push while west was down");

    // West is back, new and empty, with new credentials: the Secret and the Cluster are updated.
    let west = west_cluster().await;
    let config = std::fs::read_to_string(west.kubeconfig()).expect("west kubeconfig");
    set_kubeconfig(&env, "west-creds", &config).await;
    clusters
        .patch(
            "west",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "server": kubeconfig_field(&config, "server") } })),
        )
        .await
        .expect("west's new server");
    let back = std::time::Instant::now();
    env.wait_synced("w", &v2).await;
    kedge_testkit::wait_for(STEP, POLL, || async {
        (color(west.client(), west_ns.clone()).await.as_deref() == Some("green")).then_some(())
    })
    .await
    .expect("west's ConfigMap put back");
    let recovered = back.elapsed();
    eprintln!("west's application recovered {recovered:?} after its credentials were updated");
    // The changed Cluster queues its application at once, rather than at its next retry (10 s after a failure).
    assert!(
        recovered < Duration::from_secs(5),
        "west's application recovered {recovered:?} after its Cluster changed"
    );
    wait_cluster(&clusters, "west", "connected again", |c| {
        connected(c).is_some_and(|c| c.status == "True")
    })
    .await;
    // Nothing of west's stays behind.
    west.stop().await.expect("stop west");
}

/// A chart sees the capabilities of the cluster it deploys to: an API served on east only is in
/// `.Capabilities.APIVersions` for the application on east, not for the one on the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_see_the_capabilities_of_their_destination() {
    let env = Env::new("caps").await;
    let east = east_cluster().await;
    let target = east.namespace("caps").await.expect("east namespace");
    let hub_target = env
        .cluster
        .namespace("caps-hub")
        .await
        .expect("hub namespace");
    // A group of its own per run, served on east only.
    let group = format!("{}.caps.kedge.dev", env.ns());
    let crd_name = format!("widgets.{group}");
    east.kubectl_stdin(["apply", "-f", "-"], &widget_crd(&group))
        .await
        .expect("kubectl")
        .into_result()
        .expect("create the CRD on east");
    kedge_testkit::wait_for(STEP, POLL, || async {
        let found = kube::discovery::group(&east.client(), &group).await.ok()?;
        (!found.versions().collect::<Vec<_>>().is_empty()).then_some(())
    })
    .await
    .expect("east serves the group");
    env.register_cluster("east", &east).await;
    env.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: caps\nversion: 0.1.0\n",
    );
    env.write(
        "chart/templates/cm.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n  widgets: {{{{ .Capabilities.APIVersions.Has \"{group}/v1\" | quote }}}}\n"
        ),
    );
    let sha = env.commit_push("a chart that asks for widgets");
    let _controller = env.start_controller("c1");
    env.create_app_on(
        "on-east",
        "chart",
        automated(true, true),
        "east",
        target.name(),
    )
    .await;
    env.create_app_with(
        "on-hub",
        "chart",
        automated(true, true),
        json!({ "destination": { "namespace": hub_target.name() } }),
        json!({}),
    )
    .await;
    env.wait_synced("on-east", &sha).await;
    env.wait_synced("on-hub", &sha).await;
    let widgets = |client: kube::Client, ns: String| async move {
        config_map_value(client, &ns, "caps", "widgets").await
    };
    assert_eq!(
        widgets(east.client(), target.name().to_owned())
            .await
            .as_deref(),
        Some("true"),
        "the chart on east does not see east's API"
    );
    assert_eq!(
        widgets(env.client.clone(), hub_target.name().to_owned())
            .await
            .as_deref(),
        Some("false"),
        "the chart on the hub sees an API only east serves"
    );
    east.kubectl_ok(["delete", "crd", &crd_name])
        .await
        .expect("delete the CRD");
}
