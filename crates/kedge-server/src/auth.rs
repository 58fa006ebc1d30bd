//! Accounts, login sessions, bearer tokens, roles and CSRF protection.
//!
//! Accounts:
//! - `admin`, whose password is generated at first start and stored in Secret `kedge-initial-admin` (key `password`)
//!   in the server's namespace; it is never logged.
//! - further accounts in the optional Secret `kedge-users`: each key is an account name and its value
//!   `<role>:<password>`, role `admin` or `readonly`; a key `token.<name>` holds a long-lived API token as
//!   `<role>:<token>` for scripts.
//!
//! Logging in (`POST /api/v1/session` or the login page) gives a session: a cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` behind TLS) and the same value as a bearer token. The token is signed with a key kept in Secret
//! `kedge-session-key`, so every replica and a restarted server accept it; it names the account and a tag of its
//! password, so a removed account or a changed password ends it. Requests with a cookie that change something must carry
//! the session's CSRF token (header `X-CSRF-Token`, or form field `_csrf` for plain HTML forms) and, when the browser
//! sends one, an `Origin` of this server; bearer tokens need neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::{ADMIN_SECRET, AppState, SESSION_KEY_SECRET, USERS_SECRET};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kedge_session";
/// Header carrying the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read only.
    #[serde(rename = "readonly")]
    ReadOnly,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s.trim() {
            "admin" => Some(Role::Admin),
            "readonly" | "read-only" | "readOnly" => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// How the caller authenticated.
#[derive(Clone, Debug)]
pub enum Via {
    /// A browser session cookie; mutations need this CSRF token.
    Cookie {
        /// The session's CSRF token.
        csrf: String,
    },
    /// An `Authorization: Bearer` token.
    Bearer,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Account name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// How they authenticated.
    pub via: Via,
}

impl Caller {
    /// The CSRF token to embed in pages (empty for bearer callers).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Cookie { csrf } => csrf,
            Via::Bearer => "",
        }
    }

    /// Checks that the caller may change things: an admin, and for cookie sessions a matching CSRF token (from the
    /// header or `form_csrf`) and a same-origin request.
    pub fn check_write(
        &self,
        headers: &HeaderMap,
        form_csrf: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.role != Role::Admin {
            return Err(ApiError::forbidden(format!(
                "account {} is read-only",
                self.user
            )));
        }
        let Via::Cookie { csrf } = &self.via else {
            return Ok(());
        };
        check_same_origin(headers)?;
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .or(form_csrf)
            .unwrap_or("");
        if given.is_empty() || !bool::from(given.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(ApiError::forbidden("missing or invalid CSRF token"));
        }
        Ok(())
    }
}

/// Rejects requests a browser marks as cross-site or whose `Origin` is another host.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(ApiError::forbidden("cross-site request refused"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Err(ApiError::forbidden("cross-origin request refused"));
        }
    }
    Ok(())
}

/// What a session token says: signed by the server, so that every replica (and a restarted one) accepts it.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
struct Claims {
    /// The account.
    u: String,
    /// The CSRF token of the session.
    c: String,
    /// Expiry, Unix seconds.
    e: u64,
    /// A tag of the account's password when the session was opened: a changed password ends its sessions.
    p: String,
}

/// Login sessions: signed tokens (HMAC-SHA256 with a key kept in Secret `kedge-session-key`, created at first use),
/// so sessions survive restarts and work on every replica. Logging out revokes a token on this replica; the cookie
/// is removed from the browser either way.
#[derive(Default)]
pub struct Sessions {
    key: tokio::sync::OnceCell<Arc<Vec<u8>>>,
    revoked: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    async fn key(&self, state: &AppState) -> Result<Arc<Vec<u8>>, ApiError> {
        self.key
            .get_or_try_init(|| async {
                ensure_session_key(state.client(), &state.config().namespace)
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    fn revoke(&self, token: &str, expires: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_now();
        revoked.retain(|_, e| *e > now);
        revoked.insert(hash(token), expires);
    }

    fn is_revoked(&self, token: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&hash(token))
    }
}

const TOKEN_PREFIX: &str = "v1.";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A tag of a password that reveals nothing of it.
fn password_tag(password: &str) -> String {
    let digest = Sha256::digest(format!("kedge-session\0{password}").as_bytes());
    hex::encode(&digest[..8])
}

fn mac(key: &[u8], body: &str) -> Vec<u8> {
    use hmac::{Mac, digest::KeyInit};
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(TOKEN_PREFIX.as_bytes());
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `v1.<claims>.<signature>`, both base64url.
fn sign(key: &[u8], claims: &Claims) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(claims).unwrap_or_default());
    format!("{TOKEN_PREFIX}{body}.{}", b64.encode(mac(key, &body)))
}

/// The claims of a token this key signed and that has not expired.
fn verify(key: &[u8], token: &str, now: u64) -> Option<Claims> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, signature) = token.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    let signature = b64.decode(signature).ok()?;
    if !bool::from(mac(key, body).ct_eq(&signature)) {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&b64.decode(body).ok()?).ok()?;
    (claims.e > now).then_some(claims)
}

