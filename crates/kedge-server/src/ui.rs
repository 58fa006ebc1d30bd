//! The web UI: server-rendered pages (maud) made live with htmx and server-sent events. Every page reads without
//! JavaScript; actions are plain forms with a CSRF field, enhanced by htmx (confirmation, no reload).
//!
//! Live regions (`data-live`) refresh themselves by fetching their page again and keeping only themselves
//! (`hx-select`, `outerHTML`), and pass none of that down (`hx-disinherit="*"`): an action form inside one would
//! otherwise filter its answer, a toast for `#flash`, through the region's `hx-select` and show nothing. A region
//! follows the applications its `data-live` names, separated by spaces (the promotion pipeline follows each of its
//! stages), or `*` for all.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use kedge_api::{AppAction, Application, IN_CLUSTER_NAME, PromotionApproval};
use kube::ResourceExt;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use crate::AppState;
use crate::access;
use crate::api::ObjectQuery;
use crate::apps::{self, AppSummary, ListQuery, ListResult};
use crate::auth::{self, Caller, Role, UiCaller};
use crate::clusters::{self, ClusterView};
use crate::details::{self, DiffResult, ObjectDiffView, TreeNode};
use crate::error::ApiError;
use crate::ops::{self, RollbackRequest, SyncRequest};
use crate::promotions::{self, Chain, PromoteBody, Stage};

/// The UI routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/applications") }))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/applications", get(list_page))
        .route("/applications/{namespace}/{name}", get(app_page))
        .route("/applications/{namespace}/{name}/object", get(object_page))
        .route("/clusters", get(clusters_page))
        .route(
            "/applications/{namespace}/{name}/actions/{action}",
            post(action),
        )
        .route("/ui/events", get(crate::live::sse))
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

fn hx_target(headers: &HeaderMap) -> Option<&str> {
    headers.get("hx-target").and_then(|v| v.to_str().ok())
}

fn layout(title: &str, caller: Option<&Caller>, body: Markup) -> Markup {
    let csrf = caller.map(|c| c.csrf()).unwrap_or("");
    let hx_headers = serde_json::json!({ "X-CSRF-Token": csrf }).to_string();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kedge" }
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href={ "/assets/kedge.css?v=" (crate::assets::VERSION) };
                script src={ "/assets/htmx.min.js?v=" (crate::assets::VERSION) } defer {}
                script src={ "/assets/kedge.js?v=" (crate::assets::VERSION) } defer {}
            }
            body hx-headers=(hx_headers) {
                a.skip href="#content" { "Skip to content" }
                header.top {
                    a.brand href="/applications" { (PreEscaped(crate::assets::icon())) "Kedge" }
                    nav aria-label="Main" {
                        @if let Some(c) = caller {
                            a href="/applications" { "Applications" }
                            @if access::sees_everything(c) { a href="/clusters" { "Clusters" } }
                        }
                    }
                    @if let Some(c) = caller {
                        div.user {
                            span id="live-status" role="status" title="Live updates off" {}
                            span { (c.user) @if c.role == Role::ReadOnly { " (read-only)" } }
                            form method="post" action="/logout" {
                                input type="hidden" name="_csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="content" { (body) }
                div.flash id="flash" aria-live="polite" {}
            }
        }
    }
}

fn page(status: StatusCode, title: &str, caller: Option<&Caller>, body: Markup) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        layout(title, caller, body),
    )
        .into_response()
}

fn error_page(caller: &Caller, err: &ApiError) -> Response {
    page(
        err.status,
        "Error",
        Some(caller),
        html! {
            h1 { "Something went wrong" }
            p.error { (err.message) }
            p { a href="/applications" { "Back to applications" } }
        },
    )
}

fn sync_badge(s: &str) -> Markup {
    html! { span class={ "badge s-" (s) } { (s) } }
}

fn health_badge(h: &str) -> Markup {
    html! { span class={ "badge h-" (h) } { (h) } }
}

fn ago(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return ts.to_owned();
    };
    let secs = jiff::Timestamp::now().as_second() - t.as_second();
    match secs {
        s if s < 0 => "just now".into(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

fn time(ts: Option<&str>) -> Markup {
    match ts.filter(|t| !t.is_empty()) {
        Some(t) => html! { time datetime=(t) title=(t) { (ago(t)) } },
        None => html! { span.muted { "never" } },
    }
}

// ---------- login ----------

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

/// The local page to go to after a login: a path of this server (`/...`), never another site (`//host`, `/\\host`,
/// a scheme, or control characters that browsers drop, e.g. `/\t/host`); otherwise the application list.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/applications".into(),
    }
}

fn login_form(next: &str, error: Option<&str>, sso: bool) -> Markup {
    html! {
        div.login.panel {
            h1 { "Sign in to Kedge" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if sso {
                p { a.button.primary href={ "/auth/login?next=" (auth::encode_component(next)) } { "Log in with SSO" } }
                p.muted { "Or with a Kedge account:" }
            }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "Username" input type="text" name="username" autocomplete="username" required autofocus value="admin"; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button.primary type="submit" { "Sign in" }
            }
            p.muted {
                "The admin password is in Secret " code { (crate::ADMIN_SECRET) } " (key " code { "password" } ")."
            }
        }
    }
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Ok(Some(_)) = auth::authenticate(&state, &headers).await {
        return Redirect::to(&next).into_response();
    }
    page(
        StatusCode::OK,
        "Sign in",
        None,
        login_form(&next, None, state.config().oidc.is_some()),
    )
}

