//! End-to-end tests of Helm charts in the GitOps loop: charts in Git and in a Helm HTTP repository, valuesFrom a
//! Secret, an OCI registry with credentials, install vs upgrade hooks, delete hooks when an application is deleted, and a chart whose template
//! fails.
//!
//! Run: `cargo test -p kedge-controller --test it helm_e2e::` (needs helm: scripts/install-helm).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use crate::helm_common;

use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::{HealthCode, REFRESH_ANNOTATION, RESOURCES_FINALIZER};
use kedge_testkit::wait_for;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
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
    // Objects render alike for install and upgrade (only the hooks differ).
    assert_eq!(cm["install"], "true");
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
async fn chart_from_an_oci_registry_with_credentials_follows_a_version_range() {
    let env = Env::new("helm-oci").await;
    let work = tempfile::tempdir().unwrap();
    let packages = work.path().join("packages");
    let registry = helm_common::Registry::start_with_auth();
    for version in ["1.0.0", "2.0.0"] {
        let package = helm_common::package("webapp", version, work.path(), &packages);
        registry.push(&package, "charts", work.path());
    }
    let url = format!("oci://{}/charts", registry.host());
    let _controller = env.start_controller("h8");
    env.create_app_with(
        "web",
        ".",
        automated(true, true),
        json!({"source": {"repoURL": url, "chart": "webapp", "targetRevision": ">=1.0.0 <2.0.0",
            "helm": {"releaseName": "web", "skipCrds": true}}}),
        json!({}),
    )
    .await;

    // Without a repository Secret, the registry refuses and the status says why and where credentials come from.
    let app = env
        .wait_app("web", "reports the missing credentials", |a| {
            condition(a, "Ready").is_some_and(|c| c.status == "False" && c.message.contains("401"))
        })
        .await;
    let ready = condition(&app, "Ready").unwrap();
    assert_eq!(ready.reason, "SourceFailed");
    assert!(
        ready.message.contains("needs credentials")
            && ready.message.contains("kedge.dev/secret-type=repository")
            && ready
                .message
                .contains(&format!("{}/charts/webapp", registry.host())),
        "{}",
        ready.message
    );
    assert!(app.status.unwrap().inventory.is_empty());
    assert!(env.config_map_data("web-config").await.is_none());

    let creds: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry", "namespace": env.ns(),
            "labels": {"kedge.dev/secret-type": "repository"}},
        "stringData": {"url": url, "username": helm_common::REGISTRY_USER,
            "password": helm_common::REGISTRY_PASSWORD}
    }))
    .unwrap();
    Api::<Secret>::namespaced(env.client.clone(), env.ns())
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    env.patch_app(
        "web",
        json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "credentials"}}}),
    )
    .await;
    let app = env.wait_synced("web", "1.0.0").await;
    let status = app.status.unwrap();
    assert_eq!(status.history.last().unwrap().revision, "1.0.0");
    assert_eq!(
        env.config_map_data("web-config").await.unwrap()["chartVersion"],
        "1.0.0"
    );

    // A new version in the range: a refresh moves the application to it; 2.0.0 stays out of range.
    let package = helm_common::package("webapp", "1.1.0", work.path(), &packages);
    registry.push(&package, "charts", work.path());
    env.patch_app(
        "web",
        json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "new-version"}}}),
    )
    .await;
    let app = env.wait_synced("web", "1.1.0").await;
    let history = app.status.unwrap().history;
    assert_eq!(history.last().unwrap().revision, "1.1.0");
    assert_eq!(
        history.last().unwrap().result,
        kedge_api::HistoryResult::Succeeded
    );
    env.wait_config_map("web-config", "chartVersion", "1.1.0")
        .await;
    let text = serde_json::to_string(&env.app("web").await).unwrap();
    assert!(!text.contains(helm_common::REGISTRY_PASSWORD));
    for e in env.events("web").await {
        assert!(
            !e.message
                .unwrap_or_default()
                .contains(helm_common::REGISTRY_PASSWORD)
        );
    }
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

/// What happened to objects of the test's namespace, in the order the API server stored it: (resourceVersion,
/// "Added Job rel-pre-delete"). The test cluster keeps its objects in etcd, whose revisions order every write.
#[derive(Clone, Default)]
struct History(Arc<Mutex<Vec<(u64, String)>>>);

