//! Promotion between stages (`spec.promotion`) in the API and UI: approving a stage's pending candidate, or
//! promoting a revision of one's choice, as `kedge app promote` does (the [`PROMOTE_ANNOTATION`], which the
//! controller takes, records and clears), and the chain of stages an application belongs to, as far as the caller
//! may see it.
//!
//! Promoting writes to the application, so it takes the `sync` action of the project roles, as sync, rollback and
//! refresh do. The chain names a stage the caller may not see only where a stage they see names it as its upstream,
//! and then as hidden, with nothing of its state; hidden stages further down are left out.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use kedge_api::{
    AppAction, Application, HealthCode, PROMOTE_ANNOTATION, PromoteRequest, PromotionApproval,
    PromotionRecord, SyncCode,
};
use kedge_controller::promotion::upstream_key;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ops;

/// The fewest hex digits of a commit SHA accepted (Git's default abbreviation).
pub const MIN_SHORT_SHA: usize = 7;

/// How often a request is written again when the application changed between its check and its write.
const WRITE_ATTEMPTS: usize = 5;

/// A promotion asked for: the pending candidate (no revision), or a revision of the caller's choice.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteBody {
    /// The commit (its 40 hex digits, or at least the first 7) to promote instead of the pending candidate: a
    /// rollback of the stage, or a stage skipped on purpose.
    #[serde(default)]
    pub revision: Option<String>,
    /// The pending candidate the caller approves, as they were shown it: refused when another one is pending now.
    #[serde(default)]
    pub candidate: Option<String>,
}

/// A promotion request written for the controller.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteAccepted {
    /// `namespace/name` of the stage.
    pub application: String,
    /// The request as written in the annotation.
    pub request: PromoteRequest,
    /// The revision it promotes: the one named, or the pending candidate.
    pub revision: String,
    /// Whether it approves the pending candidate (rather than a revision of the caller's choice).
    pub candidate: bool,
}

fn key_of(app: &Application) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// The first 7 characters of a SHA.
pub fn short(sha: &str) -> &str {
    sha.get(..MIN_SHORT_SHA).unwrap_or(sha)
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// A commit SHA as given (full, or at least [`MIN_SHORT_SHA`] hex digits), lowercased; 400 otherwise.
fn parse_revision(r: &str) -> Result<String, ApiError> {
    if (MIN_SHORT_SHA..=40).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(r.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(format!(
            "revision {r:?} is not a commit SHA: give its 40 hex digits, or at least the first {MIN_SHORT_SHA}"
        )))
    }
}

/// The revisions known around a stage: what it and its upstream run, ran, were offered and promoted.
fn known_revisions(app: &Application, upstream: Option<&Application>) -> Vec<String> {
    let mut out = Vec::new();
    for status in [Some(app), upstream]
        .into_iter()
        .flatten()
        .filter_map(|a| a.status.as_ref())
    {
        out.extend(status.sync.revision.clone());
        out.extend(status.history.iter().map(|h| h.revision.clone()));
        if let Some(p) = &status.promotion {
            out.extend(p.revision.clone());
            out.extend(p.pending.clone());
            out.extend(p.history.iter().map(|h| h.revision.clone()));
        }
    }
    out
}

/// A short SHA made full when exactly one full revision of `known` starts with it; otherwise as given (the
/// controller resolves it in the repository).
fn expand(revision: String, known: &[String]) -> String {
    if revision.len() == 40 {
        return revision;
    }
    let matches: BTreeSet<String> = known
        .iter()
        .filter(|k| k.len() == 40)
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| k.starts_with(&revision))
        .collect();
    match matches.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => one.clone(),
        _ => revision,
    }
}