/// The login page with an error (a failed SSO login).
pub(crate) fn login_error_page(
    state: &AppState,
    status: StatusCode,
    message: &str,
    next: &str,
) -> Response {
    page(
        status,
        "Sign in",
        None,
        login_form(next, Some(message), state.config().oidc.is_some()),
    )
}

/// The page that ends an SSO login: it goes on to `next` (a local path) from this server's own page, so that the
/// browser sends the new session cookie (`SameSite=Strict`) with that request, which a redirect from the identity
/// provider's site would not.
pub(crate) fn continue_page(next: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0;url=" (next) };
                title { "Signed in · Kedge" }
                link rel="stylesheet" href={ "/assets/kedge.css?v=" (crate::assets::VERSION) };
            }
            body {
                main id="content" {
                    p { "Signed in. " a href=(next) { "Continue" } }
                }
            }
        }
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        markup,
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    client: auth::ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    if let Err(e) = auth::check_same_origin(&headers) {
        return page(
            e.status,
            "Sign in",
            None,
            login_form(&next, Some(&e.message), state.config().oidc.is_some()),
        );
    }
    match auth::login(&state, f.username.trim(), &f.password, client).await {
        Ok(result) => {
            let cookie = auth::session_cookie(&state, &headers, &result.token);
            (
                StatusCode::SEE_OTHER,
                [(header::SET_COOKIE, cookie), (header::LOCATION, next)],
            )
                .into_response()
        }
        Err(e) => {
            let mut resp = page(
                e.status,
                "Sign in",
                None,
                login_form(&next, Some(&e.message), state.config().oidc.is_some()),
            );
            if let Some(secs) = e.retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
            }
            resp
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let auth::Via::Cookie { csrf } = &caller.via
        && (auth::check_same_origin(&headers).is_err() || f.csrf != *csrf)
    {
        return error_page(
            &caller,
            &ApiError::forbidden("missing or invalid CSRF token"),
        );
    }
    if let Some(token) = auth::request_token(&headers) {
        auth::logout(&state, &token).await;
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, auth::clear_cookie()),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}

// ---------- application list ----------

const DEFAULT_PAGE_SIZE: usize = 50;

