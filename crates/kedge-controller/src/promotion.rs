//! Promotion between stages: which revision an application with `spec.promotion` deploys.
//!
//! A revision becomes a candidate when the upstream application has run it Synced and Healthy (its `Ready`
//! condition True at that revision, no operation running) for at least `soak`. With `approval: Auto` the candidate is
//! promoted at once; with `Manual` it waits in `status.promotion.pending` until a person approves it
//! (`kedge app promote`, the [`PROMOTE_ANNOTATION`]), who may also choose another revision (a rollback, or a stage
//! skipped on purpose). The application then deploys the promoted revision from its own path. Pure: the pass gives
//! the upstream as the controller's cache has it and the time.

use std::time::Duration;

use kedge_api::{
    Application, PromoteRequest, Promotion, PromotionApproval, PromotionRecord, PromotionStatus,
};

/// How many promotions `status.promotion.history` keeps.
pub const HISTORY: usize = 10;

/// What the upstream offers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A revision that has soaked.
    Ready(String),
    /// Nothing yet: why, and when to look again (the soak left), if known.
    Waiting(String, Option<Duration>),
}

/// The upstream's key, `namespace/name`.
pub fn upstream_key(app: &Application, promotion: &Promotion) -> String {
    let own = app.metadata.namespace.clone().unwrap_or_default();
    format!(
        "{}/{}",
        promotion
            .from
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&own),
        promotion.from.name
    )
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The soak of `promotion`.
pub fn soak(promotion: &Promotion) -> Result<Duration, String> {
    match promotion.soak.as_deref() {
        None | Some("") => Ok(Duration::ZERO),
        Some(s) => kedge_api::parse_duration(s)
            .map_err(|e| format!("spec.promotion.soak {s:?}: {e} (e.g. 30s, 10m, 1h30m)")),
    }
}

/// What `upstream` (named `key`) offers at `now`.
pub fn candidate(
    upstream: Option<&Application>,
    key: &str,
    soak: Duration,
    now: jiff::Timestamp,
) -> Candidate {
    let Some(status) = upstream.and_then(|u| u.status.as_ref()) else {
        return Candidate::Waiting(
            format!(
                "upstream {key} {}",
                if upstream.is_some() {
                    "is not reconciled yet"
                } else {
                    "is not found"
                }
            ),
            None,
        );
    };
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::conditions::READY && c.status == "True");
    let running = status
        .operation_state
        .as_ref()
        .is_some_and(|o| !o.phase.is_completed());
    let (Some(ready), Some(revision), false) = (ready, status.sync.revision.as_deref(), running)
    else {
        return Candidate::Waiting(
            format!(
                "upstream {key} is {:?} and {:?}{}",
                status.sync.status,
                status.health.status,
                if running { ", syncing" } else { "" }
            ),
            None,
        );
    };
    // Ready since it last turned True, and not before the revision was deployed: a sync that goes straight from one
    // ready revision to the next leaves the condition True throughout.
    let parse = |t: Option<&str>| t.and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let deployed = status
        .history
        .iter()
        .rev()
        .find(|h| h.revision == revision)
        .and_then(|h| parse(Some(&h.deployed_at)));
    let since =
        parse(ready.last_transition_time.as_deref()).map(|t| deployed.map_or(t, |d| d.max(t)));
    let Some(since) = since else {
        return Candidate::Waiting(
            format!("upstream {key} does not say since when it is ready"),
            None,
        );
    };
    let ran = now
        .duration_since(since)
        .try_into()
        .unwrap_or(Duration::ZERO);
    if ran >= soak {
        Candidate::Ready(revision.to_owned())
    } else {
        let left = soak - ran;
        Candidate::Waiting(
            format!(
                "upstream {key} runs {}: soaking, {}s left",
                short(revision),
                left.as_secs().max(1)
            ),
            Some(left),
        )
    }
}

/// What a pass does with the promotion of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The promotion status after the pass.
    pub status: PromotionStatus,
    /// A promotion made in this pass: revision, from and by, for the Event.
    pub promoted: Option<PromotionRecord>,
    /// A request that could not be carried out, and why.
    pub refused: Option<String>,
    /// When to look again (a soak ending).
    pub recheck: Option<Duration>,
}