/// What a promotion of `app` may ask, checked against the stage as it is now: the revision to write in the request
/// (none: the pending candidate) and the revision it promotes.
fn check(
    app: &Application,
    upstream: Option<&Application>,
    body: &PromoteBody,
) -> Result<(Option<String>, String), ApiError> {
    let key = key_of(app);
    if app.spec.promotion.is_none() {
        return Err(ApiError::bad_request(format!(
            "application {key} has no spec.promotion: it deploys its own targetRevision"
        )));
    }
    let named = non_empty(body.revision.as_deref());
    let candidate = non_empty(body.candidate.as_deref());
    if named.is_some() && candidate.is_some() {
        return Err(ApiError::bad_request(
            "give either revision (a commit of your choice) or candidate (the pending one you approve), not both",
        ));
    }
    let revision = match named {
        Some(r) => Some(expand(parse_revision(r)?, &known_revisions(app, upstream))),
        None => None,
    };
    if let Some(raw) = app.annotations().get(PROMOTE_ANNOTATION) {
        let who = match serde_json::from_str::<PromoteRequest>(raw) {
            Ok(r) => format!(
                " by {} at {}{}",
                r.by,
                r.at,
                r.revision
                    .as_deref()
                    .map(|rev| format!(" (revision {})", short(rev)))
                    .unwrap_or_default()
            ),
            Err(_) => String::new(),
        };
        return Err(ApiError::conflict(format!(
            "a promotion of {key} was requested{who} and the controller has not taken it yet: wait until it has, \
             then look again"
        )));
    }
    let status = app
        .status
        .as_ref()
        .and_then(|s| s.promotion.clone())
        .unwrap_or_default();
    let promoted = match (&revision, &status.pending) {
        (Some(r), _) => r.clone(),
        (None, Some(pending)) => {
            if let Some(c) = candidate {
                let c = c.to_ascii_lowercase();
                if c.len() < MIN_SHORT_SHA || !pending.to_ascii_lowercase().starts_with(&c) {
                    return Err(ApiError::conflict(format!(
                        "the candidate waiting for approval on {key} is now {}, not {}: look again before \
                         approving",
                        short(pending),
                        short(&c)
                    )));
                }
            }
            pending.clone()
        }
        (None, None) => {
            return Err(ApiError::conflict(format!(
                "application {key} has no candidate waiting for approval{} (name a revision to promote one of \
                 your choice)",
                if status.waiting.is_empty() {
                    String::new()
                } else {
                    format!(": {}", status.waiting)
                }
            )));
        }
    };
    if status
        .revision
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(&promoted))
    {
        return Err(ApiError::conflict(format!(
            "revision {} is promoted to {key} already",
            short(&promoted)
        )));
    }
    Ok((revision, promoted))
}

/// Asks the controller to promote to the stage `namespace/name` its pending candidate or the revision named; returns
/// what was written. 403 without the `sync` right, 404 when the application does not exist, 400 when it has no
/// `spec.promotion` or the revision is not a commit SHA, 409 when there is nothing pending to approve (and no
/// revision named), another candidate is pending than the one approved, a request is not taken yet, or the revision
/// is promoted there already.
pub async fn promote(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
    name: &str,
    body: PromoteBody,
) -> Result<PromoteAccepted, ApiError> {
    access::authorize(state, caller, AppAction::Sync, namespace, name)?;
    let api = ops::api(state, namespace);
    let what = format!("request the promotion of {namespace}/{name}");
    let mut attempt = 0;
    let (app, revision, promoted, request) = loop {
        attempt += 1;
        // Checked against the application as stored, not as cached: a request just written, or one just taken,
        // may not be in the cache yet.
        let app = api
            .get_opt(name)
            .await
            .map_err(|e| ApiError::kube(&what, &e))?
            .ok_or_else(|| {
                ApiError::not_found(format!("application {namespace}/{name} not found"))
            })?;
        let upstream = app.spec.promotion.as_ref().and_then(|p| {
            let key = upstream_key(&app, p);
            let (ns, n) = key.split_once('/')?;
            ops::find(state, ns, n)
                .ok()
                .filter(|u| access::can(state, caller, AppAction::Get, u))
        });
        let (revision, promoted) = check(&app, upstream.as_deref(), &body)?;
        let request = PromoteRequest {
            revision: revision.clone(),
            by: caller.user.clone(),
            at: ops::now(),
        };
        let raw = serde_json::to_string(&request)
            .map_err(|e| ApiError::internal(format!("failed to {what}: {e}")))?;
        // Written over the version checked only: a request or a candidate that came in between is checked again.
        let patch = json!({ "metadata": {
            "resourceVersion": app.resource_version(),
            "annotations": { PROMOTE_ANNOTATION: raw },
        } });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break (app, revision, promoted, request),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(ApiError::kube(&what, &e)),
        }
    };
    ops::trigger(state, namespace, name);
    tracing::info!(app = %format!("{namespace}/{name}"), user = %caller.user, revision = %promoted, "promotion requested");
    let message = match (&revision, &app.spec.promotion) {
        (None, Some(p)) => format!(
            "{} approved the promotion of candidate {} from {}",
            caller.user,
            short(&promoted),
            upstream_key(&app, p)
        ),
        _ => format!(
            "{} requested the promotion of revision {}",
            caller.user,
            short(&promoted)
        ),
    };
    state.audit(&app, "PromotionRequested", &message).await;
    Ok(PromoteAccepted {
        application: format!("{namespace}/{name}"),
        request,
        revision: promoted,
        candidate: revision.is_none(),
    })
}

