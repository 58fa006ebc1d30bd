//! Plan and sync against the test cluster: defaults, cache, drift, ignoreDifferences, CRDs, prune, failures.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_engine::{
    Action, AppRef, AppSpec, DiffOpKind, IgnoreRule, ObjectId, PruneAction, SyncOptions, SyncPhase,
    SyncStatus, Tracking,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

fn deployments(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn config_maps(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

#[tokio::test]
async fn server_defaults_make_no_diff_and_replans_are_free() {
    let ctx = setup("eng-defaults").await;
    let spec = ctx.spec("defaults");
    let set = || {
        desired(vec![
            deployment("web", "nginx:1.27", 2),
            config_map("settings", json!({"mode": "fast"})),
        ])
    };
    let plan = ctx.engine.plan(&spec, set(), &[]).await.unwrap();
    assert_eq!(plan.objects.len(), 2);
    assert!(plan.objects.iter().all(|o| o.status == SyncStatus::Missing));
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    assert!(result.outcomes.iter().all(|o| o.action == Action::Created));
    assert_eq!(result.inventory.len(), 2);

    // The plan after the sync, built from what the API server returned, without a request.
    let before = ctx.engine.stats();
    let after = ctx.engine.plan_after_sync(&plan, &result).unwrap();
    assert_eq!(ctx.engine.stats().since(&before).gets, 0);
    assert!(after.is_synced());

    // The server filled in strategy, revisionHistoryLimit, terminationMessagePath...: still Synced.
    let plan = ctx
        .engine
        .plan(&spec, set(), &result.inventory)
        .await
        .unwrap();
    for o in &plan.objects {
        assert_eq!(o.status, SyncStatus::Synced, "{}: {:?}", o.id, o.diff);
        assert_eq!(o.tracking, Tracking::Owned);
        // A fresh comparison agrees with the plan after the sync.
        let a = after.objects.iter().find(|a| a.id == o.id).unwrap();
        assert_eq!(
            (&a.status, &a.tracking),
            (&o.status, &o.tracking),
            "{}",
            o.id
        );
    }
    // Health is assessed on the objects the server returned: a ConfigMap is Healthy at once, the Deployment is
    // still rolling out (the simulator makes it available a moment later).
    let health_of = |kind: &str| {
        after
            .objects
            .iter()
            .find(|a| a.id.kind == kind)
            .map(|a| a.health.status)
    };
    assert_eq!(
        health_of("ConfigMap"),
        Some(kedge_engine::HealthStatus::Healthy)
    );
    assert_eq!(
        health_of("Deployment"),
        Some(kedge_engine::HealthStatus::Progressing)
    );
    // The simulator rolls the Deployment out: it writes the revision annotation and the status, neither of which
    // the payload sets, so the comparison made at the apply still holds: replans make no dry-run and no write.
    kedge_testkit::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            ctx.engine
                .health(&spec, &result.inventory)
                .await
                .unwrap()
                .status
                == kedge_engine::HealthStatus::Healthy
        },
    )
    .await
    .unwrap();
    let annotated = deployments(&ctx.client, ctx.ns.name())
        .get("web")
        .await
        .unwrap();
    assert!(
        annotated
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("deployment.kubernetes.io/revision")),
        "the simulator annotates rolled-out Deployments: {:?}",
        annotated.metadata.annotations
    );
    let start = ctx.log.len();
    let stats = ctx.engine.stats();
    let plan = ctx
        .engine
        .plan(&spec, set(), &result.inventory)
        .await
        .unwrap();
    assert!(plan.is_synced());
    let seen = ctx.log.since(start);
    assert_eq!(dry_runs(&seen), 0, "{seen:?}");
    assert_eq!(writes(&seen), 0, "{seen:?}");
    let delta = ctx.engine.stats().since(&stats);
    assert_eq!(delta.dry_runs, 0);
    assert_eq!(delta.dry_run_cache_hits, 2);
    // Only the two reads of the live objects.
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Syncing a synced plan writes nothing.
    let start = ctx.log.len();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert!(
        result
            .outcomes
            .iter()
            .all(|o| o.action == Action::Unchanged)
    );
    assert_eq!(writes(&ctx.log.since(start)), 0);
}