fn list_query_string(q: &ListQuery, page: Option<usize>) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let mut push = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            pairs.push((k, v.to_owned()));
        }
    };
    push("q", &q.search);
    push("namespace", &q.namespace);
    push("sync", &q.sync);
    push("health", &q.health);
    push("selector", &q.selector);
    push("cluster", &q.cluster);
    if let Some(s) = q.page_size.filter(|s| *s != DEFAULT_PAGE_SIZE) {
        pairs.push(("pageSize", s.to_string()));
    }
    if let Some(p) = page.filter(|p| *p > 1) {
        pairs.push(("page", p.to_string()));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn with_filter(q: &ListQuery, key: &str, value: &str) -> String {
    let mut q = q.clone();
    let current = match key {
        "sync" => &mut q.sync,
        _ => &mut q.health,
    };
    *current = if current.as_deref() == Some(value) {
        None
    } else {
        Some(value.to_owned())
    };
    let qs = list_query_string(&q, None);
    if qs.is_empty() {
        "/applications".into()
    } else {
        format!("/applications?{qs}")
    }
}

fn app_row(a: &AppSummary) -> Markup {
    let href = format!("/applications/{}/{}", a.namespace, a.name);
    html! {
        tr data-app={ (a.namespace) "/" (a.name) } {
            td {
                a href=(href) { strong { (a.name) } }
                @if a.suspended { " " span.badge.tag-info { "suspended" } }
                @if a.operation_pending { " " span.badge.tag { "operation pending" } }
                div.muted.mono title=(a.repo_url) { (a.repo_url) " · " (a.path) }
            }
            td { (a.namespace) }
            td.cluster { (a.cluster) }
            td.sync { (sync_badge(apps::sync_name(a.sync))) }
            td.health { (health_badge(apps::health_name(a.health))) }
            td.mono {
                (a.short_revision.clone().unwrap_or_else(|| "—".into()))
                div.muted { (a.target_revision) }
            }
            td { (time(a.last_synced_at.as_deref())) }
        }
    }
}

fn list_fragment(q: &ListQuery, r: &ListResult) -> Markup {
    let page = r.page;
    let pages = r.total.div_ceil(r.page_size.max(1)).max(1);
    let qs = list_query_string(q, Some(page));
    let self_url = if qs.is_empty() {
        "/applications".to_owned()
    } else {
        format!("/applications?{qs}")
    };
    html! {
        div id="app-list" data-live="*" data-live-every="1000" hx-get=(self_url) hx-trigger="kedge:changed"
            hx-select="#app-list" hx-swap="outerHTML" hx-disinherit="*" {
            div.chips aria-label="Filter by state" {
                @for (name, n) in &r.sync_counts {
                    a.chip href=(with_filter(q, "sync", name)) aria-current=(q.sync.as_deref() == Some(name.as_str())) {
                        (sync_badge(name)) " " (n)
                    }
                }
                @for (name, n) in &r.health_counts {
                    a.chip href=(with_filter(q, "health", name)) aria-current=(q.health.as_deref() == Some(name.as_str())) {
                        (health_badge(name)) " " (n)
                    }
                }
            }
            @if r.items.is_empty() {
                div.panel.empty { "No applications match." }
            } @else {
                table.list {
                    caption.sr-only { "Applications" }
                    thead { tr { th { "Name" } th { "Namespace" } th { "Cluster" } th { "Sync" } th { "Health" } th { "Revision" } th { "Last sync" } } }
                    tbody { @for a in &r.items { (app_row(a)) } }
                }
            }
            nav.pager aria-label="Pages" {
                span.muted { (r.total) " applications · page " (page) " of " (pages) }
                @if page > 1 {
                    a.button rel="prev" href={ "/applications?" (list_query_string(q, Some(page - 1))) } { "← Previous" }
                }
                @if page < pages {
                    a.button rel="next" href={ "/applications?" (list_query_string(q, Some(page + 1))) } { "Next →" }
                }
            }
        }
    }
}

/// The clusters the cluster filter offers: `in-cluster`, every cluster an application names, and the one asked for.
fn cluster_choices(apps: &[Arc<Application>], asked: Option<&str>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = apps.iter().map(|a| a.spec.cluster().to_owned()).collect();
    out.insert(IN_CLUSTER_NAME.to_owned());
    if let Some(c) = asked.filter(|c| !c.is_empty()) {
        out.insert(c.to_owned());
    }
    out
}

async fn list_page(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
    headers: HeaderMap,
    Query(mut q): Query<ListQuery>,
) -> Response {
    q.page_size = Some(q.page_size.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, 500));
    q.page = Some(q.page.unwrap_or(1).max(1));
    q.limit = None;
    q.continue_token = None;
    let all = access::visible(&state, &caller);
    let namespaces: BTreeSet<String> = all.iter().filter_map(|a| a.namespace()).collect();
    let clusters = cluster_choices(&all, q.cluster.as_deref());
    let result = match apps::list(all, &q) {
        Ok(r) => r,
        Err(e) => return error_page(&caller, &e),
    };
    if is_htmx(&headers) && hx_target(&headers) == Some("app-list") {
        return list_fragment(&q, &result).into_response();
    }
    let opt = |v: &Option<String>, want: &str| v.as_deref() == Some(want);
    let body = html! {
        h1 { "Applications" }
        form.toolbar method="get" action="/applications" role="search"
            hx-get="/applications" hx-target="#app-list" hx-select="#app-list" hx-swap="outerHTML" hx-push-url="true"
            hx-sync="#app-list:replace"
            hx-trigger="input changed delay:250ms from:#search, change" {
            label { "Search (press /)" input #search type="search" name="q" value=(q.search.clone().unwrap_or_default()) placeholder="name or namespace/name" autocomplete="off"; }
            label { "Namespace"
                select name="namespace" {
                    option value="" { "All" }
                    @for ns in &namespaces { option value=(ns) selected[opt(&q.namespace, ns)] { (ns) } }
                }
            }
            label { "Cluster"
                select name="cluster" {
                    option value="" { "All" }
                    @for c in &clusters { option value=(c) selected[opt(&q.cluster, c)] { (c) } }
                }
            }
            label { "Sync"
                select name="sync" {
                    option value="" { "Any" }
                    @for s in ["Synced", "OutOfSync", "Unknown"] { option value=(s) selected[opt(&q.sync, s)] { (s) } }
                }
            }
            label { "Health"
                select name="health" {
                    option value="" { "Any" }
                    @for h in ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"] { option value=(h) selected[opt(&q.health, h)] { (h) } }
                }
            }
            label { "Labels" input type="text" name="selector" value=(q.selector.clone().unwrap_or_default()) placeholder="team=web"; }
            noscript { button type="submit" { "Filter" } }
        }
        (list_fragment(&q, &result))
    };
    page(StatusCode::OK, "Applications", Some(&caller), body)
}

// ---------- clusters ----------

fn cluster_row(c: &ClusterView) -> Markup {
    let apps_url = format!(
        "/applications?{}",
        serde_urlencoded::to_string([("cluster", c.name.as_str())]).unwrap_or_default()
    );
    let badge = match c.connected {
        Some(true) => "Connected",
        Some(false) => "NotConnected",
        None => "Unknown",
    };
    html! {
        tr data-cluster=(c.name) {
            td.name {
                a href=(apps_url) { strong { (c.name) } }
                @if c.in_cluster { " " span.badge.tag { "where Kedge runs" } }
            }
            td.mono.server { (c.server) }
            td.status {
                span class={ "badge c-" (badge) } { (c.state()) }
                @if !c.message.is_empty() { div.muted.msg title=(c.message) { (c.message) } }
                @if c.connected.is_none() { div.muted { "not checked yet" } }
            }
            td.version.mono { (c.server_version.clone().unwrap_or_else(|| "—".into())) }
            td.apps { a href=(apps_url) { (c.applications) } }
            td.contact { (time(c.last_contact.as_deref())) }
            td.age { @if c.in_cluster { span.muted { "—" } } @else { (time(c.created_at.as_deref())) } }
        }
    }
}

fn clusters_fragment(result: &Result<Vec<ClusterView>, ApiError>) -> Markup {
    html! {
        // Cluster checks are not announced as application changes are: the list also refreshes every 10 s.
        div id="cluster-list" data-live="*" data-live-every="2000" hx-get="/clusters" hx-trigger="kedge:changed, every 10s"
            hx-select="#cluster-list" hx-swap="outerHTML" hx-disinherit="*" {
            @match result {
                Ok(rows) => {
                    table.list.clusters {
                        caption.sr-only { "Clusters" }
                        thead { tr { th { "Name" } th { "Server" } th { "Status" } th { "Version" } th { "Applications" } th { "Last contact" } th { "Age" } } }
                        tbody { @for c in rows { (cluster_row(c)) } }
                    }
                    @if rows.len() < 2 {
                        p.muted { "No cluster is registered. " code { "kedge cluster add NAME --cluster-kubeconfig FILE" } " registers one; applications deploy there with " code { "destination.name: NAME" } "." }
                    }
                }
                Err(e) => p.error { (e.message) },
            }
        }
    }
}

async fn clusters_page(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = access::require_global_read(&caller) {
        return error_page(&caller, &e);
    }
    let result = clusters::list(&state).await;
    if is_htmx(&headers) && hx_target(&headers) == Some("cluster-list") {
        return clusters_fragment(&result).into_response();
    }
    let body = html! {
        h1 { "Clusters" }
        p.muted { "Where applications deploy: the cluster Kedge runs in and the clusters registered in namespace "
            code { (state.config().namespace) } ". Each name lists the applications deploying there." }
        (clusters_fragment(&result))
    };
    page(StatusCode::OK, "Clusters", Some(&caller), body)
}

// ---------- application page ----------

#[derive(Deserialize, Default)]
struct AppQuery {
    tab: Option<String>,
    flash: Option<String>,
    revision: Option<String>,
}

/// What the caller may do with the application shown.
#[derive(Clone, Copy, Debug)]
struct Rights {
    sync: bool,
    update: bool,
}

impl Rights {
    fn of(state: &AppState, caller: &Caller, app: &Application) -> Self {
        Self {
            sync: access::can(state, caller, AppAction::Sync, app),
            update: access::can(state, caller, AppAction::Update, app),
        }
    }
}

fn summary(
    app: &Application,
    commit: Option<&details::CommitInfo>,
    caller: &Caller,
    rights: Rights,
) -> Markup {
    let st = app.status.clone().unwrap_or_default();
    let key = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    let base = format!("/applications/{key}");
    let policy = app.spec.sync_policy.clone().unwrap_or_default();
    let pending = app
        .annotations()
        .contains_key(kedge_api::OPERATION_ANNOTATION);
    html! {
        section id="app-summary" data-live=(key) data-live-every="500" hx-get=(base) hx-trigger="kedge:changed"
            hx-select="#app-summary" hx-swap="outerHTML" hx-disinherit="*" aria-label="Summary" {
            div.cols {
                div.panel {
                    dl.grid {
                        dt { "Sync" } dd.sync-status { (sync_badge(apps::sync_name(st.sync.status)))
                            @if pending { " " span.badge.tag { "operation pending" } } }
                        dt { "Health" } dd.health-status { (health_badge(apps::health_name(st.health.status)))
                            @if let Some(m) = &st.health.message { " " span.muted { (m) } } }
                        dt { "Cluster" } dd.cluster {
                            a href="/clusters" title="Clusters" { (app.spec.cluster()) }
                            @if let Some(ns) = app.spec.destination.namespace.as_deref().filter(|n| !n.is_empty()) {
                                " " span.muted { "namespace " (ns) }
                            }
                        }
                        dt { "Repository" } dd.mono { (kedge_source::repo::strip_userinfo(&app.spec.primary_source().repo_url)) }
                        dt { "Path" } dd.mono { (app.spec.primary_source().path) }
                        dt { "Target revision" } dd.mono { (app.spec.primary_source().target_revision) }
                        dt { "Synced to" } dd {
                            span.mono.revision { (st.sync.revision.clone().unwrap_or_else(|| "—".into())) }
                            @if let Some(c) = commit {
                                div { "“" (c.subject) "” " span.muted { "by " (c.author) ", " (time(Some(&c.date))) } }
                            }
                        }
                        dt { "Sync policy" } dd {
                            @if policy.automation().is_some() { span.badge.tag-info { "automated" } } @else { span.badge.tag { "manual" } }
                            @if let Some(a) = policy.automation() {
                                @if a.prune { " " span.badge.tag { "prune" } }
                                @if a.self_heal { " " span.badge.tag { "self-heal" } }
                            }
                            @if app.spec.suspend { " " span.badge.tag-info.suspended { "suspended" } }
                        }
                        dt { "Last compared" } dd { (time(st.reconciled_at.as_deref())) }
                    }
                }
                div.panel {
                    @if let Some(op) = st.operation_state.as_ref().filter(|o| !o.phase.is_completed()) {
                        h2 style="margin-top:0" { "Operation" }
                        p { span class={ "badge op-phase p-" (op.phase) } { (op.phase) } " since " (time(op.started_at.as_deref()))
                            @if let Some(o) = &op.operation { " " span.muted { "(" (o.initiated_by) ")" } } }
                        p.op-progress { (op.message) }
                    } @else {
                        h2 style="margin-top:0" { "Last operation" }
                        @if let Some(op) = &st.operation_state {
                            p { span class={ "badge op-phase p-" (op.phase) } { (op.phase) } " " (time(op.finished_at.as_deref().or(op.started_at.as_deref()))) }
                            p.muted { (op.message) }
                        } @else { p.muted { "No operation yet." } }
                    }
                    @if rights.update {
                        (action_form(&base, "suspend-toggle", caller, if app.spec.suspend { "Resume" } else { "Suspend" },
                            if app.spec.suspend { "Resume automated sync and self-heal?" } else { "Suspend automated sync and self-heal?" }, html!{}))
                    }
                    @if !st.conditions.is_empty() {
                        h2 { "Conditions" }
                        @for c in &st.conditions {
                            div.cond { strong { (c.type_) } " " span.muted { (c.status) " · " (c.reason) } @if !c.message.is_empty() { div.muted { (c.message) } } }
                        }
                    }
                }
            }
        }
    }
}

fn action_form(
    base: &str,
    action: &str,
    caller: &Caller,
    label: &str,
    confirm: &str,
    extra: Markup,
) -> Markup {
    let url = format!("{base}/actions/{action}");
    html! {
        form method="post" action=(url) hx-post=(url) hx-target="#flash" hx-swap="beforeend" hx-confirm=(confirm) {
            input type="hidden" name="_csrf" value=(caller.csrf());
            (extra)
            button type="submit" data-action=(action) { (label) }
        }
    }
}

fn actions(base: &str, caller: &Caller, rights: Rights) -> Markup {
    if !rights.sync {
        return html! { div.actions { span.badge.tag { "read-only" } } };
    }
    let url = format!("{base}/actions/sync");
    html! {
        div.actions {
            details.menu {
                summary.button.primary role="button" data-action="sync-menu" { "Sync…" }
                div.pop {
                    form method="post" action=(url) hx-post=(url) hx-target="#flash" hx-swap="beforeend"
                        hx-confirm="Sync this application now?" {
                        input type="hidden" name="_csrf" value=(caller.csrf());
                        label { input type="checkbox" name="prune" value="true"; " Prune objects removed from Git" }
                        label { input type="checkbox" name="confirm" value="true"; " Confirm a prune of more than half of the objects" }
                        label { input type="checkbox" name="dryRun" value="true"; " Dry run (change nothing)" }
                        label { "Revision (optional)" input type="text" name="revision" placeholder="target revision"; }
                        button.primary type="submit" data-action="sync" { "Synchronize" }
                    }
                }
            }
            (action_form(base, "refresh", caller, "Refresh", "Compare with Git now?", html!{}))
            (action_form(base, "hard-refresh", caller, "Hard refresh", "Drop cached comparisons and compare with Git now?", html!{}))
        }
    }
}

fn tree_node(base: &str, n: &TreeNode) -> Markup {
    let link = format!(
        "{base}/object?{}",
        serde_urlencoded::to_string([
            ("group", n.group.as_str()),
            ("version", n.version.as_str()),
            ("kind", n.kind.as_str()),
            ("namespace", n.namespace.as_str()),
            ("name", n.name.as_str()),
        ])
        .unwrap_or_default()
    );
    html! {
        li {
            div.node data-kind=(n.kind) data-name=(n.name) {
                span.kind { (n.kind) }
                @if n.sync.is_some() { a href=(link) { strong { (n.name) } } } @else { strong { (n.name) } }
                @if !n.namespace.is_empty() { span.muted { (n.namespace) } }
                @if let Some(s) = &n.sync { (sync_badge(s)) }
                @if let Some(h) = &n.health { (health_badge(h)) }
                @if !n.message.is_empty() { span.msg { (n.message) } }
            }
            @if !n.children.is_empty() {
                ul { @for c in &n.children { (tree_node(base, c)) } }
            }
        }
    }
}

fn diff_text(text: &str) -> Markup {
    html! {
        pre.diff {
            @for line in text.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") { "" }
                    else if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" }
                    else if line.starts_with("@@") { "hunk" } else { "" };
                span class=(class) { (line) }
            }
        }
    }
}

