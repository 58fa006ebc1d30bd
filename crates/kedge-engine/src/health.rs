//! Health assessment: built-in rules per kind (Kubernetes' own and, in `operators`, common operators' kinds),
//! generic conditions, and custom CEL rules.

mod operators;

use std::fmt;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::EngineError;
use crate::object::{i64_at, split_api_version, str_at, value_at};

/// Health of one object or a whole application, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Running as desired.
    Healthy,
    /// Paused or suspended on purpose.
    Suspended,
    /// Still converging.
    Progressing,
    /// Does not exist.
    Missing,
    /// Failed or stuck.
    Degraded,
    /// Could not be assessed.
    Unknown,
}

impl HealthStatus {
    fn rank(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Suspended => 1,
            Self::Progressing => 2,
            Self::Missing => 3,
            Self::Degraded => 4,
            Self::Unknown => 5,
        }
    }

    /// The worse of two states.
    pub fn worst(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "healthy" => Self::Healthy,
            "suspended" => Self::Suspended,
            "progressing" => Self::Progressing,
            "missing" => Self::Missing,
            "degraded" => Self::Degraded,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A health state with a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The state.
    pub status: HealthStatus,
    /// Why, e.g. `Waiting for rollout: 1 of 3 updated replicas are available`.
    pub message: String,
}

impl Health {
    fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn healthy() -> Self {
        Self::new(HealthStatus::Healthy, "")
    }
}

/// The worst health of a set of objects (an application's health); Healthy when empty.
pub fn worst<'a>(items: impl IntoIterator<Item = &'a Health>) -> HealthStatus {
    items
        .into_iter()
        .fold(HealthStatus::Healthy, |acc, h| acc.worst(h.status))
}

/// A custom health rule: a CEL expression evaluated with the live object bound to `object`.
///
/// The expression returns a state name (`"Healthy"`), a map `{"status": "...", "message": "..."}`,
/// or a bool (`true` is Healthy, `false` Progressing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRule {
    /// API group ("" for core, "*" for any).
    pub group: String,
    /// Kind ("*" for any).
    pub kind: String,
    /// The CEL expression.
    pub expression: String,
}

struct CompiledRule {
    group: String,
    kind: String,
    program: Arc<cel::Program>,
}

/// Assesses health with the built-in rules plus compiled custom rules (which take precedence).
#[derive(Clone, Default)]
pub struct HealthChecker {
    rules: Arc<Vec<CompiledRule>>,
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl HealthChecker {
    /// Compiles custom rules; earlier rules win when several match.
    pub fn new(rules: &[HealthRule]) -> Result<Self, EngineError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for r in rules {
            let program =
                cel::Program::compile(&r.expression).map_err(|e| EngineError::HealthRule {
                    group: r.group.clone(),
                    kind: r.kind.clone(),
                    message: e.to_string(),
                })?;
            compiled.push(CompiledRule {
                group: r.group.clone(),
                kind: r.kind.clone(),
                program: Arc::new(program),
            });
        }
        Ok(Self {
            rules: Arc::new(compiled),
        })
    }

    /// A checker with the rules of `self` first, then those of `fallback`.
    pub fn layered(&self, fallback: &HealthChecker) -> HealthChecker {
        let mut rules: Vec<CompiledRule> = Vec::new();
        for r in self.rules.iter().chain(fallback.rules.iter()) {
            rules.push(CompiledRule {
                group: r.group.clone(),
                kind: r.kind.clone(),
                program: r.program.clone(),
            });
        }
        Self {
            rules: Arc::new(rules),
        }
    }

    /// Assesses a live object; `None` means it does not exist.
    pub fn assess(&self, live: Option<&Value>) -> Health {
        let Some(obj) = live else {
            return Health::new(HealthStatus::Missing, "object does not exist");
        };
        let group = str_at(obj, &["apiVersion"])
            .map(|v| split_api_version(v).0)
            .unwrap_or("");
        let kind = str_at(obj, &["kind"]).unwrap_or("");
        if let Some(rule) = self
            .rules
            .iter()
            .find(|r| (r.group == "*" || r.group == group) && (r.kind == "*" || r.kind == kind))
        {
            return eval_rule(&rule.program, obj);
        }
        builtin(group, kind, obj)
    }
}