#[tokio::test]
async fn drift_names_the_manager_and_sync_repairs_it() {
    let ctx = setup("eng-drift").await;
    let spec = ctx.spec("drift");
    let set = || desired(vec![deployment("api", "nginx:1.27", 1)]);
    let plan = ctx.engine.plan(&spec, set(), &[]).await.unwrap();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);

    // Someone edits replicas by hand.
    let api = deployments(&ctx.client, ctx.ns.name());
    let pp = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    api.patch("api", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .unwrap();

    let plan = ctx
        .engine
        .plan(&spec, set(), &result.inventory)
        .await
        .unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::OutOfSync);
    let diff = o.diff.as_ref().unwrap();
    assert_eq!(diff.ops.len(), 1, "{diff:?}");
    assert_eq!(diff.ops[0].op, DiffOpKind::Replace);
    assert_eq!(diff.ops[0].path, "/spec/replicas");
    assert_eq!(diff.ops[0].live, Some(json!(4)));
    assert_eq!(diff.ops[0].desired, Some(json!(1)));
    assert!(diff.text.contains("-  replicas: 4"), "{}", diff.text);
    assert!(diff.text.contains("+  replicas: 1"), "{}", diff.text);
    let drift = &o.drift[0];
    assert_eq!(drift.field, "spec.replicas");
    assert_eq!(drift.managers.len(), 1, "{drift:?}");
    assert_eq!(drift.managers[0].manager, "kubectl-edit");
    assert_eq!(drift.managers[0].operation, "Update");
    assert!(
        o.message
            .starts_with("spec.replicas changed by kubectl-edit (Update) at "),
        "{}",
        o.message
    );

    // Without force, the hand-edited field is a conflict and nothing is written.
    let no_force = SyncOptions {
        force_conflicts: false,
        ..Default::default()
    };
    let refused = ctx.engine.sync(&plan, &no_force).await.unwrap();
    assert_eq!(refused.phase, SyncPhase::Failed);
    assert_eq!(refused.outcomes[0].action, Action::Failed);
    assert!(
        refused.outcomes[0].message.starts_with("conflict"),
        "{:?}",
        refused.outcomes[0]
    );
    assert!(
        refused.outcomes[0].message.contains("kubectl-edit"),
        "{:?}",
        refused.outcomes[0]
    );
    assert_eq!(refused.inventory, result.inventory);
    assert_eq!(
        api.get("api").await.unwrap().data["spec"]["replicas"],
        json!(4)
    );

    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.outcomes[0].action, Action::Configured);
    let live = api.get("api").await.unwrap();
    assert_eq!(live.data["spec"]["replicas"], json!(1));
    let plan = ctx
        .engine
        .plan(&spec, set(), &result.inventory)
        .await
        .unwrap();
    assert_eq!(plan.objects[0].status, SyncStatus::Synced);
}

#[tokio::test]
async fn ignore_differences_leaves_autoscaled_replicas_alone() {
    let ctx = setup("eng-ignore").await;
    let mut spec = ctx.spec("ignore");
    spec.ignore_differences = vec![IgnoreRule {
        group: "apps".into(),
        kind: "Deployment".into(),
        json_pointers: vec!["/spec/replicas".into()],
        ..Default::default()
    }];
    let set = |image: &str| desired(vec![deployment("scaled", image, 2)]);
    let plan = ctx
        .engine
        .plan(&spec, set("nginx:1.27"), &[])
        .await
        .unwrap();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);

    // The autoscaler sets replicas.
    let api = deployments(&ctx.client, ctx.ns.name());
    let pp = PatchParams {
        field_manager: Some("horizontal-pod-autoscaler".into()),
        ..Default::default()
    };
    api.patch(
        "scaled",
        &pp,
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();

    let plan = ctx
        .engine
        .plan(&spec, set("nginx:1.27"), &result.inventory)
        .await
        .unwrap();
    assert_eq!(
        plan.objects[0].status,
        SyncStatus::Synced,
        "{:?}",
        plan.objects[0].diff
    );

    // A real change elsewhere is applied without touching replicas.
    let plan = ctx
        .engine
        .plan(&spec, set("nginx:1.28"), &result.inventory)
        .await
        .unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::OutOfSync);
    assert!(
        o.diff
            .as_ref()
            .unwrap()
            .ops
            .iter()
            .all(|op| !op.path.contains("replicas")),
        "{:?}",
        o.diff
    );
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let live = api.get("scaled").await.unwrap();
    assert_eq!(live.data["spec"]["replicas"], json!(5));
    assert_eq!(
        live.data["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("nginx:1.28")
    );

    // Without the rule the same state is OutOfSync on replicas, attributed to the autoscaler.
    let plain = ctx.spec("ignore");
    let plan = ctx
        .engine
        .plan(&plain, set("nginx:1.28"), &result.inventory)
        .await
        .unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::OutOfSync);
    assert_eq!(o.drift[0].field, "spec.replicas");
    assert_eq!(o.drift[0].managers[0].manager, "horizontal-pod-autoscaler");
}

