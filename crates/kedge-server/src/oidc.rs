//! Login through an OpenID Connect provider (Dex, Keycloak, Okta, Entra ID, Google, ...), with the authorization code
//! flow, PKCE (S256), a `state` and a `nonce`.
//!
//! `GET /auth/login?next=/path` sends the browser to the provider. What the callback needs to check the answer (state,
//! nonce, PKCE verifier, the page to return to) travels in a short-lived cookie signed with the session key, so that
//! any replica can finish a login another one started. `GET /auth/callback` checks the state, exchanges the code (the
//! client secret comes from Secret `kedge-oidc`, key `clientSecret`, read at each login), verifies the ID token
//! (signature against the provider's keys, issuer, audience, expiry, nonce, and the access token hash when present)
//! and opens a normal Kedge session.
//!
//! The user name is the `preferred_username` claim, else `email`, else `sub`; the groups are the configured groups
//! claim (a list of strings, or one string). Both are read from the ID token, and from the userinfo endpoint when the
//! ID token lacks them (many providers put only `sub` in the ID token of the code flow). The session keeps the groups;
//! the role is computed from them with the configuration in force at each request (see [`OidcConfig::role_of`]).
//!
//! The provider's metadata (discovery) and keys are fetched at the first login and kept for an hour, and fetched again
//! at once when an ID token is signed with a key not among them (the provider rotated its keys); a failed discovery
//! is tried again at the next login.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::auth::{self, Role};

/// Name of the Secret holding the OIDC client secret (key [`OIDC_SECRET_KEY`]).
pub const OIDC_SECRET: &str = "kedge-oidc";
/// Key of the client secret in Secret [`OIDC_SECRET`].
pub const OIDC_SECRET_KEY: &str = "clientSecret";
/// Cookie carrying a login in progress (state, nonce, PKCE verifier, next page), signed.
const FLOW_COOKIE: &str = "kedge_oidc_flow";
/// How long a login at the provider may take.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long the provider's metadata and keys are kept.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The longest session token that still fits in a cookie with its name and attributes.
const MAX_TOKEN_LEN: usize = 3800;
/// How long one request to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of the OIDC login.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client ID registered at the provider.
    pub client_id: String,
    /// Where the provider sends the browser back: `<UI URL>/auth/callback`, registered at the provider.
    pub redirect_url: String,
    /// Scopes asked for (`openid` is always asked for).
    pub scopes: Vec<String>,
    /// The claim listing the user's groups.
    pub groups_claim: String,
    /// Members of these groups are admins.
    pub admin_groups: Vec<String>,
    /// Members of these groups (and of no admin group) may read everything.
    pub readonly_groups: Vec<String>,
}

impl OidcConfig {
    /// A configuration with the default scopes (`openid profile email groups`), groups claim (`groups`) and no
    /// global roles for any group.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        redirect_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            redirect_url: redirect_url.into(),
            scopes: ["openid", "profile", "email", "groups"]
                .map(String::from)
                .to_vec(),
            groups_claim: "groups".into(),
            admin_groups: Vec::new(),
            readonly_groups: Vec::new(),
        }
    }

    /// The global role of a user in `groups`: admin for a member of an admin group, read-only for a member of a
    /// read-only group, otherwise none (the project roles that list one of the groups decide).
    pub fn role_of(&self, groups: &[String]) -> Role {
        let member = |list: &[String]| groups.iter().any(|g| list.contains(g));
        if member(&self.admin_groups) {
            Role::Admin
        } else if member(&self.readonly_groups) {
            Role::ReadOnly
        } else {
            Role::None
        }
    }
}

/// What can go wrong in an OIDC login. Messages name no secret value.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// OIDC login is not configured.
    #[error("single sign-on is not configured on this server")]
    NotConfigured,
    /// The provider's metadata could not be read.
    #[error("cannot read the identity provider's configuration from {issuer}: {reason}")]
    Discovery {
        /// The issuer URL.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The provider answered the authorization request with an error.
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    /// The callback came without a login in progress, or its state differs.
    #[error("{0}; start the login again")]
    State(&'static str),
    /// The client secret is missing.
    #[error("the OIDC client secret is missing: {0}")]
    Secret(String),
    /// The provider did not accept the client's credentials.
    #[error(
        "the identity provider did not accept Kedge's client credentials ({0}); check --oidc-client-id and key \
         clientSecret of Secret kedge-oidc"
    )]
    Client(String),
    /// The code exchange failed otherwise.
    #[error("the identity provider did not accept the authorization code: {0}")]
    Exchange(String),
    /// The ID token was missing or did not verify.
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(String),
    /// The userinfo endpoint failed.
    #[error("cannot read the user's claims from the identity provider's userinfo endpoint: {0}")]
    UserInfo(String),
    /// The session would not fit in a cookie.
    #[error(
        "the user is in too many groups ({0}) for a session cookie; have the identity provider send fewer in the \
         groups claim (e.g. only the groups Kedge's roles name)"
    )]
    TooManyGroups(usize),
    /// Something of Kedge's own failed (the session key, the cluster).
    #[error("{0}")]
    Internal(String),
}

