//! End to end: `repo-creds` Secrets (credential templates by URL prefix) against the test kit's authenticated
//! smart-HTTP git server. A prefix covers a repository only on whole path segments of the same origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, RunningController, automated, condition, config_map};
use kedge_testkit::HttpAuth;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_creds_cover_whole_path_segments_only() {
    let password = format!("repo-creds-pw-{}", std::process::id());
    let env = Env::with_auth("e2e-repocreds", HttpAuth::basic("kedge", &password)).await;
    env.servers
        .root
        .create_bare_repo("team-other/app.git")
        .expect("bare repo");
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    let sha = env.work.commit("first").expect("commit");
    env.work
        .push(&env.servers.daemon.url("team-other/app.git"), "main")
        .expect("push");
    let base = env.servers.http.url("");
    let base = base.trim_end_matches('/');
    let repo_url = format!("{base}/team-other/app.git");

    // Credentials for the sibling path `team`: a raw string prefix of the repository's URL, but not a path prefix.
    let creds = |name: &str, prefix: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "labels": { "kedge.dev/secret-type": "repo-creds" } },
            "stringData": { "url": prefix, "username": "kedge", "password": password }
        })
    };
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env.client.clone(), env.ns());
    secrets
        .create(
            &Default::default(),
            &serde_json::from_value(creds("team", &format!("{base}/team"))).unwrap(),
        )
        .await
        .expect("create secret");

    let _controller = RunningController::start(env.cluster.kubeconfig(), env.run_config("c1"));
    env.create_app_with(
        "demo",
        "app",
        automated(true, true),
        json!({ "source": { "repoURL": repo_url, "targetRevision": "main", "path": "app" } }),
        json!({}),
    )
    .await;
    let app = env
        .wait_app(
            "demo",
            "SourceFailed: the sibling's credentials are not used",
            |a| {
                condition(a, "Ready")
                    .is_some_and(|c| c.status == "False" && c.reason == "SourceFailed")
            },
        )
        .await;
    let message = condition(&app, "Ready").expect("Ready").message.clone();
    assert!(message.contains("AuthFailed"), "{message}");
    assert!(env.config_map_data("settings").await.is_none());

    // A prefix that covers the repository (written with a trailing slash): synced.
    let covering = format!("{base}/team-other/");
    secrets
        .create(
            &Default::default(),
            &serde_json::from_value(creds("team-other", &covering)).unwrap(),
        )
        .await
        .expect("create secret");
    env.wait_synced("demo", &sha).await;
    env.wait_config_map("settings", "version", "1").await;
}
