//! Intake, the first phase of a pass: what the pass is asked to do, read from the Application's annotations
//! (`kedge.dev/operation`, `kedge.dev/refresh`) and from an operation that a controller left `Running`.
//!
//! [`read`] is pure: it looks at the Application as read and returns a typed [`Intake`]. The reconcile then records
//! the operation as Running in `status.operationState` *before* it clears the annotation, and clears it only if it
//! still holds the same request ([`clear_patch`]), so that neither a crash between the two writes nor a newer request
//! written meanwhile loses anything.

use kedge_api::{
    Application, OPERATION_ANNOTATION, Operation, OperationPhase, OperationState,
    REFRESH_ANNOTATION, TERMINATE_ANNOTATION,
};
use kube::ResourceExt;

/// How many times an interrupted operation is resumed before it is reported as failed (Error): an operation that
/// takes its controller down every time must not do so forever.
pub const MAX_RESUMES: u32 = 3;

/// What a pass was asked to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Intake {
    /// The operation this pass runs, if any.
    pub operation: Option<PendingOperation>,
    /// The exact value of the operation annotation, to clear once the operation is recorded (cleared only if it is
    /// still this value).
    pub clear_operation: Option<String>,
    /// Why the operation annotation was ignored (it did not parse).
    pub invalid: Option<String>,
    /// A refresh request.
    pub refresh: Option<Refresh>,
    /// An operation found Running that is not carried on, and why: it was interrupted too often, it was not
    /// recorded in a form that can be resumed, or a newer request replaced it.
    pub abandoned: Option<(OperationState, String)>,
    /// The value of the terminate annotation, to clear: it was meant for the operation running when it was
    /// written, which is this pass's abandoned one or none (a sync started later watches for a new value).
    pub terminate: Option<String>,
    /// Whether `abandoned` was terminated on request (it ends Failed, not Error).
    pub terminated: bool,
}

impl Intake {
    /// Whether someone asked for this pass (an operation or a refresh): such a pass always compares in full and
    /// records when it ran.
    pub fn requested(&self) -> bool {
        self.operation.is_some() || self.refresh.is_some()
    }
}

/// An operation to run in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOperation {
    /// What to do.
    pub operation: Operation,
    /// When it started: now for a new request, the original start for a resumed one (`None`: now).
    pub started_at: Option<String>,
    /// How many times it was resumed, this time included (0 for a new request).
    pub resumed: u32,
}

impl PendingOperation {
    /// The Running state recording it, started at `now` unless it started earlier.
    pub fn running(&self, now: &str) -> OperationState {
        OperationState {
            operation: Some(self.operation.clone()),
            phase: OperationPhase::Running,
            message: if self.resumed == 0 {
                "accepted; starting".to_owned()
            } else {
                format!(
                    "resumed after the controller running it went away (resume {} of at most {MAX_RESUMES})",
                    self.resumed
                )
            },
            started_at: Some(self.started_at.clone().unwrap_or_else(|| now.to_owned())),
            finished_at: None,
            resumed: self.resumed,
            sync_result: None,
        }
    }
}

/// A requested refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Resolve the revision again.
    Normal,
    /// Also drop the caches (rendered sets, dry runs).
    Hard,
}