impl OidcError {
    /// The HTTP status of the error page.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::NotConfigured => StatusCode::NOT_FOUND,
            OidcError::Refused(_) => StatusCode::FORBIDDEN,
            OidcError::State(_) => StatusCode::BAD_REQUEST,
            OidcError::Discovery { .. }
            | OidcError::Client(_)
            | OidcError::Exchange(_)
            | OidcError::IdToken(_)
            | OidcError::UserInfo(_) => StatusCode::BAD_GATEWAY,
            OidcError::TooManyGroups(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OidcError::Secret(_) | OidcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failed request to the provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// Claims besides the standard ones (the groups claim among them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

impl OtherClaims {
    /// The groups in `claim`: a list of strings (other items are skipped) or one string; `None` when absent.
    fn groups(&self, claim: &str) -> Option<Vec<String>> {
        match self.rest.get(claim)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            Value::String(s) => Some(vec![s.clone()]),
            Value::Null => None,
            _ => Some(Vec::new()),
        }
    }
}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResp = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResp,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The provider's metadata, kept between logins, and the HTTP client that talks to the provider.
#[derive(Default)]
pub struct OidcState {
    metadata: tokio::sync::Mutex<Option<(Instant, Arc<CoreProviderMetadata>)>>,
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl OidcState {
    /// The HTTP client: rustls with the ring provider, as everywhere in Kedge; no redirects (a provider's endpoints
    /// answer themselves).
    fn http(&self) -> Result<reqwest::Client, OidcError> {
        self.http
            .get_or_init(|| {
                kedge_source::install_crypto_provider();
                reqwest::Client::builder()
                    .user_agent(concat!("kedge/", env!("CARGO_PKG_VERSION")))
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(HTTP_TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .clone()
            .map_err(OidcError::Internal)
    }

    /// The provider's metadata and keys: cached, fetched again when older than an hour, when the last attempt
    /// failed, or when `refresh` (an ID token signed with a key not in the cached set: the provider rotated its keys).
    /// When fetching again fails, metadata fetched before is used still (with a warning).
    async fn metadata(
        &self,
        config: &OidcConfig,
        refresh: bool,
    ) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, m)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
            && !refresh
        {
            return Ok(m.clone());
        }
        match self.discover(config).await {
            Ok(metadata) => {
                *cached = Some((Instant::now(), metadata.clone()));
                Ok(metadata)
            }
            Err(e) => match cached.as_ref() {
                Some((_, m)) => {
                    tracing::warn!(error = %e, "using the OIDC provider's configuration read before");
                    Ok(m.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn discover(&self, config: &OidcConfig) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        let discovery = |reason: String| OidcError::Discovery {
            issuer: config.issuer.clone(),
            reason,
        };
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| discovery(e.to_string()))?;
        let http = self.http()?;
        let send = |req| send(http.clone(), req);
        let metadata = CoreProviderMetadata::discover_async(issuer, &send)
            .await
            .map_err(|e| discovery(error_chain(&e)))?;
        Ok(Arc::new(metadata))
    }
}

/// Sends one request to the provider with `http`.
async fn send(
    http: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let req = reqwest::Request::try_from(req).map_err(|e| HttpError(e.to_string()))?;
    let resp = http
        .execute(req)
        .await
        .map_err(|e| HttpError(error_chain(&e)))?;
    let mut builder = http::Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        builder = builder.header(name, value);
    }
    let body = resp.bytes().await.map_err(|e| HttpError(error_chain(&e)))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpError(e.to_string()))
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// A login in progress, kept in the signed [`FLOW_COOKIE`].
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Flow {
    /// The `state` sent to the provider.
    s: String,
    /// The nonce the ID token must carry.
    n: String,
    /// The PKCE verifier.
    v: String,
    /// The local page to return to.
    x: String,
    /// Expiry, Unix seconds.
    e: u64,
}

/// The OIDC routes (`/auth/login`, `/auth/callback`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Sends the browser to the provider.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = crate::ui::safe_next(q.next.as_deref());
    match start(&state, &headers, &next).await {
        Ok((url, cookie)) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url),
                (header::SET_COOKIE, cookie),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        Err(e) => failure(&state, &next, &e),
    }
}

/// The provider's authorization URL and the flow cookie.
async fn start(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
) -> Result<(String, String), OidcError> {
    let config = state
        .config()
        .oidc
        .as_ref()
        .ok_or(OidcError::NotConfigured)?;
    let metadata = state.inner.oidc.metadata(config, false).await?;
    // The secret is not needed to build the authorization URL.
    let client = client(config, &metadata, None)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in config.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.url();
    let flow = Flow {
        s: csrf.secret().clone(),
        n: nonce.secret().clone(),
        v: verifier.secret().clone(),
        x: next.to_owned(),
        e: auth::unix_now() + FLOW_TTL.as_secs(),
    };
    let key = auth::session_key(state)
        .await
        .map_err(|e| OidcError::Internal(e.message))?;
    let value = auth::sign_value(&key, FLOW_COOKIE, &flow);
    Ok((
        url.to_string(),
        flow_cookie(state, headers, &value, FLOW_TTL.as_secs()),
    ))
}

/// The `Set-Cookie` value of the flow cookie: sent back only to the callback, also on the provider's cross-site
/// redirect (`SameSite=Lax`), never readable by scripts.
fn flow_cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: u64) -> String {
    format!(
        "{FLOW_COOKIE}={value}; Path=/auth/callback; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if auth::secure_request(state, headers) {
            "; Secure"
        } else {
            ""
        }
    )
}

fn client(
    config: &OidcConfig,
    metadata: &CoreProviderMetadata,
    secret: Option<String>,
) -> Result<OidcClient, OidcError> {
    let redirect = RedirectUrl::new(config.redirect_url.clone())
        .map_err(|e| OidcError::Internal(format!("invalid redirect URL: {e}")))?;
    Ok(OidcClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(config.client_id.clone()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Finishes a login: checks the provider's answer and opens a session.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let flow = read_flow(&state, &headers).await;
    let next = flow
        .as_ref()
        .map_or_else(|| crate::ui::safe_next(None), |f| f.x.clone());
    let mut resp = match open_session(&state, q, flow).await {
        Ok(token) => {
            let mut resp = crate::ui::continue_page(&next);
            if let Ok(v) = auth::session_cookie(&state, &headers, &token).parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            tracing::info!(error = %e, "OIDC login failed");
            failure(&state, &next, &e)
        }
    };
    // The login is over, whatever its outcome.
    if let Ok(v) = flow_cookie(&state, &headers, "", 0).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The session token of a login that the provider's answer completes.
async fn open_session(
    state: &AppState,
    q: CallbackQuery,
    flow: Option<Flow>,
) -> Result<String, OidcError> {
    let flow = flow.ok_or(OidcError::State(
        "no login in progress in this browser (it took longer than 10 minutes, or was started elsewhere)",
    ))?;
    let user = finish(state, q, &flow).await?;
    let (token, groups) = auth::open_oidc_session(state, &user.name, user.groups)
        .await
        .map_err(|e| OidcError::Internal(e.message))?;
    // Browsers drop a cookie larger than 4096 bytes (name and attributes included) without a word: the user would be
    // back at the login page, not knowing why.
    if token.len() > MAX_TOKEN_LEN {
        return Err(OidcError::TooManyGroups(groups.len()));
    }
    tracing::info!(user = user.name.as_str(), groups = ?groups, "login through OIDC");
    Ok(token)
}

/// The error page of a failed login: the login page with the error.
fn failure(state: &AppState, next: &str, e: &OidcError) -> Response {
    crate::ui::login_error_page(state, e.status(), &e.to_string(), next)
}

async fn read_flow(state: &AppState, headers: &HeaderMap) -> Option<Flow> {
    let value = auth::cookie(headers, FLOW_COOKIE)?;
    let key = auth::session_key(state).await.ok()?;
    let flow: Flow = auth::verify_value(&key, FLOW_COOKIE, &value)?;
    (flow.e > auth::unix_now()).then_some(flow)
}

/// Who logged in.
struct OidcUser {
    name: String,
    groups: Vec<String>,
}

/// Checks the provider's answer, exchanges the code and verifies the ID token.
async fn finish(state: &AppState, q: CallbackQuery, flow: &Flow) -> Result<OidcUser, OidcError> {
    let config = state
        .config()
        .oidc
        .as_ref()
        .ok_or(OidcError::NotConfigured)?;
    let given_state = q.state.unwrap_or_default();
    if given_state.is_empty() || !bool::from(given_state.as_bytes().ct_eq(flow.s.as_bytes())) {
        return Err(OidcError::State(
            "the answer of the identity provider does not belong to the login started in this browser",
        ));
    }
    if let Some(error) = q.error {
        let mut message = clip(&error, 100);
        if let Some(d) = q.error_description.filter(|d| !d.trim().is_empty()) {
            message = format!("{message} ({})", clip(&d, 300));
        }
        return Err(OidcError::Refused(message));
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OidcError::Refused("the answer carries no authorization code".into()))?;
    let secret = auth::read_secret_key(
        state.client(),
        &state.config().namespace,
        OIDC_SECRET,
        OIDC_SECRET_KEY,
    )
    .await
    .map_err(|e| OidcError::Secret(e.message))?
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
    .ok_or_else(|| {
        OidcError::Secret(format!(
            "Secret {}/{OIDC_SECRET} has no key {OIDC_SECRET_KEY}",
            state.config().namespace
        ))
    })?;
    let metadata = state.inner.oidc.metadata(config, false).await?;
    let mut client = client(config, &metadata, Some(secret.clone()))?;
    let http = state.inner.oidc.http()?;
    let send = |req| send(http.clone(), req);
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| OidcError::Exchange(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.v.clone()))
        .request_async(&send)
        .await
        .map_err(|e| match &e {
            RequestTokenError::ServerResponse(r)
                if *r.error() == CoreErrorResponseType::InvalidClient =>
            {
                OidcError::Client(r.error_description().map_or_else(
                    || "invalid_client".to_owned(),
                    |d| format!("invalid_client: {}", clip(d, 300)),
                ))
            }
            RequestTokenError::ServerResponse(r) => {
                OidcError::Exchange(r.error_description().map_or_else(
                    || r.error().to_string(),
                    |d| format!("{}: {}", r.error(), clip(d, 300)),
                ))
            }
            other => OidcError::Exchange(error_chain(other)),
        })?;
    let id_token = token
        .id_token()
        .ok_or_else(|| OidcError::IdToken("the token response has no ID token".into()))?;
    let nonce = Nonce::new(flow.n.clone());
    let unknown_key = matches!(
        id_token.claims(&client.id_token_verifier(), &nonce),
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey
        ))
    );
    if unknown_key {
        // Signed with a key this server has not seen yet: the provider rotated its keys. Read them again, once.
        let metadata = state.inner.oidc.metadata(config, true).await?;
        client = self::client(config, &metadata, Some(secret))?;
    }
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        if actual != *expected {
            return Err(OidcError::IdToken(
                "the access token does not match the ID token's at_hash".into(),
            ));
        }
    }
    let mut name = claims
        .preferred_username()
        .map(|u| u.to_string())
        .or_else(|| claims.email().map(|e| e.to_string()));
    let mut groups = claims.additional_claims().groups(&config.groups_claim);
    if (name.is_none() || groups.is_none())
        && let Ok(request) =
            client.user_info(token.access_token().clone(), Some(claims.subject().clone()))
    {
        let info: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = request
            .request_async(&send)
            .await
            .map_err(|e| OidcError::UserInfo(error_chain(&e)))?;
        if name.is_none() {
            name = info
                .preferred_username()
                .map(|u| u.to_string())
                .or_else(|| info.email().map(|e| e.to_string()));
        }
        if groups.is_none() {
            groups = info.additional_claims().groups(&config.groups_claim);
        }
    }
    let name = name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| claims.subject().to_string());
    Ok(OidcUser {
        name,
        groups: groups.unwrap_or_default(),
    })
}

