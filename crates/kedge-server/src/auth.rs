//! Accounts, login sessions, bearer tokens, roles and CSRF protection.
//!
//! Accounts live in Secret `kedge-users` in the server's namespace: each key is an account name and its value
//! `<role>:<argon2id hash>`, role `admin` or `readonly`. Only hashes are kept there: a value written with a clear
//! password (`viewer: readonly:s3cret`, as older versions stored them) is replaced by its hash when the server reads
//! it, so writing a clear password is also how one sets or changes a password. A key `token.<name>` holds a long-lived
//! API token for scripts: written as `<role>:<token>`, it is replaced by `<role>:sha256:<hex digest>` in the same way
//! (tokens are long random strings, so a fast digest is enough; only the digest is kept).
//!
//! The `admin` password is generated at first start into Secret `kedge-initial-admin` (key `password`, for a person to
//! read; it is never logged) and hashed into the `admin` entry of `kedge-users`. As in Argo CD, the initial Secret can
//! be deleted once the admin password has been changed; while it exists, writing a new password into it sets the admin
//! password again (the version of the initial Secret last copied is recorded in annotation
//! [`INITIAL_ADMIN_VERSION`]).
//!
//! Logging in (`POST /api/v1/session` or the login page) gives a session: a cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` behind TLS) and the same value as a bearer token. The token is signed with a key kept in Secret
//! `kedge-session-key`, so every replica and a restarted server accept it; it names the account and its session
//! generation (derived from the random salt of the account's hash, never from the password), so a removed account or
//! a changed password ends it. Failed logins are rate-limited per account and per client address ([`crate::limit`]).
//! Requests with a cookie that change something must carry the session's CSRF token (header `X-CSRF-Token`, or form
//! field `_csrf` for plain HTML forms) and, when the browser sends one, an `Origin` of this server; bearer tokens need
//! neither.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::limit;
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
    /// No rights of its own: what the caller may see and do comes from the project roles its groups (or its project
    /// token) hold (see [`crate::access`]).
    None,
}

impl Role {
    /// The role's name in Secret `kedge-users`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "readonly",
            Role::None => "none",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s.trim() {
            "admin" => Some(Role::Admin),
            "readonly" | "read-only" | "readOnly" => Some(Role::ReadOnly),
            "none" => Some(Role::None),
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
    /// Account name (`proj:<project>:<role>` for a project token).
    pub user: String,
    /// Role.
    pub role: Role,
    /// The groups the caller belongs to (an account's `groups.<account>` entry, an OIDC login's groups claim): the
    /// project roles listing one of them apply to the caller.
    pub groups: Vec<String>,
    /// The project role a project token stands for (project, role).
    pub project_role: Option<(String, String)>,
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

    /// Checks that a request that changes something really comes from the caller: for cookie sessions a matching
    /// CSRF token (from the header or `form_csrf`) and a same-origin request; bearer callers need neither. Whether
    /// the caller may do it is [`crate::access`]'s question.
    pub fn check_write(
        &self,
        headers: &HeaderMap,
        form_csrf: Option<&str>,
    ) -> Result<(), ApiError> {
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
    /// The account's session generation when the session was opened (see [`generation`]): a changed password ends
    /// its sessions. Empty for an OIDC session.
    g: String,
    /// Where the session comes from; absent (as in every token made before OIDC logins) for an account of
    /// `kedge-users`.
    #[serde(default, skip_serializing_if = "SessionKind::is_account")]
    k: SessionKind,
    /// The groups of an OIDC login (its groups claim when it logged in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gs: Vec<String>,
}

/// Where a session comes from.
#[derive(Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum SessionKind {
    /// A password login of an account in `kedge-users`: checked against the account at each request.
    #[default]
    Account,
    /// A login through the OIDC provider: no local account; the role comes from the groups (see
    /// [`crate::oidc::OidcConfig::role_of`]), with the configuration in force at each request.
    Oidc,
}

impl SessionKind {
    fn is_account(&self) -> bool {
        *self == SessionKind::Account
    }
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

/// Version 2 tokens carry a session generation; version 1 tokens (a tag of the password) are no longer accepted.
const TOKEN_PREFIX: &str = "v2.";

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::{Mac, digest::KeyInit};
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The session generation of an account: an HMAC, keyed with the server's session key, of the account name and the
/// random salt of its stored password hash.
///
/// It carries no password material: the salt is random and independent of the password, and without the server's
/// key the value says nothing about the salt either. Every new password hash gets a new salt, so changing a password
/// (in either Secret, by any means) changes the generation and ends the account's sessions; a token stays valid on
/// every replica and across restarts as long as the stored hash is the same.
fn generation(key: &[u8], user: &str, salt: &str) -> String {
    let tag = hmac_parts(
        key,
        &[
            b"kedge-session-generation\0",
            user.as_bytes(),
            b"\0",
            salt.as_bytes(),
        ],
    );
    hex::encode(&tag[..16])
}

fn mac(key: &[u8], body: &str) -> Vec<u8> {
    hmac_parts(key, &[TOKEN_PREFIX.as_bytes(), body.as_bytes()])
}

/// `v2.<claims>.<signature>`, both base64url.
fn sign(key: &[u8], claims: &Claims) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(claims).unwrap_or_default());
    format!("{TOKEN_PREFIX}{body}.{}", b64.encode(mac(key, &body)))
}

