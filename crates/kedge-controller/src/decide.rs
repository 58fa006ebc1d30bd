//! Target and decide, the phases of a pass between intake and execution: which revision the pass is about and why
//! ([`target`]), and, once that revision is rendered and compared with the cluster, what to do about it
//! ([`decide`]): observe, dry-run, sync, or refuse.
//!
//! Both are pure functions of values the reconcile gathered (the operation, the history, the comparison, what the
//! controller remembers of earlier attempts), so every rule is unit-tested here without a cluster.

use kedge_api::{HistoryEntry, Hold, Operation};

/// Why a sync runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Automated sync of a new revision.
    Automated,
    /// Self-heal of drift at the same revision.
    SelfHeal,
    /// Retry of a failed sync.
    Retry,
    /// A requested operation, with who asked.
    Operation(String),
    /// A rollback to a history entry.
    Rollback(i64),
}

impl Trigger {
    /// Who or what started the sync, as the history and events say it.
    pub fn initiated_by(&self) -> String {
        match self {
            Trigger::Automated => "automated".into(),
            Trigger::SelfHeal => "self-heal".into(),
            Trigger::Retry => "retry".into(),
            Trigger::Operation(who) => who.clone(),
            Trigger::Rollback(_) => "rollback".into(),
        }
    }
}

/// Which revision a pass is about, and what was asked of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// A revision to render instead of resolving the spec's (a rollback's or an operation's); `None`: the spec's.
    pub revision: Option<String>,
    /// The sync an operation asked for.
    pub requested: Option<Trigger>,
    /// Prune objects removed from Git even without automated prune.
    pub prune: bool,
    /// A prune of more than half of the inventory is confirmed.
    pub confirm_prune: bool,
    /// Only report what a sync would do.
    pub dry_run: bool,
    /// Why the requested operation cannot run (it ends Failed with this message and the pass goes on as a routine
    /// one).
    pub failed: Option<String>,
}

/// The target of a pass: the operation's (a rollback's history entry, a sync's revision) or, without one, the spec's
/// revision, reusing `fresh` (a resolution recent enough, which the caller checked against the poll interval and
/// the moves the poller and webhooks saw).
pub fn target(
    operation: Option<&Operation>,
    history: &[HistoryEntry],
    fresh: Option<String>,
) -> Target {
    let mut t = Target::default();
    if let Some(op) = operation {
        if let Some(rb) = &op.rollback {
            match crate::history::find(history, rb.id) {
                Some(entry) => {
                    t.revision = Some(entry.revision.clone());
                    t.requested = Some(Trigger::Rollback(rb.id));
                    t.prune = rb.prune;
                }
                None => {
                    t.failed = Some(format!(
                        "rollback failed: history id {} is not among the kept entries",
                        rb.id
                    ));
                }
            }
        } else if let Some(sync) = &op.sync {
            t.revision = sync.revision.clone();
            t.requested = Some(Trigger::Operation(if op.initiated_by.is_empty() {
                "user".into()
            } else {
                op.initiated_by.clone()
            }));
            t.prune = sync.prune;
            t.confirm_prune = sync.confirm;
            t.dry_run = sync.dry_run;
        }
    }
    if t.revision.is_none() && t.requested.is_none() {
        t.revision = fresh;
    }
    t
}

/// What a pass knows when it decides, all of it already computed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The sync an operation asked for.
    pub requested: Option<Trigger>,
    /// The operation asks only for a dry run.
    pub dry_run: bool,
    /// `spec.suspend`.
    pub suspended: bool,
    /// The live state equals Git and nothing is left to prune.
    pub synced: bool,
    /// `syncPolicy.automated` is set.
    pub automated: bool,
    /// `automated.selfHeal`.
    pub self_heal: bool,
    /// The compared revision, or the spec, differs from what the last sync was made for.
    pub new_target: bool,
    /// The last operation failed.
    pub last_failed: bool,
    /// `syncPolicy.retry` is set.
    pub retry_policy: bool,
    /// A retry is allowed now (under the limit, its backoff over).
    pub retry_due: bool,
    /// A self-heal would change something (an object to apply, or with automated prune one to delete).
    pub heals_something: bool,
    /// A self-heal is allowed now (its backoff over).
    pub heal_due: bool,
    /// Objects that cannot be applied: unknown kind, refused by the dry run, invalid manifest.
    pub blocked: Vec<String>,
    /// Why automated syncs (and self-heal, retries) wait now: a sync window of the project.
    pub held_automated: Option<Hold>,
    /// Why requested syncs wait now.
    pub held_manual: Option<Hold>,
}

