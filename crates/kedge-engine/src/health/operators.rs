//! Built-in health of common operators' kinds: Argo Rollouts `Rollout`, Flagger `Canary`, cert-manager
//! `Certificate`, external-secrets `ExternalSecret`, Sealed Secrets `SealedSecret`, and Crossplane claims,
//! composites and managed resources.
//!
//! Each follows what its controller writes to the object's status, and for `Rollout` and `Canary` the states that
//! Argo CD's built-in health rules give them, so that an application moved from Argo CD reports the same health.

use serde_json::Value;

use super::{Health, HealthStatus, condition, reason_message};
use crate::object::{str_at, value_at};

/// The rule for `group`/`kind`, when it is one of these operators' kinds.
pub(super) fn rule(group: &str, kind: &str, obj: &Value) -> Option<Health> {
    Some(match (group, kind) {
        ("argoproj.io", "Rollout") => rollout(obj),
        ("flagger.app", "Canary") => canary(obj),
        ("cert-manager.io", "Certificate") => certificate(obj),
        ("external-secrets.io", "ExternalSecret") => external_secret(obj),
        ("bitnami.com", "SealedSecret") => sealed_secret(obj),
        _ if is_crossplane(group, obj) => crossplane(kind, obj),
        _ => return None,
    })
}

/// A number that a controller may write as a JSON number or as a numeric string (Argo Rollouts writes
/// `observedGeneration: "3"`).
fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn status_number(obj: &Value, field: &str, default: i64) -> i64 {
    number(value_at(obj, &["status", field])).unwrap_or(default)
}

/// Argo Rollouts `Rollout`, decided as Argo CD's built-in rule decides it.
fn rollout(obj: &Value) -> Health {
    let Some(status) = obj.get("status").filter(|s| !s.is_null()) else {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for rollout spec update to be observed",
        );
    };
    // A numeric observedGeneration behind metadata.generation: the controller has not seen the spec yet. Old
    // controllers write a hash there (not a number), which says nothing either way.
    let generation = number(value_at(obj, &["metadata", "generation"]));
    let observed = match (number(status.get("observedGeneration")), generation) {
        (Some(o), Some(g)) if o <= g => o == g,
        _ => true,
    };
    // With a workloadRef, the referenced workload's generation (an annotation) must be observed too.
    let workload_observed = value_at(obj, &["spec", "workloadRef"]).is_none()
        || value_at(obj, &["metadata", "annotations"]).is_none()
        || number(value_at(
            obj,
            &[
                "metadata",
                "annotations",
                "rollout.argoproj.io/workload-generation",
            ],
        )) == number(status.get("workloadObservedGeneration"));
    if !observed || !workload_observed {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for rollout spec update to be observed",
        );
    }
    // Controllers from 1.0 on write the phase themselves.
    if let Some(phase) = status.get("phase").and_then(Value::as_str) {
        let message = status.get("message").and_then(Value::as_str).unwrap_or("");
        return match phase {
            "Paused" => Health::new(HealthStatus::Suspended, message),
            "Healthy" | "Progressing" | "Degraded" => Health::new(
                HealthStatus::parse(phase).unwrap_or(HealthStatus::Unknown),
                message,
            ),
            other => Health::new(
                HealthStatus::Unknown,
                format!("Rollout reports an unknown phase {other:?}"),
            ),
        };
    }
    if let Some(c) = condition(obj, "InvalidSpec") {
        return Health::new(HealthStatus::Degraded, c.message);
    }
    if let Some(c) = condition(obj, "Progressing")
        && matches!(c.reason, "RolloutAborted" | "ProgressDeadlineExceeded")
    {
        return Health::new(HealthStatus::Degraded, c.message);
    }
    let pause_conditions = status
        .get("pauseConditions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if pause_conditions || value_at(obj, &["spec", "paused"]).and_then(Value::as_bool) == Some(true)
    {
        return Health::new(HealthStatus::Suspended, "Rollout is paused");
    }
    let Some(pod_hash) = status.get("currentPodHash").and_then(Value::as_str) else {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for rollout to finish: status has not been reconciled",
        );
    };
    let desired = number(value_at(obj, &["spec", "replicas"])).unwrap_or(1);
    let replicas = status_number(obj, "replicas", 0);
    let updated = status_number(obj, "updatedReplicas", 0);
    let available = status_number(obj, "availableReplicas", 0);
    if updated < desired {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for rollout to finish: {updated} of {desired} replicas updated"),
        );
    }
    if available < updated {
        return Health::new(
            HealthStatus::Progressing,
            format!(
                "Waiting for rollout to finish: {available} of {updated} updated replicas are available"
            ),
        );
    }
    // Older controllers kept the stable ReplicaSet's hash under status.canary.
    let stable = str_at(obj, &["status", "stableRS"])
        .or_else(|| str_at(obj, &["status", "canary", "stableRS"]))
        .unwrap_or("");
    if value_at(obj, &["spec", "strategy", "blueGreen"]).is_some() {
        if str_at(obj, &["status", "blueGreen", "activeSelector"]) != Some(pod_hash) {
            return Health::new(HealthStatus::Progressing, "active service cutover pending");
        }
        if !stable.is_empty() && stable != pod_hash {
            return Health::new(
                HealthStatus::Progressing,
                "waiting for analysis to complete",
            );
        }
    } else if value_at(obj, &["spec", "strategy", "canary"]).is_some() {
        if replicas > updated {
            return Health::new(
                HealthStatus::Progressing,
                format!(
                    "Waiting for rollout to finish: {} old replicas pending termination",
                    replicas - updated
                ),
            );
        }
        if stable != pod_hash {
            return Health::new(
                HealthStatus::Progressing,
                "Waiting for rollout to finish steps",
            );
        }
    }
    Health::new(HealthStatus::Healthy, "")
}