/// `<value>.<signature>`, both base64url, of a value other than a session (e.g. a login in progress): the MAC covers
/// `domain`, so that a value signed for one use is never accepted for another (nor as a session token).
pub(crate) fn sign_value<T: Serialize>(key: &[u8], domain: &str, value: &T) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(value).unwrap_or_default());
    let tag = hmac_parts(
        key,
        &[b"kedge-value\0", domain.as_bytes(), b"\0", body.as_bytes()],
    );
    format!("{body}.{}", b64.encode(tag))
}

/// The value of a [`sign_value`] text signed with this key for `domain`.
pub(crate) fn verify_value<T: serde::de::DeserializeOwned>(
    key: &[u8],
    domain: &str,
    signed: &str,
) -> Option<T> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, signature) = signed.split_once('.')?;
    let signature = b64.decode(signature).ok()?;
    let tag = hmac_parts(
        key,
        &[b"kedge-value\0", domain.as_bytes(), b"\0", body.as_bytes()],
    );
    if !bool::from(tag.ct_eq(&signature)) {
        return None;
    }
    serde_json::from_slice(&b64.decode(body).ok()?).ok()
}

/// The key that signs sessions and other values of the server.
pub(crate) async fn session_key(state: &AppState) -> Result<Arc<Vec<u8>>, ApiError> {
    state.inner.sessions.key(state).await
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

/// Prefix of project tokens.
const PROJECT_TOKEN_PREFIX: &str = "kedge-proj.";

/// What a project token says: issued by `kedge project token create` for one role of one project, signed with the
/// session key.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProjectTokenClaims {
    /// The project.
    pub p: String,
    /// The role.
    pub r: String,
    /// The token's id (listed in the role's `jwtTokens` while the token is valid).
    pub i: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<u64>,
}

fn project_mac(key: &[u8], body: &str) -> Vec<u8> {
    hmac_parts(key, &[PROJECT_TOKEN_PREFIX.as_bytes(), body.as_bytes()])
}

/// A project token for `claims`, signed with the session key (`kedge-proj.<claims>.<signature>`, base64url).
pub fn sign_project_token(key: &[u8], claims: &ProjectTokenClaims) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(claims).unwrap_or_default());
    format!(
        "{PROJECT_TOKEN_PREFIX}{body}.{}",
        b64.encode(project_mac(key, &body))
    )
}

/// The claims of a project token this key signed and that has not expired at `now`.
pub fn verify_project_token(key: &[u8], token: &str, now: u64) -> Option<ProjectTokenClaims> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, signature) = token.strip_prefix(PROJECT_TOKEN_PREFIX)?.split_once('.')?;
    let signature = b64.decode(signature).ok()?;
    if !bool::from(project_mac(key, body).ct_eq(&signature)) {
        return None;
    }
    let claims: ProjectTokenClaims = serde_json::from_slice(&b64.decode(body).ok()?).ok()?;
    claims.e.is_none_or(|e| e > now).then_some(claims)
}

/// A new random id for a project token.
pub fn new_token_id() -> String {
    random_hex(8)
}

/// The caller a project token stands for: valid while its signature, expiry and the role's `jwtTokens` entry hold.
fn project_caller(state: &AppState, key: &[u8], token: &str) -> Option<Caller> {
    let claims = verify_project_token(key, token, unix_now())?;
    let project = state.handles().project(&claims.p)?;
    let listed = project
        .role(&claims.r)?
        .jwt_tokens
        .iter()
        .any(|t| t.id == claims.i);
    listed.then(|| Caller {
        user: format!("proj:{}:{}", claims.p, claims.r),
        role: Role::None,
        groups: Vec::new(),
        project_role: Some((claims.p, claims.r)),
        via: Via::Bearer,
    })
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

/// Password hashing.
///
/// Passwords are stored as argon2id hashes in the PHC string format (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`,
/// the parameters OWASP recommends as a minimum). Argo CD stores bcrypt; argon2id is chosen here because it is
/// memory-hard (bcrypt is not, so it is cheaper to attack with GPUs), has no 72-byte password limit, and its
/// implementation is already part of Kedge's dependencies (through the OpenPGP verifier), so no further code is
/// added. Hashes can also be made outside Kedge, e.g. with the `argon2` command (`echo -n PW | argon2 SALT -id -e`).
/// A bcrypt hash copied from Argo CD is refused with a message rather than taken for a password.
pub mod password {
    use std::sync::OnceLock;

    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};

    fn hasher() -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
    }

    /// Whether a stored value is an argon2 PHC hash.
    pub fn is_hash(value: &str) -> bool {
        value.starts_with("$argon2")
    }

    /// Whether a stored value looks like a bcrypt hash (`$2a$`, `$2b$`, `$2y$`), which Kedge does not verify.
    pub fn is_bcrypt(value: &str) -> bool {
        value.len() == 60
            && (value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$"))
    }

    /// Hashes `password` with a fresh random salt.
    pub fn hash(password: &str) -> Result<String, String> {
        let salt = SaltString::encode_b64(&super::random_bytes(16)).map_err(|e| e.to_string())?;
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| format!("cannot hash a password: {e}"))
    }

    /// Whether `password` matches the PHC hash `stored` (false for a malformed hash).
    pub fn verify(password: &str, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(parsed) => hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The salt of a PHC hash, when it parses.
    pub fn salt(stored: &str) -> Option<String> {
        PasswordHash::new(stored)
            .ok()?
            .salt
            .map(|s| s.as_str().to_owned())
    }

    /// A hash no password matches, checked for unknown accounts so that they take as long as known ones.
    pub fn dummy() -> &'static str {
        static DUMMY: OnceLock<String> = OnceLock::new();
        DUMMY.get_or_init(|| hash(&super::random_hex(16)).unwrap_or_default())
    }
}

