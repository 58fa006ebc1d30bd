//! Deployment history: the revisions an application was synced to, newest last, with increasing ids used for
//! rollback.
//!
//! Consecutive syncs of one revision are one entry (with how many there were, how many failed and the newest
//! error), so that a revision that keeps failing, or keeps being self-healed, does not push the earlier deployments
//! out; when the history is full, entries whose revision never synced in full go first.

use kedge_api::{HistoryEntry, HistoryResult};

/// How many entries an application keeps unless its `spec.revisionHistoryLimit` says otherwise.
pub const HISTORY_LIMIT: usize = 10;

/// One finished sync, to be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The commit SHA synced.
    pub revision: String,
    /// When the sync finished (RFC 3339).
    pub finished_at: String,
    /// Who started it.
    pub initiated_by: String,
    /// How it ended.
    pub result: HistoryResult,
    /// The failure, when it failed.
    pub error: Option<String>,
}

/// Records a sync: merged into the newest entry when that is the same revision, else appended with the next id;
/// trims to `limit` entries (at least one). Returns the id of the entry that holds it.
pub fn record(history: &mut Vec<HistoryEntry>, attempt: Attempt, limit: usize) -> i64 {
    let failed = attempt.result == HistoryResult::Failed;
    if let Some(last) = history.last_mut()
        && last.revision == attempt.revision
    {
        last.attempts = last.attempts.max(1).saturating_add(1);
        last.last_attempt_at = Some(attempt.finished_at);
        last.initiated_by = attempt.initiated_by;
        // An entry written before `deployed` existed says so through its result.
        last.deployed = last.was_deployed() || !failed;
        last.result = attempt.result;
        if failed {
            last.failures = last.failures.saturating_add(1);
            last.last_error = attempt.error;
        }
        return last.id;
    }
    let id = history.iter().map(|h| h.id).max().unwrap_or(-1) + 1;
    history.push(HistoryEntry {
        id,
        revision: attempt.revision,
        deployed_at: attempt.finished_at,
        last_attempt_at: None,
        initiated_by: attempt.initiated_by,
        result: attempt.result,
        attempts: 1,
        failures: u32::from(failed),
        last_error: if failed { attempt.error } else { None },
        deployed: !failed,
    });
    while history.len() > limit.max(1) {
        // The oldest entry that never deployed goes first (never the newest one); else the oldest.
        let newest = history.len() - 1;
        let victim = history[..newest]
            .iter()
            .position(|h| !h.was_deployed())
            .unwrap_or(0);
        history.remove(victim);
    }
    id
}

