//! Adoption and prune safety against the test cluster: adopting untracked objects (and refusing to with
//! FailOnSharedResource), never touching another application's objects, holding a prune of most of the inventory,
//! keeping objects whose kind is not served, never deleting an object that lost its tracking id, the uid
//! precondition of prune deletes, the empty-set guard, and secret values masked in the diffs of other kinds.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use kedge_engine::{
    Action, AppRef, AppSpec, ObjectId, PruneAction, SyncOptions, SyncPhase, SyncStatus, Tracking,
};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn config_maps(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn tracking(o: &DynamicObject) -> Option<String> {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kedge.dev/tracking-id").cloned())
}

/// Creates a ConfigMap as another tool would (field manager `manager`, no tracking id).
async fn create_by(ctx: &Ctx, name: &str, data: Value, manager: &str) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ctx.ns.name()}, "data": data
    }))
    .unwrap();
    config_maps(&ctx.client, ctx.ns.name())
        .create(
            &PostParams {
                field_manager: Some(manager.into()),
                ..Default::default()
            },
            &obj,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn untracked_objects_are_adopted_with_a_report_or_refused() {
    let ctx = setup("eng-adopt").await;
    let api = config_maps(&ctx.client, ctx.ns.name());
    create_by(
        &ctx,
        "legacy",
        json!({"k": "old"}),
        "kubectl-client-side-apply",
    )
    .await;
    let set = || desired(vec![config_map("legacy", json!({"k": "new"}))]);

    // FailOnSharedResource=true: a plan error naming the object, and a sync that changes nothing.
    let mut strict = ctx.spec("adopt");
    strict.fail_on_shared_resource = true;
    let plan = ctx.engine.plan(&strict, set(), &[]).await.unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::Error);
    assert!(
        o.message.contains("FailOnSharedResource")
            && o.message.contains("ConfigMap")
            && o.message.contains("legacy")
            && o.message.contains("kubectl-client-side-apply"),
        "{}",
        o.message
    );
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Failed);
    let live = api.get("legacy").await.unwrap();
    assert_eq!(live.data["data"]["k"], "old");
    assert_eq!(tracking(&live), None);

    // Without it: the plan says it will adopt the object and from whom; the sync reports the adoption.
    let spec = ctx.spec("adopt");
    let plan = ctx.engine.plan(&spec, set(), &[]).await.unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.tracking, Tracking::Untracked);
    assert_eq!(o.status, SyncStatus::OutOfSync);
    assert_eq!(o.adopted_from, vec!["kubectl-client-side-apply"]);
    assert!(o.message.contains("syncing adopts it"), "{}", o.message);
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    assert_eq!(r.outcomes[0].action, Action::Adopted);
    assert_eq!(
        r.outcomes[0].message,
        "adopted existing object, previously managed by kubectl-client-side-apply"
    );
    let live = api.get("legacy").await.unwrap();
    assert_eq!(live.data["data"]["k"], "new");
    assert_eq!(
        tracking(&live).as_deref(),
        Some(format!("kedge/adopt:/ConfigMap:{}/legacy", ctx.ns.name()).as_str())
    );
    // Once adopted it is an owned object like any other.
    let plan = ctx.engine.plan(&spec, set(), &r.inventory).await.unwrap();
    assert_eq!(plan.objects[0].status, SyncStatus::Synced);
    assert!(plan.objects[0].adopted_from.is_empty());
}