/// Hashes and checks passwords off the async threads, at most two at a time (each argon2id check uses 19 MiB).
async fn blocking_hash<T: Send + 'static>(
    state_limit: &tokio::sync::Semaphore,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = state_limit
        .acquire()
        .await
        .map_err(|_| ApiError::internal("password checks are shutting down"))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))
}

/// The accounts, read from Secrets and kept for a few seconds; password checks and hashing, at most two at a time.
pub struct AccountCache {
    cached: Mutex<Option<(Instant, Arc<Accounts>)>>,
    /// One reload at a time (a reload may write the store).
    reload: tokio::sync::Mutex<()>,
    hashing: tokio::sync::Semaphore,
    /// Hashes made for clear-text entries that could not be written back, so that their session generation stays
    /// the same from one reload to the next: (account, keyed digest of the clear text) -> hash.
    unsaved: Mutex<HashMap<(String, Vec<u8>), String>>,
    /// Random key of the digests in `unsaved` (never leaves the process).
    unsaved_key: Vec<u8>,
}

impl Default for AccountCache {
    fn default() -> Self {
        Self {
            cached: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
            hashing: tokio::sync::Semaphore::new(2),
            unsaved: Mutex::new(HashMap::new()),
            unsaved_key: random_bytes(32),
        }
    }
}

/// A password account: its role and argon2id hash.
#[derive(Debug, Clone)]
struct Account {
    role: Role,
    hash: String,
}

/// Accounts and API tokens.
#[derive(Default, Debug)]
pub struct Accounts {
    passwords: HashMap<String, Account>,
    tokens: HashMap<String, (String, Role)>,
    /// account -> its groups (entries `groups.<account>`: a comma-separated list).
    groups: HashMap<String, Vec<String>>,
}

impl Accounts {
    fn groups_of(&self, user: &str) -> Vec<String> {
        self.groups.get(user).cloned().unwrap_or_default()
    }
}

const ACCOUNT_TTL: Duration = Duration::from_secs(5);

/// Annotation of Secret `kedge-users`: the `resourceVersion` of Secret `kedge-initial-admin` whose password was last
/// hashed into the `admin` entry. When that Secret changes (someone set a new initial password), it is hashed again.
pub const INITIAL_ADMIN_VERSION: &str = "kedge.dev/initial-admin-version";

async fn accounts(state: &AppState, fresh: bool) -> Result<Arc<Accounts>, ApiError> {
    let cache = &state.inner.accounts;
    let cached = || {
        cache
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|(at, _)| at.elapsed() < ACCOUNT_TTL)
            .map(|(_, a)| a)
    };
    if !fresh && let Some(a) = cached() {
        return Ok(a);
    }
    let _one = cache.reload.lock().await;
    // Another request reloaded while this one waited (a login always reads the Secrets again).
    if !fresh && let Some(a) = cached() {
        return Ok(a);
    }
    let loaded = Arc::new(load_accounts(state).await?);
    *cache.cached.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((Instant::now(), loaded.clone()));
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

/// What the accounts store needs: entries to replace (clear-text passwords hashed, the admin entry from the initial
/// password) and the new value of [`INITIAL_ADMIN_VERSION`].
#[derive(Debug, Default)]
struct StorePlan {
    /// key -> clear `<role>:<password>` value to be stored hashed (as `<role>:<hash>`).
    to_hash: Vec<(String, Role, String)>,
    /// The initial admin Secret's version to record, when the admin entry is (re)made from it.
    initial_version: Option<String>,
}

/// Decides what the store needs, from the entries of `kedge-users`, its [`INITIAL_ADMIN_VERSION`] annotation, and the
/// initial admin Secret's password and version.
fn plan_store(
    users: &[(String, String)],
    recorded: Option<&str>,
    initial: Option<(&str, &str)>,
) -> StorePlan {
    let mut plan = StorePlan::default();
    let mut has_admin = false;
    for (key, value) in users {
        if key.starts_with("groups.") {
            continue;
        }
        if key.starts_with("token.") {
            if let Some((role, token)) = value.trim().split_once(':')
                && let Some(role) = Role::parse(role)
                && !token.is_empty()
                && token_digest(token).is_none()
            {
                plan.to_hash.push((key.clone(), role, token.to_owned()));
            }
            continue;
        }
        if key == "admin" {
            has_admin = true;
        }
        let Some((role, secret)) = value.trim().split_once(':') else {
            continue;
        };
        let Some(role) = Role::parse(role) else {
            continue;
        };
        if !secret.is_empty() && !password::is_hash(secret) && !password::is_bcrypt(secret) {
            plan.to_hash.push((key.clone(), role, secret.to_owned()));
        }
    }
    if let Some((pw, version)) = initial.filter(|(pw, _)| !pw.trim().is_empty()) {
        // The admin entry comes from the initial password when there is none yet, or when the initial Secret changed
        // since its password was last copied; an admin entry someone wrote into kedge-users themselves (no
        // annotation) is theirs.
        let changed = recorded.is_some_and(|r| r != version);
        if !has_admin || changed {
            plan.to_hash.retain(|(k, _, _)| k != "admin");
            plan.to_hash
                .push(("admin".into(), Role::Admin, pw.trim().to_owned()));
            plan.initial_version = Some(version.to_owned());
        }
    }
    plan
}