/// The entry with `id`, if it is still kept.
pub fn find(history: &[HistoryEntry], id: i64) -> Option<&HistoryEntry> {
    history.iter().find(|h| h.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(rev: &str, result: HistoryResult) -> Attempt {
        Attempt {
            revision: rev.to_owned(),
            finished_at: format!("t-{rev}"),
            initiated_by: "automated".into(),
            result,
            error: (result == HistoryResult::Failed).then(|| format!("{rev} failed")),
        }
    }

    #[test]
    fn keeps_the_last_ten_deployments_with_increasing_ids() {
        let mut h = Vec::new();
        for i in 0..12 {
            let id = record(
                &mut h,
                attempt(&format!("r{i}"), HistoryResult::Succeeded),
                HISTORY_LIMIT,
            );
            assert_eq!(id, i);
        }
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].id, 2);
        assert_eq!(h[9].revision, "r11");
        assert!(find(&h, 1).is_none());
        assert_eq!(find(&h, 5).map(|e| e.revision.as_str()), Some("r5"));
    }

    #[test]
    fn the_limit_is_the_applications() {
        let mut h = Vec::new();
        for i in 0..5 {
            record(
                &mut h,
                attempt(&format!("r{i}"), HistoryResult::Succeeded),
                3,
            );
        }
        let kept: Vec<&str> = h.iter().map(|e| e.revision.as_str()).collect();
        assert_eq!(kept, ["r2", "r3", "r4"]);
        record(&mut h, attempt("r5", HistoryResult::Succeeded), 0);
        assert_eq!(h.len(), 1, "at least the newest entry is kept");
    }

    #[test]
    fn repeated_failures_of_one_revision_are_one_entry() {
        let mut h = Vec::new();
        record(
            &mut h,
            attempt("good", HistoryResult::Succeeded),
            HISTORY_LIMIT,
        );
        let mut ids = Vec::new();
        for i in 0..500 {
            let mut a = attempt("bad", HistoryResult::Failed);
            a.error = Some(format!("attempt {i} failed"));
            a.initiated_by = "retry".into();
            ids.push(record(&mut h, a, HISTORY_LIMIT));
        }
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(ids.iter().all(|id| *id == 1));
        let bad = &h[1];
        assert_eq!(bad.attempts, 500);
        assert_eq!(bad.failures, 500);
        assert_eq!(bad.last_error.as_deref(), Some("attempt 499 failed"));
        assert_eq!(bad.result, HistoryResult::Failed);
        assert!(!bad.was_deployed());
        assert_eq!(bad.deployed_at, "t-bad");
        // The rollback target is still there.
        assert_eq!(find(&h, 0).map(|e| e.revision.as_str()), Some("good"));
    }

    #[test]
    fn a_failing_self_heal_keeps_the_deployment_of_its_revision() {
        let mut h = Vec::new();
        record(
            &mut h,
            attempt("r1", HistoryResult::Succeeded),
            HISTORY_LIMIT,
        );
        for _ in 0..30 {
            let mut a = attempt("r1", HistoryResult::Failed);
            a.initiated_by = "self-heal".into();
            record(&mut h, a, HISTORY_LIMIT);
        }
        record(
            &mut h,
            attempt("r1", HistoryResult::Succeeded),
            HISTORY_LIMIT,
        );
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].attempts, 32);
        assert_eq!(h[0].failures, 30);
        assert!(h[0].was_deployed());
        assert_eq!(h[0].result, HistoryResult::Succeeded);
        // The newest failure is kept for the record even though the newest sync succeeded.
        assert_eq!(h[0].last_error.as_deref(), Some("r1 failed"));
    }

    #[test]
    fn failed_revisions_leave_before_deployed_ones() {
        let mut h = Vec::new();
        record(
            &mut h,
            attempt("deployed-0", HistoryResult::Succeeded),
            HISTORY_LIMIT,
        );
        record(
            &mut h,
            attempt("deployed-1", HistoryResult::Succeeded),
            HISTORY_LIMIT,
        );
        // Twelve different revisions that each fail: the two deployments stay.
        for i in 0..12 {
            record(
                &mut h,
                attempt(&format!("broken-{i}"), HistoryResult::Failed),
                HISTORY_LIMIT,
            );
        }
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].revision, "deployed-0");
        assert_eq!(h[1].revision, "deployed-1");
        assert_eq!(h[HISTORY_LIMIT - 1].revision, "broken-11");
        // Ids keep increasing past removed entries.
        assert_eq!(h[HISTORY_LIMIT - 1].id, 13);
    }

    #[test]
    fn entries_written_before_deployed_existed_count_as_deployed_when_they_succeeded() {
        let mut h = vec![HistoryEntry {
            id: 4,
            revision: "old".into(),
            deployed_at: "t".into(),
            result: HistoryResult::Succeeded,
            attempts: 1,
            ..Default::default()
        }];
        record(&mut h, attempt("old", HistoryResult::Failed), HISTORY_LIMIT);
        assert!(h[0].was_deployed());
        assert_eq!(h[0].attempts, 2);
        assert_eq!(
            record(
                &mut h,
                attempt("new", HistoryResult::Succeeded),
                HISTORY_LIMIT
            ),
            5
        );
    }
}