/// The chain of stages around an application.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    /// The stages upstream of the application (first stage first), the application, then the stages promoted from
    /// it and from those, by column.
    pub stages: Vec<Stage>,
    /// What is wrong with the chain (a loop), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Chain {
    /// Whether the application is a stage of a chain: it has `spec.promotion`, or a stage the caller sees is
    /// promoted from it.
    pub fn is_pipeline(&self) -> bool {
        self.stages.len() > 1
            || self
                .stages
                .iter()
                .any(|s| s.detail.as_ref().is_some_and(|d| d.approval.is_some()))
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.stages.iter().map(|s| s.column + 1).max().unwrap_or(0)
    }
}

/// One stage, as the caller may see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `namespace/name` of the stage it is promoted from (none for a first stage, and for a hidden one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Its place from the left, 0 for the first stage shown.
    pub column: usize,
    /// The application asked about.
    pub current: bool,
    /// The caller may not see it: only its name, as the stage after it names it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// It does not exist (told only to callers who see every application).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// Its state (absent when hidden or missing).
    #[serde(flatten)]
    pub detail: Option<StageDetail>,
}

/// The state of a stage the caller sees.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDetail {
    /// Sync state.
    pub sync: SyncCode,
    /// Health.
    pub health: HealthCode,
    /// Whether an operation (a sync) runs.
    pub operation_running: bool,
    /// What the stage runs: the revision promoted there (a stage with `spec.promotion`), or the one it is synced to
    /// (a first stage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision it is synced to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_revision: Option<String>,
    /// `Auto` or `Manual` for a stage with `spec.promotion`; absent for a first stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<PromotionApproval>,
    /// Its soak (`spec.promotion.soak`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    /// The candidate waiting for approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// Why the next revision waits.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub waiting: String,
    /// A promotion requested and not yet taken by the controller (`by` empty when the request cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<PromoteRequest>,
    /// The last promotions, newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PromotionRecord>,
    /// Whether the caller may promote to it (it has `spec.promotion` and they hold `sync` on it).
    pub may_promote: bool,
}

fn detail(state: &AppState, caller: &Caller, app: &Application) -> StageDetail {
    let status = app.status.clone().unwrap_or_default();
    let promotion = status.promotion.clone().unwrap_or_default();
    let spec = app.spec.promotion.as_ref();
    StageDetail {
        sync: status.sync.status,
        health: status.health.status,
        operation_running: status
            .operation_state
            .as_ref()
            .is_some_and(|o| !o.phase.is_completed()),
        revision: if spec.is_some() {
            promotion.revision.clone()
        } else {
            status.sync.revision.clone()
        },
        synced_revision: status.sync.revision.clone(),
        approval: spec.map(|p| p.approval),
        soak: spec.and_then(|p| p.soak.clone()).filter(|s| !s.is_empty()),
        pending: promotion.pending.clone(),
        waiting: promotion.waiting.clone(),
        requested: app.annotations().get(PROMOTE_ANNOTATION).map(|raw| {
            serde_json::from_str(raw).unwrap_or(PromoteRequest {
                revision: None,
                by: String::new(),
                at: String::new(),
            })
        }),
        history: promotion.history.iter().rev().cloned().collect(),
        may_promote: spec.is_some() && access::can(state, caller, AppAction::Sync, app),
    }
}