/// What `app` asks of this pass. An operation left Running (by a controller that crashed or lost its lease: passes
/// of one application never overlap, so a pass that finds one Running is not running it) is resumed, since syncing
/// a revision again is idempotent, unless it was resumed [`MAX_RESUMES`] times already.
pub fn read(app: &Application) -> Intake {
    let mut intake = Intake::default();
    let running = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .filter(|s| !s.phase.is_completed());
    if let Some(raw) = app.annotations().get(OPERATION_ANNOTATION) {
        intake.clear_operation = Some(raw.clone());
        match Operation::from_annotation(raw) {
            Ok(op) => {
                match running {
                    // Recorded by a controller that went away before it cleared the annotation.
                    Some(state) if state.operation.as_ref() == Some(&op) => {
                        intake.operation = resume(state, &mut intake.abandoned);
                    }
                    other => {
                        if let Some(state) = other {
                            intake.abandoned = Some((
                                state.clone(),
                                "interrupted, and replaced by a newer request".to_owned(),
                            ));
                        }
                        intake.operation = Some(PendingOperation {
                            operation: op,
                            started_at: None,
                            resumed: 0,
                        });
                    }
                }
            }
            Err(e) => {
                intake.invalid = Some(format!(
                    "ignored invalid {OPERATION_ANNOTATION} annotation: {e}"
                ));
            }
        }
    }
    if intake.operation.is_none()
        && intake.abandoned.is_none()
        && let Some(state) = running
    {
        intake.operation = resume(state, &mut intake.abandoned);
    }
    intake.terminate = app.annotations().get(TERMINATE_ANNOTATION).cloned();
    if intake.terminate.is_some()
        && intake.abandoned.is_none()
        && let Some(pending) = intake.operation.take_if(|p| p.resumed > 0)
    {
        // Asked to stop while no controller was running it: not resumed.
        let mut state = pending.running("");
        state.started_at = pending.started_at;
        state.resumed = pending.resumed - 1;
        intake.abandoned = Some((state, "terminated on request".to_owned()));
        intake.terminated = true;
    }
    intake.refresh = app
        .annotations()
        .get(REFRESH_ANNOTATION)
        .map(|v| match v.as_str() {
            "hard" => Refresh::Hard,
            _ => Refresh::Normal,
        });
    intake
}

fn resume(
    state: &OperationState,
    abandoned: &mut Option<(OperationState, String)>,
) -> Option<PendingOperation> {
    let Some(op) = state.operation.clone() else {
        *abandoned = Some((
            state.clone(),
            "interrupted when the controller running it went away; it was not recorded in a form that can be \
             resumed, request it again"
                .to_owned(),
        ));
        return None;
    };
    if state.resumed >= MAX_RESUMES {
        *abandoned = Some((
            state.clone(),
            format!(
                "interrupted {} times (the controller running it went away each time); given up, request it again",
                state.resumed + 1
            ),
        ));
        return None;
    }
    Some(PendingOperation {
        operation: op,
        started_at: state.started_at.clone(),
        resumed: state.resumed + 1,
    })
}