#[tokio::test]
async fn another_applications_objects_are_neither_applied_over_nor_pruned() {
    let ctx = setup("eng-foreign").await;
    let api = config_maps(&ctx.client, ctx.ns.name());
    let owner = ctx.spec("owner");
    let plan = ctx
        .engine
        .plan(
            &owner,
            desired(vec![
                config_map("a", json!({"v": "owner"})),
                config_map("b", json!({"v": "owner"})),
            ]),
            &[],
        )
        .await
        .unwrap();
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    let before_a = api.get("a").await.unwrap();
    let before_b = api.get("b").await.unwrap();

    // "intruder" wants "a" with other data and believes "b" is in its inventory; it syncs with prune.
    let intruder = AppSpec::new(AppRef::new("kedge", "intruder"), ctx.ns.name());
    let b = ObjectId::new("", "ConfigMap", Some(ctx.ns.name()), "b");
    let plan = ctx
        .engine
        .plan(
            &intruder,
            desired(vec![config_map("a", json!({"v": "intruder"}))]),
            &[b],
        )
        .await
        .unwrap();
    let r = ctx
        .engine
        .sync(
            &plan,
            &SyncOptions {
                prune: true,
                allow_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Failed);
    assert!(r.inventory.is_empty(), "{:?}", r.inventory);
    // Read back: both objects are exactly as the owner left them.
    let after_a = api.get("a").await.unwrap();
    let after_b = api.get("b").await.unwrap();
    assert_eq!(
        after_a.metadata.resource_version,
        before_a.metadata.resource_version
    );
    assert_eq!(
        after_b.metadata.resource_version,
        before_b.metadata.resource_version
    );
    assert_eq!(after_a.data["data"]["v"], "owner");
    assert_eq!(
        tracking(&after_b).as_deref(),
        Some(format!("kedge/owner:/ConfigMap:{}/b", ctx.ns.name()).as_str())
    );
}

#[tokio::test]
async fn pruning_most_of_the_inventory_waits_for_confirmation() {
    let ctx = setup("eng-mass").await;
    let api = config_maps(&ctx.client, ctx.ns.name());
    let spec = ctx.spec("mass");
    let all: Vec<Value> = (0..12)
        .map(|i| config_map(&format!("cm-{i}"), json!({"i": i.to_string()})))
        .collect();
    let plan = ctx
        .engine
        .plan(&spec, desired(all.clone()), &[])
        .await
        .unwrap();
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    let inventory = r.inventory.clone();
    assert_eq!(inventory.len(), 12);

    // The render lost 11 of its 12 objects (and changed the one left).
    let mut kept = all[0].clone();
    kept["data"]["i"] = json!("changed");
    let plan = ctx
        .engine
        .plan(&spec, desired(vec![kept.clone()]), &inventory)
        .await
        .unwrap();
    let why = plan.mass_prune().unwrap();
    assert!(why.contains("would prune 11 of 12 objects"), "{why}");
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Failed);
    assert!(
        r.message.contains("would prune 11 of 12 objects")
            && r.message.contains("--prune --confirm"),
        "{}",
        r.message
    );
    assert_eq!(r.inventory, inventory, "the inventory is kept whole");
    // Nothing was applied nor deleted.
    assert_eq!(api.get("cm-0").await.unwrap().data["data"]["i"], "0");
    for i in 1..12 {
        assert!(api.get_opt(&format!("cm-{i}")).await.unwrap().is_some());
    }
    // A sync that does not prune is not held.
    let r = ctx
        .engine
        .sync(
            &plan,
            &SyncOptions {
                prune: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    assert_eq!(api.get("cm-0").await.unwrap().data["data"]["i"], "changed");
    assert_eq!(r.inventory.len(), 12);

    // Confirmed: pruned.
    let plan = ctx
        .engine
        .plan(&spec, desired(vec![kept]), &r.inventory)
        .await
        .unwrap();
    let r = ctx
        .engine
        .sync(
            &plan,
            &SyncOptions {
                confirm_prune: true,
                propagation: kedge_engine::PropagationPolicy::Background,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    assert_eq!(r.inventory.len(), 1);
    for i in 1..12 {
        assert!(api.get_opt(&format!("cm-{i}")).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn an_object_whose_kind_is_not_served_stays_in_the_inventory_until_it_is() {
    let ctx = setup("eng-unserved").await;
    let spec = ctx.spec("unserved");
    let group = format!("{}.kedge.test", unique("u"));
    let crd_name = format!("gadgets.{group}");
    let crd = |served: bool| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                "versions": [{"name": "v1", "served": served, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        })
    };
    // The definition is managed elsewhere (by hand here); the application manages a Gadget and a ConfigMap.
    let crds = Api::<DynamicObject>::all_with(
        ctx.client.clone(),
        &ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let set_served = |served: bool| {
        let crds = crds.clone();
        let body = crd(served);
        let name = crd_name.clone();
        async move {
            crds.patch(
                &name,
                &PatchParams::apply("test-admin").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap();
        }
    };
    set_served(true).await;
    let gadget = json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
        "metadata": {"name": "g1"}, "spec": {"size": 1}});
    let cm = config_map("plain", json!({}));
    // The kind may take a moment to be served: plan until the gadget resolves (bounded).
    let mut inventory = Vec::new();
    for _ in 0..100 {
        let plan = ctx
            .engine
            .plan(&spec, desired(vec![gadget.clone(), cm.clone()]), &[])
            .await
            .unwrap();
        if plan.objects.iter().all(|o| o.status != SyncStatus::Error) {
            let r = ctx
                .engine
                .sync(&plan, &SyncOptions::default())
                .await
                .unwrap();
            assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
            inventory = r.inventory;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(inventory.len(), 2, "the gadget was never served");

    // The version stops being served (the objects stay in storage) and the gadget leaves Git.
    set_served(false).await;
    let gadget_id = ObjectId::new(&group, "Gadget", Some(ctx.ns.name()), "g1");
    let mut kept = None;
    for _ in 0..100 {
        let plan = ctx
            .engine
            .plan(&spec, desired(vec![cm.clone()]), &inventory)
            .await
            .unwrap();
        if plan.prune[0].action == PruneAction::KindNotServed {
            kept = Some(plan);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let plan = kept.expect("the kind is still served");
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    assert!(r.inventory.contains(&gadget_id), "{:?}", r.inventory);
    let outcome = r.outcomes.iter().find(|o| o.id == gadget_id).unwrap();
    assert_eq!(outcome.action, Action::PruneSkipped);
    assert!(
        outcome.message.contains("not served"),
        "{}",
        outcome.message
    );
    let health = ctx.engine.health(&spec, &r.inventory).await.unwrap();
    let gadget_health = health.objects.iter().find(|(id, _)| *id == gadget_id);
    assert_eq!(
        gadget_health.map(|(_, h)| h.status),
        Some(kedge_engine::HealthStatus::Missing)
    );

    // The kind returns: the object is found again and pruned as usual.
    set_served(true).await;
    let inventory = r.inventory;
    let mut pruned = false;
    for _ in 0..100 {
        let plan = ctx
            .engine
            .plan(&spec, desired(vec![cm.clone()]), &inventory)
            .await
            .unwrap();
        if plan.prune[0].action == PruneAction::Delete {
            let r = ctx
                .engine
                .sync(&plan, &SyncOptions::default())
                .await
                .unwrap();
            assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
            assert!(!r.inventory.contains(&gadget_id));
            pruned = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pruned, "the gadget was never found again");
    crds.delete(&crd_name, &DeleteParams::default()).await.ok();
}

#[tokio::test]
async fn prune_never_deletes_what_lost_its_tracking_id_nor_a_replaced_object() {
    let ctx = setup("eng-prune-safe").await;
    let api = config_maps(&ctx.client, ctx.ns.name());
    let spec = ctx.spec("safe");
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![
                config_map("keep", json!({})),
                config_map("untracked", json!({})),
                config_map("replaced", json!({})),
            ]),
            &[],
        )
        .await
        .unwrap();
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    let inventory = r.inventory;

    // Someone removes the tracking id of "untracked" (it is theirs now).
    api.patch(
        "untracked",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"kedge.dev/tracking-id": null}}})),
    )
    .await
    .unwrap();
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![config_map("keep", json!({}))]),
            &inventory,
        )
        .await
        .unwrap();
    let untracked = plan
        .prune
        .iter()
        .find(|p| p.id.name == "untracked")
        .unwrap();
    assert_eq!(
        untracked.action,
        PruneAction::Refuse("not tracked by this application".into())
    );
    let replaced = plan.prune.iter().find(|p| p.id.name == "replaced").unwrap();
    assert_eq!(replaced.action, PruneAction::Delete);

    // Between the plan and the sync, "replaced" is deleted and created again (same name, same tracking id, new
    // uid): the delete's uid precondition keeps the new object.
    let old = api.get("replaced").await.unwrap();
    api.delete("replaced", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..100 {
        if api.get_opt("replaced").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut again = old.clone();
    again.metadata.uid = None;
    again.metadata.resource_version = None;
    again.metadata.creation_timestamp = None;
    again.metadata.managed_fields = None;
    let again = api.create(&PostParams::default(), &again).await.unwrap();
    assert_ne!(again.metadata.uid, old.metadata.uid);

    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Failed);
    let outcome = |name: &str| r.outcomes.iter().find(|o| o.id.name == name).unwrap();
    assert_eq!(outcome("untracked").action, Action::Failed);
    assert_eq!(outcome("replaced").action, Action::Failed);
    assert!(
        outcome("replaced").message.to_lowercase().contains("uid"),
        "{}",
        outcome("replaced").message
    );
    // Read back: both still exist, the replacement is the new object.
    assert!(api.get_opt("untracked").await.unwrap().is_some());
    assert_eq!(
        api.get("replaced").await.unwrap().metadata.uid,
        again.metadata.uid
    );
    // The object that is not ours leaves the inventory (it is never deleted later either).
    assert!(!r.inventory.iter().any(|id| id.name == "untracked"));
}

#[tokio::test]
async fn an_empty_desired_set_prunes_only_with_allow_empty() {
    let ctx = setup("eng-empty").await;
    let api = config_maps(&ctx.client, ctx.ns.name());
    let spec = ctx.spec("empty");
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![config_map("a", json!({})), config_map("b", json!({}))]),
            &[],
        )
        .await
        .unwrap();
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    let inventory = r.inventory;
    let plan = ctx
        .engine
        .plan(&spec, Vec::new(), &inventory)
        .await
        .unwrap();
    assert!(plan.would_prune_all);
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Failed);
    assert!(r.message.contains("allow_empty"), "{}", r.message);
    assert_eq!(r.inventory, inventory);
    assert!(api.get_opt("a").await.unwrap().is_some());
    let r = ctx
        .engine
        .sync(
            &plan,
            &SyncOptions {
                allow_empty: true,
                propagation: kedge_engine::PropagationPolicy::Background,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);
    assert!(r.inventory.is_empty());
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert!(api.get_opt("b").await.unwrap().is_none());
}

#[tokio::test]
async fn secret_values_of_other_kinds_never_appear_in_plans() {
    let ctx = setup("eng-mask").await;
    let spec = ctx.spec("mask");
    let marked = |password: &str, token: &str| {
        with_annotations(
            config_map(
                "db",
                json!({"password": password, "token": token, "url": "postgres://db"}),
            ),
            json!({"kedge.dev/sensitive-fields": "[\"/data/password\", \"/data/token\"]"}),
        )
    };
    let plan = ctx
        .engine
        .plan(&spec, desired(vec![marked("hunter2-first", "tk")]), &[])
        .await
        .unwrap();
    let shown = serde_json::to_string(&plan).unwrap();
    assert!(!shown.contains("hunter2-first"), "{shown}");
    let r = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.phase, SyncPhase::Succeeded, "{}", r.message);

    // Both values change, to values of very different lengths.
    let plan = ctx
        .engine
        .plan(
            &spec,
            desired(vec![marked("x1y", "a-much-longer-token-value-0123456789")]),
            &r.inventory,
        )
        .await
        .unwrap();
    let o = &plan.objects[0];
    assert_eq!(o.status, SyncStatus::OutOfSync);
    let shown = serde_json::to_string(&plan).unwrap();
    for secret in ["hunter2-first", "x1y", "a-much-longer-token"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    let d = o.diff.as_ref().unwrap();
    let masks: Vec<(&Option<Value>, &Option<Value>)> =
        d.ops.iter().map(|op| (&op.live, &op.desired)).collect();
    assert_eq!(d.ops.len(), 2, "{:?}", d.ops);
    assert_eq!(masks[0], masks[1], "masks depend on nothing but the change");
    assert!(d.text.contains("url: postgres://db"), "{}", d.text);
}