fn object_diff(base: &str, o: &ObjectDiffView, open: bool) -> Markup {
    let link = format!(
        "{base}/object?{}",
        serde_urlencoded::to_string([
            ("group", o.group.as_str()),
            ("version", o.version.as_str()),
            ("kind", o.kind.as_str()),
            ("namespace", o.namespace.as_str()),
            ("name", o.name.as_str()),
        ])
        .unwrap_or_default()
    );
    html! {
        details.obj open[open] data-kind=(o.kind) data-name=(o.name) {
            summary {
                span.muted { (o.kind) } strong { (o.name) }
                @if !o.namespace.is_empty() { span.muted { (o.namespace) } }
                (sync_badge(&o.status))
                a href=(link) { "live manifest" }
            }
            div {
                @for d in &o.drift { div.drift { "Drift: " (d) } }
                @if o.status == "Error" { p.error { (o.message) } }
                @if !o.diff.is_empty() { (diff_text(&o.diff)) }
            }
        }
    }
}

fn diff_section(base: &str, d: &DiffResult) -> Markup {
    let changed: Vec<&ObjectDiffView> = d.objects.iter().filter(|o| o.status != "Synced").collect();
    html! {
        p.muted { "Compared with " span.mono { (d.revision.get(..12).unwrap_or(&d.revision)) }
            @if let Some(r) = &d.ref_name { " (" (r) ")" } ". " (d.objects.len()) " objects." }
        @if d.in_sync { div.panel.empty.in-sync { "In sync: the cluster equals Git." } }
        @for o in &changed { (object_diff(base, o, true)) }
        @for i in &d.invalid { p.error { (i) } }
        @if !d.prune.is_empty() {
            h2 { "Removed from Git" }
            table.list { thead { tr { th { "Kind" } th { "Namespace" } th { "Name" } th { "On sync" } } }
                tbody { @for p in &d.prune { tr { td { (p.kind) } td { (p.namespace) } td { (p.name) } td { (p.action) } } } } }
        }
    }
}

