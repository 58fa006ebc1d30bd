//! The JSON API under `/api/v1` (described by `/api/v1/openapi.json`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use kedge_api::{Application, ObjectRef};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::AppState;
use crate::access;
use crate::apps::{self, ListQuery};
use crate::auth::{self, Caller};
use crate::details;
use crate::error::ApiError;
use crate::ops::{self, RollbackRequest, SyncRequest};
use crate::promotions::{self, PromoteBody};
use kedge_api::AppAction;

/// The API routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/session",
            post(create_session).get(whoami).delete(delete_session),
        )
        .route("/api/v1/applications", get(list))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/applications/{namespace}/{name}", get(get_app))
        .route("/api/v1/applications/{namespace}/{name}/diff", get(diff))
        .route(
            "/api/v1/applications/{namespace}/{name}/resources",
            get(resources),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/manifest",
            get(manifest),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/events",
            get(events),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/history",
            get(history),
        )
        .route("/api/v1/applications/{namespace}/{name}/sync", post(sync))
        .route(
            "/api/v1/applications/{namespace}/{name}/rollback",
            post(rollback),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/refresh",
            post(refresh),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/promote",
            post(promote),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/promotions",
            get(promotions),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/suspend",
            post(suspend),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/resume",
            post(resume),
        )
        .route("/api/v1/{*rest}", any(not_found))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint")
}

async fn openapi() -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(crate::openapi::document()),
    )
        .into_response()
}

fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize, Default)]
struct LoginRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn create_session(
    State(state): State<AppState>,
    client: auth::ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    auth::check_same_origin(&headers)?;
    let req: LoginRequest = parse_body(&body)?;
    let result = auth::login(&state, &req.username, &req.password, client).await?;
    let cookie = auth::session_cookie(&state, &headers, &result.token);
    Ok(([(header::SET_COOKIE, cookie)], Json(result)).into_response())
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "user": caller.user, "role": caller.role, "groups": caller.groups }))
}

async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let auth::Via::Cookie { .. } = caller.via {
        auth::check_same_origin(&headers)?;
    }
    if let Some(token) = auth::request_token(&headers) {
        auth::logout(&state, &token).await;
    }
    Ok((
        [(header::SET_COOKIE, auth::clear_cookie())],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = apps::list(access::visible(&state, &caller), &q)?;
    let elapsed = started.elapsed();
    Ok((
        [(
            "server-timing",
            format!("list;dur={:.3}", elapsed.as_secs_f64() * 1000.0),
        )],
        Json(result),
    )
        .into_response())
}

async fn clusters(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    access::require_global_read(&caller)?;
    Ok(Json(
        json!({ "items": crate::clusters::list(&state).await? }),
    ))
}

/// The application as JSON without what must not leave the server.
pub fn app_json(app: &Application) -> Value {
    let mut v = serde_json::to_value(app).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    if let Some(url) = v.pointer_mut("/spec/source/repoURL")
        && let Some(s) = url.as_str()
    {
        *url = Value::String(kedge_source::repo::strip_userinfo(s));
    }
    v
}

async fn get_app(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    Ok(Json(app_json(&app)))
}

#[derive(Deserialize)]
struct DiffQuery {
    revision: Option<String>,
}

async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<details::DiffResult>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    Ok(Json(
        details::diff(
            &state,
            &app,
            q.revision.as_deref().filter(|r| !r.is_empty()),
        )
        .await?,
    ))
}

async fn resources(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    let nodes = details::tree(&state, &app).await?;
    Ok(Json(json!({ "items": nodes })))
}

/// Query naming one object.
#[derive(Deserialize)]
pub struct ObjectQuery {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectQuery {
    /// As an object reference.
    pub fn to_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.group.as_str().into(),
            version: self.version.as_str().into(),
            kind: self.kind.as_str().into(),
            namespace: self.namespace.as_str().into(),
            name: self.name.as_str().into(),
        }
    }
}

async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<ObjectQuery>,
) -> Result<Json<Value>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    let live = details::live_manifest(&state, &app, &q.to_ref()).await?;
    Ok(Json(
        json!({ "exists": live.is_some(), "manifest": live.unwrap_or_default() }),
    ))
}

async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    Ok(Json(
        json!({ "items": details::events(&state, &app).await? }),
    ))
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    Ok(Json(
        json!({ "items": details::history(&state, &app).await }),
    ))
}

async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.check_write(&headers, None)?;
    let req: SyncRequest = parse_body(&body)?;
    let op = ops::sync(&state, &caller, &ns, &name, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "operation": op_json(&op) })),
    )
        .into_response())
}

fn op_json(op: &kedge_api::Operation) -> Value {
    serde_json::to_value(op).unwrap_or(Value::Null)
}

#[derive(Deserialize, Default)]
struct RollbackBody {
    id: Option<i64>,
    #[serde(default)]
    prune: bool,
}

async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.check_write(&headers, None)?;
    let req: RollbackBody = parse_body(&body)?;
    let id = req
        .id
        .ok_or_else(|| ApiError::bad_request("the body needs the history id: {\"id\": N}"))?;
    let op = ops::rollback(
        &state,
        &caller,
        &ns,
        &name,
        RollbackRequest {
            id,
            prune: req.prune,
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "operation": op_json(&op) })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RefreshQuery {
    #[serde(default)]
    hard: Option<String>,
}

async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<RefreshQuery>,
) -> Result<Response, ApiError> {
    caller.check_write(&headers, None)?;
    let hard = q
        .hard
        .as_deref()
        .is_some_and(|h| h.is_empty() || h == "true" || h == "1");
    ops::refresh(&state, &caller, &ns, &name, hard).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "refresh": if hard { "hard" } else { "normal" } })),
    )
        .into_response())
}

async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.check_write(&headers, None)?;
    ops::set_suspend(&state, &caller, &ns, &name, true).await?;
    Ok(Json(json!({ "suspended": true })))
}

async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.check_write(&headers, None)?;
    ops::set_suspend(&state, &caller, &ns, &name, false).await?;
    Ok(Json(json!({ "suspended": false })))
}

async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.check_write(&headers, None)?;
    let req: PromoteBody = parse_body(&body)?;
    let accepted = promotions::promote(&state, &caller, &ns, &name, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn promotions(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<promotions::Chain>, ApiError> {
    let app = access::authorize(&state, &caller, AppAction::Get, &ns, &name)?;
    Ok(Json(promotions::chain(&state, &caller, &app)))
}
