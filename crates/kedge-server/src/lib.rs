//! Serves the JSON API, the live web UI and the Git webhook receivers of a running Kedge controller.
//!
//! Everything is read from the controller's own cache of Applications ([`ServerHandles::store`]), so listing stays
//! fast with thousands of applications; actions are written as annotations and spec patches that the controller
//! executes. Start at [`route_builder`], which `kedge run` hands to the controller runner.
//!
//! | path | what |
//! | --- | --- |
//! | `/api/v1/...` | JSON API (see `/api/v1/openapi.json`); bearer token or session cookie |
//! | `/api/webhook` | push events from GitHub, GitLab, Gitea/Forgejo and Bitbucket |
//! | `/auth/login`, `/auth/callback` | login through an OpenID Connect provider, when configured ([`oidc`]) |
//! | `/`, `/applications/...`, `/clusters`, `/login` | the web UI (server-rendered, htmx, live through server-sent events) |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use kedge_controller::runner::{RouteBuilder, ServerHandles};
use tokio::sync::broadcast;

pub mod access;
pub mod api;
pub mod apps;
mod assets;
pub mod auth;
pub mod clusters;
pub mod details;
pub mod error;
pub mod limit;
pub mod live;
pub mod oidc;
mod openapi;
pub mod ops;
pub mod promotions;
mod ui;
pub mod webhook;

pub use error::ApiError;
pub use oidc::OidcConfig;

/// Name of the Secret holding the generated admin password (key `password`).
pub const ADMIN_SECRET: &str = "kedge-initial-admin";
/// Name of the Secret with the accounts (argon2id hashes) and API tokens (see [`auth`]).
pub const USERS_SECRET: &str = "kedge-users";
/// Name of the optional Secret with webhook secrets (keys `github`, `gitlab`, `gitea`, `bitbucket`).
pub const WEBHOOK_SECRET: &str = "kedge-webhook";
/// Name of the Secret holding the key that signs login sessions (created at first use).
pub const SESSION_KEY_SECRET: &str = "kedge-session-key";

/// Settings of the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Namespace of the server's own Secrets (admin password, accounts, webhook secrets) and of the registered
    /// Clusters (the controller's Lease namespace).
    pub namespace: String,
    /// Mark session cookies `Secure` (set when the server is reached over TLS, e.g. behind an ingress). Requests
    /// that carry `X-Forwarded-Proto: https` get secure cookies regardless.
    pub secure_cookies: bool,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// The largest webhook body accepted.
    pub webhook_body_limit: usize,
    /// Create the admin password Secret at start when there is no admin account.
    pub create_admin_secret: bool,
    /// How failed logins are rate-limited.
    pub login_limits: limit::LoginLimits,
    /// Accept unsigned pushes from a Git provider that has no secret in Secret `kedge-webhook` (otherwise refused).
    pub webhook_allow_unsigned: bool,
    /// Login through an OpenID Connect provider (off when `None`); see [`oidc`].
    pub oidc: Option<OidcConfig>,
}

impl ServerConfig {
    /// Defaults: Secrets in `namespace`, 24 h sessions, 1 MiB webhook bodies, signed webhooks only, default login
    /// limits.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            secure_cookies: false,
            session_ttl: Duration::from_secs(24 * 3600),
            webhook_body_limit: 1024 * 1024,
            create_admin_secret: true,
            login_limits: limit::LoginLimits::default(),
            webhook_allow_unsigned: false,
            oidc: None,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    handles: ServerHandles,
    config: ServerConfig,
    sessions: auth::Sessions,
    accounts: auth::AccountCache,
    limiter: limit::LoginLimiter,
    oidc: oidc::OidcState,
    live: broadcast::Sender<live::Change>,
    commits: Mutex<details::CommitCache>,
    /// Events recording who asked for what (audit).
    recorder: kedge_controller::events::EventRecorder,
}

impl AppState {
    /// Builds the state and starts the background tasks (admin password, accounts store).
    pub fn start(handles: ServerHandles, config: ServerConfig) -> Self {
        // Live updates follow the controller's cache: a page re-rendered for a change finds that change there.
        let tx = handles.app_changes.clone();
        let state = AppState {
            inner: Arc::new(Inner {
                sessions: auth::Sessions::default(),
                accounts: auth::AccountCache::default(),
                limiter: limit::LoginLimiter::new(config.login_limits.clone()),
                oidc: oidc::OidcState::default(),
                live: tx,
                commits: Mutex::new(details::CommitCache::default()),
                recorder: kedge_controller::events::EventRecorder::new(
                    handles.client.clone(),
                    "kedge-server",
                    std::env::var("HOSTNAME").unwrap_or_else(|_| "kedge".into()),
                ),
                handles,
                config,
            }),
        };
        {
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(err) = auth::start_accounts(&state).await {
                    tracing::warn!(error = %err, "cannot set up the accounts");
                }
            });
        }
        state
    }

    /// The controller's handles.
    pub fn handles(&self) -> &ServerHandles {
        &self.inner.handles
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        &self.inner.handles.client
    }

    /// Records an Event on `app` naming the user who asked for something (audit).
    pub async fn audit(&self, app: &kedge_api::Application, reason: &str, message: &str) {
        self.inner
            .recorder
            .publish(
                app,
                kedge_controller::events::Severity::Normal,
                reason,
                message,
            )
            .await;
    }

    /// The server settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }
}

/// All routes: API, webhooks, UI and assets.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(webhook::routes())
        .merge(ui::routes())
        .merge(oidc::routes())
        .merge(assets::routes())
        .with_state(state)
}

/// The route builder `kedge run` passes to the controller runner.
pub fn route_builder(config: ServerConfig) -> RouteBuilder {
    Box::new(move |handles: ServerHandles| router(AppState::start(handles, config)))
}
