//! A requested operation (sync or rollback), carried in the `kedge.dev/operation` annotation of an Application.
//!
//! The CLI, the API server or a plain `kubectl annotate` sets the annotation. The controller first records the
//! operation as `Running` in `status.operationState`, then removes the annotation only if it still holds the same
//! request (a newer one written meanwhile stays for the next pass), runs it, and records the outcome there. An
//! operation found `Running` with no controller running it (a crash, a change of leader) is resumed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation holding a JSON-encoded [`Operation`].
pub const OPERATION_ANNOTATION: &str = "kedge.dev/operation";
/// Annotation on an Application asking to stop its running operation (`kedge app terminate-op`, as Argo CD's
/// `argocd app terminate-op`): its value is when it was asked for. The sync stops where it is (nothing more is
/// applied, pruned or waited for) and the operation ends Failed; an operation left Running by a controller that went
/// away is not resumed.
pub const TERMINATE_ANNOTATION: &str = "kedge.dev/terminate-operation";

/// What to do, requested by whom.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Sync to Git (or to a given revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOperation>,
    /// Apply the revision of a history entry and suspend automated sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackOperation>,
    /// Who asked (user name, `cli`, `api`, `webhook`).
    #[serde(default)]
    pub initiated_by: String,
    /// When it was asked for (RFC 3339); also makes repeated identical requests distinct.
    #[serde(default)]
    pub requested_at: String,
}

/// Options of a requested sync.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncOperation {
    /// Prune objects removed from Git even if the policy does not.
    #[serde(default)]
    pub prune: bool,
    /// Plan only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Sync this revision instead of `spec.source.targetRevision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Confirm a prune that deletes more than half of the inventory (and more than 10 objects): without it such a
    /// sync is refused and changes nothing (`kedge app sync --prune --confirm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
}

/// A rollback to a history entry.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOperation {
    /// The history id.
    pub id: i64,
    /// Prune objects that the old revision does not have.
    #[serde(default)]
    pub prune: bool,
}

/// The phase of an operation, as Argo CD's `OperationPhase`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum OperationPhase {
    /// Started and not finished; `status.operationState.message` says what it waits for.
    #[default]
    Running,
    /// Being abandoned (the controller is shutting down); the next leader resumes it.
    Terminating,
    /// Finished and did what was asked.
    Succeeded,
    /// Finished without doing what was asked (an object or hook failed, the sync was refused).
    Failed,
    /// Could not be carried out (the revision could not be fetched or rendered, the request was invalid, or it was
    /// interrupted too often).
    Error,
}

impl OperationPhase {
    /// Whether the operation has finished.
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Error)
    }

    /// The phase name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Terminating => "Terminating",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Error => "Error",
        }
    }
}

impl std::fmt::Display for OperationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Operation {
    /// Parses the annotation value.
    pub fn from_annotation(value: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(value)
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        // Serializing plain structs of strings, bools and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_annotation() {
        let op = Operation {
            sync: Some(SyncOperation {
                prune: true,
                dry_run: false,
                revision: Some("v1.2.0".into()),
                confirm: true,
            }),
            rollback: None,
            initiated_by: "cli".into(),
            requested_at: "2026-01-01T00:00:00Z".into(),
        };
        let text = op.to_annotation();
        assert_eq!(Operation::from_annotation(&text).ok(), Some(op));
        assert!(Operation::from_annotation("{not json").is_err());
    }

    #[test]
    fn phases_serialize_as_their_names() {
        for phase in [
            OperationPhase::Running,
            OperationPhase::Terminating,
            OperationPhase::Succeeded,
            OperationPhase::Failed,
            OperationPhase::Error,
        ] {
            let text = serde_json::to_string(&phase).unwrap_or_default();
            assert_eq!(text, format!("\"{phase}\""));
            assert_eq!(
                serde_json::from_str::<OperationPhase>(&text).ok(),
                Some(phase)
            );
        }
        assert!(serde_json::from_str::<OperationPhase>("\"Done\"").is_err());
        assert!(!OperationPhase::Running.is_completed());
        assert!(OperationPhase::Error.is_completed());
    }
}
