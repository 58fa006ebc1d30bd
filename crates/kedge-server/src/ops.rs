//! Actions on an application, shared by the API and the UI: sync, rollback, refresh, suspend and resume (promotion
//! is in [`crate::promotions`]).
//!
//! Each is a patch the controller acts on (the `kedge.dev/operation` and `kedge.dev/refresh` annotations,
//! `spec.suspend`), followed by a reconcile trigger so that it happens at once.

use std::sync::Arc;

use kedge_api::{
    Application, OPERATION_ANNOTATION, Operation, REFRESH_ANNOTATION, RollbackOperation,
    SyncOperation,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::ApiError;
use kedge_api::AppAction;

/// Options of a sync request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// Delete objects removed from Git.
    #[serde(default)]
    pub prune: bool,
    /// Plan only.
    #[serde(default)]
    pub dry_run: bool,
    /// Sync this revision instead of the target revision.
    #[serde(default)]
    pub revision: Option<String>,
    /// Confirms a prune of more than half of the application's objects (otherwise held for confirmation).
    #[serde(default)]
    pub confirm: bool,
}

/// Options of a rollback request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    /// The history id.
    pub id: i64,
    /// Prune objects the old revision does not have.
    #[serde(default)]
    pub prune: bool,
}

/// Finds an application in the controller's cache; 404 when absent or outside the watched namespace.
pub fn find(state: &AppState, namespace: &str, name: &str) -> Result<Arc<Application>, ApiError> {
    let not_found = || ApiError::not_found(format!("application {namespace}/{name} not found"));
    if state
        .handles()
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != namespace)
    {
        return Err(not_found());
    }
    state
        .handles()
        .store
        .get(&ObjectRef::new(name).within(namespace))
        .ok_or_else(not_found)
}

/// The Applications of `namespace`, through the controller's client.
pub(crate) fn api(state: &AppState, namespace: &str) -> Api<Application> {
    Api::namespaced(state.client().clone(), namespace)
}

/// Queues a reconcile of `namespace/name` now.
pub(crate) fn trigger(state: &AppState, namespace: &str, name: &str) {
    let _ = state
        .handles()
        .triggers
        .send(ObjectRef::new(name).within(namespace));
}

/// Now, RFC 3339.
pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

async fn request_operation(
    state: &AppState,
    namespace: &str,
    name: &str,
    op: &Operation,
) -> Result<(), ApiError> {
    let patch =
        json!({ "metadata": { "annotations": { OPERATION_ANNOTATION: op.to_annotation() } } });
    api(state, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ApiError::kube(&format!("request an operation on {namespace}/{name}"), &e))?;
    trigger(state, namespace, name);
    Ok(())
}

/// Requests a sync; returns the operation as stored.
pub async fn sync(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
    name: &str,
    req: SyncRequest,
) -> Result<Operation, ApiError> {
    let app = access::authorize(state, caller, AppAction::Sync, namespace, name)?;
    let op = Operation {
        sync: Some(SyncOperation {
            prune: req.prune,
            dry_run: req.dry_run,
            revision: req.revision.filter(|r| !r.trim().is_empty()),
            confirm: req.confirm,
        }),
        rollback: None,
        initiated_by: caller.user.clone(),
        requested_at: now(),
    };
    request_operation(state, namespace, name, &op).await?;
    tracing::info!(app = %format!("{namespace}/{name}"), user = %caller.user, "sync requested");
    let sync = op.sync.as_ref();
    let mut how = Vec::new();
    if let Some(r) = sync.and_then(|s| s.revision.as_deref()) {
        how.push(format!("revision {r}"));
    }
    for (on, word) in [
        (sync.is_some_and(|s| s.prune), "prune"),
        (sync.is_some_and(|s| s.dry_run), "dry run"),
        (sync.is_some_and(|s| s.confirm), "confirmed"),
    ] {
        if on {
            how.push(word.to_owned());
        }
    }
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(" ({})", how.join(", "))
    };
    state
        .audit(
            &app,
            "SyncRequested",
            &format!("{} requested a sync{how}", caller.user),
        )
        .await;
    Ok(op)
}

/// Requests a rollback to a history entry; 400 when the entry is not kept.
pub async fn rollback(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
    name: &str,
    req: RollbackRequest,
) -> Result<Operation, ApiError> {
    let app = access::authorize(state, caller, AppAction::Sync, namespace, name)?;
    let known = app
        .status
        .as_ref()
        .is_some_and(|s| s.history.iter().any(|h| h.id == req.id));
    if !known {
        return Err(ApiError::bad_request(format!(
            "application {namespace}/{name} has no history entry {}",
            req.id
        )));
    }
    let op = Operation {
        sync: None,
        rollback: Some(RollbackOperation {
            id: req.id,
            prune: req.prune,
        }),
        initiated_by: caller.user.clone(),
        requested_at: now(),
    };
    request_operation(state, namespace, name, &op).await?;
    tracing::info!(app = %format!("{namespace}/{name}"), user = %caller.user, id = req.id, "rollback requested");
    state
        .audit(
            &app,
            "RollbackRequested",
            &format!(
                "{} requested a rollback to history entry {}{}",
                caller.user,
                req.id,
                if req.prune { " (prune)" } else { "" }
            ),
        )
        .await;
    Ok(op)
}

/// Asks for a comparison with Git now (`hard` also drops cached comparisons).
pub async fn refresh(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
    name: &str,
    hard: bool,
) -> Result<(), ApiError> {
    let app = access::authorize(state, caller, AppAction::Sync, namespace, name)?;
    let value = if hard { "hard" } else { "normal" };
    let patch = json!({ "metadata": { "annotations": { REFRESH_ANNOTATION: value } } });
    api(state, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ApiError::kube(&format!("request a refresh of {namespace}/{name}"), &e))?;
    trigger(state, namespace, name);
    state
        .audit(
            &app,
            "RefreshRequested",
            &format!("{} requested a {value} refresh", caller.user),
        )
        .await;
    Ok(())
}

/// Suspends (or resumes) automated sync and self-heal.
pub async fn set_suspend(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
    name: &str,
    suspend: bool,
) -> Result<(), ApiError> {
    let app = access::authorize(state, caller, AppAction::Update, namespace, name)?;
    let patch = json!({ "spec": { "suspend": suspend } });
    api(state, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ApiError::kube(&format!("update {namespace}/{name}"), &e))?;
    trigger(state, namespace, name);
    tracing::info!(app = %format!("{namespace}/{name}"), user = %caller.user, suspend, "suspend changed");
    let (reason, what) = if suspend {
        ("Suspended", "suspended automated sync and self-heal")
    } else {
        ("Resumed", "resumed automated sync and self-heal")
    };
    state
        .audit(&app, reason, &format!("{} {what}", caller.user))
        .await;
    Ok(())
}
