//! End to end: the Argo CD fields of an Application do what Argo CD's do, or are refused with nothing applied —
//! `spec.source.kustomize`, `spec.syncPolicy.syncOptions`, `spec.destination.server` / `name`, `spec.sources`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{
    Env, POLL, STEP, automated, condition, config_map, deployment, deployment_annotated, synced_at,
};
use kedge_api::Application;
use kedge_testkit::{AuditEvent, wait_for};
use kube::api::PostParams;
use serde_json::{Value, json};

/// Writes the kustomize-guestbook fixture (Argo CD's example) at `at` in the test's repository.
fn write_guestbook(env: &Env, at: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kedge-render/tests/fixtures/kustomize-guestbook");
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        env.write(
            &format!("{at}/{}", entry.file_name().to_string_lossy()),
            &text,
        );
    }
}

/// Waits until the Application reports `Ready=False` with reason `InvalidSpec` and a message containing `needle`.
async fn wait_refused(env: &Env, name: &str, needle: &str) -> String {
    let app = env
        .wait_app(name, "refused with InvalidSpec", |a| {
            condition(a, "Ready").is_some_and(|c| {
                c.status == "False" && c.reason == "InvalidSpec" && c.message.contains(needle)
            })
        })
        .await;
    let stalled = condition(&app, "Stalled").expect("Stalled");
    assert_eq!(stalled.status, "True");
    assert!(
        app.status.as_ref().unwrap().inventory.is_empty(),
        "nothing was applied"
    );
    condition(&app, "Ready").unwrap().message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_images_and_name_prefix_change_what_is_deployed() {
    let env = Env::new("argo-kustomize").await;
    write_guestbook(&env, "guestbook");
    let sha = env.commit_push("kustomize-guestbook");
    let _controller = env.start_controller("c1");
    let kustomize = json!({
        "images": ["gcr.io/google-samples/gb-frontend=gcr.io/heptio-images/ks-guestbook-demo:0.2"],
        "namePrefix": "staging-",
        "commonLabels": {"env": "staging"},
        "commonAnnotations": {"example.com/from": "$ARGOCD_APP_NAME@${ARGOCD_APP_REVISION_SHORT}"},
        "commonAnnotationsEnvsubst": true,
        "replicas": [{"name": "guestbook-ui", "count": 2}],
    });
    // A change of the spec alone (the same revision) is synced by automated sync, as a new commit is.
    env.create_app_with(
        "guestbook",
        "guestbook",
        automated(true, true),
        json!({"source": {"repoURL": env.repo_url, "targetRevision": "main", "path": "guestbook",
                          "kustomize": kustomize}}),
        json!({}),
    )
    .await;
    env.wait_synced("guestbook", &sha).await;
    let d = env
        .object("apps", "v1", "Deployment", "staging-guestbook-ui")
        .await
        .expect("the prefixed Deployment");
    assert_eq!(
        d.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "gcr.io/heptio-images/ks-guestbook-demo:0.2"
    );
    assert_eq!(d.data["spec"]["replicas"], 2);
    assert_eq!(d.metadata.labels.as_ref().unwrap()["env"], "staging");
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["example.com/from"],
        format!("guestbook@{}", &sha[..7])
    );
    assert!(
        env.object("", "v1", "Service", "staging-guestbook-ui")
            .await
            .is_some()
    );
    // The prefix replaces the kustomization's own (kustomize-), as Argo CD's `kustomize edit set nameprefix`.
    for name in ["kustomize-guestbook-ui", "guestbook-ui"] {
        assert!(
            env.object("apps", "v1", "Deployment", name).await.is_none(),
            "{name}"
        );
    }

    // Changing an option is a new render (the options are part of the render cache key).
    env.patch_app(
        "guestbook",
        json!({"spec": {"source": {"kustomize": {"images": ["gcr.io/google-samples/gb-frontend:v6"]}}}}),
    )
    .await;
    wait_for(STEP, POLL, || async {
        env.object("apps", "v1", "Deployment", "staging-guestbook-ui")
            .await
            .filter(|d| {
                d.data["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "gcr.io/google-samples/gb-frontend:v6"
            })
    })
    .await
    .expect("the new image is deployed");

    // Kustomize options on a plain directory are refused, naming the field.
    env.write("plain/cm.yaml", &config_map("plain", "k", "v"));
    env.commit_push("a plain directory");
    env.create_app_with(
        "plain",
        "plain",
        automated(true, false),
        json!({"source": {"repoURL": env.repo_url, "targetRevision": "main", "path": "plain",
                          "kustomize": {"namePrefix": "x-"}}}),
        json!({}),
    )
    .await;
    let message = wait_refused(&env, "plain", "spec.source.kustomize").await;
    assert!(message.contains("plain directory"), "{message}");
    assert!(env.config_map_data("plain").await.is_none());
    assert!(env.config_map_data("x-plain").await.is_none());

    // Helm options likewise need a chart.
    env.create_app_with(
        "plain-helm",
        "plain",
        automated(true, false),
        json!({"source": {"repoURL": env.repo_url, "targetRevision": "main", "path": "plain",
                          "helm": {"releaseName": "r"}}}),
        json!({}),
    )
    .await;
    let message = wait_refused(&env, "plain-helm", "spec.source.helm").await;
    assert!(message.contains("not a Helm chart"), "{message}");
    assert!(env.config_map_data("plain").await.is_none());

    // And kustomize options on a Helm chart in Git.
    env.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: settings\nversion: 0.1.0\n",
    );
    env.write("chart/templates/cm.yaml", &config_map("charted", "k", "v"));
    env.commit_push("a chart");
    env.create_app_with(
        "chart",
        "chart",
        automated(true, false),
        json!({"source": {"repoURL": env.repo_url, "targetRevision": "main", "path": "chart",
                          "kustomize": {"images": ["web:2"]}}}),
        json!({}),
    )
    .await;
    let message = wait_refused(&env, "chart", "spec.source.kustomize").await;
    assert!(message.contains("a Helm chart"), "{message}");
    assert!(env.config_map_data("charted").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_cluster_is_refused_and_nothing_is_applied() {
    let env = Env::new("argo-destination").await;
    env.write("app/cm.yaml", &config_map("settings", "k", "v"));
    let sha = env.commit_push("one ConfigMap");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "remote",
        "app",
        automated(true, false),
        json!({"destination": {"server": "https://prod.example.test:6443"}}),
        json!({}),
    )
    .await;
    let message = wait_refused(&env, "remote", "https://prod.example.test:6443").await;
    assert!(
        message.contains("is not the server of a registered cluster"),
        "{message}"
    );
    assert!(env.config_map_data("settings").await.is_none());

    env.patch_app(
        "remote",
        json!({"spec": {"destination": {"server": null, "name": "prod"}}}),
    )
    .await;
    let message = wait_refused(&env, "remote", "spec.destination.name \"prod\"").await;
    assert!(message.contains("is not a registered cluster"), "{message}");
    assert!(env.config_map_data("settings").await.is_none());

    // The local cluster, by either of its names, deploys.
    env.patch_app(
        "remote",
        json!({"spec": {"destination": {"server": "https://kubernetes.default.svc", "name": "in-cluster"}}}),
    )
    .await;
    env.wait_synced("remote", &sha).await;
    env.wait_config_map("settings", "k", "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_options_and_sources_kedge_does_not_implement_are_refused() {
    let env = Env::new("argo-refused").await;
    env.write("app/cm.yaml", &config_map("settings", "k", "v"));
    let sha = env.commit_push("one ConfigMap");
    let _controller = env.start_controller("c1");
    let mut policy = automated(true, false);
    policy["syncOptions"] = json!(["CreateNamespace=true", "Prune=confirm"]);
    env.create_app("replace", "app", policy).await;
    let message = wait_refused(&env, "replace", "Prune=confirm").await;
    assert!(message.contains("spec.syncPolicy.syncOptions"), "{message}");
    assert!(env.config_map_data("settings").await.is_none());

    // A name Argo CD does not know is refused by the schema.
    let mut app: Value = json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "typo", "namespace": env.ns()},
        "spec": {"source": {"repoURL": env.repo_url, "path": "app"},
                 "syncPolicy": {"syncOptions": ["PruneLasst=true"]}},
    });
    let typo: Application = serde_json::from_value(app.clone()).unwrap();
    let err = env
        .apps()
        .create(&PostParams::default(), &typo)
        .await
        .expect_err("the schema refuses an unknown option");
    assert!(err.to_string().contains("syncOptions"), "{err}");

    // A ref source (value files for another source) without a chart to read them is refused.
    app["metadata"]["name"] = json!("multi");
    app["spec"] = json!({
        "sources": [{"repoURL": env.repo_url, "path": "app"}, {"repoURL": env.repo_url, "ref": "values"}],
        "syncPolicy": automated(true, false),
    });
    let multi: Application = serde_json::from_value(app).unwrap();
    env.apps()
        .create(&PostParams::default(), &multi)
        .await
        .expect("created");
    wait_refused(&env, "multi", "spec.sources").await;
    assert!(env.config_map_data("settings").await.is_none());

    // Taking the option out deploys.
    env.patch_app(
        "replace",
        json!({"spec": {"syncPolicy": {"syncOptions": ["CreateNamespace=true"]}}}),
    )
    .await;
    env.wait_synced("replace", &sha).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_propagation_orphan_leaves_the_dependents() {
    let env = Env::new("argo-orphan").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.25"));
    env.write("app/cm.yaml", &config_map("settings", "k", "v"));
    let v1 = env.commit_push("a Deployment");
    let _controller = env.start_controller("c1");
    let mut policy = automated(true, false);
    policy["syncOptions"] = json!(["PrunePropagationPolicy=orphan"]);
    env.create_app("orphan", "app", policy).await;
    env.wait_synced("orphan", &v1).await;
    let rs = wait_for(STEP, POLL, || async { replica_set_of(&env, "web").await })
        .await
        .expect("the Deployment's ReplicaSet");

    env.work.remove("app/web.yaml").expect("remove");
    let v2 = env.commit_push("the Deployment leaves");
    env.wait_synced("orphan", &v2).await;
    env.wait_gone("apps", "v1", "Deployment", "web").await;
    // Orphaned: the ReplicaSet stays, without its owner reference.
    wait_for(STEP, POLL, || async {
        env.object("apps", "v1", "ReplicaSet", &rs)
            .await
            .filter(|r| {
                r.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
            })
    })
    .await
    .expect("the ReplicaSet is left behind, orphaned");
}