#[tokio::test]
async fn crd_and_custom_resource_in_one_set() {
    let ctx = setup("eng-crd").await;
    let spec = ctx.spec("crd");
    let group = format!("{}.kedge.test", unique("g"));
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 3}, "color": {"type": "string"}}}}}}}]}
    });
    let cr = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"color": "blue"}});
    let set = || desired(vec![cr.clone(), crd.clone()]);
    let plan = ctx.engine.plan(&spec, set(), &[]).await.unwrap();
    let cr_plan = plan.objects.iter().find(|o| o.id.kind == "Widget").unwrap();
    assert_eq!(cr_plan.status, SyncStatus::Missing, "{}", cr_plan.message);
    assert_eq!(cr_plan.id.namespace.as_deref(), Some(ctx.ns.name()));
    // CRD first.
    assert_eq!(plan.objects[0].id.kind, "CustomResourceDefinition");
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    assert_eq!(result.inventory.len(), 2);

    // The schema default (size: 3) is not a diff.
    let plan = ctx
        .engine
        .plan(&spec, set(), &result.inventory)
        .await
        .unwrap();
    for o in &plan.objects {
        assert_eq!(o.status, SyncStatus::Synced, "{}: {:?}", o.id, o.diff);
    }

    // A field the schema does not declare is an error naming it, never a field dropped without a word.
    let typo = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"colour": "blue"}});
    let plan = ctx
        .engine
        .plan(&spec, desired(vec![crd.clone(), typo]), &result.inventory)
        .await
        .unwrap();
    let w2 = plan.objects.iter().find(|o| o.id.name == "w2").unwrap();
    assert_eq!(w2.status, SyncStatus::Error, "{}", w2.message);
    assert!(w2.message.contains("colour"), "{}", w2.message);

    // Clean up the cluster-scoped definition.
    let plan = ctx
        .engine
        .plan(&spec, Vec::new(), &result.inventory)
        .await
        .unwrap();
    let opts = SyncOptions {
        allow_empty: true,
        propagation: kedge_engine::PropagationPolicy::Background,
        ..Default::default()
    };
    let result = ctx.engine.sync(&plan, &opts).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    assert!(result.inventory.is_empty());
}

#[tokio::test]
async fn prune_deletes_only_owned_objects() {
    let ctx = setup("eng-prune").await;
    let spec = ctx.spec("prune");
    let keep = with_annotations(
        config_map("keep", json!({})),
        json!({"kedge.dev/sync-options": "Prune=false"}),
    );
    let all = desired(vec![
        config_map("a", json!({})),
        config_map("b", json!({})),
        keep.clone(),
    ]);
    let plan = ctx.engine.plan(&spec, all, &[]).await.unwrap();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.inventory.len(), 3);

    // Another application claims "a": shared resource, neither applied nor deleted.
    let other = AppSpec::new(AppRef::new("kedge", "other"), ctx.ns.name());
    let plan_other = ctx
        .engine
        .plan(
            &other,
            desired(vec![config_map("a", json!({"x": "y"}))]),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(plan_other.objects[0].status, SyncStatus::Error);
    assert!(plan_other.objects[0].message.contains("shared resource"));
    let r = ctx
        .engine
        .sync(&plan_other, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Failed);
    assert_eq!(r.outcomes[0].action, Action::Failed);
    assert!(r.inventory.is_empty());
    let cms = config_maps(&ctx.client, ctx.ns.name());
    assert!(
        cms.get("a")
            .await
            .unwrap()
            .data
            .get("data")
            .is_none_or(|d| d.get("x").is_none())
    );
    // And if "other" believed it owned "b", it still would not prune it.
    let b = ObjectId::new("", "ConfigMap", Some(ctx.ns.name()), "b");
    let plan_other = ctx.engine.plan(&other, Vec::new(), &[b]).await.unwrap();
    assert!(matches!(plan_other.prune[0].action, PruneAction::Refuse(_)));
    let r = ctx.engine.plan(&other, Vec::new(), &[]).await.unwrap();
    assert!(r.prune.is_empty());

    // "b" leaves the set: pruned; "keep" leaves too but stays.
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![config_map("a", json!({}))]),
            &result.inventory,
        )
        .await
        .unwrap();
    assert_eq!(plan.prune.len(), 2);
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let action = |name: &str| {
        result
            .outcomes
            .iter()
            .find(|o| o.id.name == name)
            .map(|o| o.action)
    };
    assert_eq!(action("b"), Some(Action::Pruned));
    assert_eq!(action("keep"), Some(Action::PruneSkipped));
    kedge_testkit::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { cms.get_opt("b").await.unwrap().is_none() },
    )
    .await
    .unwrap();
    assert!(cms.get_opt("keep").await.unwrap().is_some());
    let names: Vec<&str> = result.inventory.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["a", "keep"]);

    // Empty desired set: refused unless allowed.
    let plan = ctx
        .engine
        .plan(&spec, Vec::new(), &result.inventory)
        .await
        .unwrap();
    assert!(plan.would_prune_all);
    let refused = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(refused.phase, SyncPhase::Failed);
    assert!(
        refused.message.contains("refusing to prune"),
        "{}",
        refused.message
    );
    assert!(cms.get_opt("a").await.unwrap().is_some());
    assert_eq!(refused.inventory, result.inventory);
    let allowed = ctx
        .engine
        .sync(
            &plan,
            &SyncOptions {
                allow_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(allowed.phase, SyncPhase::Succeeded, "{}", allowed.message);
    kedge_testkit::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { cms.get_opt("a").await.unwrap().is_none() },
    )
    .await
    .unwrap();
    let names: Vec<&str> = allowed.inventory.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["keep"]);
}