/// At most `max` characters of a text from the provider.
fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_configured_groups() {
        let mut c = OidcConfig::new("https://idp", "kedge", "https://kedge/auth/callback");
        c.admin_groups = vec!["platform-admins".into()];
        c.readonly_groups = vec!["auditors".into()];
        let g = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(c.role_of(&g(&["team-a", "platform-admins"])), Role::Admin);
        assert_eq!(c.role_of(&g(&["auditors", "platform-admins"])), Role::Admin);
        assert_eq!(c.role_of(&g(&["auditors"])), Role::ReadOnly);
        assert_eq!(c.role_of(&g(&["team-a"])), Role::None);
        assert_eq!(c.role_of(&[]), Role::None);
    }

    #[test]
    fn groups_claims_are_lists_or_one_string() {
        let claims: OtherClaims = serde_json::from_value(serde_json::json!({
            "groups": ["a", 3, "b"],
            "role": "ops",
            "nothing": null,
            "odd": {"x": 1}
        }))
        .expect("claims");
        assert_eq!(claims.groups("groups"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(claims.groups("role"), Some(vec!["ops".into()]));
        assert_eq!(claims.groups("nothing"), None);
        assert_eq!(claims.groups("missing"), None);
        assert_eq!(claims.groups("odd"), Some(Vec::new()));
    }

    #[test]
    fn provider_texts_are_clipped_and_lose_control_characters() {
        assert_eq!(clip("access_denied", 100), "access_denied");
        assert_eq!(clip("a\nb\u{7}c", 100), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