/// Reads the accounts from Secret `kedge-users` (and the initial admin password), first bringing the store up to
/// date: a clear-text password (as older versions stored them, or as someone wrote it) is replaced by its hash, and
/// the initial admin password is hashed into the `admin` entry when that entry is missing or the initial Secret
/// changed. The write has a `resourceVersion` precondition, so a concurrent change is read again, not overwritten.
async fn load_accounts(state: &AppState) -> Result<Accounts, ApiError> {
    let namespace = &state.config().namespace;
    let api: Api<Secret> = Api::namespaced(state.client().clone(), namespace);
    let read = |name: &'static str| {
        let api = api.clone();
        async move {
            api.get_opt(name)
                .await
                .map_err(|e| ApiError::kube(&format!("read Secret {namespace}/{name}"), &e))
        }
    };
    for _ in 0..4 {
        let users = read(USERS_SECRET).await?;
        let initial = read(ADMIN_SECRET).await?;
        let entries = users.as_ref().map(secret_strings).unwrap_or_default();
        let recorded = users
            .as_ref()
            .and_then(|u| u.annotations().get(INITIAL_ADMIN_VERSION).cloned());
        let initial_pw = initial.as_ref().and_then(|s| {
            secret_strings(s)
                .into_iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| (v, s.resource_version().unwrap_or_default()))
        });
        let plan = plan_store(
            &entries,
            recorded.as_deref(),
            initial_pw.as_ref().map(|(p, v)| (p.as_str(), v.as_str())),
        );
        if plan.to_hash.is_empty() {
            return Ok(accounts_from(&entries));
        }
        let mut hashed = Vec::new();
        for (key, role, clear) in plan.to_hash {
            let h = if key.starts_with("token.") {
                format!("{TOKEN_DIGEST}{}", hash(&clear))
            } else {
                hash_for_store(state, &key, &clear).await?
            };
            hashed.push((key, format!("{}:{h}", role.as_str())));
        }
        let mut merged: HashMap<String, String> = entries.into_iter().collect();
        merged.extend(hashed.iter().cloned());
        let merged: Vec<(String, String)> = merged.into_iter().collect();
        match write_store(
            &api,
            namespace,
            users,
            &hashed,
            plan.initial_version.as_deref(),
        )
        .await
        {
            Ok(()) => {
                for (key, _) in &hashed {
                    tracing::info!(
                        account = key.as_str(),
                        secret = USERS_SECRET,
                        "stored the account's password (argon2id) or API token (SHA-256) as a hash"
                    );
                }
                forget_unsaved(state, &[]);
                return Ok(accounts_from(&merged));
            }
            // Changed meanwhile (another replica migrated it, someone edited it): read again.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot write password hashes to Secret {namespace}/{USERS_SECRET}; \
                     clear-text passwords there are hashed in memory only"
                );
                let keep: Vec<String> = hashed.iter().map(|(k, _)| k.clone()).collect();
                forget_unsaved(state, &keep);
                return Ok(accounts_from(&merged));
            }
        }
    }
    Err(ApiError::internal(format!(
        "Secret {namespace}/{USERS_SECRET} keeps changing; cannot store password hashes"
    )))
}

/// A hash of `clear` for the store: a fresh one, or the one made before for the same account and password when it
/// could not be written (so that the account's session generation does not change at every reload).
async fn hash_for_store(state: &AppState, key: &str, clear: &str) -> Result<String, ApiError> {
    let cache = &state.inner.accounts;
    let digest = hmac_parts(
        &cache.unsaved_key,
        &[key.as_bytes(), b"\0", clear.as_bytes()],
    );
    let id = (key.to_owned(), digest);
    if let Some(h) = cache
        .unsaved
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
    {
        return Ok(h.clone());
    }
    let owned = clear.to_owned();
    let h = blocking_hash(&cache.hashing, move || password::hash(&owned))
        .await?
        .map_err(ApiError::internal)?;
    cache
        .unsaved
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, h.clone());
    Ok(h)
}

/// Keeps only the in-memory hashes of the accounts in `keep`.
fn forget_unsaved(state: &AppState, keep: &[String]) {
    state
        .inner
        .accounts
        .unsaved
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(k, _), _| keep.contains(k));
}