/// Flagger `Canary`, by the phase Flagger writes.
fn canary(obj: &Value) -> Health {
    let Some(phase) = str_at(obj, &["status", "phase"]) else {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for Flagger to initialize the canary",
        );
    };
    let mut message = phase.to_owned();
    if let Some(weight) = number(value_at(obj, &["status", "canaryWeight"])).filter(|w| *w > 0) {
        message.push_str(&format!(": canary weight {weight}%"));
    }
    let conditions = value_at(obj, &["status", "conditions"]).and_then(Value::as_array);
    for m in conditions
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("message").and_then(Value::as_str))
        .filter(|m| !m.is_empty())
    {
        message.push_str(": ");
        message.push_str(m);
    }
    let status = match phase {
        "Initialized" | "Succeeded" => HealthStatus::Healthy,
        "Initializing" | "Waiting" | "Progressing" | "WaitingPromotion" | "Promoting"
        | "Finalising" | "Terminating" => HealthStatus::Progressing,
        "Failed" => HealthStatus::Degraded,
        _ => HealthStatus::Unknown,
    };
    Health::new(status, message)
}

/// A kind whose controller reports a `Ready` condition: True is Healthy, False Degraded, otherwise (not yet
/// written, Unknown) Progressing with `waiting`.
fn ready_condition(obj: &Value, waiting: &str) -> Health {
    match condition(obj, "Ready") {
        Some(c) if c.status == "True" => Health::new(HealthStatus::Healthy, c.message),
        Some(c) if c.status == "False" => Health::new(HealthStatus::Degraded, reason_message(&c)),
        Some(c) if !c.reason.is_empty() || !c.message.is_empty() => {
            Health::new(HealthStatus::Progressing, reason_message(&c))
        }
        _ => Health::new(HealthStatus::Progressing, waiting),
    }
}

/// cert-manager `Certificate`: Progressing while a certificate is being issued, then by its `Ready` condition.
fn certificate(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "Issuing")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Progressing, reason_message(&c));
    }
    ready_condition(obj, "Waiting for the certificate to be issued")
}

/// external-secrets `ExternalSecret`: its `Ready` condition (`SecretSyncedError` when the provider fails).
fn external_secret(obj: &Value) -> Health {
    ready_condition(obj, "Waiting for the secret to be synced")
}

