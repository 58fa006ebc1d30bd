//! End-to-end tests of Helm charts in the GitOps loop: charts in Git and in a Helm HTTP repository, valuesFrom a
//! Secret, install vs upgrade hooks, and a chart whose template fails.
//!
//! Run: `cargo test -p kedge-controller --test helm_e2e` (needs helm: scripts/install-helm).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

#[path = "../../kedge-helm/tests/common/mod.rs"]
mod helm_common;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::HealthCode;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const SECRET_VALUE: &str = "s3cr3t-api-key-4711";

fn copy_chart(env: &Env, fixture: &str, dest: &str) {
    let src = helm_common::fixtures().join(fixture);
    fn walk(env: &Env, dir: &std::path::Path, rel: &str) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}/{name}");
            if e.file_type().unwrap().is_dir() {
                walk(env, &e.path(), &child);
            } else {
                env.write(&child, &std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    walk(env, &src, dest);
}

async fn values_secret(env: &Env, greeting: &str) {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), env.ns());
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "web-values", "namespace": env.ns()},
        "stringData": {"values.yaml": format!("greeting: {greeting}\napiKey: {SECRET_VALUE}\n")}
    }))
    .unwrap();
    api.patch(
        "web-values",
        &PatchParams::apply("helm-e2e").force(),
        &Patch::Apply(&secret),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_in_git_with_secret_values_syncs_and_runs_install_then_upgrade_hooks() {
    let env = Env::new("helm-git").await;
    copy_chart(&env, "webapp", "charts/webapp");
    let first = env.commit_push("webapp chart");
    values_secret(&env, "from-secret").await;
    let _controller = env.start_controller("h1");
    let helm = json!({"source": {"repoURL": env.repo_url, "targetRevision": "main", "path": "charts/webapp",
        "helm": {
        "releaseName": "web",
        "valueFiles": ["values-production.yaml"],
        "valuesFrom": [{"kind": "Secret", "name": "web-values"}],
        "skipCrds": true,
    }}});
    env.create_app_with(
        "web",
        "charts/webapp",
        automated(true, true),
        helm,
        json!({}),
    )
    .await;
    let app = env.wait_synced("web", &first).await;
    let status = app.status.clone().expect("status");
    assert_eq!(status.health.status, HealthCode::Healthy);
    let cm = env.config_map_data("web-config").await.expect("web-config");
    assert_eq!(cm["greeting"], "from-secret");
    assert_eq!(cm["replicas"], "3");
    assert_eq!(cm["install"], "true");
    assert_eq!(cm["namespace"], env.ns());
    assert!(
        env.config_map_data("web-pre-install").await.is_some(),
        "pre-install hook ran"
    );
    assert!(env.config_map_data("web-post-install").await.is_some());
    assert!(env.config_map_data("web-pre-upgrade").await.is_none());
    assert!(env.config_map_data("web-pre-delete").await.is_none());

    // A new commit and a changed Secret: the next sync is an upgrade with the new values.
    values_secret(&env, "changed-secret").await;
    env.write(
        "charts/webapp/values-production.yaml",
        "replicaCount: 2\ngreeting: hello from production\n",
    );
    let second = env.commit_push("two replicas");
    env.wait_synced("web", &second).await;
    env.wait_config_map("web-config", "replicas", "2").await;
    let cm = env.config_map_data("web-config").await.expect("web-config");
    assert_eq!(cm["greeting"], "changed-secret");
    assert_eq!(cm["install"], "false");
    assert!(
        env.config_map_data("web-pre-upgrade").await.is_some(),
        "pre-upgrade hook ran"
    );
    assert!(env.config_map_data("web-post-upgrade").await.is_some());

    // The Secret's values never show in the Application's status or events.
    let app = env.app("web").await;
    let text = serde_json::to_string(&app).unwrap();
    assert!(!text.contains(SECRET_VALUE));
    for e in env.events("web").await {
        assert!(!e.message.unwrap_or_default().contains(SECRET_VALUE));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guestbook_and_helm_hooks_examples_sync_and_become_healthy() {
    let env = Env::new("helm-examples").await;
    copy_chart(&env, "helm-guestbook", "helm-guestbook");
    env.write(
        "helm-hooks/manifests.yaml",
        &std::fs::read_to_string(
            helm_common::fixtures().join("helm-hooks/templates/manifests.yaml"),
        )
        .unwrap(),
    );
    let sha = env.commit_push("examples");
    let _controller = env.start_controller("h2");
    env.create_app("guestbook", "helm-guestbook", automated(true, true))
        .await;
    env.create_app("hooks", "helm-hooks", automated(true, true))
        .await;
    let app = env.wait_synced("guestbook", &sha).await;
    let resources: Vec<String> = app
        .status
        .unwrap()
        .resources
        .iter()
        .map(|r| format!("{} {}", r.object.kind, r.object.name))
        .collect();
    assert!(
        resources.contains(&"Deployment guestbook-helm-guestbook".to_owned()),
        "{resources:?}"
    );
    let app = env.wait_synced("hooks", &sha).await;
    let status = app.status.unwrap();
    let hooks: Vec<String> = status
        .operation_state
        .and_then(|o| o.sync_result)
        .map(|r| {
            r.resources
                .iter()
                .filter(|r| !r.hook_phase.is_empty())
                .map(|r| format!("{} {}", r.hook_phase, r.object.name))
                .collect()
        })
        .unwrap_or_default();
    assert!(hooks.iter().any(|h| h.starts_with("PreSync")), "{hooks:?}");
    assert!(hooks.iter().any(|h| h.starts_with("PostSync")), "{hooks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_from_http_repository_follows_a_version_range() {
    let env = Env::new("helm-repo").await;
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    helm_common::package("webapp", "1.0.0", work.path(), &repo_dir);
    helm_common::package("webapp", "1.1.0", work.path(), &repo_dir);
    helm_common::package("webapp", "2.0.0", work.path(), &repo_dir);
    helm_common::run_helm(work.path(), &["repo", "index", repo_dir.to_str().unwrap()]);
    let server = helm_common::StaticServer::start(&repo_dir, Some(("kedge", "repo-pass-99")));
    let creds: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "charts", "namespace": env.ns(),
            "labels": {"kedge.dev/secret-type": "repository"}},
        "stringData": {"url": server.url(), "username": "kedge", "password": "repo-pass-99"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(env.client.clone(), env.ns())
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    let _controller = env.start_controller("h3");
    env.create_app_with(
        "web",
        ".",
        automated(true, true),
        json!({"source": {"repoURL": server.url(), "chart": "webapp", "targetRevision": ">=1.0.0 <2",
            "helm": {"releaseName": "web", "skipCrds": true}}}),
        json!({}),
    )
    .await;
    env.wait_synced("web", "1.1.0").await;
    helm_common::package("webapp", "1.2.0", work.path(), &repo_dir);
    helm_common::run_helm(work.path(), &["repo", "index", repo_dir.to_str().unwrap()]);
    let app = env.wait_synced("web", "1.2.0").await;
    assert_eq!(app.status.unwrap().health.status, HealthCode::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_with_a_template_error_reports_helms_message_and_changes_nothing() {
    let env = Env::new("helm-broken").await;
    copy_chart(&env, "broken", "broken");
    env.commit_push("broken chart");
    let _controller = env.start_controller("h4");
    env.create_app("broken", "broken", automated(true, true))
        .await;
    let app = env
        .wait_app("broken", "reports the render failure", |a| {
            condition(a, "Ready").is_some_and(|c| c.reason == "RenderFailed")
        })
        .await;
    let ready = condition(&app, "Ready").unwrap();
    assert!(
        ready.message.contains("a password is required"),
        "{}",
        ready.message
    );
    assert!(app.status.unwrap().inventory.is_empty());
    assert!(env.config_map_data("broken-broken").await.is_none());
}