/// Writes the hashed entries into Secret `kedge-users` (creating it when absent), with a precondition on the version
/// that was read.
async fn write_store(
    api: &Api<Secret>,
    namespace: &str,
    users: Option<Secret>,
    hashed: &[(String, String)],
    initial_version: Option<&str>,
) -> Result<(), kube::Error> {
    let mut secret = users.unwrap_or_else(|| {
        let mut s = own_secret(USERS_SECRET, namespace, "admin", Vec::new());
        s.data = Some(Default::default());
        s
    });
    let data = secret.data.get_or_insert_with(Default::default);
    for (key, value) in hashed {
        data.insert(key.clone(), ByteString(value.clone().into_bytes()));
    }
    // Values written as stringData are already in data once stored; drop the clear copy from the request.
    secret.string_data = None;
    if let Some(v) = initial_version {
        secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INITIAL_ADMIN_VERSION.into(), v.into());
    }
    if secret.metadata.resource_version.is_some() {
        api.replace(USERS_SECRET, &PostParams::default(), &secret)
            .await
            .map(|_| ())
    } else {
        api.create(&PostParams::default(), &secret)
            .await
            .map(|_| ())
    }
}

/// The accounts of the store's entries (hashes only; clear-text entries have been replaced by then).
fn accounts_from(entries: &[(String, String)]) -> Accounts {
    let mut accounts = Accounts::default();
    for (key, value) in entries {
        if let Some(account) = key.strip_prefix("groups.") {
            let groups = value
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            accounts.groups.insert(account.to_owned(), groups);
            continue;
        }
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
            let digest = token_digest(secret).map_or_else(|| hash(secret), str::to_owned);
            accounts.tokens.insert(digest, (name.to_owned(), role));
        } else if password::is_bcrypt(secret) {
            tracing::warn!(
                key,
                "ignoring account entry with a bcrypt hash: Kedge stores argon2id; write the password itself \
                 (Kedge replaces it with its hash) or an argon2id hash"
            );
        } else if password::is_hash(secret) {
            accounts.passwords.insert(
                key.clone(),
                Account {
                    role,
                    hash: secret.to_owned(),
                },
            );
        }
    }
    accounts
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

/// The address a request came from (the TCP peer; `None` when the server was not told it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Checks a user name and password and opens a session. Failed logins are rate-limited per account and per client
/// address (see [`crate::limit`]): past the limit, 429 with the wait in `Retry-After`, whatever the password.
pub async fn login(
    state: &AppState,
    user: &str,
    password: &str,
    client: ClientAddr,
) -> Result<LoginResult, ApiError> {
    let limiter = &state.inner.limiter;
    if let Err(refused) = limiter.begin(user, client.0, Instant::now()) {
        let secs = refused.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        tracing::warn!(
            user,
            client = ?client.0,
            retry_after = secs,
            "login refused: too many failed attempts"
        );
        let whom = if refused.account {
            format!("account {user}")
        } else {
            "this address".to_owned()
        };
        return Err(ApiError::too_many_requests(
            format!("too many failed logins for {whom}; try again in {secs} s"),
            secs,
        ));
    }
    let checked = check_password(state, user, password).await;
    let outcome = match &checked {
        Ok(Some(_)) => limit::Outcome::Success,
        Ok(None) => limit::Outcome::Failure,
        Err(_) => limit::Outcome::Unchecked,
    };
    limiter.finish(user, client.0, outcome, Instant::now());
    let Some(account) = checked? else {
        tracing::info!(user, client = ?client.0, "failed login");
        return Err(ApiError::unauthorized("invalid username or password"));
    };
    let key = state.inner.sessions.key(state).await?;
    let salt = password::salt(&account.hash).unwrap_or_default();
    let csrf = random_hex(16);
    let token = sign(
        &key,
        &Claims {
            u: user.to_owned(),
            c: csrf.clone(),
            e: unix_now() + state.config().session_ttl.as_secs(),
            g: generation(&key, user, &salt),
            k: SessionKind::Account,
            gs: Vec::new(),
        },
    );
    tracing::info!(user, "login");
    Ok(LoginResult {
        token,
        user: user.to_owned(),
        role: account.role,
        csrf_token: csrf,
    })
}

/// The account when `password` is its password; an unknown account costs as much as a known one.
async fn check_password(
    state: &AppState,
    user: &str,
    password: &str,
) -> Result<Option<Account>, ApiError> {
    let accounts = accounts(state, true).await?;
    let account = accounts.passwords.get(user).cloned();
    let stored = account
        .as_ref()
        .map_or_else(|| password::dummy().to_owned(), |a| a.hash.clone());
    let given = password.to_owned();
    let matches = blocking_hash(&state.inner.accounts.hashing, move || {
        password::verify(&given, &stored)
    })
    .await?;
    Ok(account.filter(|_| matches && !password.is_empty()))
}

/// Ends the session of `token` (on this replica; the caller also clears the cookie).
pub async fn logout(state: &AppState, token: &str) {
    if let Ok(key) = state.inner.sessions.key(state).await
        && let Some(claims) = verify(&key, token, unix_now())
    {
        state.inner.sessions.revoke(token, claims.e);
    }
}

/// A valid session.
struct Session {
    user: String,
    role: Role,
    csrf: String,
    /// The groups of an OIDC session (`None` for an account's session: its groups are the account's).
    groups: Option<Vec<String>>,
}

