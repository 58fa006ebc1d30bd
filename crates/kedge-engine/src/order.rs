//! Apply order: hook phases, sync waves and kind order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ObjectError;
use crate::object::{HOOK, HOOK_DELETE_POLICY};

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

/// What an object's hook annotation (`kedge.dev/hook` or `argocd.argoproj.io/hook`) makes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A hook running in these phases (sorted, without duplicates).
    Run(Vec<HookPhase>),
    /// `Skip`: the object is neither applied nor pruned.
    Skip,
}

fn parse_hook(annotation: &'static str, raw: &str) -> Result<Hook, ObjectError> {
    let invalid = || ObjectError::InvalidAnnotation {
        annotation,
        value: raw.to_string(),
    };
    let parts: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.contains(&"Skip") {
        return if parts.iter().all(|p| *p == "Skip") {
            Ok(Hook::Skip)
        } else {
            Err(invalid())
        };
    }
    let mut phases = Vec::new();
    for part in parts {
        if matches!(part, "PreDelete" | "PostDelete") {
            return Err(ObjectError::UnsupportedOption {
                annotation,
                option: part.to_string(),
                reason: "hooks of an application's deletion come only from Helm's pre-delete and post-delete",
            });
        }
        let phase = HookPhase::parse(part).ok_or_else(invalid)?;
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    if phases.is_empty() {
        return Err(invalid());
    }
    phases.sort();
    Ok(Hook::Run(phases))
}

/// Reads an object's hook annotation (`kedge.dev/hook` or `argocd.argoproj.io/hook`; `None` if it is not a hook).
pub fn hook(obj: &Value) -> Result<Option<Hook>, ObjectError> {
    HOOK.read(obj, parse_hook)
}

/// Reads the hook phases of an object (`None` if it is not a hook, or a skipped object).
pub fn hook_phases(obj: &Value) -> Result<Option<Vec<HookPhase>>, ObjectError> {
    Ok(match hook(obj)? {
        Some(Hook::Run(phases)) => Some(phases),
        Some(Hook::Skip) | None => None,
    })
}

/// When a hook object is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookDeletePolicy {
    /// Delete a previous instance before creating the hook (the default when nothing is set, as in Argo CD and
    /// Helm).
    pub before_hook_creation: bool,
    /// Delete the hook once it succeeded.
    pub hook_succeeded: bool,
    /// Delete the hook once it failed.
    pub hook_failed: bool,
}

fn parse_delete_policy(
    annotation: &'static str,
    raw: &str,
) -> Result<HookDeletePolicy, ObjectError> {
    let mut p = HookDeletePolicy::default();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "BeforeHookCreation" => p.before_hook_creation = true,
            "HookSucceeded" => p.hook_succeeded = true,
            "HookFailed" => p.hook_failed = true,
            _ => {
                return Err(ObjectError::InvalidAnnotation {
                    annotation,
                    value: raw.to_string(),
                });
            }
        }
    }
    Ok(p)
}

/// Reads a hook's delete policy (`kedge.dev/hook-delete-policy` or `argocd.argoproj.io/hook-delete-policy`);
/// without either, a previous instance is deleted before creation.
pub fn hook_delete_policy(obj: &Value) -> Result<HookDeletePolicy, ObjectError> {
    Ok(HOOK_DELETE_POLICY
        .read(obj, parse_delete_policy)?
        .unwrap_or(HookDeletePolicy {
            before_hook_creation: true,
            ..Default::default()
        }))
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

    fn annotated(annotations: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"annotations": annotations}})
    }

    #[test]
    fn argocd_hooks_are_read_as_ours() {
        let job = annotated(json!({"argocd.argoproj.io/hook": "PostSync",
            "argocd.argoproj.io/hook-delete-policy": "HookSucceeded,HookFailed"}));
        assert_eq!(
            hook(&job).unwrap(),
            Some(Hook::Run(vec![HookPhase::PostSync]))
        );
        let p = hook_delete_policy(&job).unwrap();
        assert!(p.hook_succeeded && p.hook_failed && !p.before_hook_creation);
        // Argo CD's default, as ours: replace the previous instance.
        let bare = annotated(json!({"argocd.argoproj.io/hook": "Sync"}));
        assert_eq!(
            hook_delete_policy(&bare).unwrap(),
            HookDeletePolicy {
                before_hook_creation: true,
                ..Default::default()
            }
        );
        let skip = annotated(json!({"argocd.argoproj.io/hook": "Skip"}));
        assert_eq!(hook(&skip).unwrap(), Some(Hook::Skip));
        assert_eq!(hook_phases(&skip).unwrap(), None);
        // The same phases in another order agree; different ones do not.
        let same = annotated(json!({"argocd.argoproj.io/hook": "SyncFail,PreSync",
            "kedge.dev/hook": "PreSync,SyncFail"}));
        assert_eq!(
            hook_phases(&same).unwrap(),
            Some(vec![HookPhase::PreSync, HookPhase::SyncFail])
        );
        let differ =
            annotated(json!({"argocd.argoproj.io/hook": "PreSync", "kedge.dev/hook": "PostSync"}));
        let m = hook(&differ).unwrap_err().to_string();
        assert!(
            m.contains(r#"kedge.dev/hook="PostSync""#)
                && m.contains(r#"argocd.argoproj.io/hook="PreSync""#),
            "{m}"
        );
        let policies = annotated(
            json!({"argocd.argoproj.io/hook-delete-policy": "HookSucceeded",
            "kedge.dev/hook-delete-policy": "HookFailed"}),
        );
        let m = hook_delete_policy(&policies).unwrap_err().to_string();
        assert!(
            m.contains("HookSucceeded") && m.contains("HookFailed"),
            "{m}"
        );
    }

    #[test]
    fn unknown_hook_values_are_errors_naming_them() {
        for (value, expect) in [
            ("Later", "Later"),
            ("Skip,PreSync", "Skip,PreSync"),
            ("PostDelete", "PostDelete is not supported"),
        ] {
            let obj = annotated(json!({"argocd.argoproj.io/hook": value}));
            let m = hook(&obj).unwrap_err().to_string();
            assert!(
                m.contains("argocd.argoproj.io/hook") && m.contains(expect),
                "{m}"
            );
        }
        let obj = annotated(json!({"argocd.argoproj.io/hook-delete-policy": "Never"}));
        let m = hook_delete_policy(&obj).unwrap_err().to_string();
        assert!(m.contains("Never"), "{m}");
    }
}
