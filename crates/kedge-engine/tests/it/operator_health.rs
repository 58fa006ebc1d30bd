//! Built-in health of operators' kinds (Argo Rollouts, Flagger, cert-manager, external-secrets, Sealed Secrets,
//! Crossplane) against live objects: the test installs minimal definitions of these kinds, creates objects
//! through a sync, writes their status through the status subresource as each controller would, and reads the
//! engine's health of them.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_engine::{HealthStatus, ObjectId};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// The kinds: (group, version, kind, plural).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("argoproj.io", "v1alpha1", "Rollout", "rollouts"),
    ("flagger.app", "v1beta1", "Canary", "canaries"),
    ("cert-manager.io", "v1", "Certificate", "certificates"),
    (
        "external-secrets.io",
        "v1beta1",
        "ExternalSecret",
        "externalsecrets",
    ),
    ("bitnami.com", "v1alpha1", "SealedSecret", "sealedsecrets"),
    (
        "database.example.org",
        "v1alpha1",
        "PostgreSQLInstance",
        "postgresqlinstances",
    ),
];

/// A namespaced definition whose objects keep any field, with a status subresource.
fn definition(group: &str, version: &str, kind: &str, plural: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_ascii_lowercase(), "kind": kind},
            "versions": [{"name": version, "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// Applies the definitions (they stay: other runs reuse them) and waits until every one is established.
async fn install_definitions(client: &kube::Client) {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let pp = PatchParams::apply("kedge-operator-health-test").force();
    for (group, version, kind, plural) in KINDS {
        let crd = definition(group, version, kind, plural);
        let name = format!("{plural}.{group}");
        api.patch(&name, &pp, &Patch::Apply(&crd)).await.unwrap();
        kedge_testkit::wait_for(
            Duration::from_secs(15),
            Duration::from_millis(100),
            || async {
                let crd = api.get(&name).await.ok()?;
                let conditions = crd.data["status"]["conditions"].as_array()?.clone();
                conditions
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
}

fn object(index: usize, name: &str, spec: Value) -> Value {
    let (group, version, kind, _) = KINDS[index];
    json!({"apiVersion": format!("{group}/{version}"), "kind": kind, "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn operators_kinds_are_as_healthy_as_their_status_says() {
    let ctx = setup("eng-op-health").await;
    install_definitions(&ctx.client).await;
    let spec = ctx.spec("op-health");
    let objects = vec![
        object(
            0,
            "web",
            json!({"replicas": 2, "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}),
        ),
        object(
            1,
            "web",
            json!({"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}),
        ),
        object(
            2,
            "web-tls",
            json!({"secretName": "web-tls", "dnsNames": ["web.example"]}),
        ),
        object(
            3,
            "db-credentials",
            json!({"secretStoreRef": {"name": "vault"}}),
        ),
        object(
            4,
            "api-key",
            json!({"encryptedData": {"key": "AgBy3i4OJSWK"}}),
        ),
        object(
            5,
            "db",
            json!({"parameters": {"storageGB": 20}, "compositionRef": {"name": "aws"}}),
        ),
    ];
    let result = ctx.sync_new(&spec, objects.clone()).await;
    let inv = result.inventory.clone();
    assert_eq!(inv.len(), objects.len());
    let ns = ctx.ns.name();
    let health_of = |kind: &'static str| {
        let id: ObjectId = inv.iter().find(|i| i.kind == kind).unwrap().clone();
        let (spec, engine) = (&spec, &ctx.engine);
        async move {
            let h = engine
                .health(spec, std::slice::from_ref(&id))
                .await
                .unwrap();
            let (_, health) = h.objects.into_iter().next().unwrap();
            (health.status, health.message)
        }
    };

    // Before any controller wrote a status, none of them is Healthy.
    for (_, _, kind, _) in KINDS {
        let (status, message) = health_of(kind).await;
        assert_eq!(status, HealthStatus::Progressing, "{kind}: {message}");
    }

    // Each status in turn, written through the status subresource as the kind's controller writes it.
    let pp = PatchParams::default();
    let cases: Vec<(usize, &str, Value, HealthStatus, &str)> = vec![
        // Argo Rollouts: paused at a canary step, aborted, then promoted.
        (
            0,
            "web",
            json!({"observedGeneration": "1", "phase": "Paused", "message": "CanaryPauseStep",
            "currentPodHash": "5f7d", "stableRS": "6c9b", "replicas": 2, "updatedReplicas": 1,
            "availableReplicas": 2, "pauseConditions": [{"reason": "CanaryPauseStep"}]}),
            HealthStatus::Suspended,
            "CanaryPauseStep",
        ),
        (
            0,
            "web",
            json!({"phase": "Degraded", "message": "RolloutAborted: Rollout aborted update to revision 2",
            "pauseConditions": null}),
            HealthStatus::Degraded,
            "RolloutAborted",
        ),
        (
            0,
            "web",
            json!({"phase": null, "message": null, "updatedReplicas": 2, "stableRS": "5f7d"}),
            HealthStatus::Healthy,
            "",
        ),
        // Flagger.
        (
            1,
            "web",
            json!({"phase": "Progressing", "canaryWeight": 10, "conditions": [{"type": "Promoted",
            "status": "Unknown", "reason": "Progressing", "message": "New revision detected"}]}),
            HealthStatus::Progressing,
            "canary weight 10%",
        ),
        (
            1,
            "web",
            json!({"phase": "Failed", "canaryWeight": 0}),
            HealthStatus::Degraded,
            "Failed",
        ),
        (
            1,
            "web",
            json!({"phase": "Succeeded"}),
            HealthStatus::Healthy,
            "Succeeded",
        ),
        // cert-manager.
        (
            2,
            "web-tls",
            json!({"conditions": [{"type": "Issuing", "status": "True", "reason": "DoesNotExist",
            "message": "Issuing certificate as Secret does not exist"}]}),
            HealthStatus::Progressing,
            "DoesNotExist",
        ),
        (
            2,
            "web-tls",
            json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Failed",
            "message": "The certificate request has failed to complete"}]}),
            HealthStatus::Degraded,
            "Failed",
        ),
        (
            2,
            "web-tls",
            json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
            "message": "Certificate is up to date and has not expired"}]}),
            HealthStatus::Healthy,
            "up to date",
        ),
        // external-secrets.
        (
            3,
            "db-credentials",
            json!({"conditions": [{"type": "Ready", "status": "False",
            "reason": "SecretSyncedError", "message": "could not get secret data from provider"}]}),
            HealthStatus::Degraded,
            "SecretSyncedError",
        ),
        (
            3,
            "db-credentials",
            json!({"conditions": [{"type": "Ready", "status": "True",
            "reason": "SecretSynced", "message": "Secret was synced"}]}),
            HealthStatus::Healthy,
            "synced",
        ),
        // Sealed Secrets.
        (
            4,
            "api-key",
            json!({"conditions": [{"type": "Synced", "status": "False",
            "message": "no key could decrypt secret (key)"}]}),
            HealthStatus::Degraded,
            "no key could decrypt",
        ),
        (
            4,
            "api-key",
            json!({"conditions": [{"type": "Synced", "status": "True"}]}),
            HealthStatus::Healthy,
            "",
        ),
        // A Crossplane claim: provisioning, failing to compose, then ready.
        (
            5,
            "db",
            json!({"conditions": [{"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
            {"type": "Ready", "status": "False", "reason": "Creating"}]}),
            HealthStatus::Progressing,
            "Creating",
        ),
        (
            5,
            "db",
            json!({"conditions": [{"type": "Synced", "status": "False", "reason": "ReconcileError",
            "message": "cannot compose resources"}, {"type": "Ready", "status": "False", "reason": "Creating"}]}),
            HealthStatus::Degraded,
            "cannot compose resources",
        ),
        (
            5,
            "db",
            json!({"conditions": [{"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
            {"type": "Ready", "status": "True", "reason": "Available"}]}),
            HealthStatus::Healthy,
            "",
        ),
    ];
    for (index, name, status, want, message) in cases {
        let (group, version, kind, _) = KINDS[index];
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        api.patch_status(name, &pp, &Patch::Merge(json!({ "status": status })))
            .await
            .unwrap();
        let (got, got_message) = health_of(kind).await;
        assert_eq!(got, want, "{kind} {name} after {status}: {got_message}");
        assert!(
            got_message.contains(message),
            "{kind} {name}: {got_message:?} lacks {message:?}"
        );
    }

    // The application is as healthy as its worst object: all Healthy now.
    let app = ctx.engine.health(&spec, &inv).await.unwrap();
    assert_eq!(app.status, HealthStatus::Healthy, "{:?}", app.objects);
}