/// The JSON patch that removes the operation annotation only while it still holds `value`: the API server
/// refuses the whole patch (422) when the `test` fails, so a newer request is never erased.
pub fn clear_patch(annotation: &str, value: &str) -> serde_json::Value {
    let path = format!(
        "/metadata/annotations/{}",
        annotation.replace('~', "~0").replace('/', "~1")
    );
    serde_json::json!([
        { "op": "test", "path": path, "value": value },
        { "op": "remove", "path": path },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::{ApplicationStatus, SyncOperation};

    fn app(annotation: Option<&str>, state: Option<OperationState>) -> Application {
        let mut app = Application::new("demo", Default::default());
        if let Some(a) = annotation {
            app.annotations_mut()
                .insert(OPERATION_ANNOTATION.into(), a.into());
        }
        app.status = Some(ApplicationStatus {
            operation_state: state,
            ..Default::default()
        });
        app
    }

    fn op(at: &str) -> Operation {
        Operation {
            sync: Some(SyncOperation {
                revision: Some("abc".into()),
                ..Default::default()
            }),
            initiated_by: "cli".into(),
            requested_at: at.into(),
            ..Default::default()
        }
    }

    fn running(op: Option<Operation>, resumed: u32) -> OperationState {
        OperationState {
            operation: op,
            phase: OperationPhase::Running,
            started_at: Some("t0".into()),
            resumed,
            ..Default::default()
        }
    }

    #[test]
    fn a_request_is_taken_and_its_exact_value_cleared() {
        let raw = op("t1").to_annotation();
        let intake = read(&app(Some(&raw), None));
        assert!(intake.requested());
        assert_eq!(intake.clear_operation.as_deref(), Some(raw.as_str()));
        let pending = intake.operation.expect("an operation");
        assert_eq!(pending.operation, op("t1"));
        assert_eq!(pending.resumed, 0);
        let state = pending.running("now");
        assert_eq!(state.phase, OperationPhase::Running);
        assert_eq!(state.started_at.as_deref(), Some("now"));
        assert_eq!(state.operation, Some(op("t1")));
    }

    #[test]
    fn an_invalid_request_is_reported_and_cleared() {
        let intake = read(&app(Some("{nope"), None));
        assert!(intake.operation.is_none());
        assert!(
            intake
                .invalid
                .is_some_and(|m| m.contains(OPERATION_ANNOTATION))
        );
        assert_eq!(intake.clear_operation.as_deref(), Some("{nope"));
    }

    #[test]
    fn an_operation_left_running_is_resumed_a_bounded_number_of_times() {
        let intake = read(&app(None, Some(running(Some(op("t1")), 0))));
        let pending = intake.operation.expect("resumed");
        assert_eq!(pending.resumed, 1);
        assert_eq!(pending.started_at.as_deref(), Some("t0"));
        assert!(intake.clear_operation.is_none());
        assert!(pending.running("now").message.contains("resumed"));

        let intake = read(&app(None, Some(running(Some(op("t1")), MAX_RESUMES))));
        assert!(intake.operation.is_none());
        let (state, why) = intake.abandoned.expect("given up");
        assert_eq!(state.operation, Some(op("t1")));
        assert!(why.contains("given up"), "{why}");

        let intake = read(&app(None, Some(running(None, 0))));
        assert!(intake.operation.is_none());
        assert!(intake.abandoned.is_some());
    }

    #[test]
    fn a_request_recorded_but_not_cleared_is_resumed_not_restarted() {
        let raw = op("t1").to_annotation();
        let intake = read(&app(Some(&raw), Some(running(Some(op("t1")), 0))));
        let pending = intake.operation.expect("resumed");
        assert_eq!(pending.resumed, 1);
        assert_eq!(intake.clear_operation.as_deref(), Some(raw.as_str()));
        assert!(intake.abandoned.is_none());
    }

    #[test]
    fn a_newer_request_replaces_an_interrupted_one() {
        let raw = op("t2").to_annotation();
        let intake = read(&app(Some(&raw), Some(running(Some(op("t1")), 0))));
        assert_eq!(intake.operation.map(|p| p.operation), Some(op("t2")));
        let (state, _) = intake.abandoned.expect("the interrupted one is reported");
        assert_eq!(state.operation, Some(op("t1")));
    }

    #[test]
    fn finished_operations_are_left_alone() {
        let mut done = running(Some(op("t1")), 0);
        done.phase = OperationPhase::Succeeded;
        let intake = read(&app(None, Some(done)));
        assert_eq!(intake, Intake::default());
        assert!(!intake.requested());
    }

    #[test]
    fn a_terminate_request_stops_an_interrupted_operation_but_not_a_new_one() {
        let mut running = OperationState {
            operation: Some(Operation {
                sync: Some(SyncOperation::default()),
                initiated_by: "alice".into(),
                ..Operation::default()
            }),
            phase: OperationPhase::Running,
            ..OperationState::default()
        };
        running.started_at = Some("2026-01-01T00:00:00Z".into());
        let mut stopped = app(None, Some(running.clone()));
        stopped
            .annotations_mut()
            .insert(TERMINATE_ANNOTATION.into(), "t1".into());
        let intake = read(&stopped);
        assert_eq!(intake.operation, None);
        assert!(intake.terminated);
        assert_eq!(intake.terminate.as_deref(), Some("t1"));
        let (state, why) = intake.abandoned.expect("abandoned");
        assert_eq!(why, "terminated on request");
        assert_eq!(state.operation, running.operation);
        assert_eq!(state.started_at, running.started_at);

        // A new request written with it runs; the terminate request is only cleared.
        let op = Operation {
            sync: Some(SyncOperation::default()),
            initiated_by: "bob".into(),
            ..Operation::default()
        };
        let mut fresh = app(Some(&op.to_annotation()), None);
        fresh
            .annotations_mut()
            .insert(TERMINATE_ANNOTATION.into(), "t2".into());
        let intake = read(&fresh);
        assert_eq!(intake.operation.map(|p| p.operation), Some(op));
        assert!(!intake.terminated && intake.abandoned.is_none());
        assert_eq!(intake.terminate.as_deref(), Some("t2"));
    }

    #[test]
    fn the_clear_patch_tests_the_exact_value() {
        let patch = clear_patch(OPERATION_ANNOTATION, "{\"a\":1}");
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(
            patch[0]["path"],
            "/metadata/annotations/kedge.dev~1operation"
        );
        assert_eq!(patch[0]["value"], "{\"a\":1}");
        assert_eq!(patch[1]["op"], "remove");
        assert!(serde_json::from_value::<json_patch::Patch>(patch).is_ok());
    }
}
