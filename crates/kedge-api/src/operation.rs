//! A requested operation (sync or rollback), carried in the `kedge.dev/operation` annotation of an Application.
//!
//! The CLI, the API server or a plain `kubectl annotate` sets the annotation; the controller runs the operation once,
//! records the outcome in `status.operationState` and removes the annotation.

use serde::{Deserialize, Serialize};

/// Annotation holding a JSON-encoded [`Operation`].
pub const OPERATION_ANNOTATION: &str = "kedge.dev/operation";

/// What to do, requested by whom.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
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
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
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
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOperation {
    /// The history id.
    pub id: i64,
    /// Prune objects that the old revision does not have.
    #[serde(default)]
    pub prune: bool,
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
}