/// Opens a session for a user who logged in through the OIDC provider, in `groups` (sorted, without duplicates);
/// returns the token and the groups.
pub(crate) async fn open_oidc_session(
    state: &AppState,
    user: &str,
    mut groups: Vec<String>,
) -> Result<(String, Vec<String>), ApiError> {
    groups.sort_unstable();
    groups.dedup();
    let key = state.inner.sessions.key(state).await?;
    let token = sign(
        &key,
        &Claims {
            u: user.to_owned(),
            c: random_hex(16),
            e: unix_now() + state.config().session_ttl.as_secs(),
            g: String::new(),
            k: SessionKind::Oidc,
            gs: groups.clone(),
        },
    );
    Ok((token, groups))
}

/// The session of a valid session token. An account's session is checked against the current accounts (a removed
/// account or a changed password ends its sessions; the role is the account's current one); an OIDC session needs
/// no account, and its role comes from its groups with the current OIDC configuration (it ends when OIDC is no
/// longer configured).
async fn session(state: &AppState, token: &str) -> Result<Option<Session>, ApiError> {
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
    if claims.k == SessionKind::Oidc {
        return Ok(state.config().oidc.as_ref().map(|oidc| Session {
            role: oidc.role_of(&claims.gs),
            user: claims.u,
            csrf: claims.c,
            groups: Some(claims.gs),
        }));
    }
    let accounts = accounts(state, false).await?;
    Ok(accounts
        .passwords
        .get(&claims.u)
        .filter(|a| {
            let g = generation(
                &key,
                &claims.u,
                &password::salt(&a.hash).unwrap_or_default(),
            );
            bool::from(g.as_bytes().ct_eq(claims.g.as_bytes()))
        })
        .map(|a| Session {
            user: claims.u.clone(),
            role: a.role,
            csrf: claims.c.clone(),
            groups: None,
        }))
}

/// Sets up the accounts at start: creates the initial admin password when there is no admin yet (and the server is
/// configured to), then brings the store up to date (see [`load_accounts`]).
pub async fn start_accounts(state: &AppState) -> Result<(), ApiError> {
    if state.config().create_admin_secret {
        ensure_admin_secret(state.client(), &state.config().namespace).await?;
    }
    accounts(state, true).await.map(|_| ())
}