#[tokio::test]
async fn partial_failure_reports_each_object() {
    let ctx = setup("eng-partial").await;
    let spec = ctx.spec("partial");
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let unknown =
        json!({"apiVersion": "nowhere.kedge.test/v1", "kind": "Ghost", "metadata": {"name": "g"}});
    let set = desired(vec![
        config_map("good", json!({"k": "v"})),
        bad,
        unknown,
        json!({"kind": "ConfigMap", "metadata": {"name": "no-api-version"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "scoped-wrong", "namespace": "somewhere"}, "rules": []}),
    ]);
    let plan = ctx.engine.plan(&spec, set, &[]).await.unwrap();
    assert_eq!(plan.invalid.len(), 1, "{:?}", plan.invalid);
    let status = |name: &str| {
        plan.objects
            .iter()
            .find(|o| o.id.name == name)
            .map(|o| (o.status.clone(), o.message.clone()))
            .unwrap()
    };
    assert_eq!(status("good").0, SyncStatus::Missing);
    let (s, msg) = status("bad");
    assert_eq!(s, SyncStatus::Error);
    assert!(msg.contains("selector"), "{msg}");
    let (s, msg) = status("scoped-wrong");
    assert_eq!(s, SyncStatus::Error);
    assert!(msg.contains("cluster-scoped"), "{msg}");
    let (s, msg) = status("g");
    assert_eq!(s, SyncStatus::Error);
    assert!(msg.contains("unknown kind"), "{msg}");

    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Failed);
    let action = |name: &str| {
        result
            .outcomes
            .iter()
            .find(|o| o.id.name == name)
            .map(|o| o.action)
    };
    assert_eq!(action("good"), Some(Action::Created));
    assert_eq!(action("bad"), Some(Action::Failed));
    assert_eq!(action("g"), Some(Action::Failed));
    assert!(result.message.contains("no-api-version") || result.message.contains("apiVersion"));
    let names: Vec<&str> = result.inventory.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["good"]);
    assert!(
        config_maps(&ctx.client, ctx.ns.name())
            .get_opt("good")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn secrets_are_masked_in_diffs() {
    let ctx = setup("eng-secret").await;
    let spec = ctx.spec("secret");
    let secret = |v: &str| {
        desired(vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "stringData": {"password": v}}),
        ])
    };
    let plan = ctx
        .engine
        .plan(&spec, secret("hunter2"), &[])
        .await
        .unwrap();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let plan = ctx
        .engine
        .plan(&spec, secret("hunter2"), &result.inventory)
        .await
        .unwrap();
    assert_eq!(
        plan.objects[0].status,
        SyncStatus::Synced,
        "{:?}",
        plan.objects[0].diff
    );
    let plan = ctx
        .engine
        .plan(&spec, secret("correct-horse"), &result.inventory)
        .await
        .unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::OutOfSync);
    let dump = serde_json::to_string(&plan).unwrap();
    for leaked in [
        "hunter2",
        "correct-horse",
        "aHVudGVyMg==",
        "Y29ycmVjdC1ob3JzZQ==",
    ] {
        assert!(!dump.contains(leaked), "{leaked} leaked: {dump}");
    }
    assert!(o.diff.as_ref().unwrap().text.contains("++++++++"));
}