/// The key that signs session tokens, from Secret `kedge-session-key` (created with a random key when absent; when
/// two replicas race, the one that creates it wins and the other reads it).
pub async fn ensure_session_key(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<u8>, ApiError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        match api.get_opt(SESSION_KEY_SECRET).await {
            Ok(Some(secret)) => {
                if let Some(key) = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("key"))
                    .filter(|k| k.0.len() >= 32)
                {
                    return Ok(key.0.clone());
                }
                return Err(ApiError::internal(format!(
                    "Secret {namespace}/{SESSION_KEY_SECRET} has no key of at least 32 bytes"
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(ApiError::kube("read the session key Secret", &e)),
        }
        let secret = own_secret(SESSION_KEY_SECRET, namespace, "key", random_bytes(32));
        match api.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                if let Some(key) = created.data.and_then(|mut d| d.remove("key")) {
                    return Ok(key.0);
                }
            }
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(ApiError::kube("create the session key Secret", &e)),
        }
    }
    Err(ApiError::internal("cannot set up the session key"))
}

/// The accounts, read from Secrets and kept for a few seconds.
#[derive(Default)]
pub struct AccountCache(Mutex<Option<(Instant, Arc<Accounts>)>>);

/// Accounts and API tokens.
#[derive(Default, Debug)]
pub struct Accounts {
    passwords: HashMap<String, (Role, String)>,
    tokens: HashMap<String, (String, Role)>,
}

const ACCOUNT_TTL: Duration = Duration::from_secs(5);

async fn accounts(state: &AppState, fresh: bool) -> Result<Arc<Accounts>, ApiError> {
    if !fresh {
        let cached = state
            .inner
            .accounts
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, a)) = cached
            && at.elapsed() < ACCOUNT_TTL
        {
            return Ok(a);
        }
    }
    let loaded = Arc::new(load_accounts(state.client(), &state.config().namespace).await?);
    *state
        .inner
        .accounts
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), loaded.clone()));
    Ok(loaded)
}

fn secret_strings(secret: &Secret) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(s) = String::from_utf8(v.0.clone()) {
            out.push((k.clone(), s));
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.push((k.clone(), v.clone()));
    }
    out
}

/// Reads one key of a Secret; `None` when the Secret or key is absent.
pub async fn read_secret_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, ApiError> {
    Ok(read_secret(client, namespace, name)
        .await?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// Reads every key of a Secret (empty when absent).
pub async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(secret_strings(&s)),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(ApiError::kube(
            &format!("read Secret {namespace}/{name}"),
            &e,
        )),
    }
}

async fn load_accounts(client: &kube::Client, namespace: &str) -> Result<Accounts, ApiError> {
    let mut accounts = Accounts::default();
    if let Some(pw) = read_secret_key(client, namespace, ADMIN_SECRET, "password").await?
        && !pw.trim().is_empty()
    {
        accounts
            .passwords
            .insert("admin".into(), (Role::Admin, pw.trim().to_owned()));
    }
    for (key, value) in read_secret(client, namespace, USERS_SECRET).await? {
        let Some((role, secret)) = value.trim().split_once(':') else {
            tracing::warn!(key, "ignoring account entry without <role>:<secret>");
            continue;
        };
        let Some(role) = Role::parse(role) else {
            tracing::warn!(key, "ignoring account entry with an unknown role");
            continue;
        };
        if secret.is_empty() {
            continue;
        }
        if let Some(name) = key.strip_prefix("token.") {
            accounts
                .tokens
                .insert(hash(secret), (name.to_owned(), role));
        } else {
            accounts
                .passwords
                .insert(key.clone(), (role, secret.to_owned()));
        }
    }
    Ok(accounts)
}

