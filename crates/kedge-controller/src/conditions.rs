//! Status conditions following Kubernetes API conventions: one entry per type, transition time kept while the status
//! does not change.

use kedge_api::Condition;

/// Condition type: the application equals Git and is healthy.
pub const READY: &str = "Ready";
/// Condition type: Kedge is working on the application (fetching, rendering, syncing).
pub const RECONCILING: &str = "Reconciling";
/// Condition type: Kedge cannot make progress without a change (bad input, retries exhausted).
pub const STALLED: &str = "Stalled";
/// Condition type: a sync window of the application's project holds its syncs (True, with until when); absent when
/// none does.
pub const SYNC_WINDOW: &str = "SyncWindow";
/// True while automated syncs wait for the applications this one depends on (`spec.dependsOn`).
pub const WAITING_FOR_DEPENDENCIES: &str = "WaitingForDependencies";
/// True while automated syncs wait for the rollout of the application's set to reach it (`RollingSync`).
pub const WAITING_FOR_ROLLOUT: &str = "WaitingForRollout";
/// True while automated syncs wait for a first promotion from the upstream stage (`spec.promotion`).
pub const WAITING_FOR_PROMOTION: &str = "WaitingForPromotion";
/// Condition type: the commit's signature was checked against the trusted keys of `spec.source.verify` (absent when
/// commits are not verified).
pub const SOURCE_VERIFIED: &str = "SourceVerified";

/// Sets (adds or replaces) the condition of `type_`, keeping `lastTransitionTime` when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &str,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now.to_owned());
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: Some(now.to_owned()),
        }),
    }
}

/// Removes the condition of `type_`, if present (conventions prefer absence to a `False` for abnormal-true types).
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut c = Vec::new();
        set(
            &mut c,
            READY,
            false,
            "Progressing",
            "syncing",
            Some(1),
            "t1",
        );
        set(
            &mut c,
            READY,
            false,
            "Progressing",
            "still syncing",
            Some(2),
            "t2",
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(c[0].message, "still syncing");
        assert_eq!(c[0].observed_generation, Some(2));
        set(&mut c, READY, true, "Synced", "ok", Some(2), "t3");
        assert_eq!(c[0].last_transition_time.as_deref(), Some("t3"));
        assert!(is_true(&c, READY));
        remove(&mut c, READY);
        assert!(c.is_empty());
    }
}
