//! Apply order: hook phases, sync waves and kind order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ObjectError;
use crate::object::{HOOK_ANNOTATION, HOOK_DELETE_POLICY_ANNOTATION, annotation};

/// Kinds in apply order; objects of one group are applied together, groups one after the other.
const KIND_ORDER: &[&[&str]] = &[
    &["Namespace"],
    &["CustomResourceDefinition"],
    &[
        "PriorityClass",
        "StorageClass",
        "IngressClass",
        "RuntimeClass",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "PodSecurityPolicy",
    ],
    &["ClusterRole", "ClusterRoleBinding"],
    &["ServiceAccount", "Role", "RoleBinding"],
    &["Secret", "ConfigMap"],
    &["PersistentVolume", "PersistentVolumeClaim"],
    &["Service", "Endpoints", "EndpointSlice"],
    &[
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
    ],
    &["HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"],
    &[
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ],
];

/// The rank of a kind in apply order; unknown kinds (custom resources) come last.
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|group| group.contains(&kind))
        .unwrap_or(KIND_ORDER.len())
}

/// The phase a hook runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HookPhase {
    /// Before anything is applied; a failure stops the sync.
    PreSync,
    /// With the objects of its wave.
    Sync,
    /// After everything is applied and healthy.
    PostSync,
    /// When the sync failed.
    SyncFail,
}

impl HookPhase {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "PreSync" => Some(Self::PreSync),
            "Sync" => Some(Self::Sync),
            "PostSync" => Some(Self::PostSync),
            "SyncFail" => Some(Self::SyncFail),
            _ => None,
        }
    }
}

/// When a hook object is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookDeletePolicy {
    /// Delete a previous instance before creating the hook (the default when nothing is set).
    pub before_hook_creation: bool,
    /// Delete the hook once it succeeded.
    pub hook_succeeded: bool,
    /// Delete the hook once it failed.
    pub hook_failed: bool,
}

/// Reads the hook phases of an object (`None` if it is not a hook).
pub fn hook_phases(obj: &Value) -> Result<Option<Vec<HookPhase>>, ObjectError> {
    let Some(raw) = annotation(obj, HOOK_ANNOTATION) else {
        return Ok(None);
    };
    let mut phases = Vec::new();
    for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let phase = HookPhase::parse(part).ok_or_else(|| ObjectError::InvalidAnnotation {
            annotation: HOOK_ANNOTATION,
            value: raw.to_string(),
        })?;
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    if phases.is_empty() {
        return Err(ObjectError::InvalidAnnotation {
            annotation: HOOK_ANNOTATION,
            value: raw.to_string(),
        });
    }
    Ok(Some(phases))
}

/// Reads a hook's delete policy; without the annotation, a previous instance is deleted before creation.
pub fn hook_delete_policy(obj: &Value) -> Result<HookDeletePolicy, ObjectError> {
    let Some(raw) = annotation(obj, HOOK_DELETE_POLICY_ANNOTATION) else {
        return Ok(HookDeletePolicy {
            before_hook_creation: true,
            ..Default::default()
        });
    };
    let mut p = HookDeletePolicy::default();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "BeforeHookCreation" => p.before_hook_creation = true,
            "HookSucceeded" => p.hook_succeeded = true,
            "HookFailed" => p.hook_failed = true,
            _ => {
                return Err(ObjectError::InvalidAnnotation {
                    annotation: HOOK_DELETE_POLICY_ANNOTATION,
                    value: raw.to_string(),
                });
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_ordered_like_a_careful_operator() {
        let mut kinds = vec![
            "MyResource",
            "Deployment",
            "ConfigMap",
            "Service",
            "ClusterRole",
            "CustomResourceDefinition",
            "ServiceAccount",
            "Namespace",
            "Secret",
            "Ingress",
        ];
        kinds.sort_by_key(|k| kind_rank(k));
        assert_eq!(
            kinds,
            vec![
                "Namespace",
                "CustomResourceDefinition",
                "ClusterRole",
                "ServiceAccount",
                "ConfigMap",
                "Secret",
                "Service",
                "Deployment",
                "Ingress",
                "MyResource"
            ]
        );
    }

    #[test]
    fn hooks_are_parsed() {
        let job = json!({"metadata": {"annotations": {
            "kedge.dev/hook": "PreSync,SyncFail",
            "kedge.dev/hook-delete-policy": "HookSucceeded"}}});
        assert_eq!(
            hook_phases(&job).unwrap(),
            Some(vec![HookPhase::PreSync, HookPhase::SyncFail])
        );
        let p = hook_delete_policy(&job).unwrap();
        assert!(p.hook_succeeded && !p.before_hook_creation && !p.hook_failed);
        assert!(hook_delete_policy(&json!({})).unwrap().before_hook_creation);
        assert_eq!(hook_phases(&json!({})).unwrap(), None);
        let bad = json!({"metadata": {"annotations": {"kedge.dev/hook": "Later"}}});
        assert!(hook_phases(&bad).is_err());
    }
}