fn eval_rule(program: &cel::Program, obj: &Value) -> Health {
    let mut ctx = cel::Context::default();
    ctx.register_all();
    let value = match cel::to_value(obj) {
        Ok(v) => v,
        Err(e) => {
            return Health::new(
                HealthStatus::Unknown,
                format!("failed to pass object to health rule: {e}"),
            );
        }
    };
    ctx.add_variable_from_value("object", value);
    let result = match program.execute(&ctx) {
        Ok(v) => v,
        Err(e) => {
            return Health::new(
                HealthStatus::Unknown,
                format!("failed to evaluate health rule: {e}"),
            );
        }
    };
    match result {
        cel::Value::Bool(true) => Health::healthy(),
        cel::Value::Bool(false) => Health::new(HealthStatus::Progressing, "health rule is false"),
        cel::Value::String(s) => match HealthStatus::parse(&s) {
            Some(st) => Health::new(st, ""),
            None => Health::new(
                HealthStatus::Unknown,
                format!("health rule returned unknown state {s:?}"),
            ),
        },
        cel::Value::Map(m) => {
            let get = |k: &str| {
                m.map
                    .get(&cel::objects::Key::String(Arc::new(k.to_string())))
                    .and_then(|v| match v {
                        cel::Value::String(s) => Some(s.to_string()),
                        _ => None,
                    })
            };
            match get("status").as_deref().and_then(HealthStatus::parse) {
                Some(st) => Health::new(st, get("message").unwrap_or_default()),
                None => Health::new(
                    HealthStatus::Unknown,
                    "health rule returned a map without a valid status",
                ),
            }
        }
        other => Health::new(
            HealthStatus::Unknown,
            format!("health rule returned {:?}", other.type_of()),
        ),
    }
}

struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<Condition<'a>> {
    let conds = value_at(obj, &["status", "conditions"])?.as_array()?;
    let c = conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    Some(Condition {
        status: s("status"),
        reason: s("reason"),
        message: s("message"),
    })
}

fn generation_observed(obj: &Value) -> bool {
    match (
        i64_at(obj, &["metadata", "generation"]),
        i64_at(obj, &["status", "observedGeneration"]),
    ) {
        (Some(g), Some(o)) => o >= g,
        (Some(_), None) => false,
        _ => true,
    }
}

fn status_i64(obj: &Value, field: &str) -> i64 {
    i64_at(obj, &["status", field]).unwrap_or(0)
}

fn reason_message(c: &Condition<'_>) -> String {
    match (c.reason.is_empty(), c.message.is_empty()) {
        (false, false) => format!("{}: {}", c.reason, c.message),
        (false, true) => c.reason.to_string(),
        _ => c.message.to_string(),
    }
}

/// Kinds whose health follows the status their own controllers write in the seconds after an apply (a rollout):
/// the ones worth keeping whole in a watch, so that each step of the rollout is read without a request.
pub fn follows_rollout(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "apps",
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
        ) | ("batch", "Job")
    )
}

fn builtin(group: &str, kind: &str, obj: &Value) -> Health {
    if value_at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        return Health::new(HealthStatus::Progressing, "object is being deleted");
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => statefulset(obj),
        ("apps", "DaemonSet") => daemonset(obj),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => replicaset(obj),
        ("", "Pod") => pod(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cronjob(obj),
        ("", "Service") => service(obj),
        ("networking.k8s.io", "Ingress") => load_balanced(obj, "Ingress"),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        ("", "Namespace") => namespace(obj),
        _ => operators::rule(group, kind, obj).unwrap_or_else(|| generic(obj)),
    }
}

