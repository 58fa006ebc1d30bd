//! `kedge cluster` end to end: a second test cluster added from its kubeconfig (checked, its Secret and Cluster
//! written), listed with its state once the controller reached it, shown, and removed only when no application
//! deploys to it (or with --force), taking the Secret it wrote and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use std::time::Duration;

use cli::kedge;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::{CONNECTED, Cluster};
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_added_listed_shown_and_removed() {
    let env = Env::new("cli-clusters").await;
    let east = east_cluster().await;
    let cache = tempfile::tempdir().unwrap();
    let east_config = east.kubeconfig().to_str().unwrap().to_owned();

    // Added: reached first, then written. Its name is this test's own: `cluster list` counts the applications of
    // every namespace that deploy to a cluster of that name, and other tests run beside this one.
    let run = kedge(
        &env,
        cache.path(),
        &[
            "cluster",
            "add",
            "east-cli",
            "--cluster-kubeconfig",
            &east_config,
            "--label",
            "region=east",
        ],
    )
    .await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("cluster east-cli added") && run.stdout.contains("Kubernetes v1."),
        "{}",
        run.stdout
    );
    let clusters: Api<Cluster> = Api::namespaced(env.client.clone(), env.ns());
    let cluster = clusters.get("east-cli").await.expect("Cluster east");
    assert_eq!(
        cluster.labels().get("region").map(String::as_str),
        Some("east")
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), env.ns());
    let secret = secrets
        .get(&cluster.spec.secret_ref.name)
        .await
        .expect("its Secret");
    assert!(secret.data.unwrap_or_default().contains_key("kubeconfig"));

    // A kubeconfig whose cluster does not answer is refused and nothing is written.
    let dead = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(east.kubeconfig()).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_owned();
    std::fs::write(dead.path(), text.replace(&server, "https://127.0.0.1:1")).unwrap();
    let run = kedge(
        &env,
        cache.path(),
        &[
            "cluster",
            "add",
            "dead",
            "--cluster-kubeconfig",
            dead.path().to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("cluster dead not added") && run.stderr.contains("https://127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(clusters.get_opt("dead").await.unwrap().is_none());

    // Listed with its state once the controller reached it.
    let mut rc = env.run_config("c1");
    rc.cluster_check_interval = Duration::from_millis(500);
    let _controller = RunningController::start(env.cluster.kubeconfig(), rc);
    kedge_testkit::wait_for(STEP, POLL, || async {
        clusters.get("east-cli").await.ok().filter(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == CONNECTED && c.status == "True")
            })
        })
    })
    .await
    .expect("east connected");
    env.create_app_on("web", "app", json!({}), "east-cli", "web")
        .await;
    let run = kedge(&env, cache.path(), &["cluster", "list"]).await;
    run.expect_code(0);
    let rows = table(&run.stdout);
    assert_eq!(
        rows[0],
        ["NAME", "SERVER", "STATUS", "VERSION", "APPS", "AGE"]
    );
    assert_eq!(
        rows[1][0..3],
        ["in-cluster", "https://kubernetes.default.svc", "Connected"]
    );
    let row = rows
        .iter()
        .find(|r| r[0] == "east-cli")
        .expect("east listed");
    assert_eq!(row[1], server);
    assert_eq!(row[2], "Connected");
    assert!(row[3].starts_with("v1."), "{row:?}");
    assert_eq!(row[4], "1", "one application deploys to east: {row:?}");
    // The application list shows where each application deploys and which replica reconciles it.
    kedge_testkit::wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let app = env.app("web").await;
            app.status?.reconciled_by
        },
    )
    .await
    .expect("the application was reconciled");
    let run = kedge(&env, cache.path(), &["app", "list", "-o", "wide"]).await;
    run.expect_code(0);
    let rows = table(&run.stdout);
    let web = rows.iter().find(|r| r[0] == "web").expect("web listed");
    // Counted from the end: the revision is empty until the first sync.
    assert_eq!(web[web.len() - 5], "east-cli", "{}", run.stdout);
    assert_eq!(web.last(), Some(&"c1"), "{}", run.stdout);
    assert_eq!(rows[0].last(), Some(&"REPLICA"));
    let run = kedge(&env, cache.path(), &["cluster", "get", "east-cli"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains(&format!("{}/web", env.ns())) && run.stdout.contains("region=east"),
        "{}",
        run.stdout
    );

    // Removal is refused while an application deploys there, then done with --force, taking its Secret only.
    let run = kedge(&env, cache.path(), &["cluster", "remove", "east-cli"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!("{}/web", env.ns())),
        "{}",
        run.stderr
    );
    assert!(clusters.get_opt("east-cli").await.unwrap().is_some());
    env.create_secret("unrelated", json!({ "k": "v" })).await;
    let run = kedge(
        &env,
        cache.path(),
        &["cluster", "remove", "east-cli", "--force"],
    )
    .await;
    run.expect_code(0);
    assert!(clusters.get_opt("east-cli").await.unwrap().is_none());
    assert!(secrets.get_opt("cluster-east-cli").await.unwrap().is_none());
    assert!(secrets.get_opt("unrelated").await.unwrap().is_some());
}

/// A table printed by the CLI, split into cells at whitespace.
fn table(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}