/// Sealed Secrets `SealedSecret`: its `Synced` condition (False when the controller cannot unseal it).
fn sealed_secret(obj: &Value) -> Health {
    match condition(obj, "Synced") {
        Some(c) if c.status == "True" => Health::new(HealthStatus::Healthy, c.message),
        Some(c) if c.status == "False" => Health::new(HealthStatus::Degraded, reason_message(&c)),
        _ => Health::new(
            HealthStatus::Progressing,
            "Waiting for the sealed secret to be unsealed",
        ),
    }
}

/// Spec fields that only Crossplane claims, composites (v1 and v2) and managed resources carry.
const CROSSPLANE_SPEC_FIELDS: &[&str] = &[
    "compositionRef",
    "compositionSelector",
    "compositionRevisionRef",
    "compositionUpdatePolicy",
    "compositeDeletePolicy",
    "resourceRefs",
    "claimRef",
    "crossplane",
    "forProvider",
];

/// Crossplane's own kinds (`*.crossplane.io`), and claims, composites and managed resources: by the spec fields
/// Crossplane gives them, or by the `Synced` condition it writes.
fn is_crossplane(group: &str, obj: &Value) -> bool {
    group == "crossplane.io"
        || group.ends_with(".crossplane.io")
        || value_at(obj, &["spec"])
            .and_then(Value::as_object)
            .is_some_and(|spec| CROSSPLANE_SPEC_FIELDS.iter().any(|f| spec.contains_key(*f)))
        || condition(obj, "Synced").is_some()
}

/// Kinds of Crossplane's own that no controller writes a status to.
const CROSSPLANE_WITHOUT_STATUS: &[&str] = &[
    "Composition",
    "CompositionRevision",
    "DeploymentRuntimeConfig",
    "ClusterProviderConfig",
    "ProviderConfig",
    "ProviderConfigUsage",
    "ControllerConfig",
];