impl History {
    /// Watches `kind` objects of the namespace from now on.
    async fn watch(&self, env: &Env, group: &str, kind: &str) -> tokio::task::JoinHandle<()> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
        let api = Api::<DynamicObject>::namespaced_with(env.client.clone(), env.ns(), &ar);
        let list = api.list(&ListParams::default()).await.unwrap();
        let rv = list.metadata.resource_version.unwrap();
        let mut stream = api
            .watch(&WatchParams::default(), &rv)
            .await
            .unwrap()
            .boxed();
        let (log, kind) = (self.0.clone(), kind.to_owned());
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let (what, o) = match event {
                    WatchEvent::Added(o) => ("Added", o),
                    WatchEvent::Deleted(o) => ("Deleted", o),
                    WatchEvent::Modified(o)
                        if o.data["status"]["succeeded"].as_i64().unwrap_or(0) > 0 =>
                    {
                        ("Completed", o)
                    }
                    WatchEvent::Modified(o) if o.metadata.deletion_timestamp.is_some() => {
                        ("Deleting", o)
                    }
                    _ => continue,
                };
                let rv: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
                let name = o.metadata.name.unwrap_or_default();
                log.lock()
                    .unwrap()
                    .push((rv, format!("{what} {kind} {name}")));
            }
        })
    }

    /// The first time `what` happened.
    fn when(&self, what: &str) -> u64 {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(_, w)| w == what)
            .map(|(rv, _)| *rv)
            .min()
            .unwrap_or_else(|| panic!("never saw {what:?} in {:?}", *log))
    }

    /// How many times `what` happened.
    fn times(&self, what: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, w)| w == what)
            .count()
    }

    /// When the object started to go (marked for deletion or deleted).
    fn gone(&self, kind_name: &str) -> u64 {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(_, w)| {
                *w == format!("Deleted {kind_name}") || *w == format!("Deleting {kind_name}")
            })
            .map(|(rv, _)| *rv)
            .min()
            .unwrap_or_else(|| panic!("{kind_name} never went away: {:?}", *log))
    }
}

/// An Application with the resources finalizer on the `delete-hooks` chart in Git, release `rel`, synced.
async fn delete_hooks_app(env: &Env, helm: serde_json::Value) {
    copy_chart(env, "delete-hooks", "charts/cleanup");
    let sha = env.commit_push("chart with delete hooks");
    let mut helm_spec = json!({"releaseName": "rel"});
    if let (Some(h), Some(extra)) = (helm_spec.as_object_mut(), helm.as_object()) {
        h.extend(extra.clone());
    }
    env.create_app_with(
        "web",
        "charts/cleanup",
        automated(true, true),
        json!({"source": {"repoURL": env.repo_url, "targetRevision": "main", "path": "charts/cleanup",
            "helm": helm_spec}}),
        json!({ "finalizers": [RESOURCES_FINALIZER] }),
    )
    .await;
    env.wait_synced("web", &sha).await;
    // Delete hooks are not part of a sync.
    assert!(
        env.object("batch", "v1", "Job", "rel-pre-delete")
            .await
            .is_none()
    );
    assert!(env.config_map_data("rel-pre-delete-first").await.is_none());
    assert!(env.config_map_data("rel-post-delete").await.is_none());
    assert!(
        env.object("apps", "v1", "Deployment", "rel-web")
            .await
            .is_some()
    );
}