async fn tab_content(
    state: &AppState,
    app: &Application,
    tab: &str,
    base: &str,
    caller: &Caller,
    rights: Rights,
    revision: Option<&str>,
) -> Markup {
    match tab {
        "diff" => match details::diff(state, app, revision).await {
            Ok(d) => diff_section(base, &d),
            Err(e) => html! { p.error { (e.message) } },
        },
        "events" => match details::events(state, app).await {
            Ok(events) if events.is_empty() => html! { div.panel.empty { "No events." } },
            Ok(events) => html! {
                table.list.events {
                    thead { tr { th { "Type" } th { "Reason" } th { "Message" } th { "Count" } th { "Last seen" } } }
                    tbody { @for e in &events { tr {
                        td { span class={ "badge " (if e.type_ == "Warning" { "h-Degraded" } else { "tag" }) } { (e.type_) } }
                        td { (e.reason) } td { (e.message) } td { (e.count) } td { (time(Some(&e.last_timestamp))) }
                    } } }
                }
            },
            Err(e) => html! { p.error { (e.message) } },
        },
        "history" => {
            let entries = details::history(state, app).await;
            let current = app.status.as_ref().and_then(|s| s.sync.revision.clone());
            html! {
                @if entries.is_empty() { div.panel.empty { "No syncs yet." } } @else {
                    table.list.history {
                        thead { tr { th { "ID" } th { "Revision" } th { "Commit" } th { "Deployed" } th { "By" } th { "Result" } th { span.sr-only { "Actions" } } } }
                        tbody { @for h in &entries { tr data-history-id=(h.entry.id) {
                            td { (h.entry.id) }
                            td.mono { (h.entry.revision.get(..10).unwrap_or(&h.entry.revision))
                                @if current.as_deref() == Some(h.entry.revision.as_str()) { " " span.badge.tag-info { "current" } } }
                            td { @if let Some(c) = &h.commit { (c.subject) div.muted { (c.author) } } }
                            td { (time(Some(&h.entry.deployed_at))) }
                            td { (h.entry.initiated_by) }
                            td { span class={ "badge p-" (h.entry.result) } { (h.entry.result) }
                                @if h.entry.attempts > 1 { div.muted { (h.entry.attempts) " syncs, " (h.entry.failures) " failed" } }
                                @if let Some(e) = &h.entry.last_error { div.muted title=(e) { "last error: " (e.chars().take(120).collect::<String>()) } } }
                            td { @if rights.sync {
                                (action_form(base, "rollback", caller, "Roll back",
                                    &format!("Roll back to history entry {} ({})? Automated sync is suspended until resumed.", h.entry.id, h.entry.revision.get(..7).unwrap_or(&h.entry.revision)),
                                    html! { input type="hidden" name="id" value=(h.entry.id); }))
                            } }
                        } } }
                    }
                }
            }
        }
        _ => match details::tree(state, app).await {
            Ok(nodes) if nodes.is_empty() => html! { div.panel.empty { "No objects yet." } },
            Ok(nodes) => html! { ul.tree { @for n in &nodes { (tree_node(base, n)) } } },
            Err(e) => html! { p.error { (e.message) } },
        },
    }
}