/// Crossplane: Degraded when it cannot sync the resource (`Synced` or `LastAsyncOperation` False), Healthy once
/// `Ready` (or the kind's own readiness condition) is True, Progressing while it provisions.
fn crossplane(kind: &str, obj: &Value) -> Health {
    let conditions = value_at(obj, &["status", "conditions"]).and_then(Value::as_array);
    let Some(conditions) = conditions.filter(|c| !c.is_empty()) else {
        let empty = value_at(obj, &["status"])
            .and_then(Value::as_object)
            .is_none_or(|s| s.is_empty());
        if empty && CROSSPLANE_WITHOUT_STATUS.contains(&kind) {
            return Health::new(HealthStatus::Healthy, "");
        }
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for Crossplane to reconcile the resource",
        );
    };
    for t in ["LastAsyncOperation", "Synced"] {
        if let Some(c) = condition(obj, t)
            && c.status == "False"
        {
            return Health::new(HealthStatus::Degraded, reason_message(&c));
        }
    }
    let ready = [
        "Ready",
        "Healthy",
        "Offered",
        "Established",
        "ValidPipeline",
        "RevisionHealthy",
    ];
    if conditions.iter().any(|c| {
        c.get("status").and_then(Value::as_str) == Some("True")
            && c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| ready.contains(&t))
    }) {
        return Health::new(HealthStatus::Healthy, "");
    }
    match condition(obj, "Ready") {
        Some(c) => Health::new(HealthStatus::Progressing, reason_message(&c)),
        None => Health::new(
            HealthStatus::Progressing,
            "Waiting for Crossplane to reconcile the resource",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::HealthChecker;
    use super::*;
    use serde_json::json;

    fn check(obj: &Value) -> Health {
        HealthChecker::default().assess(Some(obj))
    }

    fn assert_states(cases: &[(Value, HealthStatus, &str)]) {
        for (obj, want, message) in cases {
            let h = check(obj);
            assert_eq!(h.status, *want, "{obj}: {h:?}");
            assert!(h.message.contains(message), "{obj}: {h:?}");
        }
    }

    fn rollout(strategy: Value, status: Value) -> Value {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"generation": 2},
            "spec": {"replicas": 2, "strategy": strategy}, "status": status})
    }

    #[test]
    fn rollout_states_as_argo_cd_decides_them() {
        let canary = json!({"canary": {"steps": [{"setWeight": 20}]}});
        let blue_green = json!({"blueGreen": {"activeService": "web"}});
        let steady = |extra: Value| {
            let mut s = json!({"observedGeneration": "2", "currentPodHash": "abc", "stableRS": "abc",
                "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        let no_status =
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "spec": {}});
        assert_states(&[
            (no_status, HealthStatus::Progressing, "observed"),
            // observedGeneration is a string in the status Argo Rollouts writes.
            (
                rollout(canary.clone(), steady(json!({"observedGeneration": "1"}))),
                HealthStatus::Progressing,
                "observed",
            ),
            // An old controller's hash says nothing about the generation.
            (
                rollout(
                    canary.clone(),
                    steady(json!({"observedGeneration": "7d6f9c"})),
                ),
                HealthStatus::Healthy,
                "",
            ),
            // The phase written by controllers from 1.0 on is taken as it is; Paused is Suspended.
            (
                rollout(
                    canary.clone(),
                    steady(json!({"phase": "Paused", "message": "CanaryPauseStep"})),
                ),
                HealthStatus::Suspended,
                "CanaryPauseStep",
            ),
            (
                rollout(
                    canary.clone(),
                    steady(
                        json!({"phase": "Degraded", "message": "RolloutAborted: metric failed"}),
                    ),
                ),
                HealthStatus::Degraded,
                "RolloutAborted",
            ),
            (
                rollout(
                    canary.clone(),
                    steady(
                        json!({"phase": "Progressing", "message": "more replicas need to be updated"}),
                    ),
                ),
                HealthStatus::Progressing,
                "more replicas",
            ),
            (
                rollout(canary.clone(), steady(json!({"phase": "Healthy"}))),
                HealthStatus::Healthy,
                "",
            ),
            (
                rollout(canary.clone(), steady(json!({"phase": "Sideways"}))),
                HealthStatus::Unknown,
                "Sideways",
            ),
            // Without a phase: conditions, pause, replicas, then the strategy's own steps.
            (
                rollout(
                    canary.clone(),
                    steady(
                        json!({"conditions": [{"type": "InvalidSpec", "status": "True",
                "message": "bad selector"}]}),
                    ),
                ),
                HealthStatus::Degraded,
                "bad selector",
            ),
            (
                rollout(
                    canary.clone(),
                    steady(
                        json!({"conditions": [{"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded", "message": "too slow"}]}),
                    ),
                ),
                HealthStatus::Degraded,
                "too slow",
            ),
            (
                rollout(
                    canary.clone(),
                    steady(
                        json!({"conditions": [{"type": "Progressing", "status": "True",
                "reason": "RolloutAborted", "message": "aborted"}]}),
                    ),
                ),
                HealthStatus::Degraded,
                "aborted",
            ),
            (
                rollout(
                    canary.clone(),
                    steady(json!({"pauseConditions": [{"reason": "CanaryPauseStep"}]})),
                ),
                HealthStatus::Suspended,
                "paused",
            ),
            (
                rollout(canary.clone(), json!({"observedGeneration": "2"})),
                HealthStatus::Progressing,
                "not been reconciled",
            ),
            (
                rollout(canary.clone(), steady(json!({"updatedReplicas": 1}))),
                HealthStatus::Progressing,
                "1 of 2 replicas updated",
            ),
            (
                rollout(canary.clone(), steady(json!({"availableReplicas": 1}))),
                HealthStatus::Progressing,
                "1 of 2 updated",
            ),
            (
                rollout(canary.clone(), steady(json!({"replicas": 3}))),
                HealthStatus::Progressing,
                "1 old replicas",
            ),
            (
                rollout(canary.clone(), steady(json!({"stableRS": "old"}))),
                HealthStatus::Progressing,
                "steps",
            ),
            (
                rollout(
                    canary.clone(),
                    steady(json!({"stableRS": null, "canary": {"stableRS": "abc"}})),
                ),
                HealthStatus::Healthy,
                "",
            ),
            (
                rollout(canary, steady(json!({}))),
                HealthStatus::Healthy,
                "",
            ),
            (
                rollout(
                    blue_green.clone(),
                    steady(json!({"blueGreen": {"activeSelector": "old"}})),
                ),
                HealthStatus::Progressing,
                "cutover",
            ),
            (
                rollout(
                    blue_green.clone(),
                    steady(json!({"stableRS": "old", "blueGreen": {"activeSelector": "abc"}})),
                ),
                HealthStatus::Progressing,
                "analysis",
            ),
            // Blue-green does not wait for old replicas to scale down.
            (
                rollout(
                    blue_green,
                    steady(json!({"replicas": 4, "blueGreen": {"activeSelector": "abc"}})),
                ),
                HealthStatus::Healthy,
                "",
            ),
        ]);
        let mut paused = rollout(json!({"canary": {}}), steady(json!({})));
        paused["spec"]["paused"] = json!(true);
        assert_eq!(check(&paused).status, HealthStatus::Suspended);
        // With a workloadRef, the workload's generation must have been observed too.
        let mut workload = rollout(
            json!({"canary": {}}),
            steady(json!({"workloadObservedGeneration": "4"})),
        );
        workload["spec"]["workloadRef"] = json!({"kind": "Deployment", "name": "web"});
        workload["metadata"]["annotations"] =
            json!({"rollout.argoproj.io/workload-generation": "5"});
        assert_eq!(check(&workload).status, HealthStatus::Progressing);
        workload["status"]["workloadObservedGeneration"] = json!("5");
        assert_eq!(check(&workload).status, HealthStatus::Healthy);
    }

    #[test]
    fn canary_phases() {
        let canary = |status: Value| json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "status": status});
        let mut cases = vec![(canary(json!(null)), HealthStatus::Progressing, "initialize")];
        for (phase, want) in [
            ("Initialized", HealthStatus::Healthy),
            ("Succeeded", HealthStatus::Healthy),
            ("Initializing", HealthStatus::Progressing),
            ("Waiting", HealthStatus::Progressing),
            ("Progressing", HealthStatus::Progressing),
            ("WaitingPromotion", HealthStatus::Progressing),
            ("Promoting", HealthStatus::Progressing),
            ("Finalising", HealthStatus::Progressing),
            ("Failed", HealthStatus::Degraded),
            ("Bogus", HealthStatus::Unknown),
        ] {
            cases.push((canary(json!({"phase": phase})), want, phase));
        }
        cases.push((
            canary(json!({"phase": "Progressing", "canaryWeight": 10, "conditions": [{"type": "Promoted",
                "status": "Unknown", "message": "New revision detected"}]})),
            HealthStatus::Progressing,
            "Progressing: canary weight 10%: New revision detected",
        ));
        assert_states(&cases);
    }

    fn with_conditions(api_version: &str, kind: &str, conditions: Value) -> Value {
        json!({"apiVersion": api_version, "kind": kind, "status": {"conditions": conditions}})
    }

    #[test]
    fn certificates_external_and_sealed_secrets() {
        let cert = |c: Value| with_conditions("cert-manager.io/v1", "Certificate", c);
        let es = |c: Value| with_conditions("external-secrets.io/v1beta1", "ExternalSecret", c);
        let sealed = |c: Value| with_conditions("bitnami.com/v1alpha1", "SealedSecret", c);
        assert_states(&[
            (cert(json!([])), HealthStatus::Progressing, "issued"),
            (
                cert(
                    json!([{"type": "Issuing", "status": "True", "reason": "DoesNotExist", "message": "Issuing"}]),
                ),
                HealthStatus::Progressing,
                "DoesNotExist",
            ),
            (
                cert(
                    json!([{"type": "Ready", "status": "True", "message": "Certificate is up to date"}]),
                ),
                HealthStatus::Healthy,
                "up to date",
            ),
            (
                cert(
                    json!([{"type": "Ready", "status": "False", "reason": "Failed", "message": "ACME failed"}]),
                ),
                HealthStatus::Degraded,
                "Failed: ACME failed",
            ),
            (es(json!([])), HealthStatus::Progressing, "synced"),
            (
                es(json!([{"type": "Ready", "status": "True", "reason": "SecretSynced"}])),
                HealthStatus::Healthy,
                "",
            ),
            (
                es(
                    json!([{"type": "Ready", "status": "False", "reason": "SecretSyncedError",
                "message": "could not get secret data from provider"}]),
                ),
                HealthStatus::Degraded,
                "SecretSyncedError: could not get",
            ),
            (
                es(json!([{"type": "Ready", "status": "Unknown", "reason": "Pending"}])),
                HealthStatus::Progressing,
                "Pending",
            ),
            (sealed(json!([])), HealthStatus::Progressing, "unsealed"),
            (
                sealed(json!([{"type": "Synced", "status": "True"}])),
                HealthStatus::Healthy,
                "",
            ),
            (
                sealed(
                    json!([{"type": "Synced", "status": "False", "message": "no key could decrypt secret"}]),
                ),
                HealthStatus::Degraded,
                "no key could decrypt",
            ),
        ]);
        // Before any controller wrote a status, these are not Healthy (as the generic rule would say).
        let bare = json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret"});
        assert_eq!(check(&bare).status, HealthStatus::Progressing);
    }

    #[test]
    fn crossplane_claims_composites_and_managed_resources() {
        let claim = |conditions: Value| {
            json!({"apiVersion": "db.example.org/v1alpha1", "kind": "PostgreSQLInstance",
                "spec": {"compositionRef": {"name": "aws"}}, "status": {"conditions": conditions}})
        };
        let synced = json!({"type": "Synced", "status": "True", "reason": "ReconcileSuccess"});
        assert_states(&[
            (claim(json!([])), HealthStatus::Progressing, "Crossplane"),
            (
                claim(
                    json!([synced.clone(), {"type": "Ready", "status": "False", "reason": "Creating"}]),
                ),
                HealthStatus::Progressing,
                "Creating",
            ),
            (
                claim(
                    json!([synced.clone(), {"type": "Ready", "status": "True", "reason": "Available"}]),
                ),
                HealthStatus::Healthy,
                "",
            ),
            (
                claim(
                    json!([{"type": "Synced", "status": "False", "reason": "ReconcileError", "message": "cannot compose"},
                {"type": "Ready", "status": "True"}]),
                ),
                HealthStatus::Degraded,
                "ReconcileError: cannot compose",
            ),
            (
                claim(
                    json!([{"type": "LastAsyncOperation", "status": "False", "message": "create failed"}]),
                ),
                HealthStatus::Degraded,
                "create failed",
            ),
        ]);
        // A v2 composite, a managed resource, and a claim known only by the Synced condition Crossplane wrote.
        let v2 = json!({"apiVersion": "app.example.org/v1", "kind": "App", "spec": {"crossplane": {}},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Unavailable"}]}});
        assert_eq!(
            check(&v2).status,
            HealthStatus::Progressing,
            "the generic rule would say Degraded"
        );
        let managed = json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket",
            "spec": {"forProvider": {"region": "eu-west-1"}}});
        assert_eq!(check(&managed).status, HealthStatus::Progressing);
        let by_condition = with_conditions(
            "db.example.org/v1alpha1",
            "Database",
            json!([
            {"type": "Synced", "status": "False", "reason": "ReconcileError"}]),
        );
        assert_eq!(check(&by_condition).status, HealthStatus::Degraded);
        // Crossplane's own kinds that carry no status are Healthy; a Provider without one is not yet.
        let composition = json!({"apiVersion": "apiextensions.crossplane.io/v1", "kind": "Composition", "spec": {}});
        assert_eq!(check(&composition).status, HealthStatus::Healthy);
        let provider =
            json!({"apiVersion": "pkg.crossplane.io/v1", "kind": "Provider", "spec": {}});
        assert_eq!(check(&provider).status, HealthStatus::Progressing);
        let healthy_provider = with_conditions(
            "pkg.crossplane.io/v1",
            "Provider",
            json!([
            {"type": "Installed", "status": "True"}, {"type": "Healthy", "status": "True"}]),
        );
        assert_eq!(check(&healthy_provider).status, HealthStatus::Healthy);
    }

    #[test]
    fn other_custom_resources_keep_the_generic_rule() {
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 1}});
        assert_eq!(check(&widget).status, HealthStatus::Healthy);
        // Rollout is the only argoproj.io kind with a rule here.
        let workflow =
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "spec": {}});
        assert_eq!(check(&workflow).status, HealthStatus::Healthy);
    }
}