fn deployment(obj: &Value) -> Health {
    if value_at(obj, &["spec", "paused"]).and_then(Value::as_bool) == Some(true) {
        return Health::new(HealthStatus::Suspended, "Deployment is paused");
    }
    if !generation_observed(obj) {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for rollout to be observed",
        );
    }
    if let Some(c) = condition(obj, "Progressing")
        && c.status == "False"
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Health::new(HealthStatus::Degraded, reason_message(&c));
    }
    if let Some(c) = condition(obj, "ReplicaFailure")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Degraded, reason_message(&c));
    }
    let want = i64_at(obj, &["spec", "replicas"]).unwrap_or(1);
    let updated = status_i64(obj, "updatedReplicas");
    let total = status_i64(obj, "replicas");
    let available = status_i64(obj, "availableReplicas");
    if updated < want {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for rollout: {updated} of {want} replicas updated"),
        );
    }
    if total > updated {
        return Health::new(
            HealthStatus::Progressing,
            format!(
                "Waiting for rollout: {} old replicas pending termination",
                total - updated
            ),
        );
    }
    if available < updated {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for rollout: {available} of {updated} updated replicas are available"),
        );
    }
    Health::healthy()
}

fn statefulset(obj: &Value) -> Health {
    if !generation_observed(obj) {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for statefulset spec update to be observed",
        );
    }
    let want = i64_at(obj, &["spec", "replicas"]).unwrap_or(1);
    let ready = status_i64(obj, "readyReplicas");
    if ready < want {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for {ready} of {want} pods to be ready"),
        );
    }
    if str_at(obj, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return Health::new(
            HealthStatus::Healthy,
            "updates are applied when pods are deleted (OnDelete)",
        );
    }
    let updated = status_i64(obj, "updatedReplicas");
    let partition = i64_at(
        obj,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    )
    .unwrap_or(0);
    if updated < want - partition {
        return Health::new(
            HealthStatus::Progressing,
            format!(
                "Waiting for rolling update: {updated} of {} pods updated",
                want - partition
            ),
        );
    }
    let current = str_at(obj, &["status", "currentRevision"]);
    let update = str_at(obj, &["status", "updateRevision"]);
    if partition == 0 && current.is_some() && update.is_some() && current != update {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for rolling update to complete",
        );
    }
    Health::healthy()
}

fn daemonset(obj: &Value) -> Health {
    if !generation_observed(obj) {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for daemon set spec update to be observed",
        );
    }
    let desired = status_i64(obj, "desiredNumberScheduled");
    let updated = status_i64(obj, "updatedNumberScheduled");
    let available = status_i64(obj, "numberAvailable");
    if str_at(obj, &["spec", "updateStrategy", "type"]) != Some("OnDelete") && updated < desired {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for rollout: {updated} of {desired} pods updated"),
        );
    }
    if available < desired {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for rollout: {available} of {desired} pods available"),
        );
    }
    Health::healthy()
}

fn replicaset(obj: &Value) -> Health {
    if !generation_observed(obj) {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for spec update to be observed",
        );
    }
    if let Some(c) = condition(obj, "ReplicaFailure")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Degraded, reason_message(&c));
    }
    let want = i64_at(obj, &["spec", "replicas"]).unwrap_or(1);
    let available = i64_at(obj, &["status", "availableReplicas"])
        .unwrap_or_else(|| status_i64(obj, "readyReplicas"));
    if available < want {
        return Health::new(
            HealthStatus::Progressing,
            format!("Waiting for {available} of {want} replicas to be available"),
        );
    }
    Health::healthy()
}

const BAD_WAITING: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

fn pod(obj: &Value) -> Health {
    let statuses = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|f| value_at(obj, &["status", f]).and_then(Value::as_array))
        .flatten();
    for cs in statuses {
        if let Some(reason) = cs.pointer("/state/waiting/reason").and_then(Value::as_str)
            && BAD_WAITING.contains(&reason)
        {
            let msg = cs
                .pointer("/state/waiting/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Health::new(HealthStatus::Degraded, format!("{reason}: {msg}"));
        }
    }
    match str_at(obj, &["status", "phase"]) {
        Some("Succeeded") => Health::new(HealthStatus::Healthy, "Pod completed"),
        Some("Failed") => Health::new(
            HealthStatus::Degraded,
            str_at(obj, &["status", "message"]).unwrap_or("Pod failed"),
        ),
        Some("Running") => match condition(obj, "Ready") {
            Some(c) if c.status == "True" => Health::healthy(),
            _ => Health::new(HealthStatus::Progressing, "Pod is running but not ready"),
        },
        Some(phase) => Health::new(HealthStatus::Progressing, format!("Pod is {phase}")),
        None => Health::new(HealthStatus::Progressing, "Pod has no status yet"),
    }
}