async fn app_page(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<AppQuery>,
) -> Response {
    let app = match access::authorize(&state, &caller, AppAction::Get, &ns, &name) {
        Ok(a) => a,
        Err(e) => return error_page(&caller, &e),
    };
    let base = format!("/applications/{ns}/{name}");
    let chain = promotions::chain(&state, &caller, &app);
    // The pipeline refreshes itself often (each of its stages changes it): only it is rendered then.
    if is_htmx(&headers) && hx_target(&headers) == Some("app-promotion") {
        return pipeline(&base, &chain, &caller).into_response();
    }
    let tab = ["diff", "events", "history"]
        .into_iter()
        .find(|t| q.tab.as_deref() == Some(*t))
        .unwrap_or("resources");
    let revision = app.status.as_ref().and_then(|s| s.sync.revision.clone());
    let commit = match &revision {
        Some(r) => details::commit_info(&state, &app, r).await,
        None => None,
    };
    let rights = Rights::of(&state, &caller, &app);
    let content = tab_content(
        &state,
        &app,
        tab,
        &base,
        &caller,
        rights,
        q.revision.as_deref(),
    )
    .await;
    let tab_url = format!("{base}?tab={tab}");
    let body = html! {
        p.muted { a href="/applications" { "Applications" } " / " (ns) }
        h1 { (name) (actions(&base, &caller, rights)) }
        @if let Some(f) = &q.flash { div.panel role="status" { (f) } }
        (summary(&app, commit.as_ref(), &caller, rights))
        @if chain.is_pipeline() {
            (pipeline(&base, &chain, &caller))
            // Outside the pipeline, which refreshes itself: the answer to a promotion stays until the next one.
            div.promote-result id="promote-result" aria-live="polite" {}
        }
        nav.tabs aria-label="Sections" {
            @for (t, label) in [("resources", "Resources"), ("diff", "Diff"), ("events", "Events"), ("history", "History")] {
                a href={ (base) "?tab=" (t) } aria-current=[(t == tab).then_some("page")] { (label) }
            }
        }
        section id="app-tab" data-live={ (ns) "/" (name) } hx-get=(tab_url) hx-trigger="kedge:changed"
            data-live-every=(if tab == "diff" { "2000" } else { "1000" })
            hx-select="#app-tab" hx-swap="outerHTML" hx-disinherit="*" aria-label=(tab) {
            (content)
        }
    };
    page(StatusCode::OK, &name, Some(&caller), body)
}

