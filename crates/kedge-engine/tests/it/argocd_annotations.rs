//! Argo CD's annotations read as equals of Kedge's, against the test cluster: hooks (with `Skip` and
//! `generateName`), waves, per-object sync options and compare options.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_engine::{Action, HookPhase, PruneAction, SyncOptions, SyncPhase, SyncStatus};
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn api(client: &kube::Client, ns: &str, group: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn job(meta: Value, annotations: Value) -> Value {
    let mut meta = meta;
    meta["annotations"] = annotations;
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "run", "image": "alpine:latest", "command": ["sleep", "5"]}]}}}})
}

fn options() -> SyncOptions {
    SyncOptions {
        wave_timeout: Duration::from_secs(20),
        hook_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// The Jobs whose `metadata.generateName` is `prefix`.
async fn generated(ctx: &Ctx, prefix: &str) -> Vec<String> {
    let jobs = api(&ctx.client, ctx.ns.name(), "batch", "Job")
        .list(&ListParams::default())
        .await
        .unwrap();
    jobs.items
        .into_iter()
        .filter(|j| j.metadata.generate_name.as_deref() == Some(prefix))
        .filter_map(|j| j.metadata.name)
        .collect()
}

#[tokio::test]
async fn argocd_hooks_waves_skip_and_generate_name_run_as_kedges() {
    let ctx = setup("eng-argo-hooks").await;
    let spec = ctx.spec("argo-hooks");
    let set = || {
        desired(vec![
            with_annotations(
                config_map("late", json!({})),
                json!({"argocd.argoproj.io/sync-wave": "2"}),
            ),
            config_map("plain", json!({})),
            with_annotations(
                config_map("skipped", json!({})),
                json!({"argocd.argoproj.io/hook": "Skip"}),
            ),
            // Argo CD's sync-waves example: a PreSync Job with only generateName and no delete policy.
            job(
                json!({"generateName": "upgrade-sql-schema"}),
                json!({"argocd.argoproj.io/hook": "PreSync"}),
            ),
            job(
                json!({"generateName": "cleanup-"}),
                json!({"argocd.argoproj.io/hook": "PostSync",
                    "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
            ),
            job(
                json!({"name": "page-up"}),
                json!({"argocd.argoproj.io/hook": "Sync", "argocd.argoproj.io/sync-wave": "1",
                    "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation"}),
            ),
        ])
    };
    let plan = ctx.engine.plan(&spec, set(), &[]).await.unwrap();
    assert!(plan.invalid.is_empty(), "{:?}", plan.invalid);
    assert_eq!(plan.hooks.len(), 3);
    let objects: Vec<(&str, i64)> = plan
        .objects
        .iter()
        .map(|o| (o.id.name.as_str(), o.wave))
        .collect();
    assert_eq!(
        objects,
        vec![("plain", 0), ("late", 2)],
        "Skip is not planned"
    );
    let result = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let hooks: Vec<(HookPhase, bool)> = result
        .hooks
        .iter()
        .map(|h| (h.phase, h.succeeded))
        .collect();
    assert_eq!(
        hooks,
        vec![
            (HookPhase::PreSync, true),
            (HookPhase::Sync, true),
            (HookPhase::PostSync, true)
        ]
    );
    // The outcome names the generated instance.
    let first = result.hooks[0].id.name.clone();
    assert!(
        first.starts_with("upgrade-sql-schema") && first != "upgrade-sql-schema",
        "{first}"
    );
    assert_eq!(
        generated(&ctx, "upgrade-sql-schema").await,
        vec![first.clone()]
    );
    assert!(
        generated(&ctx, "cleanup-").await.is_empty(),
        "HookSucceeded deleted the generated PostSync hook"
    );
    let mut inventory: Vec<&str> = result.inventory.iter().map(|i| i.name.as_str()).collect();
    inventory.sort();
    assert_eq!(
        inventory,
        vec!["late", "plain"],
        "hooks and Skip are not kept"
    );
    let cms = api(&ctx.client, ctx.ns.name(), "", "ConfigMap");
    assert!(cms.get_opt("skipped").await.unwrap().is_none());

    // The next run replaces the previous instance (BeforeHookCreation, Argo CD's default) by a new one.
    let plan = ctx
        .engine
        .plan(&spec, set(), &result.inventory)
        .await
        .unwrap();
    assert!(plan.is_synced());
    let again = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(again.phase, SyncPhase::Succeeded, "{}", again.message);
    let second = again.hooks[0].id.name.clone();
    assert_ne!(second, first);
    assert_eq!(generated(&ctx, "upgrade-sql-schema").await, vec![second]);
    assert!(again.outcomes.iter().all(|o| o.action == Action::Unchanged));
}

#[tokio::test]
async fn disagreeing_annotations_and_nameless_objects_are_reported() {
    let ctx = setup("eng-argo-errors").await;
    let spec = ctx.spec("argo-errors");
    let set = desired(vec![
        with_annotations(
            config_map("waves", json!({})),
            json!({"argocd.argoproj.io/sync-wave": "2", "kedge.dev/sync-wave": "1"}),
        ),
        with_annotations(
            config_map("opts", json!({})),
            json!({"argocd.argoproj.io/sync-options": "ServerSideApply=false"}),
        ),
        with_annotations(
            config_map("diff", json!({})),
            json!({"argocd.argoproj.io/compare-options": "ServerSideDiff=false"}),
        ),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "nameless-"}}),
    ]);
    let plan = ctx.engine.plan(&spec, set, &[]).await.unwrap();
    let message = |name: &str| {
        let o = plan.objects.iter().find(|o| o.id.name == name).unwrap();
        assert_eq!(o.status, SyncStatus::Error);
        o.message.clone()
    };
    let m = message("waves");
    assert!(
        m.contains(r#"kedge.dev/sync-wave="1""#)
            && m.contains(r#"argocd.argoproj.io/sync-wave="2""#),
        "{m}"
    );
    assert!(message("opts").contains("ServerSideApply=false is not supported"));
    assert!(message("diff").contains("ServerSideDiff=false is not supported"));
    // Only hooks may go without a name; the error names the file.
    assert_eq!(plan.invalid.len(), 1, "{:?}", plan.invalid);
    assert!(
        plan.invalid[0].starts_with("test/3.yaml") && plan.invalid[0].contains("metadata.name"),
        "{:?}",
        plan.invalid
    );
}

#[tokio::test]
async fn replace_force_validate_and_delete_false_do_what_argocd_documents() {
    let ctx = setup("eng-argo-options").await;
    let spec = ctx.spec("argo-options");
    let replaced = |v: &str| {
        with_annotations(
            config_map("replaced", json!({"v": v})),
            json!({"argocd.argoproj.io/sync-options": "Replace=true"}),
        )
    };
    let forced = |image: &str| {
        let mut j = job(
            json!({"name": "forced"}),
            json!({"argocd.argoproj.io/sync-options": "Force=true,Validate=false"}),
        );
        j["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        j
    };
    let kept = with_annotations(
        config_map("kept", json!({})),
        json!({"argocd.argoproj.io/sync-options": "Delete=false"}),
    );
    let first = ctx
        .sync_new(&spec, vec![replaced("1"), forced("alpine:1"), kept.clone()])
        .await;
    let jobs = api(&ctx.client, ctx.ns.name(), "batch", "Job");
    let uid = jobs.get("forced").await.unwrap().metadata.uid;

    // Replace=true writes with a PUT (an Update in managedFields, never an Apply); Force=true deletes and creates
    // a Job whose (immutable) template changed; Validate=false sends fieldValidation=Ignore.
    let start = ctx.log.len();
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![replaced("2"), forced("alpine:2"), kept]),
            &first.inventory,
        )
        .await
        .unwrap();
    let result = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let cm = api(&ctx.client, ctx.ns.name(), "", "ConfigMap")
        .get("replaced")
        .await
        .unwrap();
    assert_eq!(cm.data["data"]["v"], "2");
    let ops: Vec<(String, String)> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(ops, vec![("kedge".to_owned(), "Update".to_owned())]);
    let job = jobs.get("forced").await.unwrap();
    assert_ne!(job.metadata.uid, uid, "the Job was created again");
    assert_eq!(
        job.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "alpine:2"
    );
    let seen = ctx.log.since(start);
    assert!(
        seen.iter()
            .any(|s| s.method == http::Method::PUT && s.path().ends_with("/replaced")),
        "a PUT replaced the ConfigMap"
    );
    assert!(
        seen.iter()
            .any(|s| s.method == http::Method::DELETE && s.path().ends_with("/forced"))
    );
    let job_patches: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == http::Method::PATCH && s.path().ends_with("/forced"))
        .map(|s| s.query())
        .collect();
    assert!(!job_patches.is_empty());
    assert!(
        job_patches
            .iter()
            .all(|q| q.contains("fieldValidation=Ignore")),
        "{job_patches:?}"
    );

    // Deleting the application (an empty set, pruning everything) keeps the Delete=false object.
    let plan = ctx
        .engine
        .plan(&spec, Vec::new(), &result.inventory)
        .await
        .unwrap();
    let deletion = SyncOptions {
        allow_empty: true,
        deleting_application: true,
        ..options()
    };
    let result = ctx.engine.sync(&plan, &deletion).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let kept = result
        .outcomes
        .iter()
        .find(|o| o.id.name == "kept")
        .unwrap();
    assert_eq!(kept.action, Action::PruneSkipped);
    assert!(kept.message.contains("Delete=false"));
    let cms = api(&ctx.client, ctx.ns.name(), "", "ConfigMap");
    assert!(cms.get_opt("kept").await.unwrap().is_some());
    // Pruned with foreground propagation: gone once the garbage collector finished.
    kedge_testkit::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { cms.get_opt("replaced").await.unwrap().is_none() },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn ignore_extraneous_and_skip_dry_run_on_missing_resource() {
    let ctx = setup("eng-argo-compare").await;
    let spec = ctx.spec("argo-compare");
    let extra = with_annotations(
        config_map("extra", json!({})),
        json!({"argocd.argoproj.io/compare-options": "IgnoreExtraneous"}),
    );
    let first = ctx
        .sync_new(&spec, vec![config_map("stays", json!({})), extra])
        .await;
    // Left the desired set: extraneous, but it does not make the application OutOfSync; a pruning sync deletes it.
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![config_map("stays", json!({}))]),
            &first.inventory,
        )
        .await
        .unwrap();
    assert_eq!(plan.prune.len(), 1);
    assert_eq!(plan.prune[0].action, PruneAction::Delete);
    assert!(plan.is_synced());

    // A custom resource whose definition is not served yet: an error without the option, Missing with it.
    let group = format!("{}.example.kedge.dev", unique("g"));
    let cr = |options: &str| {
        json!({"apiVersion": format!("{group}/v1"), "kind": "Gizmo",
            "metadata": {"name": "one", "annotations": {"argocd.argoproj.io/sync-options": options}},
            "spec": {"size": 1}})
    };
    let plan = ctx
        .engine
        .plan(&spec, desired(vec![cr("Prune=true")]), &[])
        .await
        .unwrap();
    assert_eq!(plan.objects[0].status, SyncStatus::Error);
    assert!(plan.objects[0].message.contains("unknown kind"));
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![cr("SkipDryRunOnMissingResource=true")]),
            &[],
        )
        .await
        .unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::Missing, "{}", o.message);
    assert!(
        o.message.contains("SkipDryRunOnMissingResource"),
        "{}",
        o.message
    );
    assert_eq!(o.id.namespace.as_deref(), Some(ctx.ns.name()));
    // Someone else installs the definition; the planned object is then applied.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gizmos.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": "Gizmo", "plural": "gizmos"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let crds: Api<DynamicObject> = Api::all_with(
        ctx.client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    crds.patch(
        &format!("gizmos.{group}"),
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let result = kedge_testkit::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let r = ctx.engine.sync(&plan, &options()).await.unwrap();
            (r.phase == SyncPhase::Succeeded).then_some(r)
        },
    )
    .await
    .unwrap();
    assert_eq!(result.outcomes[0].action, Action::Created);
    crds.delete(&format!("gizmos.{group}"), &Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn argocd_tracking_annotations_are_neither_read_as_ownership_nor_removed() {
    let ctx = setup("eng-argo-tracking").await;
    let spec = ctx.spec("argo-tracking");
    // An object Argo CD managed before: its tracking annotations, written by Argo CD's field manager.
    let argo = with_annotations(
        config_map("migrated", json!({"k": "v"})),
        json!({"argocd.argoproj.io/tracking-id": "guestbook:/ConfigMap:default/migrated",
            "argocd.argoproj.io/managed-by": "argocd"}),
    );
    api(&ctx.client, ctx.ns.name(), "", "ConfigMap")
        .patch(
            "migrated",
            &PatchParams::apply("argocd-controller"),
            &Patch::Apply(&argo),
        )
        .await
        .unwrap();
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![config_map("migrated", json!({"k": "v"}))]),
            &[],
        )
        .await
        .unwrap();
    // Untracked by Kedge: adopted, not refused as another application's.
    assert_eq!(plan.objects[0].status, SyncStatus::OutOfSync);
    assert_eq!(plan.objects[0].tracking, kedge_engine::Tracking::Untracked);
    let result = ctx.engine.sync(&plan, &options()).await.unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    assert_eq!(result.outcomes[0].action, Action::Adopted);
    let live = api(&ctx.client, ctx.ns.name(), "", "ConfigMap")
        .get("migrated")
        .await
        .unwrap();
    let ann = live.metadata.annotations.unwrap_or_default();
    assert_eq!(
        ann.get("argocd.argoproj.io/tracking-id")
            .map(String::as_str),
        Some("guestbook:/ConfigMap:default/migrated")
    );
    assert_eq!(
        ann.get("argocd.argoproj.io/managed-by").map(String::as_str),
        Some("argocd")
    );
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![config_map("migrated", json!({"k": "v"}))]),
            &result.inventory,
        )
        .await
        .unwrap();
    assert!(plan.is_synced());
}