fn job(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "Failed")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Degraded, reason_message(&c));
    }
    if let Some(c) = condition(obj, "Complete")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Healthy, "Job completed");
    }
    if value_at(obj, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true) {
        return Health::new(HealthStatus::Suspended, "Job is suspended");
    }
    Health::new(HealthStatus::Progressing, "Job is running")
}

fn cronjob(obj: &Value) -> Health {
    if value_at(obj, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true) {
        return Health::new(HealthStatus::Suspended, "CronJob is suspended");
    }
    Health::healthy()
}

fn service(obj: &Value) -> Health {
    if str_at(obj, &["spec", "type"]) == Some("LoadBalancer") {
        return load_balanced(obj, "Service");
    }
    Health::healthy()
}

fn load_balanced(obj: &Value, what: &str) -> Health {
    let ingress = value_at(obj, &["status", "loadBalancer", "ingress"])
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if ingress {
        Health::healthy()
    } else {
        Health::new(
            HealthStatus::Progressing,
            format!("Waiting for the {what}'s load balancer address"),
        )
    }
}

fn pvc(obj: &Value) -> Health {
    match str_at(obj, &["status", "phase"]) {
        Some("Bound") => Health::healthy(),
        Some("Lost") => Health::new(HealthStatus::Degraded, "claim lost its volume"),
        Some(p) => Health::new(HealthStatus::Progressing, format!("claim is {p}")),
        None => Health::new(HealthStatus::Progressing, "claim has no status yet"),
    }
}

fn hpa(obj: &Value) -> Health {
    for t in ["AbleToScale", "ScalingActive"] {
        if let Some(c) = condition(obj, t)
            && c.status == "False"
            && c.reason != "ScalingDisabled"
        {
            return Health::new(HealthStatus::Degraded, reason_message(&c));
        }
    }
    if value_at(obj, &["status", "conditions"]).is_none()
        && value_at(obj, &["status", "currentReplicas"]).is_none()
    {
        return Health::new(HealthStatus::Progressing, "autoscaler has no status yet");
    }
    Health::healthy()
}

fn crd(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "NamesAccepted")
        && c.status == "False"
    {
        return Health::new(HealthStatus::Degraded, reason_message(&c));
    }
    match condition(obj, "Established") {
        Some(c) if c.status == "True" => Health::healthy(),
        _ => Health::new(
            HealthStatus::Progressing,
            "Waiting for the definition to be established",
        ),
    }
}

fn namespace(obj: &Value) -> Health {
    match str_at(obj, &["status", "phase"]) {
        Some("Terminating") => Health::new(HealthStatus::Progressing, "namespace is terminating"),
        _ => Health::healthy(),
    }
}

/// kstatus-like assessment of custom resources from their `Ready`/`Available`/`Stalled` conditions.
fn generic(obj: &Value) -> Health {
    if value_at(obj, &["status"]).is_none() {
        return Health::healthy();
    }
    if i64_at(obj, &["status", "observedGeneration"]).is_some() && !generation_observed(obj) {
        return Health::new(
            HealthStatus::Progressing,
            "Waiting for the controller to observe the latest generation",
        );
    }
    if let Some(c) = condition(obj, "Stalled")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Degraded, reason_message(&c));
    }
    if let Some(c) = condition(obj, "Reconciling")
        && c.status == "True"
    {
        return Health::new(HealthStatus::Progressing, reason_message(&c));
    }
    for t in ["Ready", "Available"] {
        if let Some(c) = condition(obj, t) {
            return match c.status {
                "True" => Health::new(HealthStatus::Healthy, c.message),
                "False" if in_progress_reason(c.reason) => {
                    Health::new(HealthStatus::Progressing, reason_message(&c))
                }
                "False" => Health::new(HealthStatus::Degraded, reason_message(&c)),
                _ => Health::new(HealthStatus::Progressing, reason_message(&c)),
            };
        }
    }
    Health::healthy()
}