/// The name of the ReplicaSet the simulator made for Deployment `name`.
async fn replica_set_of(env: &Env, name: &str) -> Option<String> {
    let ar = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "ReplicaSet",
    ));
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(env.client.clone(), env.ns(), &ar);
    let list = api.list(&Default::default()).await.ok()?;
    list.items
        .into_iter()
        .find(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Deployment" && o.name == name)
        })
        .and_then(|r| r.metadata.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_last_prunes_once_the_rest_is_healthy() {
    let env = Env::new("argo-prune-last").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.25"));
    env.write("app/old.yaml", &config_map("old", "k", "v"));
    let v1 = env.commit_push("a Deployment and a ConfigMap");
    let _controller = env.start_controller("c1");
    let mut policy = automated(true, false);
    policy["syncOptions"] = json!(["PruneLast=true"]);
    env.create_app("last", "app", policy).await;
    env.wait_synced("last", &v1).await;

    // One commit changes the Deployment (Progressing for about a second) and removes the ConfigMap.
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.26"));
    env.work.remove("app/old.yaml").expect("remove");
    let v2 = env.commit_push("a new image; the ConfigMap leaves");
    // When the ConfigMap is deleted (marked, or gone), the Deployment already runs the new generation.
    wait_for(STEP, Duration::from_millis(20), || async {
        let cm = env.object("", "v1", "ConfigMap", "old").await;
        cm.is_none_or(|c| c.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await
    .expect("the ConfigMap is pruned");
    let d = env
        .object("apps", "v1", "Deployment", "web")
        .await
        .expect("web");
    assert_eq!(
        d.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(
        d.data["status"]["observedGeneration"].as_i64(),
        d.metadata.generation,
        "pruned before the Deployment was rolled out: {:?}",
        d.data["status"]
    );
    env.wait_synced("last", &v2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respect_ignore_differences_keeps_ignored_fields_through_a_sync() {
    let env = Env::new("argo-respect").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.25"));
    let v1 = env.commit_push("a Deployment");
    let _controller = env.start_controller("c1");
    let mut policy = automated(true, true);
    policy["syncOptions"] = json!(["RespectIgnoreDifferences=true"]);
    env.create_app_with(
        "respect",
        "app",
        policy,
        json!({"ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]}),
        json!({}),
    )
    .await;
    env.wait_synced("respect", &v1).await;
    env.set_replicas("web", 4, "autoscaler").await;
    env.write(
        "app/web.yaml",
        &deployment_annotated("web", 1, "nginx:1.25", &[("example.com/rev", "2")]),
    );
    let v2 = env.commit_push("an annotation");
    env.wait_synced("respect", &v2).await;
    let d = env
        .object("apps", "v1", "Deployment", "web")
        .await
        .expect("web");
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["example.com/rev"],
        "2"
    );
    assert_eq!(d.data["spec"]["replicas"], 4, "the ignored field is kept");
}

/// Non-dry-run applies (PATCH) of ConfigMaps in `ns` by the controller `identity`, by name.
fn applies(events: &[AuditEvent], ns: &str, identity: &str, name: &str) -> usize {
    let agent = format!("({identity})");
    events
        .iter()
        .filter(|e| {
            e.namespace == ns
                && e.user_agent.ends_with(&agent)
                && e.verb == "patch"
                && e.resource == "configmaps"
                && e.name == name
                && !e.is_dry_run()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_out_of_sync_only_applies_only_what_differs() {
    let env = Env::audited("argo-out-of-sync-only").await;
    for name in ["a", "b", "c"] {
        env.write(&format!("app/{name}.yaml"), &config_map(name, "k", "1"));
    }
    let v1 = env.commit_push("three ConfigMaps");
    let _controller = env.start_controller("c1");
    let mut policy = automated(true, false);
    policy["syncOptions"] = json!(["ApplyOutOfSyncOnly=true"]);
    env.create_app("only", "app", policy).await;
    env.wait_synced("only", &v1).await;
    env.write("app/b.yaml", &config_map("b", "k", "2"));
    let v2 = env.commit_push("b changes");
    let app = env.wait_synced("only", &v2).await;
    assert!(synced_at(&app, &v2));
    env.wait_config_map("b", "k", "2").await;
    let events = env.cluster.audit_events().expect("audit log");
    assert_eq!(
        applies(&events, env.ns(), "c1", "b"),
        2,
        "created, then changed"
    );
    for name in ["a", "c"] {
        assert_eq!(
            applies(&events, env.ns(), "c1", name),
            1,
            "{name} was applied again though it did not differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_sync_options_reach_every_object() {
    let env = Env::audited("argo-app-options").await;
    env.write("replace/cm.yaml", &config_map("replaced", "k", "1"));
    env.write("validate/cm.yaml", &config_map("unvalidated", "k", "1"));
    let v1 = env.commit_push("two ConfigMaps");
    let _controller = env.start_controller("c1");
    for (name, option) in [("replace", "Replace=true"), ("validate", "Validate=false")] {
        let mut policy = automated(true, false);
        policy["syncOptions"] = json!([option]);
        env.create_app(name, name, policy).await;
    }
    env.wait_synced("replace", &v1).await;
    env.wait_synced("validate", &v1).await;
    env.write("replace/cm.yaml", &config_map("replaced", "k", "2"));
    env.write("validate/cm.yaml", &config_map("unvalidated", "k", "2"));
    let v2 = env.commit_push("new values");
    env.wait_synced("replace", &v2).await;
    env.wait_synced("validate", &v2).await;
    env.wait_config_map("replaced", "k", "2").await;
    env.wait_config_map("unvalidated", "k", "2").await;

    // Replace=true: written with create and update (PUT), never applied.
    let cm = env
        .object("", "v1", "ConfigMap", "replaced")
        .await
        .expect("replaced");
    let operations: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.operation)
        .collect();
    assert_eq!(operations, ["Update"], "replaced, not applied");
    // Validate=false: every apply asks the API server to ignore unknown fields.
    let events = env.cluster.audit_events().expect("audit log");
    let writes: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| {
            e.namespace == env.ns()
                && e.resource == "configmaps"
                && e.name == "unvalidated"
                && e.user_agent.ends_with("(c1)")
                && !e.is_dry_run()
                && e.verb == "patch"
        })
        .collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    for w in &writes {
        assert!(w.request_uri.contains("fieldValidation=Ignore"), "{w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_paths_of_one_repository_are_one_application() {
    let env = Env::new("argo-sources").await;
    env.write("a/cm.yaml", &config_map("from-a", "k", "1"));
    write_guestbook(&env, "b");
    let v1 = env.commit_push("two paths");
    let _controller = env.start_controller("c1");
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "combined", "namespace": env.ns()},
        "spec": {
            "sources": [
                {"repoURL": env.repo_url, "targetRevision": "main", "path": "a"},
                {"repoURL": env.repo_url, "targetRevision": "main", "path": "b",
                 "kustomize": {"namePrefix": "b-"}},
            ],
            "syncPolicy": automated(true, false),
        },
    }))
    .unwrap();
    env.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("created");
    let synced = env.wait_synced("combined", &v1).await;
    assert_eq!(synced.status.as_ref().unwrap().inventory.len(), 3);
    env.wait_config_map("from-a", "k", "1").await;
    assert!(
        env.object("apps", "v1", "Deployment", "b-guestbook-ui")
            .await
            .is_some()
    );

    // A new commit moves every source; an object that leaves one is pruned.
    env.write("a/cm.yaml", &config_map("from-a", "k", "2"));
    env.work.remove("b/guestbook-ui-svc.yaml").expect("remove");
    env.write(
        "b/kustomization.yaml",
        "resources:\n- guestbook-ui-deployment.yaml\n",
    );
    let v2 = env.commit_push("both paths change");
    env.wait_synced("combined", &v2).await;
    env.wait_config_map("from-a", "k", "2").await;
    env.wait_gone("", "v1", "Service", "b-guestbook-ui").await;

    // An object two sources define is refused, naming both places, and nothing changes.
    env.write("c/cm.yaml", &config_map("from-a", "k", "3"));
    env.commit_push("a duplicate");
    env.patch_app(
        "combined",
        json!({"spec": {"sources": [
            {"repoURL": env.repo_url, "targetRevision": "main", "path": "a"},
            {"repoURL": env.repo_url, "targetRevision": "main", "path": "c"},
        ]}}),
    )
    .await;
    let app = env
        .wait_app("combined", "the duplicate refused", |a| {
            condition(a, "Ready")
                .is_some_and(|c| c.status == "False" && c.message.contains("duplicate"))
        })
        .await;
    let message = &condition(&app, "Ready").unwrap().message;
    assert!(
        message.contains("a/cm.yaml") && message.contains("c/cm.yaml"),
        "{message}"
    );
    env.wait_config_map("from-a", "k", "2").await;
}
