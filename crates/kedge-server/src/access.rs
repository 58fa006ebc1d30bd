//! Who may see and act on which application.
//!
//! An `admin` may do everything; a `readonly` account may see every application. Beyond that (and for accounts with
//! role `none`, OIDC users outside the admin and read-only groups, and project tokens), the roles of the
//! application's Project decide: a role applies to a caller who is in one of its `groups` or holds one of its tokens,
//! and its policy lines allow or deny an action on `<project>/<application>` (see [`kedge_api::ProjectRole`]). A deny
//! of any role the caller holds wins over every allow.
//!
//! A caller who may not see an application is told it is forbidden, whether or not it exists, so that names cannot be
//! probed; lists, pages and live updates leave it out.

use std::sync::Arc;

use kedge_api::{AppAction, Application, DEFAULT_PROJECT};
use kube::ResourceExt;

use crate::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::ops;

/// Whether the caller's global role alone allows `action` on every application.
fn global(caller: &Caller, action: AppAction) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::ReadOnly => action == AppAction::Get,
        Role::None => false,
    }
}

/// Whether the caller sees every application (and the clusters): admins and read-only accounts.
pub fn sees_everything(caller: &Caller) -> bool {
    global(caller, AppAction::Get)
}

/// The application's project name.
pub fn project_of(app: &Application) -> &str {
    if app.spec.project.is_empty() {
        DEFAULT_PROJECT
    } else {
        &app.spec.project
    }
}

/// Whether `caller` may do `action` on `app`.
pub fn can(state: &AppState, caller: &Caller, action: AppAction, app: &Application) -> bool {
    if global(caller, action) {
        return true;
    }
    let project_name = project_of(app);
    let Some(project) = state.handles().project(project_name) else {
        return false;
    };
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let mut allowed = false;
    for role in &project.spec.roles {
        let holds = caller
            .project_role
            .as_ref()
            .is_some_and(|(p, r)| p == project_name && *r == role.name)
            || role.groups.iter().any(|g| caller.groups.contains(g));
        if !holds {
            continue;
        }
        match role.decides(
            project_name,
            action,
            &namespace,
            &name,
            &state.config().namespace,
        ) {
            Some(false) => return false,
            Some(true) => allowed = true,
            None => {}
        }
    }
    allowed
}

fn denied(caller: &Caller, action: AppAction, namespace: &str, name: &str) -> ApiError {
    ApiError::forbidden(format!(
        "permission denied: applications, {}, {namespace}/{name}, sub: {}",
        action.as_str(),
        caller.user
    ))
}

/// The application, when the caller may do `action` on it: 403 when not (and, for callers who do not see every
/// application, also when it does not exist), 404 otherwise when it does not exist.
pub fn authorize(
    state: &AppState,
    caller: &Caller,
    action: AppAction,
    namespace: &str,
    name: &str,
) -> Result<Arc<Application>, ApiError> {
    let app = match ops::find(state, namespace, name) {
        Ok(app) => app,
        Err(e) if sees_everything(caller) => return Err(e),
        Err(_) => return Err(denied(caller, action, namespace, name)),
    };
    if can(state, caller, action, &app) {
        Ok(app)
    } else {
        Err(denied(caller, action, namespace, name))
    }
}

/// The applications the caller may see.
pub fn visible(state: &AppState, caller: &Caller) -> Vec<Arc<Application>> {
    let all = state.handles().store.state();
    if sees_everything(caller) {
        return all;
    }
    all.into_iter()
        .filter(|a| can(state, caller, AppAction::Get, a))
        .collect()
}

/// Whether the caller may see the application `namespace/name` (for live updates); `*` (everything changed) is
/// always passed on.
pub fn sees_key(state: &AppState, caller: &Caller, key: &str) -> bool {
    if sees_everything(caller) || key == "*" {
        return true;
    }
    let Some((namespace, name)) = key.split_once('/') else {
        return false;
    };
    ops::find(state, namespace, name).is_ok_and(|app| can(state, caller, AppAction::Get, &app))
}

/// 403 unless the caller sees every application (cluster lists are for admins and read-only accounts).
pub fn require_global_read(caller: &Caller) -> Result<(), ApiError> {
    if sees_everything(caller) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "permission denied: clusters, get, sub: {}",
            caller.user
        )))
    }
}
