//! RollingSync: which Applications of a set may sync the revision they are out of sync with, step by step.
//!
//! Pure: the controller gives each Application's labels and state (what its status says) and gets back, for each,
//! the revision it may sync (its release), the step it belongs to and why it waits. A step starts when every
//! Application of the steps before it is Synced and Healthy at its revision; within a step at most `maxUpdate` are
//! released at a time; an Application released and then Degraded (or whose sync failed) stops the rollout until it
//! is fixed or skipped. Applications already Synced and Healthy are released at their revision whatever their step,
//! so that self-heal keeps working for them.

use std::collections::{BTreeMap, BTreeSet};

use kedge_api::{HealthCode, LabelSelector, RollingSyncStep};

use crate::selector_matches;

/// What the rollout needs to know of one Application.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its labels (what steps select on).
    pub labels: &'a BTreeMap<String, String>,
    /// The revision it is compared against (`status.sync.revision`), once compared.
    pub revision: Option<&'a str>,
    /// `status.sync.status` is `Synced`.
    pub synced: bool,
    /// `status.health.status`.
    pub health: HealthCode,
    /// An operation is running.
    pub operating: bool,
    /// Its last operation failed.
    pub failed: bool,
    /// The revision the rollout released it for before.
    pub released: Option<&'a str>,
    /// What it deploys from (its repository and target revision, any stable key): Applications of one source must
    /// report the same commit before any of them counts as done at it.
    pub source: Option<&'a str>,
}

impl Member<'_> {
    fn done(&self) -> bool {
        self.revision.is_some()
            && self.synced
            && self.health == HealthCode::Healthy
            && !self.operating
    }

    fn released_now(&self) -> bool {
        self.revision.is_some() && self.released == self.revision
    }

    /// Released for its revision and broken: what stops a rollout.
    fn broken(&self) -> Option<String> {
        if !self.released_now() || self.done() || self.operating {
            return None;
        }
        if self.failed {
            Some("its sync failed".to_owned())
        } else if self.health == HealthCode::Degraded {
            Some("it is Degraded".to_owned())
        } else {
            None
        }
    }
}

/// Where one Application stands in the rollout (Argo CD's `status.applicationStatus[].status`, plus `Degraded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Its step has not started, or the step's `maxUpdate` holds it back.
    Waiting,
    /// Released: syncing or becoming healthy.
    Progressing,
    /// Synced and Healthy at its revision.
    Healthy,
    /// Released and Degraded, or its sync failed: the rollout waits for it.
    Degraded,
}

impl MemberState {
    /// The name in status.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Waiting => "Waiting",
            MemberState::Progressing => "Progressing",
            MemberState::Healthy => "Healthy",
            MemberState::Degraded => "Degraded",
        }
    }
}

/// The verdict for one Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The Application.
    pub name: String,
    /// Its step, from 1; `None` when no step selects it (it is then synced by hand only).
    pub step: Option<usize>,
    /// The revision it may sync (automated syncs of any other revision wait).
    pub release: Option<String>,
    /// Where it stands.
    pub state: MemberState,
    /// Why it waits, or what it does.
    pub message: String,
}

/// The rollout as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// One verdict per Application, in the order given.
    pub members: Vec<Verdict>,
    /// The step in progress (from 1); `None` when every step is done.
    pub step: Option<usize>,
    /// Why the rollout stopped, naming the Applications, when it did.
    pub stopped: Option<String>,
}

/// An invalid `maxUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.strategy.rollingSync.steps[{step}].maxUpdate: {message}")]
pub struct MaxUpdateError {
    /// The step's index (from 0).
    pub step: usize,
    /// What is wrong.
    pub message: String,
}