async fn wait_app_gone(env: &Env, name: &str) {
    wait_for(STEP, POLL, || async {
        env.apps().get_opt(name).await.ok().flatten().is_none()
    })
    .await
    .unwrap_or_else(|t| panic!("application {name} is still there: {t}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_chart_application_runs_pre_delete_hooks_then_prunes_then_post_delete_hooks() {
    let env = Env::new("helm-delete").await;
    let _controller = env.start_controller("h5");
    delete_hooks_app(&env, json!({})).await;

    let history = History::default();
    let watches = [
        history.watch(&env, "batch", "Job").await,
        history.watch(&env, "apps", "Deployment").await,
        history.watch(&env, "", "ConfigMap").await,
    ];
    env.apps()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_app_gone(&env, "web").await;
    env.wait_gone("apps", "v1", "Deployment", "rel-web").await;
    env.wait_gone("", "v1", "ConfigMap", "rel-config").await;
    // Hooks without a delete policy are deleted once they succeeded; the post-delete hook asked to stay.
    env.wait_gone("batch", "v1", "Job", "rel-pre-delete").await;
    env.wait_gone("", "v1", "ConfigMap", "rel-pre-delete-first")
        .await;
    assert_eq!(
        env.config_map_data("rel-post-delete").await.unwrap()["step"],
        "after"
    );
    // The deletion ran once: a pass that still saw the finalizer in its cache after the application was gone
    // must not run the hooks again.
    let deleted = env
        .wait_event("web", "ResourcesDeleted", |m| m.contains("rel-web"))
        .await;
    for w in watches {
        w.abort();
    }
    for hook in [
        "ConfigMap rel-pre-delete-first",
        "Job rel-pre-delete",
        "ConfigMap rel-post-delete",
    ] {
        assert_eq!(history.times(&format!("Added {hook}")), 1, "{hook}");
    }

    // Order, by etcd revision: pre-delete hooks by weight, each complete before the next step, then the prune,
    // then the post-delete hook.
    let first = history.when("Added ConfigMap rel-pre-delete-first");
    let job_created = history.when("Added Job rel-pre-delete");
    let job_done = history.when("Completed Job rel-pre-delete");
    let web_gone = history.gone("Deployment rel-web");
    let config_gone = history.gone("ConfigMap rel-config");
    let post = history.when("Added ConfigMap rel-post-delete");
    assert!(first < job_created, "weight -5 runs before weight 0");
    assert!(job_created < job_done && job_done < web_gone);
    assert!(job_done < config_gone);
    assert!(web_gone < post && config_gone < post);

    let message = deleted.message.unwrap();
    assert!(message.contains("pre-delete"), "{message}");
    assert!(message.contains("post-delete"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_delete_hook_keeps_the_application_and_its_objects() {
    let env = Env::new("helm-delete-fail").await;
    let _controller = env.start_controller("h6");
    delete_hooks_app(&env, json!({"values": "hookImage: fail\n"})).await;

    env.apps()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let event = env
        .wait_event("web", "DeleteHookFailed", |m| m.contains("rel-pre-delete"))
        .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let app = env.app("web").await;
    assert!(app.metadata.deletion_timestamp.is_some());
    assert!(
        app.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == RESOURCES_FINALIZER)
    );
    assert!(
        env.object("apps", "v1", "Deployment", "rel-web")
            .await
            .is_some()
    );
    assert!(env.config_map_data("rel-config").await.is_some());
    assert!(env.config_map_data("rel-post-delete").await.is_none());

    // Fixing the hook (the spec of an application being deleted can still change) lets the deletion finish.
    env.patch_app(
        "web",
        json!({"spec": {"source": {"helm": {"values": "hookImage: busybox:1.36\n"}}}}),
    )
    .await;
    wait_app_gone(&env, "web").await;
    env.wait_gone("apps", "v1", "Deployment", "rel-web").await;
    assert!(env.config_map_data("rel-post-delete").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_cannot_render_at_deletion_is_deleted_without_hooks() {
    let env = Env::new("helm-delete-norender").await;
    let _controller = env.start_controller("h7");
    values_secret(&env, "hello").await;
    delete_hooks_app(
        &env,
        json!({"valuesFrom": [{"kind": "Secret", "name": "web-values"}]}),
    )
    .await;
    // The values Secret goes away: the chart cannot be rendered any more.
    Api::<Secret>::namespaced(env.client.clone(), env.ns())
        .delete("web-values", &DeleteParams::default())
        .await
        .unwrap();

    env.apps()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let skipped = env
        .wait_event("web", "DeleteHooksSkipped", |m| {
            m.starts_with("delete hooks skipped: ") && m.contains("web-values")
        })
        .await;
    assert_eq!(skipped.type_.as_deref(), Some("Warning"));
    assert!(!skipped.message.unwrap().contains(SECRET_VALUE));
    wait_app_gone(&env, "web").await;
    env.wait_gone("apps", "v1", "Deployment", "rel-web").await;
    assert!(
        env.object("batch", "v1", "Job", "rel-pre-delete")
            .await
            .is_none()
    );
    assert!(env.config_map_data("rel-post-delete").await.is_none());
}

/// `spec.sources` as Argo CD users write it for a chart of a Helm repository with their own values in Git: value
/// files `$values/...` read from the source with `ref: values` at its revision, in order; a new commit of values is
/// a change of the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_from_a_helm_repository_takes_value_files_from_git() {
    let env = Env::new("helm-refs").await;
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    helm_common::package("webapp", "1.0.0", work.path(), &repo_dir);
    helm_common::run_helm(work.path(), &["repo", "index", repo_dir.to_str().unwrap()]);
    let server = helm_common::StaticServer::start(&repo_dir, None);
    env.write(
        "envs/prod/values.yaml",
        "greeting: from-git\nreplicaCount: 2\n",
    );
    env.write("envs/prod/more.yaml", "greeting: from-the-second-file\n");
    env.commit_push("values");
    let _controller = env.start_controller("h-refs");
    let app: kedge_api::Application = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": env.ns()},
        "spec": {
            "sources": [
                {"repoURL": server.url(), "chart": "webapp", "targetRevision": "1.0.0",
                 "helm": {"releaseName": "web", "skipCrds": true,
                          "valueFiles": ["$values/envs/prod/values.yaml", "$values/envs/prod/more.yaml"]}},
                {"repoURL": env.repo_url, "targetRevision": "main", "ref": "values"}
            ],
            "syncPolicy": automated(true, true),
        }
    }))
    .unwrap();
    env.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("create application");
    env.wait_synced("web", "1.0.0").await;
    // Later files win, as Helm layers them.
    env.wait_config_map("web-config", "greeting", "from-the-second-file")
        .await;
    assert_eq!(env.replicas("web-web").await, Some(2));

    // New values in Git: applied at the same chart version.
    env.write("envs/prod/more.yaml", "greeting: changed-in-git\n");
    env.commit_push("new values");
    env.wait_config_map("web-config", "greeting", "changed-in-git")
        .await;
}