// ---------- promotion pipeline ----------

/// The promotion pipeline: the stages from left to right, live with each of them (`data-live` lists their keys).
fn pipeline(base: &str, chain: &Chain, caller: &Caller) -> Markup {
    let keys: Vec<String> = chain
        .stages
        .iter()
        .filter(|s| s.detail.is_some())
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    let own_ns = chain
        .stages
        .iter()
        .find(|s| s.current)
        .map_or("", |s| s.namespace.as_str());
    html! {
        section id="app-promotion" data-live=(keys.join(" ")) data-live-every="500" hx-get=(base) hx-trigger="kedge:changed"
            hx-select="#app-promotion" hx-swap="outerHTML" hx-disinherit="*" aria-label="Promotion pipeline" {
            h2 { "Promotion" }
            @if let Some(p) = &chain.problem { p.error { (p) } }
            ol.stages {
                @for column in 0..chain.columns() {
                    li.stage-col {
                        @if column > 0 { span.stage-arrow aria-hidden="true" { "→" } }
                        div.stage-stack {
                            @for s in chain.stages.iter().filter(|s| s.column == column) { (stage_card(s, own_ns, caller)) }
                        }
                    }
                }
            }
        }
    }
}

/// One stage: its namespace is named when it is not that of the application shown.
fn stage_card(s: &Stage, own_ns: &str, caller: &Caller) -> Markup {
    let key = format!("{}/{}", s.namespace, s.name);
    let short =
        |r: Option<&str>| r.map_or_else(|| "—".to_owned(), |r| promotions::short(r).to_owned());
    let soak =
        |soak: Option<&str>| html! { @if let Some(s) = soak { " " span.muted { "soak " (s) } } };
    let Some(d) = &s.detail else {
        return html! {
            div.stage.stage-hidden data-app=(key) {
                div.stage-name { strong { (s.name) } @if s.namespace != own_ns { " " span.muted { (s.namespace) } } }
                p.muted { @if s.missing { "not found" } @else { "hidden: you may not see this application" } }
            }
        };
    };
    html! {
        div.stage data-app=(key) aria-current=[s.current.then_some("page")] {
            div.stage-name {
                a href={ "/applications/" (key) } { strong { (s.name) } }
                @if s.namespace != own_ns { " " span.muted { (s.namespace) } }
            }
            div.stage-badges {
                (sync_badge(apps::sync_name(d.sync))) " " (health_badge(apps::health_name(d.health)))
                @if d.operation_running { " " span.badge.tag { "syncing" } }
            }
            dl.stage-facts {
                dt { "Revision" } dd.mono.stage-revision title=[d.revision.as_deref()] { (short(d.revision.as_deref())) }
                @if let Some(p) = &d.pending { dt { "Pending" } dd.mono.stage-pending title=(p) { (promotions::short(p)) } }
                dt { "Promotion" } dd.stage-mode {
                    @match d.approval {
                        Some(PromotionApproval::Manual) => {
                            span.badge.tag-info { "Manual" } (soak(d.soak.as_deref()))
                        }
                        Some(PromotionApproval::Auto) => {
                            span.badge.tag { "Auto" } (soak(d.soak.as_deref()))
                        }
                        None => span.muted { "first stage" },
                    }
                }
            }
            @if !d.waiting.is_empty() { p.muted.stage-waiting { (d.waiting) } }
            @if let Some(r) = &d.requested {
                p.stage-requested { span.badge.tag-info { "promotion requested" } @if !r.by.is_empty() { " " span.muted { "by " (r.by) } } }
            } @else if d.may_promote {
                @if let Some(p) = &d.pending { (promote_form(&key, &s.name, p, caller)) }
            }
            @if let Some(h) = d.history.first() {
                p.muted.stage-last { "Last: " span.mono title=(h.revision) { (promotions::short(&h.revision)) } " from " (h.from)
                    ", approved by " (h.approved_by) " " (time(Some(&h.at))) }
            }
        }
    }
}

fn promote_form(key: &str, name: &str, pending: &str, caller: &Caller) -> Markup {
    let url = format!("/applications/{key}/actions/promote");
    let short = promotions::short(pending);
    html! {
        form.promote method="post" action=(url) hx-post=(url) hx-target="#promote-result" hx-swap="innerHTML"
            hx-confirm=(format!("Promote {short} to {name}?")) {
            input type="hidden" name="_csrf" value=(caller.csrf());
            input type="hidden" name="candidate" value=(pending);
            button.primary type="submit" data-action="promote" { "Promote " (short) }
        }
    }
}