/// A successful login.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResult {
    /// The session token (cookie value and bearer token).
    pub token: String,
    /// The account.
    pub user: String,
    /// Its role.
    pub role: Role,
    /// The CSRF token for cookie-authenticated mutations.
    pub csrf_token: String,
}

/// Checks a user name and password and opens a session.
pub async fn login(state: &AppState, user: &str, password: &str) -> Result<LoginResult, ApiError> {
    let accounts = accounts(state, true).await?;
    let invalid = || ApiError::unauthorized("invalid username or password");
    let Some((role, expected)) = accounts.passwords.get(user) else {
        return Err(invalid());
    };
    if password.is_empty() || !bool::from(password.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(invalid());
    }
    let key = state.inner.sessions.key(state).await?;
    let csrf = random_hex(16);
    let token = sign(
        &key,
        &Claims {
            u: user.to_owned(),
            c: csrf.clone(),
            e: unix_now() + state.config().session_ttl.as_secs(),
            p: password_tag(expected),
        },
    );
    tracing::info!(user, "login");
    Ok(LoginResult {
        token,
        user: user.to_owned(),
        role: *role,
        csrf_token: csrf,
    })
}

/// Ends the session of `token` (on this replica; the caller also clears the cookie).
pub async fn logout(state: &AppState, token: &str) {
    if let Ok(key) = state.inner.sessions.key(state).await
        && let Some(claims) = verify(&key, token, unix_now())
    {
        state.inner.sessions.revoke(token, claims.e);
    }
}

/// The account and CSRF token of a valid session token, checked against the current accounts (a removed account or
/// a changed password ends its sessions; the role is the account's current one).
async fn session(
    state: &AppState,
    token: &str,
) -> Result<Option<(String, Role, String)>, ApiError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let key = state.inner.sessions.key(state).await?;
    let Some(claims) = verify(&key, token, unix_now()) else {
        return Ok(None);
    };
    if state.inner.sessions.is_revoked(token) {
        return Ok(None);
    }
    let accounts = accounts(state, false).await?;
    Ok(accounts
        .passwords
        .get(&claims.u)
        .filter(|(_, password)| password_tag(password) == claims.p)
        .map(|(role, _)| (claims.u.clone(), *role, claims.c.clone())))
}

/// The `Set-Cookie` value for a new session.
pub fn session_cookie(state: &AppState, headers: &HeaderMap, token: &str) -> String {
    let secure = state.config().secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        state.config().session_ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session token a request carries, from the cookie or the bearer header.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    bearer(headers).or_else(|| cookie(headers, SESSION_COOKIE))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_owned())
        })
}

/// Finds the caller of a request, if it carries a valid token.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    if let Some(token) = bearer(headers) {
        if let Some((user, role, _)) = session(state, &token).await? {
            return Ok(Some(Caller {
                user,
                role,
                via: Via::Bearer,
            }));
        }
        let accounts = accounts(state, false).await?;
        return Ok(accounts
            .tokens
            .get(&hash(&token))
            .map(|(user, role)| Caller {
                user: user.clone(),
                role: *role,
                via: Via::Bearer,
            }));
    }
    if let Some(token) = cookie(headers, SESSION_COOKIE)
        && let Some((user, role, csrf)) = session(state, &token).await?
    {
        return Ok(Some(Caller {
            user,
            role,
            via: Via::Cookie { csrf },
        }));
    }
    Ok(None)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, &parts.headers).await?.ok_or_else(|| {
            ApiError::unauthorized("authentication required: log in or send a bearer token")
        })
    }
}

/// A caller of a UI page; anonymous visitors are redirected to the login page.
pub struct UiCaller(pub Caller);

/// Redirect to the login page (or 401 for htmx and event-stream requests, which cannot follow it).
pub struct LoginRedirect(String);

impl IntoResponse for LoginRedirect {
    fn into_response(self) -> Response {
        Redirect::to(&format!("/login?next={}", encode_component(&self.0))).into_response()
    }
}