/// How many Applications of a step of `size` may be released at once: all when unset, `n`, or `p%` of them rounded
/// down but at least one when `p` is above 0.
pub fn max_update(
    value: Option<&serde_json::Value>,
    size: usize,
    step: usize,
) -> Result<usize, MaxUpdateError> {
    let bad = |message: String| MaxUpdateError { step, message };
    match value {
        None => Ok(size),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| bad(format!("{n} is not a whole number of 0 or more"))),
        Some(serde_json::Value::String(s)) => {
            let Some(p) = s.strip_suffix('%') else {
                return s
                    .parse::<usize>()
                    .map_err(|_| bad(format!("{s:?} is neither a number nor a percentage")));
            };
            let p: usize = p
                .parse()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| bad(format!("{s:?} is not a percentage from 0% to 100%")))?;
            Ok(if p == 0 { 0 } else { (size * p / 100).max(1) })
        }
        Some(other) => Err(bad(format!("{other} is neither a number nor a percentage"))),
    }
}

/// Checks the steps: their selectors and `maxUpdate`.
pub fn validate(steps: &[RollingSyncStep]) -> Result<(), MaxUpdateError> {
    for (i, step) in steps.iter().enumerate() {
        max_update(step.max_update.as_ref(), 1, i)?;
        for (j, r) in step.match_expressions.iter().enumerate() {
            if !matches!(
                r.operator.as_str(),
                "In" | "NotIn" | "Exists" | "DoesNotExist"
            ) {
                return Err(MaxUpdateError {
                    step: i,
                    message: format!(
                        "matchExpressions[{j}].operator: unknown operator {:?} (In, NotIn, Exists, DoesNotExist)",
                        r.operator
                    ),
                });
            }
        }
    }
    Ok(())
}

fn step_of(steps: &[RollingSyncStep], labels: &BTreeMap<String, String>) -> Option<usize> {
    steps.iter().position(|s| {
        selector_matches(
            &LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: s.match_expressions.clone(),
            },
            labels,
        )
    })
}

/// Names, at most 10, then how many more.
fn names(list: &[&str]) -> String {
    let mut out = list.iter().take(10).copied().collect::<Vec<_>>().join(", ");
    if list.len() > 10 {
        out.push_str(&format!(" and {} more", list.len() - 10));
    }
    out
}