async fn object_page(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<ObjectQuery>,
) -> Response {
    let app = match access::authorize(&state, &caller, AppAction::Get, &ns, &name) {
        Ok(a) => a,
        Err(e) => return error_page(&caller, &e),
    };
    let obj = q.to_ref();
    let base = format!("/applications/{ns}/{name}");
    let manifest = details::live_manifest(&state, &app, &obj).await;
    let diff = details::diff(&state, &app, None).await;
    let this = diff.as_ref().ok().and_then(|d| {
        d.objects
            .iter()
            .find(|o| {
                o.group == obj.group
                    && o.kind == obj.kind
                    && o.namespace == obj.namespace
                    && o.name == obj.name
            })
            .cloned()
    });
    let body = html! {
        p.muted { a href="/applications" { "Applications" } " / " a href=(base) { (ns) "/" (name) } }
        h1 { span.muted { (obj.kind) } (obj.name) @if let Some(o) = &this { (sync_badge(&o.status)) (health_badge(&o.health)) } }
        @if let Some(o) = &this {
            @if !o.health_message.is_empty() { p.muted { (o.health_message) } }
            h2 { "Diff (live → Git)" }
            @for d in &o.drift { div.drift { "Drift: " (d) } }
            @if o.diff.is_empty() { p.muted { "No difference." } } @else { (diff_text(&o.diff)) }
        }
        @if let Err(e) = &diff { p.error { (e.message) } }
        h2 { "Live manifest" }
        @match &manifest {
            Ok(Some(y)) => pre.yaml { (y) },
            Ok(None) => p.muted { "The object does not exist in the cluster." },
            Err(e) => p.error { (e.message) },
        }
    };
    page(StatusCode::OK, &obj.name, Some(&caller), body)
}

#[derive(Deserialize, Default)]
struct ActionForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    prune: Option<String>,
    #[serde(default, rename = "dryRun")]
    dry_run: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    candidate: Option<String>,
}

fn checked(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| v == "true" || v == "on" || v == "1")
}

async fn action(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
    headers: HeaderMap,
    Path((ns, name, action)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let result: Result<String, ApiError> = async {
        caller.check_write(&headers, Some(&f.csrf))?;
        match action.as_str() {
            "sync" => {
                let dry = checked(&f.dry_run);
                ops::sync(
                    &state,
                    &caller,
                    &ns,
                    &name,
                    SyncRequest {
                        prune: checked(&f.prune),
                        dry_run: dry,
                        revision: f.revision.clone(),
                        confirm: checked(&f.confirm),
                    },
                )
                .await?;
                Ok(if dry {
                    "Dry-run sync requested".to_owned()
                } else {
                    "Sync requested".to_owned()
                })
            }
            "refresh" => ops::refresh(&state, &caller, &ns, &name, false)
                .await
                .map(|_| "Refresh requested".to_owned()),
            "hard-refresh" => ops::refresh(&state, &caller, &ns, &name, true)
                .await
                .map(|_| "Hard refresh requested".to_owned()),
            "suspend-toggle" => {
                let app = access::authorize(&state, &caller, AppAction::Update, &ns, &name)?;
                let suspend = !app.spec.suspend;
                ops::set_suspend(&state, &caller, &ns, &name, suspend).await?;
                Ok(if suspend {
                    "Suspended".to_owned()
                } else {
                    "Resumed".to_owned()
                })
            }
            "suspend" => ops::set_suspend(&state, &caller, &ns, &name, true)
                .await
                .map(|_| "Suspended".to_owned()),
            "resume" => ops::set_suspend(&state, &caller, &ns, &name, false)
                .await
                .map(|_| "Resumed".to_owned()),
            "rollback" => {
                let id =
                    f.id.ok_or_else(|| ApiError::bad_request("missing history id"))?;
                ops::rollback(
                    &state,
                    &caller,
                    &ns,
                    &name,
                    RollbackRequest {
                        id,
                        prune: checked(&f.prune),
                    },
                )
                .await?;
                Ok(format!("Rollback to {id} requested"))
            }
            "promote" => {
                let accepted = promotions::promote(
                    &state,
                    &caller,
                    &ns,
                    &name,
                    PromoteBody {
                        revision: f.revision.clone(),
                        candidate: f.candidate.clone(),
                    },
                )
                .await?;
                Ok(format!(
                    "Promotion of {} to {name} requested",
                    promotions::short(&accepted.revision)
                ))
            }
            other => Err(ApiError::not_found(format!("unknown action {other}"))),
        }
    }
    .await;
    if let Ok(msg) = &result {
        crate::live::publish(&state, &format!("{ns}/{name}"));
        tracing::debug!(action, msg, "ui action");
    }
    if is_htmx(&headers) && action == "promote" {
        // Shown beside the pipeline (`#promote-result`), errors included.
        return match result {
            Ok(msg) => html! { p.promote-ok role="status" { (msg) } }.into_response(),
            Err(e) => html! { p.error role="alert" { (e.message) } }.into_response(),
        };
    }
    if is_htmx(&headers) {
        // Toasts are swapped into #flash, errors included, so the status stays 200 for htmx to swap them.
        return match result {
            Ok(msg) => html! { div.toast role="status" { (msg) } }.into_response(),
            Err(e) => html! { div.toast.err role="alert" { (e.message) } }.into_response(),
        };
    }
    match result {
        Ok(msg) => Redirect::to(&format!(
            "/applications/{ns}/{name}?flash={}",
            auth::encode_component(&msg)
        ))
        .into_response(),
        Err(e) => error_page(&caller, &e),
    }
}