impl FromRequestParts<AppState> for UiCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match authenticate(state, &parts.headers).await {
            Ok(Some(c)) => Ok(UiCaller(c)),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".into());
                if parts.headers.contains_key("hx-request") {
                    // htmx follows redirects inside the fragment; ask it to load the login page instead.
                    let mut resp = ApiError::unauthorized("session expired").into_response();
                    if let Ok(v) = format!("/login?next={}", encode_component(&next)).parse() {
                        resp.headers_mut().insert("hx-redirect", v);
                    }
                    return Err(resp);
                }
                Err(LoginRedirect(next).into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Percent-encodes a URL component.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Creates the admin password Secret when it does not exist. The password is never logged.
pub async fn ensure_admin_secret(client: &kube::Client, namespace: &str) -> Result<(), ApiError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(ADMIN_SECRET).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(e) => return Err(ApiError::kube("read the admin password Secret", &e)),
    }
    let password = random_password(24);
    let secret = own_secret(ADMIN_SECRET, namespace, "password", password.into_bytes());
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(
                "generated the admin password; read it with: kubectl -n {namespace} get secret {ADMIN_SECRET} -o jsonpath='{{.data.password}}' | base64 -d"
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(ApiError::kube("create the admin password Secret", &e)),
    }
}

/// A Secret of the server's own, with one key.
fn own_secret(name: &str, namespace: &str, key: &str, value: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([("app.kubernetes.io/part-of".to_owned(), "kedge".to_owned())].into()),
            ..Default::default()
        },
        data: Some([(key.to_owned(), ByteString(value))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        // The OS generator does not fail on supported platforms; refuse to hand out predictable secrets if it does.
        panic!("the operating system's random number generator failed");
    }
    buf
}

fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

fn random_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2) {
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - (256 % ALPHABET.len());
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn session_tokens_verify_only_unaltered_unexpired_and_with_the_same_key() {
        let key = random_bytes(32);
        let claims = Claims {
            u: "admin".into(),
            c: "csrf".into(),
            e: 2_000,
            p: password_tag("pw"),
        };
        let token = sign(&key, &claims);
        assert_eq!(verify(&key, &token, 1_000), Some(claims.clone()));
        assert_eq!(verify(&key, &token, 2_000), None, "expired");
        assert_eq!(
            verify(&random_bytes(32), &token, 1_000),
            None,
            "another key"
        );
        // Another account's name in the same signature.
        let (body, signature) = token
            .trim_start_matches(TOKEN_PREFIX)
            .split_once('.')
            .unwrap_or_default();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut forged: Claims =
            serde_json::from_slice(&b64.decode(body).unwrap_or_default()).unwrap_or(claims);
        forged.u = "mallory".into();
        let forged_body = b64.encode(serde_json::to_vec(&forged).unwrap_or_default());
        assert_eq!(
            verify(
                &key,
                &format!("{TOKEN_PREFIX}{forged_body}.{signature}"),
                1_000
            ),
            None
        );
        assert_eq!(verify(&key, "v1.garbage", 1_000), None);
        assert_ne!(password_tag("pw"), password_tag("pw2"));
        assert!(!password_tag("pw").contains("pw"));
    }

    #[test]
    fn passwords_use_the_alphabet_and_differ() {
        let a = random_password(24);
        let b = random_password(24);
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn cookies_and_bearer_tokens_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; kedge_session=abc; b=2"),
        );
        assert_eq!(request_token(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(request_token(&h).as_deref(), Some("xyz"));
    }

    #[test]
    fn cross_origin_writes_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(check_same_origin(&h).is_err());
    }

    #[test]
    fn cookie_callers_need_the_csrf_token_and_readers_cannot_write() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("h"));
        let c = Caller {
            user: "admin".into(),
            role: Role::Admin,
            via: Via::Cookie { csrf: "tok".into() },
        };
        assert!(c.check_write(&h, None).is_err());
        assert!(c.check_write(&h, Some("wrong")).is_err());
        assert!(c.check_write(&h, Some("tok")).is_ok());
        let reader = Caller {
            user: "r".into(),
            role: Role::ReadOnly,
            via: Via::Bearer,
        };
        assert_eq!(
            reader.check_write(&h, None).map_err(|e| e.status.as_u16()),
            Err(403)
        );
    }
}