/// Whether cookies set in answer to this request are `Secure`: when the server is configured so, or the request
/// came through a proxy over TLS (`X-Forwarded-Proto: https`).
pub(crate) fn secure_request(state: &AppState, headers: &HeaderMap) -> bool {
    state.config().secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value for a new session.
pub fn session_cookie(state: &AppState, headers: &HeaderMap, token: &str) -> String {
    let secure = secure_request(state, headers);
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

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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
        if token.starts_with(PROJECT_TOKEN_PREFIX) {
            let key = state.inner.sessions.key(state).await?;
            return Ok(project_caller(state, &key, &token));
        }
        if let Some(s) = session(state, &token).await? {
            let groups = match s.groups {
                Some(g) => g,
                None => accounts(state, false).await?.groups_of(&s.user),
            };
            return Ok(Some(Caller {
                user: s.user,
                role: s.role,
                groups,
                project_role: None,
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
                groups: accounts.groups_of(user),
                project_role: None,
                via: Via::Bearer,
            }));
    }
    if let Some(token) = cookie(headers, SESSION_COOKIE)
        && let Some(s) = session(state, &token).await?
    {
        let groups = match s.groups {
            Some(g) => g,
            None => accounts(state, false).await?.groups_of(&s.user),
        };
        return Ok(Some(Caller {
            user: s.user,
            role: s.role,
            groups,
            project_role: None,
            via: Via::Cookie { csrf: s.csrf },
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

/// Creates the initial admin password Secret when there is no admin account yet (neither that Secret nor an `admin`
/// entry in `kedge-users`; deleting the initial Secret once the admin password has been changed does not make a new
/// one). The password is never logged.
pub async fn ensure_admin_secret(client: &kube::Client, namespace: &str) -> Result<(), ApiError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(ADMIN_SECRET).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(e) => return Err(ApiError::kube("read the admin password Secret", &e)),
    }
    match api.get_opt(USERS_SECRET).await {
        Ok(Some(users)) if secret_strings(&users).iter().any(|(k, _)| k == "admin") => {
            return Ok(());
        }
        Ok(_) => {}
        Err(e) => return Err(ApiError::kube("read the accounts Secret", &e)),
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

/// How a stored API token's digest starts.
const TOKEN_DIGEST: &str = "sha256:";

/// The hex SHA-256 digest of a stored API token entry written as `sha256:<digest>`; `None` for a clear token.
fn token_digest(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(TOKEN_DIGEST)
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
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
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = random_bytes(32);
        let claims = Claims {
            u: "admin".into(),
            c: "csrf".into(),
            e: 2_000,
            g: generation(&key, "admin", "c2FsdHNhbHRzYWx0"),
            k: SessionKind::Account,
            gs: Vec::new(),
        };
        let token = sign(&key, &claims);
        assert_eq!(verify(&key, &token, 1_000), Some(claims.clone()));
        assert_eq!(verify(&key, &token, 2_000), None, "expired");
        assert_eq!(
            verify(&random_bytes(32), &token, 1_000),
            None,
            "another key"
        );
        // Another account's name under the same signature. The forgery is built step by step, each step checked, so
        // that a broken step fails the test instead of producing something that is refused for the wrong reason.
        let (body, signature) = token
            .strip_prefix(TOKEN_PREFIX)
            .expect("the token has the current prefix")
            .split_once('.')
            .expect("the token is <body>.<signature>");
        let decoded = b64.decode(body).expect("the body is base64url");
        let mut forged: Claims = serde_json::from_slice(&decoded).expect("the body is the claims");
        assert_eq!(forged, claims);
        forged.u = "mallory".into();
        let forged_body = b64.encode(serde_json::to_vec(&forged).expect("claims serialize"));
        assert_ne!(forged_body, body);
        assert_eq!(
            verify(
                &key,
                &format!("{TOKEN_PREFIX}{forged_body}.{signature}"),
                1_000
            ),
            None,
            "the old signature does not cover the altered claims"
        );
        // The same altered claims signed with the key are accepted: the forgery is well formed, and only its
        // signature made it fail above.
        let resigned = format!(
            "{TOKEN_PREFIX}{forged_body}.{}",
            b64.encode(mac(&key, &forged_body))
        );
        assert_eq!(verify(&key, &resigned, 1_000), Some(forged));
        assert_eq!(verify(&key, "v2.garbage", 1_000), None);
        // A token of the previous format (a password tag instead of a generation) is refused.
        let v1 = token.replacen(TOKEN_PREFIX, "v1.", 1);
        assert_eq!(verify(&key, &v1, 1_000), None);
    }

    #[test]
    fn tokens_made_before_oidc_logins_stay_valid_and_oidc_sessions_carry_their_groups() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = random_bytes(32);
        // A token as signed before sessions had a kind: the same claims, no `k` or `gs`.
        let body = b64.encode(br#"{"u":"admin","c":"csrf","e":2000,"g":"abc"}"#);
        let old = format!("{TOKEN_PREFIX}{body}.{}", b64.encode(mac(&key, &body)));
        let claims = verify(&key, &old, 1_000).expect("an old token verifies");
        assert_eq!(claims.k, SessionKind::Account);
        assert!(claims.gs.is_empty());
        // An account's token is still written as before.
        assert_eq!(sign(&key, &claims), old);
        let oidc = Claims {
            u: "alice".into(),
            c: "csrf".into(),
            e: 2_000,
            g: String::new(),
            k: SessionKind::Oidc,
            gs: vec!["team-a".into()],
        };
        assert_eq!(verify(&key, &sign(&key, &oidc), 1_000), Some(oidc));
    }

    #[test]
    fn signed_values_verify_only_for_their_use() {
        let key = random_bytes(32);
        let signed = sign_value(&key, "flow", &vec!["x".to_owned()]);
        assert_eq!(
            verify_value::<Vec<String>>(&key, "flow", &signed),
            Some(vec!["x".to_owned()])
        );
        assert_eq!(verify_value::<Vec<String>>(&key, "other", &signed), None);
        assert_eq!(
            verify_value::<Vec<String>>(&random_bytes(32), "flow", &signed),
            None
        );
        assert_eq!(verify(&key, &format!("{TOKEN_PREFIX}{signed}"), 0), None);
    }

    #[test]
    fn session_generations_come_from_the_salt_and_the_key_not_the_password() {
        let key = random_bytes(32);
        let h1 = password::hash("same password").expect("hash");
        let h2 = password::hash("same password").expect("hash");
        let s1 = password::salt(&h1).expect("salt");
        let s2 = password::salt(&h2).expect("salt");
        // A new hash, even of the same password, has a new salt and so a new generation: its sessions end.
        assert_ne!(s1, s2);
        assert_ne!(
            generation(&key, "admin", &s1),
            generation(&key, "admin", &s2)
        );
        // Stable for one stored hash, different per account and per server key.
        assert_eq!(
            generation(&key, "admin", &s1),
            generation(&key, "admin", &s1)
        );
        assert_ne!(
            generation(&key, "admin", &s1),
            generation(&key, "other", &s1)
        );
        assert_ne!(
            generation(&key, "admin", &s1),
            generation(&random_bytes(32), "admin", &s1)
        );
        // Nothing of the hash's digest (the part the password determines) is an input.
        let digest = h1.rsplit('$').next().expect("digest");
        assert!(!generation(&key, "admin", &s1).contains(digest));
    }

    #[test]
    fn passwords_are_stored_as_argon2id_hashes_and_checked() {
        let h = password::hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(password::is_hash(&h));
        assert!(password::verify("correct horse", &h));
        assert!(!password::verify("correct horse ", &h));
        assert!(!password::verify("", &h));
        assert!(!password::verify("correct horse", "not a hash"));
        assert!(!password::verify("x", password::dummy()));
        // A hash made by another implementation: the example in the reference implementation's README
        // (`echo -n "password" | ./argon2 somesalt -t 2 -m 16 -p 4 -l 24`).
        let reference =
            "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(password::verify("password", reference));
        assert!(!password::verify("passwore", reference));
        assert!(password::is_bcrypt(
            "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
        ));
        assert!(!password::is_bcrypt(&h));
    }

    #[test]
    fn the_store_plan_hashes_clear_passwords_and_copies_the_initial_admin_password_when_it_changes()
    {
        let hashed = password::hash("pw").expect("hash");
        let users = vec![
            ("viewer".to_owned(), "readonly:view-pass".to_owned()),
            ("ops".to_owned(), format!("admin:{hashed}")),
            ("token.ci".to_owned(), "readonly:ci-token".to_owned()),
            ("bad".to_owned(), "no role here".to_owned()),
        ];
        // No admin entry yet: the initial password is copied and its version recorded.
        let plan = plan_store(&users, None, Some(("initial-pw", "41")));
        let keys: Vec<&str> = plan.to_hash.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["viewer", "token.ci", "admin"]);
        assert_eq!(plan.to_hash[2].1, Role::Admin);
        assert_eq!(plan.initial_version.as_deref(), Some("41"));
        // Copied at version 41 and unchanged: nothing to do once the clear entry is hashed.
        let mut done = users.clone();
        done[0].1 = format!("readonly:{hashed}");
        done[2].1 = format!("readonly:{TOKEN_DIGEST}{}", hash("ci-token"));
        done.push(("admin".into(), format!("admin:{hashed}")));
        let plan = plan_store(&done, Some("41"), Some(("initial-pw", "41")));
        assert!(plan.to_hash.is_empty() && plan.initial_version.is_none());
        // The initial Secret changed: the admin entry is made again from it.
        let plan = plan_store(&done, Some("41"), Some(("new-initial", "57")));
        assert_eq!(plan.to_hash.len(), 1);
        assert_eq!(plan.to_hash[0].2, "new-initial");
        // An admin entry written by someone (no annotation) is theirs, whatever the initial Secret says.
        let plan = plan_store(&done, None, Some(("new-initial", "57")));
        assert!(plan.to_hash.is_empty());
        // Only hashes are left for verification; the clear entry, the bcrypt entry and the malformed one are not used.
        let mut with_bcrypt = done.clone();
        with_bcrypt.push((
            "argo".into(),
            "admin:$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy".into(),
        ));
        with_bcrypt.push(("legacy".into(), "admin:clear".into()));
        let accounts = accounts_from(&with_bcrypt);
        let mut names: Vec<&str> = accounts.passwords.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["admin", "ops", "viewer"]);
        assert!(
            accounts
                .passwords
                .values()
                .all(|a| password::is_hash(&a.hash))
        );
        assert_eq!(accounts.tokens.len(), 1);
        // A stored digest and the clear token it came from find the same account.
        assert_eq!(
            accounts
                .tokens
                .get(&hash("ci-token"))
                .map(|(n, _)| n.as_str()),
            Some("ci")
        );
        let clear = accounts_from(&users);
        assert_eq!(
            clear.tokens.get(&hash("ci-token")).map(|(n, _)| n.as_str()),
            Some("ci")
        );
        assert!(
            token_digest("sha256:abc").is_none(),
            "too short for a digest"
        );
    }

    #[test]
    fn project_tokens_verify_only_unaltered_unexpired_and_with_the_same_key() {
        let key = [7u8; 32];
        let claims = ProjectTokenClaims {
            p: "team".into(),
            r: "ci".into(),
            i: "id1".into(),
            iat: 100,
            e: Some(200),
        };
        let token = sign_project_token(&key, &claims);
        assert!(token.starts_with(PROJECT_TOKEN_PREFIX));
        assert_eq!(
            verify_project_token(&key, &token, 150),
            Some(claims.clone())
        );
        assert_eq!(verify_project_token(&key, &token, 200), None);
        assert_eq!(verify_project_token(&[8u8; 32], &token, 150), None);
        // A session token is not a project token, and the other way round.
        let session = sign(
            &key,
            &Claims {
                u: "team".into(),
                c: String::new(),
                e: 200,
                g: String::new(),
                k: SessionKind::Account,
                gs: Vec::new(),
            },
        );
        assert_eq!(verify_project_token(&key, &session, 150), None);
        assert_eq!(verify(&key, &token, 150), None);
        let (body, sig) = token
            .strip_prefix(PROJECT_TOKEN_PREFIX)
            .and_then(|t| t.split_once('.'))
            .expect("prefix, body and signature");
        let forged_body = {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut c = claims.clone();
            c.r = "admin".into();
            b64.encode(serde_json::to_vec(&c).expect("claims serialize"))
        };
        assert_ne!(body, forged_body);
        assert_eq!(
            verify_project_token(
                &key,
                &format!("{PROJECT_TOKEN_PREFIX}{forged_body}.{sig}"),
                150
            ),
            None
        );
        let forever = sign_project_token(&key, &ProjectTokenClaims { e: None, ..claims });
        assert!(verify_project_token(&key, &forever, u64::MAX).is_some());
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
    fn cookie_callers_need_the_csrf_token() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("h"));
        let c = Caller {
            user: "admin".into(),
            role: Role::Admin,
            groups: Vec::new(),
            project_role: None,
            via: Via::Cookie { csrf: "tok".into() },
        };
        assert!(c.check_write(&h, None).is_err());
        assert!(c.check_write(&h, Some("wrong")).is_err());
        assert!(c.check_write(&h, Some("tok")).is_ok());
        let reader = Caller {
            user: "r".into(),
            role: Role::ReadOnly,
            groups: Vec::new(),
            project_role: None,
            via: Via::Bearer,
        };
        assert!(reader.check_write(&h, None).is_ok());
    }
}
