//! Health of every built-in kind against the test cluster and its workload simulator, plus a CEL rule.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use kedge_engine::{HealthRule, HealthStatus, SyncOptions, SyncPhase};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn api(
    client: &kube::Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn pod_template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn objects() -> Vec<Value> {
    vec![
        deployment("deploy-ok", "nginx:1.27", 2),
        deployment("deploy-fail", "registry/fail:1", 1),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "sts"},
            "spec": {"serviceName": "sts", "replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                "template": pod_template("db:1")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template("agent:1")}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job-ok"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "batch:1"}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job-fail"},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "fail:1"}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cron"},
            "spec": {"schedule": "*/5 * * * *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "batch:1"}]}}}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod"},
            "spec": {"containers": [{"name": "c", "image": "busy:1"}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ing"},
            "spec": {"defaultBackend": {"service": {"name": "plain", "port": {"number": 80}}}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pvc"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "hpa"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "deploy-ok"},
                "minReplicas": 1, "maxReplicas": 3}}),
        config_map("gauge", json!({"state": "warming"})),
    ]
}

async fn states(
    ctx: &Ctx,
    spec: &kedge_engine::AppSpec,
    inv: &[kedge_engine::ObjectId],
) -> HashMap<String, (HealthStatus, String)> {
    let h = ctx.engine.health(spec, inv).await.unwrap();
    h.objects
        .into_iter()
        .map(|(id, h)| (id.name, (h.status, h.message)))
        .collect()
}

async fn wait_state(
    ctx: &Ctx,
    spec: &kedge_engine::AppSpec,
    inv: &[kedge_engine::ObjectId],
    name: &str,
    want: HealthStatus,
) {
    let r = kedge_testkit::wait_for(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            let s = states(ctx, spec, inv).await;
            (s.get(name).map(|x| x.0) == Some(want)).then_some(())
        },
    )
    .await;
    if r.is_err() {
        let s = states(ctx, spec, inv).await;
        panic!("{name} never became {want}: {:?}", s.get(name));
    }
}

#[tokio::test]
async fn built_in_kinds_and_cel_rules() {
    let ctx = setup("eng-health").await;
    let mut spec = ctx.spec("health");
    spec.health_rules = vec![HealthRule {
        group: "".into(),
        kind: "ConfigMap".into(),
        expression: r#"object.data.state == "ok" ? "Healthy" : {"status": "Degraded", "message": "state is " + object.data.state}"#.into(),
    }];
    let plan = ctx
        .engine
        .plan(&spec, desired(objects()), &[])
        .await
        .unwrap();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let inv = result.inventory.clone();
    assert_eq!(inv.len(), objects().len());
    let ns = ctx.ns.name();

    // Right after the apply: nothing simulated has status yet.
    let s = states(&ctx, &spec, &inv).await;
    assert_eq!(s["cron"].0, HealthStatus::Suspended);
    assert_eq!(s["plain"].0, HealthStatus::Healthy);
    assert_eq!(s["lb"].0, HealthStatus::Progressing);
    assert_eq!(s["ing"].0, HealthStatus::Progressing);
    assert_eq!(s["pvc"].0, HealthStatus::Progressing);
    assert_eq!(s["pod"].0, HealthStatus::Progressing);
    assert_eq!(
        s["gauge"],
        (HealthStatus::Degraded, "state is warming".to_string())
    );

    // The simulator brings workloads up (or not) after about a second.
    for (name, want) in [
        ("deploy-ok", HealthStatus::Healthy),
        ("deploy-fail", HealthStatus::Degraded),
        ("sts", HealthStatus::Healthy),
        ("ds", HealthStatus::Healthy),
        ("job-ok", HealthStatus::Healthy),
        ("job-fail", HealthStatus::Degraded),
    ] {
        wait_state(&ctx, &spec, &inv, name, want).await;
    }
    let s = states(&ctx, &spec, &inv).await;
    assert!(
        s["deploy-fail"].1.contains("ProgressDeadlineExceeded"),
        "{:?}",
        s["deploy-fail"]
    );

    // Controllers that the test cluster does not run: write their status by hand.
    let pp = PatchParams::default();
    let status = |v: Value| Patch::Merge(json!({ "status": v }));
    api(&ctx.client, ns, "", "v1", "Service")
        .patch_status(
            "lb",
            &pp,
            &status(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}})),
        )
        .await
        .unwrap();
    api(&ctx.client, ns, "networking.k8s.io", "v1", "Ingress")
        .patch_status(
            "ing",
            &pp,
            &status(json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}})),
        )
        .await
        .unwrap();
    api(&ctx.client, ns, "", "v1", "PersistentVolumeClaim")
        .patch_status("pvc", &pp, &status(json!({"phase": "Bound"})))
        .await
        .unwrap();
    api(&ctx.client, ns, "", "v1", "Pod")
        .patch_status(
            "pod",
            &pp,
            &status(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]})),
        )
        .await
        .unwrap();
    api(&ctx.client, ns, "", "v1", "ConfigMap")
        .patch(
            "gauge",
            &pp,
            &Patch::Merge(json!({"data": {"state": "ok"}})),
        )
        .await
        .unwrap();
    let s = states(&ctx, &spec, &inv).await;
    for name in ["lb", "ing", "pvc", "pod", "gauge"] {
        assert_eq!(s[name].0, HealthStatus::Healthy, "{name}: {:?}", s[name]);
    }
    // The test cluster's simulator writes the autoscaler's status as the HPA controller does (an autoscaler that
    // cannot scale is Degraded: the unit tests of health.rs).
    wait_state(&ctx, &spec, &inv, "hpa", HealthStatus::Healthy).await;

    // Application health is the worst of its objects.
    let app = ctx.engine.health(&spec, &inv).await.unwrap();
    assert_eq!(app.status, HealthStatus::Degraded);
    let healthy: Vec<_> = inv
        .iter()
        .filter(|i| ["deploy-ok", "sts", "lb", "gauge", "hpa"].contains(&i.name.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        ctx.engine.health(&spec, &healthy).await.unwrap().status,
        HealthStatus::Healthy
    );
}

#[tokio::test]
async fn namespaces_and_definitions_are_healthy_once_ready() {
    let ctx = setup("eng-health-cluster").await;
    let spec = ctx.spec("health-cluster");
    let group = format!("{}.kedge.test", unique("h"));
    let ns_name = unique("eng-ns-");
    let set = desired(vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("gadgets.{group}")},
            "spec": {"group": group, "scope": "Cluster",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget", "metadata": {"name": "g"},
            "status": {"observedGeneration": 1}}),
    ]);
    let plan = ctx.engine.plan(&spec, set, &[]).await.unwrap();
    let result = ctx
        .engine
        .sync(&plan, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(result.phase, SyncPhase::Succeeded, "{}", result.message);
    let h = ctx.engine.health(&spec, &result.inventory).await.unwrap();
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    assert_eq!(h.objects.len(), 3);

    // Clean up cluster-scoped objects.
    let plan = ctx
        .engine
        .plan(&spec, Vec::new(), &result.inventory)
        .await
        .unwrap();
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
}