/// The rollout of `members` over `steps`. `skipped` holds `name@revision` pairs a person let the rollout pass
/// although they were Degraded (`kedge appset rollout NAME --resume`).
pub fn plan(
    steps: &[RollingSyncStep],
    members: &[Member<'_>],
    skipped: &BTreeSet<String>,
) -> Result<Rollout, MaxUpdateError> {
    // A new commit reaches the Applications of one source one after another: while some still report the commit
    // before, they have not been compared with the new one, and none of them is done (or could be released) at
    // either commit yet.
    let mut commits: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for m in members {
        if let (Some(source), Some(revision)) = (m.source, m.revision) {
            commits.entry(source).or_default().insert(revision);
        }
    }
    let unsettled: BTreeMap<&str, String> = commits
        .into_iter()
        .filter(|(_, revisions)| revisions.len() > 1)
        .map(|(source, revisions)| {
            let short: Vec<&str> = revisions.iter().map(|r| &r[..r.len().min(7)]).collect();
            (source, short.join(", "))
        })
        .collect();
    let members: Vec<Member<'_>> = members
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if m.source.is_some_and(|s| unsettled.contains_key(s)) {
                m.revision = None;
            }
            m
        })
        .collect();
    let not_compared = |m: &Member<'_>| match m.source.and_then(|s| unsettled.get(s)) {
        Some(commits) => format!(
            "not compared with the newest commit yet: the Applications of its source report {commits}"
        ),
        None => "not compared yet".to_owned(),
    };
    let members = members.as_slice();
    let step_of_member: Vec<Option<usize>> =
        members.iter().map(|m| step_of(steps, m.labels)).collect();
    let is_skipped = |m: &Member<'_>| {
        m.revision
            .is_some_and(|r| skipped.contains(&format!("{}@{r}", m.name)))
    };
    let passed = |m: &Member<'_>| m.done() || is_skipped(m);
    let mut verdicts: Vec<Verdict> = members
        .iter()
        .zip(&step_of_member)
        .map(|(m, step)| {
            let (release, state, message) = if m.done() {
                (
                    m.revision.map(str::to_owned),
                    MemberState::Healthy,
                    "Synced and Healthy".to_owned(),
                )
            } else if m.released_now() {
                let state = if m.broken().is_some() && !is_skipped(m) {
                    MemberState::Degraded
                } else {
                    MemberState::Progressing
                };
                let message = match (m.broken(), is_skipped(m)) {
                    (Some(why), true) => format!("{why}; skipped by a person, the rollout went on"),
                    (Some(why), false) => format!("{why}: the rollout waits until it is fixed"),
                    (None, _) => "released: syncing and becoming healthy".to_owned(),
                };
                (m.released.map(str::to_owned), state, message)
            } else {
                (
                    m.released.map(str::to_owned),
                    MemberState::Waiting,
                    if step.is_none() {
                        "no step of the rollout selects it: sync it by hand".to_owned()
                    } else {
                        String::new()
                    },
                )
            };
            Verdict {
                name: m.name.to_owned(),
                step: step.map(|s| s + 1),
                release,
                state,
                message,
            }
        })
        .collect();
    let mut current = None;
    let mut stopped = None;
    for (s, step) in steps.iter().enumerate() {
        let in_step: Vec<usize> = (0..members.len())
            .filter(|i| step_of_member[*i] == Some(s))
            .collect();
        let pending: Vec<usize> = in_step
            .iter()
            .copied()
            .filter(|i| !passed(&members[*i]))
            .collect();
        if pending.is_empty() {
            continue;
        }
        current = Some(s + 1);
        let broken: Vec<String> = pending
            .iter()
            .filter_map(|i| {
                members[*i]
                    .broken()
                    .map(|why| format!("{} ({why})", members[*i].name))
            })
            .collect();
        if !broken.is_empty() {
            stopped = Some(format!(
                "step {} of {}: {}; fix it, or let the rollout pass it with `kedge appset rollout NAME --resume`",
                s + 1,
                steps.len(),
                broken.join(", ")
            ));
        }
        let limit = max_update(step.max_update.as_ref(), in_step.len(), s)?;
        let in_flight = pending
            .iter()
            .filter(|i| members[**i].released_now())
            .count();
        let mut room = if stopped.is_some() {
            0
        } else {
            limit.saturating_sub(in_flight)
        };
        let mut order: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|i| !members[*i].released_now())
            .collect();
        order.sort_by_key(|i| members[*i].name);
        let syncing = in_flight + room.min(order.len());
        for i in order {
            let m = &members[i];
            let v = &mut verdicts[i];
            if room > 0 && m.revision.is_some() {
                room -= 1;
                v.release = m.revision.map(str::to_owned);
                v.state = MemberState::Progressing;
                v.message = "released: syncing and becoming healthy".to_owned();
            } else if m.revision.is_none() {
                v.message = not_compared(m);
            } else if stopped.is_some() {
                v.message = format!("step {} stopped: {}", s + 1, broken.join(", "));
            } else if limit == 0 {
                v.message = format!("step {} has maxUpdate 0: sync it by hand", s + 1);
            } else {
                v.message = format!(
                    "step {}: at most {limit} at a time, {syncing} syncing",
                    s + 1
                );
            }
        }
        let waiting_on: Vec<&str> = pending.iter().map(|i| members[*i].name).collect();
        for (i, v) in verdicts.iter_mut().enumerate() {
            if step_of_member[i].is_some_and(|t| t > s) && v.state == MemberState::Waiting {
                v.message = format!(
                    "waiting for step {} of {}: {} not yet Synced and Healthy",
                    s + 1,
                    steps.len(),
                    names(&waiting_on)
                );
            }
        }
        break;
    }
    Ok(Rollout {
        members: verdicts,
        step: current,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::LabelSelectorRequirement;

    fn step(env: &str, max: Option<serde_json::Value>) -> RollingSyncStep {
        RollingSyncStep {
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: vec![env.into()],
            }],
            max_update: max,
        }
    }

    struct App {
        name: String,
        labels: BTreeMap<String, String>,
        revision: Option<String>,
        synced: bool,
        health: HealthCode,
        failed: bool,
        released: Option<String>,
        source: Option<String>,
    }

    fn app(name: &str, env: &str) -> App {
        App {
            name: name.into(),
            labels: BTreeMap::from([("env".to_owned(), env.to_owned())]),
            revision: Some("new".into()),
            synced: false,
            health: HealthCode::Healthy,
            failed: false,
            released: Some("old".into()),
            source: Some("repo#main".into()),
        }
    }

    fn members(apps: &[App]) -> Vec<Member<'_>> {
        apps.iter()
            .map(|a| Member {
                name: &a.name,
                labels: &a.labels,
                revision: a.revision.as_deref(),
                synced: a.synced,
                health: a.health,
                operating: false,
                failed: a.failed,
                released: a.released.as_deref(),
                source: a.source.as_deref(),
            })
            .collect()
    }

    fn released(r: &Rollout) -> Vec<&str> {
        r.members
            .iter()
            .filter(|v| v.release.as_deref() == Some("new"))
            .map(|v| v.name.as_str())
            .collect()
    }

    #[test]
    fn a_new_revision_reaches_the_first_step_only() {
        let steps = [step("dev", None), step("prod", None)];
        let apps = [app("a-dev", "dev"), app("b-prod", "prod")];
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["a-dev"]);
        assert_eq!(r.step, Some(1));
        assert_eq!(r.members[1].state, MemberState::Waiting);
        assert!(
            r.members[1]
                .message
                .contains("waiting for step 1 of 2: a-dev"),
            "{}",
            r.members[1].message
        );
    }

    #[test]
    fn the_next_step_starts_when_the_first_is_synced_and_healthy() {
        let steps = [step("dev", None), step("prod", None)];
        let mut apps = [app("a-dev", "dev"), app("b-prod", "prod")];
        apps[0].synced = true;
        apps[0].released = Some("new".into());
        apps[0].health = HealthCode::Progressing;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["a-dev"], "still progressing");
        apps[0].health = HealthCode::Healthy;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["a-dev", "b-prod"]);
        assert_eq!(r.step, Some(2));
    }

    #[test]
    fn max_update_bounds_the_releases_of_a_step() {
        let steps = [step("prod", Some(serde_json::json!("50%")))];
        let mut apps = vec![];
        for i in 0..5 {
            apps.push(app(&format!("p{i}"), "prod"));
        }
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["p0", "p1"], "50% of 5, rounded down");
        // Two in flight: no room for more until one is done.
        apps[0].released = Some("new".into());
        apps[1].released = Some("new".into());
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["p0", "p1"]);
        apps[0].synced = true;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["p0", "p1", "p2"]);
    }

    #[test]
    fn max_update_reads_numbers_and_percentages() {
        let n = |v: serde_json::Value, size| max_update(Some(&v), size, 0);
        assert_eq!(max_update(None, 7, 0), Ok(7));
        assert_eq!(n(serde_json::json!(2), 7), Ok(2));
        assert_eq!(n(serde_json::json!("10%"), 7), Ok(1), "floored at one");
        assert_eq!(n(serde_json::json!("0%"), 7), Ok(0));
        assert_eq!(n(serde_json::json!("100%"), 7), Ok(7));
        assert!(n(serde_json::json!("120%"), 7).is_err());
        assert!(n(serde_json::json!(-1), 7).is_err());
        assert!(n(serde_json::json!("many"), 7).is_err());
    }

    #[test]
    fn a_degraded_application_stops_the_rollout_until_skipped() {
        let steps = [step("dev", None), step("prod", None)];
        let mut apps = [app("a-dev", "dev"), app("b-prod", "prod")];
        apps[0].released = Some("new".into());
        apps[0].synced = true;
        apps[0].health = HealthCode::Degraded;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["a-dev"]);
        assert_eq!(r.members[0].state, MemberState::Degraded);
        let stopped = r.stopped.expect("stopped");
        assert!(
            stopped.contains("step 1 of 2: a-dev (it is Degraded)"),
            "{stopped}"
        );
        let skipped = BTreeSet::from(["a-dev@new".to_owned()]);
        let r = plan(&steps, &members(&apps), &skipped).expect("plan");
        assert_eq!(r.stopped, None);
        assert_eq!(released(&r), ["a-dev", "b-prod"]);
    }

    #[test]
    fn a_failed_sync_stops_the_step_from_releasing_more() {
        let steps = [step("prod", Some(serde_json::json!(1)))];
        let mut apps = [app("p0", "prod"), app("p1", "prod")];
        apps[0].released = Some("new".into());
        apps[0].failed = true;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["p0"]);
        assert!(
            r.members[1].message.contains("stopped"),
            "{:?}",
            r.members[1]
        );
    }

    #[test]
    fn a_fix_commit_releases_again() {
        let steps = [step("dev", None)];
        let mut apps = [app("a-dev", "dev")];
        apps[0].released = Some("broken".into());
        apps[0].health = HealthCode::Degraded;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["a-dev"]);
        assert_eq!(r.stopped, None);
    }

    #[test]
    fn healthy_applications_are_released_at_their_revision_whatever_their_step() {
        let steps = [step("dev", None), step("prod", None)];
        let mut apps = [app("a-dev", "dev"), app("b-prod", "prod")];
        // The commit did not change what prod renders: it is Synced at the new revision without a sync.
        apps[1].synced = true;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert_eq!(released(&r), ["a-dev", "b-prod"]);
        assert_eq!(r.members[1].state, MemberState::Healthy);
    }

    #[test]
    fn applications_no_step_selects_wait_for_a_person() {
        let steps = [step("dev", None)];
        let apps = [app("x", "qa")];
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert!(released(&r).is_empty());
        assert_eq!(r.members[0].step, None);
        assert!(
            r.members[0].message.contains("no step"),
            "{:?}",
            r.members[0]
        );
    }

    #[test]
    fn max_update_zero_waits_for_syncs_by_hand() {
        let steps = [step("qa", Some(serde_json::json!(0)))];
        let apps = [app("q", "qa")];
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert!(released(&r).is_empty());
        assert!(
            r.members[0].message.contains("maxUpdate 0"),
            "{:?}",
            r.members[0]
        );
    }

    #[test]
    fn an_application_not_yet_compared_with_the_new_commit_is_not_done_at_the_old_one() {
        let steps = [step("dev", None), step("staging", None), step("prod", None)];
        let mut apps = [
            app("a-dev", "dev"),
            app("b-staging", "staging"),
            app("c-prod", "prod"),
        ];
        // dev and staging still report v1, Synced and Healthy; prod has been compared with v2 already.
        for a in &mut apps[..2] {
            a.revision = Some("v1".into());
            a.released = Some("v1".into());
            a.synced = true;
        }
        apps[2].revision = Some("v2".into());
        apps[2].released = Some("v1".into());
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        assert!(r.members.iter().all(|v| v.release.as_deref() != Some("v2")));
        assert_eq!(r.step, Some(1), "{r:?}");
        assert!(
            r.members[0].message.contains("report v1, v2"),
            "{:?}",
            r.members[0]
        );
        // Once dev is compared with v2, dev alone is released for it.
        apps[0].revision = Some("v2".into());
        apps[0].synced = false;
        apps[1].revision = Some("v2".into());
        apps[1].synced = false;
        let r = plan(&steps, &members(&apps), &BTreeSet::new()).expect("plan");
        let v2: Vec<&str> = r
            .members
            .iter()
            .filter(|v| v.release.as_deref() == Some("v2"))
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(v2, ["a-dev"]);
    }
}