fn in_progress_reason(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "progress",
        "reconcil",
        "pending",
        "wait",
        "creat",
        "initializ",
        "deploying",
    ]
    .iter()
    .any(|w| r.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(obj: Value) -> Health {
        HealthChecker::default().assess(Some(&obj))
    }

    #[test]
    fn deployment_rollout_states() {
        let base = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status})
        };
        assert_eq!(
            check(base(json!({"observedGeneration": 1}))).status,
            HealthStatus::Progressing
        );
        let h = check(base(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
        ));
        assert_eq!(h.status, HealthStatus::Progressing);
        assert!(h.message.contains("1 of 3"), "{}", h.message);
        assert_eq!(
            check(base(
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})
            ))
            .status,
            HealthStatus::Healthy
        );
        let stuck = check(base(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]})));
        assert_eq!(stuck.status, HealthStatus::Degraded);
        assert_eq!(stuck.message, "ProgressDeadlineExceeded: too slow");
        let paused =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"paused": true}});
        assert_eq!(check(paused).status, HealthStatus::Suspended);
    }

    #[test]
    fn builtin_kinds() {
        let cases = vec![
            (
                json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Pending",
                "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
                HealthStatus::Degraded,
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [
                {"type": "Complete", "status": "True"}]}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}),
                HealthStatus::Degraded,
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"suspend": true}}),
                HealthStatus::Suspended,
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"suspend": true}}),
                HealthStatus::Suspended,
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}}),
                HealthStatus::Progressing,
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}),
                HealthStatus::Progressing,
            ),
            (
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "status": {"conditions": [{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale"}]}}),
                HealthStatus::Degraded,
            ),
            (
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "status": {"conditions": [{"type": "Established", "status": "True"}]}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Terminating"}}),
                HealthStatus::Progressing,
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": 2},
                "status": {"readyReplicas": 1}}),
                HealthStatus::Progressing,
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "status": {
                "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"replicas": 2},
                "status": {"availableReplicas": 2}}),
                HealthStatus::Healthy,
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap"}),
                HealthStatus::Healthy,
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(check(obj.clone()).status, want, "{obj}");
        }
        assert_eq!(
            HealthChecker::default().assess(None).status,
            HealthStatus::Missing
        );
    }

    #[test]
    fn generic_conditions_honour_observed_generation() {
        let cr = |observed: i64, cond: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"generation": 3},
                "status": {"observedGeneration": observed, "conditions": [cond]}})
        };
        let ready = json!({"type": "Ready", "status": "True"});
        assert_eq!(
            check(cr(2, ready.clone())).status,
            HealthStatus::Progressing
        );
        assert_eq!(check(cr(3, ready)).status, HealthStatus::Healthy);
        let failed = json!({"type": "Ready", "status": "False", "reason": "InstallFailed"});
        assert_eq!(check(cr(3, failed)).status, HealthStatus::Degraded);
        let waiting = json!({"type": "Ready", "status": "False", "reason": "Progressing"});
        assert_eq!(check(cr(3, waiting)).status, HealthStatus::Progressing);
    }

    #[test]
    fn cel_rules_take_precedence() {
        let checker = HealthChecker::new(&[
            HealthRule {
                group: "example.com".into(),
                kind: "Widget".into(),
                expression: r#"object.status.phase == "Running" ? "Healthy" : {"status": "Degraded", "message": "phase is " + object.status.phase}"#.into(),
            },
            HealthRule {
                group: "".into(),
                kind: "ConfigMap".into(),
                expression: r#"has(object.data) && object.data.ready == "yes""#.into(),
            },
        ])
        .unwrap();
        let w = |phase: &str| json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"phase": phase}});
        assert_eq!(
            checker.assess(Some(&w("Running"))).status,
            HealthStatus::Healthy
        );
        let h = checker.assess(Some(&w("Broken")));
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.message, "phase is Broken");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"ready": "no"}});
        assert_eq!(checker.assess(Some(&cm)).status, HealthStatus::Progressing);
        assert!(
            HealthChecker::new(&[HealthRule {
                group: "".into(),
                kind: "X".into(),
                expression: "(((".into()
            }])
            .is_err()
        );
    }

    #[test]
    fn worst_wins() {
        let hs = [
            Health::healthy(),
            Health::new(HealthStatus::Degraded, "x"),
            Health::new(HealthStatus::Progressing, "y"),
        ];
        assert_eq!(worst(&hs), HealthStatus::Degraded);
        assert_eq!(worst(&[]), HealthStatus::Healthy);
    }
}