/// Moves the promotion of an application on: a person's request first, then the upstream's candidate.
pub fn step(
    promotion: &Promotion,
    old: PromotionStatus,
    key: &str,
    candidate: Candidate,
    request: Option<&PromoteRequest>,
    now: &str,
) -> Step {
    let mut status = old;
    let mut out = Step {
        status: PromotionStatus::default(),
        promoted: None,
        refused: None,
        recheck: None,
    };
    let promote = |status: &mut PromotionStatus, revision: String, from: String, by: String| {
        let record = PromotionRecord {
            revision: revision.clone(),
            from,
            approved_by: by,
            at: now.to_owned(),
        };
        status.revision = Some(revision);
        status.pending = None;
        status.history.push(record.clone());
        let excess = status.history.len().saturating_sub(HISTORY);
        status.history.drain(..excess);
        record
    };
    if let Some(req) = request {
        let chosen = req.revision.clone().or_else(|| status.pending.clone()).or(
            match (&candidate, promotion.approval) {
                (Candidate::Ready(r), PromotionApproval::Manual) => Some(r.clone()),
                _ => None,
            },
        );
        match chosen {
            Some(rev) if status.revision.as_deref() == Some(rev.as_str()) => {
                out.refused = Some(format!("revision {} is promoted here already", short(&rev)));
            }
            Some(rev) => {
                let from = if req.revision.is_some() {
                    format!("chosen by {}", req.by)
                } else {
                    key.to_owned()
                };
                out.promoted = Some(promote(&mut status, rev, from, req.by.clone()));
            }
            None => {
                out.refused = Some(format!(
                    "nothing to promote: no candidate from {key} is pending (name a revision with --revision)"
                ));
            }
        }
    }
    match candidate {
        Candidate::Ready(rev) if status.revision.as_deref() != Some(rev.as_str()) => {
            match promotion.approval {
                // Promoted before and replaced by hand (a rollback): it does not come back by itself.
                PromotionApproval::Auto if status.history.iter().any(|h| h.revision == rev) => {
                    status.waiting = format!(
                        "candidate {} from {key} was promoted before and replaced by hand: promote it by hand",
                        short(&rev)
                    );
                }
                PromotionApproval::Auto => {
                    out.promoted = Some(promote(&mut status, rev, key.to_owned(), "auto".into()));
                    status.waiting = String::new();
                }
                PromotionApproval::Manual => {
                    status.waiting = format!(
                        "candidate {} from {key} waits for approval (kedge app promote)",
                        short(&rev)
                    );
                    status.pending = Some(rev);
                }
            }
        }
        Candidate::Ready(_) => {
            status.pending = None;
            status.waiting = String::new();
        }
        Candidate::Waiting(why, recheck) => {
            status.waiting = why;
            out.recheck = recheck;
        }
    }
    out.status = status;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::{AppDependency, ApplicationStatus, Condition, HealthCode, SyncCode};

    fn promotion(approval: PromotionApproval, soak: &str) -> Promotion {
        Promotion {
            from: AppDependency {
                name: "dev".into(),
                namespace: None,
                ready_expr: None,
            },
            soak: Some(soak.into()),
            approval,
        }
    }

    fn upstream(revision: &str, ready_since: Option<&str>) -> Application {
        let mut app = Application::new("dev", Default::default());
        app.metadata.namespace = Some("ns".into());
        let mut status = ApplicationStatus::default();
        status.sync.revision = Some(revision.into());
        status.sync.status = SyncCode::Synced;
        status.health.status = HealthCode::Healthy;
        status.conditions.push(Condition {
            type_: "Ready".into(),
            status: if ready_since.is_some() {
                "True"
            } else {
                "False"
            }
            .into(),
            reason: "Synced".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: ready_since.map(str::to_owned),
        });
        app.status = Some(status);
        app
    }

    fn at(t: &str) -> jiff::Timestamp {
        t.parse().expect("time")
    }

    #[test]
    fn a_revision_is_a_candidate_once_it_has_soaked() {
        let up = upstream("aaaaaaaaa", Some("2026-01-01T00:00:00Z"));
        let soak = Duration::from_secs(600);
        match candidate(Some(&up), "ns/dev", soak, at("2026-01-01T00:04:00Z")) {
            Candidate::Waiting(why, Some(left)) => {
                assert_eq!(left, Duration::from_secs(360));
                assert!(why.contains("soaking, 360s left"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            candidate(Some(&up), "ns/dev", soak, at("2026-01-01T00:10:00Z")),
            Candidate::Ready("aaaaaaaaa".into())
        );
    }

    #[test]
    fn the_soak_counts_from_the_deployment_of_the_revision() {
        let mut up = upstream("bbbbbbbbb", Some("2026-01-01T00:00:00Z"));
        if let Some(s) = up.status.as_mut() {
            s.history.push(kedge_api::HistoryEntry {
                id: 2,
                revision: "bbbbbbbbb".into(),
                deployed_at: "2026-01-01T01:00:00Z".into(),
                ..Default::default()
            });
        }
        let soak = Duration::from_secs(600);
        assert!(matches!(
            candidate(Some(&up), "ns/dev", soak, at("2026-01-01T01:05:00Z")),
            Candidate::Waiting(_, Some(left)) if left == Duration::from_secs(300)
        ));
    }

    #[test]
    fn an_upstream_that_is_not_ready_offers_nothing() {
        let mut up = upstream("aaaaaaaaa", None);
        if let Some(s) = up.status.as_mut() {
            s.health.status = HealthCode::Degraded;
        }
        match candidate(
            Some(&up),
            "ns/dev",
            Duration::ZERO,
            at("2026-01-01T00:00:00Z"),
        ) {
            Candidate::Waiting(why, None) => assert!(why.contains("Degraded"), "{why}"),
            other => panic!("{other:?}"),
        }
        match candidate(None, "ns/dev", Duration::ZERO, at("2026-01-01T00:00:00Z")) {
            Candidate::Waiting(why, None) => assert!(why.contains("not found"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auto_promotes_and_records() {
        let p = promotion(PromotionApproval::Auto, "0s");
        let s = step(
            &p,
            PromotionStatus::default(),
            "ns/dev",
            Candidate::Ready("aaa".into()),
            None,
            "now",
        );
        assert_eq!(s.status.revision.as_deref(), Some("aaa"));
        let record = s.promoted.expect("promoted");
        assert_eq!(
            (record.from.as_str(), record.approved_by.as_str()),
            ("ns/dev", "auto")
        );
        assert_eq!(s.status.history.len(), 1);
        // The same candidate again: nothing new.
        let again = step(
            &p,
            s.status,
            "ns/dev",
            Candidate::Ready("aaa".into()),
            None,
            "later",
        );
        assert!(again.promoted.is_none());
        assert_eq!(again.status.history.len(), 1);
    }

    #[test]
    fn manual_waits_for_approval_then_promotes_the_pending_candidate() {
        let p = promotion(PromotionApproval::Manual, "0s");
        let s = step(
            &p,
            PromotionStatus::default(),
            "ns/staging",
            Candidate::Ready("bbb".into()),
            None,
            "now",
        );
        assert_eq!(s.status.revision, None);
        assert_eq!(s.status.pending.as_deref(), Some("bbb"));
        assert!(
            s.status.waiting.contains("waits for approval"),
            "{}",
            s.status.waiting
        );
        let req = PromoteRequest {
            revision: None,
            by: "alice".into(),
            at: "t".into(),
        };
        // The upstream has since moved on to an unhealthy revision: the pending candidate is still what is approved.
        let s = step(
            &p,
            s.status,
            "ns/staging",
            Candidate::Waiting("upstream ns/staging is OutOfSync".into(), None),
            Some(&req),
            "now",
        );
        assert_eq!(s.status.revision.as_deref(), Some("bbb"));
        assert_eq!(s.status.pending, None);
        assert_eq!(s.promoted.expect("promoted").approved_by, "alice");
    }

    #[test]
    fn a_person_may_choose_a_revision_and_nothing_pending_is_refused() {
        let p = promotion(PromotionApproval::Manual, "0s");
        let req = PromoteRequest {
            revision: None,
            by: "bob".into(),
            at: "t".into(),
        };
        let s = step(
            &p,
            PromotionStatus::default(),
            "ns/staging",
            Candidate::Waiting("soaking".into(), None),
            Some(&req),
            "now",
        );
        assert!(s.refused.expect("refused").contains("nothing to promote"));
        let req = PromoteRequest {
            revision: Some("old".into()),
            by: "bob".into(),
            at: "t".into(),
        };
        let s = step(
            &p,
            s.status,
            "ns/staging",
            Candidate::Waiting("soaking".into(), None),
            Some(&req),
            "now",
        );
        assert_eq!(s.status.revision.as_deref(), Some("old"));
        assert_eq!(s.promoted.expect("promoted").from, "chosen by bob");
    }

    #[test]
    fn a_rolled_back_revision_is_not_promoted_again_by_itself() {
        let p = promotion(PromotionApproval::Auto, "0s");
        let s = step(
            &p,
            PromotionStatus::default(),
            "ns/dev",
            Candidate::Ready("new".into()),
            None,
            "t",
        );
        let req = PromoteRequest {
            revision: Some("old".into()),
            by: "carol".into(),
            at: "t".into(),
        };
        let s = step(
            &p,
            s.status,
            "ns/dev",
            Candidate::Ready("new".into()),
            Some(&req),
            "t",
        );
        assert_eq!(s.status.revision.as_deref(), Some("old"));
        assert!(
            s.status.waiting.contains("replaced by hand"),
            "{}",
            s.status.waiting
        );
    }

    #[test]
    fn history_is_bounded() {
        let p = promotion(PromotionApproval::Auto, "0s");
        let mut status = PromotionStatus::default();
        for i in 0..15 {
            status = step(
                &p,
                status,
                "ns/dev",
                Candidate::Ready(format!("r{i}")),
                None,
                "t",
            )
            .status;
        }
        assert_eq!(status.history.len(), HISTORY);
        assert_eq!(status.history[0].revision, "r5");
    }
}