/// The chain around `app` as `caller` may see it: up along `spec.promotion.from` until the first stage (or one
/// they may not see, named hidden), then down to every stage promoted from it that they see, and from those.
pub fn chain(state: &AppState, caller: &Caller, app: &Application) -> Chain {
    let all = state.handles().store.state();
    let sees = |a: &Application| access::can(state, caller, AppAction::Get, a);
    let by_key: HashMap<String, &Application> = all.iter().map(|a| (key_of(a), &**a)).collect();
    let mut downstream: HashMap<String, Vec<&Application>> = HashMap::new();
    for a in &all {
        if let Some(p) = &a.spec.promotion {
            downstream.entry(upstream_key(a, p)).or_default().push(a);
        }
    }
    for stages in downstream.values_mut() {
        stages.sort_by_cached_key(|a| key_of(a));
    }

    enum Up<'a> {
        Seen(&'a Application),
        Hidden(String),
        Missing(String),
    }
    let own = key_of(app);
    let mut seen = HashSet::from([own.clone()]);
    let mut problem = None;
    let mut ups: Vec<Up> = Vec::new();
    let mut cur = app;
    while let Some(p) = &cur.spec.promotion {
        let up = upstream_key(cur, p);
        if !seen.insert(up.clone()) {
            problem = Some(format!("the promotion chain loops back to {up}"));
            break;
        }
        match by_key.get(&up) {
            Some(a) if sees(a) => {
                ups.push(Up::Seen(a));
                cur = a;
            }
            None if access::sees_everything(caller) => {
                ups.push(Up::Missing(up));
                break;
            }
            _ => {
                ups.push(Up::Hidden(up));
                break;
            }
        }
    }

    let visible = |a: &Application, column: usize, current: bool| Stage {
        namespace: a.namespace().unwrap_or_default(),
        name: a.name_any(),
        upstream: a.spec.promotion.as_ref().map(|p| upstream_key(a, p)),
        column,
        current,
        hidden: false,
        missing: false,
        detail: Some(detail(state, caller, a)),
    };
    let mut stages = Vec::new();
    for (column, up) in ups.iter().rev().enumerate() {
        stages.push(match up {
            Up::Seen(a) => visible(a, column, false),
            Up::Hidden(key) | Up::Missing(key) => {
                let (namespace, name) = key.split_once('/').unwrap_or(("", key));
                Stage {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    upstream: None,
                    column,
                    current: false,
                    hidden: matches!(up, Up::Hidden(_)),
                    missing: matches!(up, Up::Missing(_)),
                    detail: None,
                }
            }
        });
    }
    stages.push(visible(app, ups.len(), true));
    let mut queue = VecDeque::from([(own, ups.len())]);
    while let Some((key, column)) = queue.pop_front() {
        for next in downstream.get(&key).into_iter().flatten() {
            if !sees(next) {
                continue;
            }
            let next_key = key_of(next);
            if !seen.insert(next_key.clone()) {
                problem
                    .get_or_insert_with(|| format!("the promotion chain loops back to {next_key}"));
                continue;
            }
            stages.push(visible(next, column + 1, false));
            queue.push_back((next_key, column + 1));
        }
    }
    Chain { stages, problem }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::{ApplicationStatus, PromotionStatus};

    const DEV_SHA: &str = "4f2c9e1d0b4f2c9e1d0b4f2c9e1d0b4f2c9e1d0b";
    const OLD_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn stage(promotion: Option<PromotionStatus>, annotation: Option<&str>) -> Application {
        let mut app: Application = serde_json::from_value(json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": { "name": "prod", "namespace": "kedge" },
            "spec": {
                "source": { "repoURL": "https://git.example/shop.git", "targetRevision": "main", "path": "prod" },
                "destination": { "namespace": "shop" },
                "promotion": { "from": { "name": "dev" }, "approval": "Manual" },
            },
        }))
        .expect("application");
        if let Some(raw) = annotation {
            app.annotations_mut()
                .insert(PROMOTE_ANNOTATION.into(), raw.into());
        }
        app.status = Some(ApplicationStatus {
            promotion: promotion.map(Box::new),
            ..Default::default()
        });
        app
    }

    fn pending(sha: &str) -> Option<PromotionStatus> {
        Some(PromotionStatus {
            revision: Some(OLD_SHA.into()),
            pending: Some(sha.into()),
            waiting: "candidate waits for approval".into(),
            history: Vec::new(),
        })
    }

    fn body(revision: Option<&str>, candidate: Option<&str>) -> PromoteBody {
        PromoteBody {
            revision: revision.map(str::to_owned),
            candidate: candidate.map(str::to_owned),
        }
    }

    #[test]
    fn the_pending_candidate_is_approved_as_shown() {
        let app = stage(pending(DEV_SHA), None);
        assert_eq!(
            check(&app, None, &body(None, None)).expect("approved"),
            (None, DEV_SHA.to_owned())
        );
        assert_eq!(
            check(&app, None, &body(None, Some(&DEV_SHA[..9]))).expect("approved"),
            (None, DEV_SHA.to_owned())
        );
        let other = check(&app, None, &body(None, Some(OLD_SHA))).expect_err("another candidate");
        assert_eq!(other.status, http::StatusCode::CONFLICT);
        assert!(
            other.message.contains("is now 4f2c9e1"),
            "{}",
            other.message
        );
    }

    #[test]
    fn refusals_say_why() {
        let mut plain = stage(None, None);
        plain.spec.promotion = None;
        let e = check(&plain, None, &body(None, None)).expect_err("no promotion");
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("has no spec.promotion"), "{}", e.message);

        let nothing = stage(
            Some(PromotionStatus {
                waiting: "upstream kedge/dev is OutOfSync and Progressing".into(),
                ..Default::default()
            }),
            None,
        );
        let e = check(&nothing, None, &body(None, None)).expect_err("nothing pending");
        assert_eq!(e.status, http::StatusCode::CONFLICT);
        assert!(
            e.message
                .contains("no candidate waiting for approval: upstream kedge/dev is OutOfSync"),
            "{}",
            e.message
        );

        let raw = json!({ "by": "bob", "at": "2026-01-01T00:00:00Z" }).to_string();
        let taken = stage(pending(DEV_SHA), Some(&raw));
        let e = check(&taken, None, &body(None, None)).expect_err("a request waits");
        assert_eq!(e.status, http::StatusCode::CONFLICT);
        assert!(e.message.contains("requested by bob"), "{}", e.message);

        let app = stage(pending(DEV_SHA), None);
        for bad in ["main", "4f2c9e", "4f2c9e1g", &format!("{DEV_SHA}0")] {
            let e = check(&app, None, &body(Some(bad), None)).expect_err(bad);
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.contains("is not a commit SHA"), "{}", e.message);
        }
        let e = check(&app, None, &body(Some(OLD_SHA), None)).expect_err("promoted already");
        assert_eq!(e.status, http::StatusCode::CONFLICT);
        assert!(
            e.message.contains("promoted to kedge/prod already"),
            "{}",
            e.message
        );
        let e = check(&app, None, &body(Some(OLD_SHA), Some(DEV_SHA))).expect_err("both");
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_short_revision_is_made_full_from_what_the_stages_ran() {
        let app = stage(
            Some(PromotionStatus {
                revision: Some(DEV_SHA.into()),
                ..Default::default()
            }),
            None,
        );
        let (revision, promoted) =
            check(&app, None, &body(Some("0123456789AB"), None)).expect("a rollback");
        assert_eq!(
            revision.as_deref(),
            Some("0123456789ab"),
            "unknown: as given"
        );
        assert_eq!(promoted, "0123456789ab");
        let mut upstream = stage(None, None);
        upstream.status = Some(ApplicationStatus::default());
        if let Some(s) = upstream.status.as_mut() {
            s.sync.revision = Some(OLD_SHA.into());
        }
        let (revision, _) =
            check(&app, Some(&upstream), &body(Some("0123456789AB"), None)).expect("a rollback");
        assert_eq!(
            revision.as_deref(),
            Some(OLD_SHA),
            "known upstream: made full"
        );
    }
}