/// What a pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Compare and report only.
    Observe,
    /// Report what the requested sync would do.
    DryRun,
    /// Sync.
    Sync(Trigger),
    /// A sync was due but a sync window of the project holds it: apply nothing until the window allows.
    Held {
        /// What asked for the sync.
        trigger: Trigger,
        /// Why it waits, and until when.
        hold: Hold,
    },
    /// A sync was due but objects cannot be applied: apply nothing (applying the rest would leave the cluster at
    /// half a commit) and report them.
    Refuse {
        /// What asked for the sync.
        trigger: Trigger,
        /// What cannot be applied.
        blocked: Vec<String>,
    },
}

/// Decides what a pass does. A requested operation always acts; otherwise automated sync acts on a new revision or
/// spec, retries a failed one when its policy says so (and only then: a failing revision is not also self-healed),
/// and self-heals drift, never while suspended or synced.
pub fn decide(facts: Facts) -> Decision {
    let mut trigger = facts.requested.clone();
    if trigger.is_none() && !facts.suspended && !facts.synced && facts.automated {
        if facts.new_target {
            trigger = Some(Trigger::Automated);
        } else if facts.last_failed && facts.retry_policy {
            if facts.retry_due {
                trigger = Some(Trigger::Retry);
            }
        } else if facts.self_heal && facts.heals_something && facts.heal_due {
            trigger = Some(Trigger::SelfHeal);
        }
    }
    let held = match &trigger {
        Some(Trigger::Operation(_) | Trigger::Rollback(_)) => facts.held_manual.clone(),
        Some(_) => facts.held_automated.clone(),
        None => None,
    };
    match trigger {
        None => Decision::Observe,
        Some(_) if facts.dry_run => Decision::DryRun,
        Some(trigger) if held.is_some() => Decision::Held {
            trigger,
            hold: held.unwrap_or_else(|| Hold {
                reason: String::new(),
                until: None,
                by: kedge_api::HoldBy::Window,
            }),
        },
        Some(trigger) if !facts.blocked.is_empty() => Decision::Refuse {
            trigger,
            blocked: facts.blocked,
        },
        Some(trigger) => Decision::Sync(trigger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::{HistoryResult, RollbackOperation, SyncOperation};

    fn out_of_sync() -> Facts {
        Facts {
            automated: true,
            self_heal: true,
            heals_something: true,
            heal_due: true,
            ..Facts::default()
        }
    }

    #[test]
    fn sync_windows_hold_automation_and_requests_as_they_say() {
        let hold = Hold {
            reason: "deny window open".into(),
            until: None,
            by: kedge_api::HoldBy::Window,
        };
        let held = Facts {
            new_target: true,
            held_automated: Some(hold.clone()),
            ..out_of_sync()
        };
        assert_eq!(
            decide(held.clone()),
            Decision::Held {
                trigger: Trigger::Automated,
                hold: hold.clone()
            }
        );
        // manualSync: a requested sync goes ahead while automation waits.
        let requested = Facts {
            requested: Some(Trigger::Operation("alice".into())),
            ..held.clone()
        };
        assert_eq!(
            decide(requested.clone()),
            Decision::Sync(Trigger::Operation("alice".into()))
        );
        let both = Facts {
            held_manual: Some(hold.clone()),
            ..requested
        };
        assert!(matches!(decide(both), Decision::Held { .. }));
        // Nothing due: nothing held.
        let synced = Facts {
            synced: true,
            ..held
        };
        assert_eq!(decide(synced), Decision::Observe);
    }

    #[test]
    fn automation_syncs_new_revisions_retries_failures_and_heals_drift() {
        let new = Facts {
            new_target: true,
            ..out_of_sync()
        };
        assert_eq!(decide(new), Decision::Sync(Trigger::Automated));
        assert_eq!(decide(out_of_sync()), Decision::Sync(Trigger::SelfHeal));
        let failing = Facts {
            last_failed: true,
            retry_policy: true,
            retry_due: true,
            ..out_of_sync()
        };
        assert_eq!(decide(failing.clone()), Decision::Sync(Trigger::Retry));
        // A failing revision waiting for its retry backoff is not self-healed meanwhile.
        let waiting = Facts {
            retry_due: false,
            ..failing
        };
        assert_eq!(decide(waiting), Decision::Observe);
        let backing_off = Facts {
            heal_due: false,
            ..out_of_sync()
        };
        assert_eq!(decide(backing_off), Decision::Observe);
        let nothing_to_heal = Facts {
            heals_something: false,
            ..out_of_sync()
        };
        assert_eq!(decide(nothing_to_heal), Decision::Observe);
    }

    #[test]
    fn nothing_automatic_while_synced_suspended_or_manual() {
        for facts in [
            Facts {
                synced: true,
                new_target: true,
                ..out_of_sync()
            },
            Facts {
                suspended: true,
                new_target: true,
                ..out_of_sync()
            },
            Facts {
                automated: false,
                new_target: true,
                ..out_of_sync()
            },
        ] {
            assert_eq!(decide(facts.clone()), Decision::Observe, "{facts:?}");
        }
        // A requested sync runs even when suspended and synced.
        let asked = Facts {
            requested: Some(Trigger::Operation("alice".into())),
            suspended: true,
            synced: true,
            ..Facts::default()
        };
        assert_eq!(
            decide(asked),
            Decision::Sync(Trigger::Operation("alice".into()))
        );
    }

    #[test]
    fn blocked_objects_refuse_the_sync_but_not_a_dry_run() {
        let blocked = Facts {
            new_target: true,
            blocked: vec!["v1/Widget x: kind not served".into()],
            ..out_of_sync()
        };
        assert_eq!(
            decide(blocked.clone()),
            Decision::Refuse {
                trigger: Trigger::Automated,
                blocked: vec!["v1/Widget x: kind not served".into()]
            }
        );
        let dry = Facts {
            requested: Some(Trigger::Operation("bob".into())),
            dry_run: true,
            ..blocked
        };
        assert_eq!(decide(dry), Decision::DryRun);
        // Blocked objects with nothing to do are only reported.
        assert_eq!(
            decide(Facts {
                blocked: vec!["x".into()],
                ..Facts::default()
            }),
            Decision::Observe
        );
    }

    fn entry(id: i64, revision: &str) -> HistoryEntry {
        HistoryEntry {
            id,
            revision: revision.into(),
            deployed_at: "2026-01-01T00:00:00Z".into(),
            result: HistoryResult::Succeeded,
            ..HistoryEntry::default()
        }
    }

    #[test]
    fn target_follows_the_operation_then_a_fresh_resolution() {
        let history = vec![entry(1, "aaa"), entry(2, "bbb")];
        let rollback = Operation {
            rollback: Some(RollbackOperation { id: 1, prune: true }),
            ..Operation::default()
        };
        let t = target(Some(&rollback), &history, Some("ccc".into()));
        assert_eq!(t.revision.as_deref(), Some("aaa"));
        assert_eq!(t.requested, Some(Trigger::Rollback(1)));
        assert!(t.prune);

        let gone = Operation {
            rollback: Some(RollbackOperation {
                id: 7,
                prune: false,
            }),
            ..Operation::default()
        };
        let t = target(Some(&gone), &history, Some("ccc".into()));
        assert!(
            t.failed
                .as_deref()
                .is_some_and(|m| m.contains("history id 7"))
        );
        assert_eq!(t.revision.as_deref(), Some("ccc"));

        let sync = Operation {
            sync: Some(SyncOperation {
                revision: Some("v2".into()),
                prune: true,
                dry_run: true,
                ..SyncOperation::default()
            }),
            ..Operation::default()
        };
        let t = target(Some(&sync), &history, Some("ccc".into()));
        assert_eq!(t.revision.as_deref(), Some("v2"));
        assert_eq!(t.requested, Some(Trigger::Operation("user".into())));
        assert!(t.prune && t.dry_run && !t.confirm_prune);

        // A sync of the spec's revision resolves it anew rather than reusing a resolution.
        let latest = Operation {
            sync: Some(SyncOperation::default()),
            initiated_by: "carol".into(),
            ..Operation::default()
        };
        let t = target(Some(&latest), &history, Some("ccc".into()));
        assert_eq!(t.revision, None);
        assert_eq!(t.requested, Some(Trigger::Operation("carol".into())));

        let t = target(None, &history, None);
        assert_eq!(t, Target::default());
    }
}
