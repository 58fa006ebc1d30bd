//! Charts from Helm HTTP repositories (`index.yaml`) and OCI registries: resolving a version constraint to one
//! version, downloading the package, checking its digest and unpacking it into the chart cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::HelmError;
use crate::version::{Constraint, parse_version};

/// Credentials for a chart repository or registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RepoCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RepoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A chart in a repository or registry, with the version constraint to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteChart {
    /// An `https://` (or `http://`) Helm repository URL, or an `oci://host/path` registry path.
    pub repo_url: String,
    /// The chart name; for OCI it is appended to the path (empty when the path names the chart already).
    pub chart: String,
    /// A version or constraint (see [`Constraint`]).
    pub version: String,
    /// Credentials, sent only to the repository's own host.
    pub credentials: Option<RepoCredentials>,
    /// Allow plain HTTP for an OCI registry (always allowed for loopback hosts).
    pub plain_http: bool,
}

impl RemoteChart {
    /// Whether the chart lives in an OCI registry.
    pub fn is_oci(&self) -> bool {
        self.repo_url.starts_with("oci://")
    }

    /// The repository URL without credentials, for messages.
    pub fn display_url(&self) -> String {
        strip_userinfo(&self.repo_url)
    }
}

/// A chart resolved to one version and unpacked on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedChart {
    /// The chart's name.
    pub name: String,
    /// The exact version chosen.
    pub version: String,
    /// `sha256:<hex>` of the package.
    pub digest: String,
    /// The unpacked chart directory (holding `Chart.yaml`).
    pub dir: PathBuf,
    /// Whether the package was downloaded by this call (false when the cache had it).
    pub downloaded: bool,
}

/// Removes `user:password@` from a URL.
pub fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    entries: HashMap<String, Vec<IndexEntry>>,
}

#[derive(Debug, Clone, Deserialize)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// Downloads and caches charts.
pub(crate) struct Fetcher {
    /// The client, or why it could not be built (reported when a chart is fetched).
    http: Result<reqwest::Client, String>,
    cache_dir: PathBuf,
    index_ttl: Duration,
    indexes: Mutex<HashMap<String, (Instant, Arc<Index>)>>,
    unpack_lock: Mutex<()>,
}

/// Where the controller reads repository credentials from, for 401/403 messages.
fn credentials_hint() -> String {
    format!(
        "credentials come from a Secret in the application's namespace labelled {}=repository whose url \
         is the repository's (or a repo-creds prefix of it), with username and password",
        kedge_api::SECRET_TYPE_LABEL
    )
}

fn repo_err(
    action: impl Into<String>,
    url: &str,
    reason: impl Into<String>,
    retry: bool,
) -> HelmError {
    HelmError::Repository {
        action: action.into(),
        url: strip_userinfo(url),
        reason: reason.into(),
        retryable: retry,
    }
}

fn http_error(action: &str, url: &str, e: &reqwest::Error) -> HelmError {
    // reqwest's Display names the URL; ours has no credentials in it, but keep the message to the cause.
    let mut reason = e.without_url_ref().to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    repo_err(action, url, reason, true)
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_timeout() {
            "timed out".into()
        } else if self.is_connect() {
            "cannot connect".into()
        } else if self.is_body() || self.is_decode() {
            "failed to read the response".into()
        } else {
            "request failed".into()
        }
    }
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

const MAX_INDEX_BYTES: usize = 64 * 1024 * 1024;
const MAX_CHART_BYTES: usize = 64 * 1024 * 1024;

impl Fetcher {
    pub(crate) fn new(cache_dir: PathBuf, index_ttl: Duration, timeout: Duration) -> Self {
        kedge_source::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("kedge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string());
        Fetcher {
            http,
            cache_dir,
            index_ttl,
            indexes: Mutex::new(HashMap::new()),
            unpack_lock: Mutex::new(()),
        }
    }

    /// Resolves and fetches a chart.
    pub(crate) async fn fetch(&self, chart: &RemoteChart) -> Result<FetchedChart, HelmError> {
        let constraint = Constraint::parse(&chart.version).map_err(|reason| {
            HelmError::invalid(format!(
                "targetRevision {:?} is not a chart version or constraint: {reason}",
                chart.version
            ))
        })?;
        if chart.is_oci() {
            self.fetch_oci(chart, &constraint).await
        } else {
            self.fetch_http(chart, &constraint).await
        }
    }

    async fn get(
        &self,
        url: &reqwest::Url,
        accept: Option<&str>,
        auth: Option<&str>,
        limit: usize,
        action: &str,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), HelmError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| repo_err("create the HTTP client", url.as_str(), e.clone(), false))?;
        let mut req = http.get(url.clone());
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| http_error(action, url.as_str(), &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| http_error(action, url.as_str(), &e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(repo_err(
                    action,
                    url.as_str(),
                    format!("response larger than {limit} bytes"),
                    false,
                ));
            }
        }
        Ok((status, headers, body))
    }

    fn check_status(
        status: reqwest::StatusCode,
        action: &str,
        url: &reqwest::Url,
    ) -> Result<(), HelmError> {
        if status.is_success() {
            return Ok(());
        }
        let reason = match status.as_u16() {
            401 | 403 => format!(
                "{status}: check the repository credentials ({})",
                credentials_hint()
            ),
            _ => status.to_string(),
        };
        Err(repo_err(
            action,
            url.as_str(),
            reason,
            status.is_server_error() || status.as_u16() == 429,
        ))
    }

    fn basic(creds: &RepoCredentials) -> String {
        let raw = format!("{}:{}", creds.username, creds.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    async fn index(&self, chart: &RemoteChart) -> Result<Arc<Index>, HelmError> {
        let key = format!(
            "{}\u{0}{}",
            chart.repo_url,
            chart
                .credentials
                .as_ref()
                .map(|c| c.username.as_str())
                .unwrap_or("")
        );
        if let Some((at, idx)) = self.lock_indexes().get(&key)
            && at.elapsed() < self.index_ttl
        {
            return Ok(idx.clone());
        }
        let base = repo_base(&chart.repo_url)?;
        let url = base
            .join("index.yaml")
            .map_err(|e| HelmError::invalid(format!("invalid repository URL: {e}")))?;
        let auth = chart.credentials.as_ref().map(Self::basic);
        let action = "read the repository index";
        let (status, _, body) = self
            .get(&url, None, auth.as_deref(), MAX_INDEX_BYTES, action)
            .await?;
        Self::check_status(status, action, &url)?;
        let index: Index = serde_saphyr::from_slice(&body).map_err(|e| {
            repo_err(
                action,
                url.as_str(),
                format!("invalid index.yaml: {e}"),
                false,
            )
        })?;
        let index = Arc::new(index);
        self.lock_indexes()
            .insert(key, (Instant::now(), index.clone()));
        Ok(index)
    }

    fn lock_indexes(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Index>)>> {
        self.indexes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn fetch_http(
        &self,
        chart: &RemoteChart,
        constraint: &Constraint,
    ) -> Result<FetchedChart, HelmError> {
        if chart.chart.is_empty() {
            return Err(HelmError::invalid(
                "spec.source.chart is required for a Helm repository",
            ));
        }
        let index = self.index(chart).await?;
        let entries = index
            .entries
            .get(&chart.chart)
            .ok_or_else(|| HelmError::NoVersion {
                chart: chart.chart.clone(),
                constraint: constraint.to_string(),
                url: chart.display_url(),
                reason: "the repository has no chart of that name".into(),
            })?;
        let (i, version) = constraint
            .best(entries.iter().map(|e| e.version.as_str()))
            .ok_or_else(|| {
                no_match(
                    chart,
                    constraint,
                    entries.iter().map(|e| e.version.as_str()),
                )
            })?;
        let entry = &entries[i];
        let expected = entry.digest.as_deref().map(|d| {
            let d = d.trim().to_ascii_lowercase();
            if d.starts_with("sha256:") {
                d
            } else {
                format!("sha256:{d}")
            }
        });
        if let Some(d) = &expected
            && let Some(found) = self.cached(d)
        {
            return Ok(FetchedChart {
                name: chart.chart.clone(),
                version: version.to_string(),
                digest: d.clone(),
                dir: found,
                downloaded: false,
            });
        }
        let base = repo_base(&chart.repo_url)?;
        let first = entry.urls.first().ok_or_else(|| {
            repo_err(
                "read the repository index",
                &chart.repo_url,
                format!("chart {} {} has no URL", chart.chart, entry.version),
                false,
            )
        })?;
        let url = base.join(first).map_err(|e| {
            repo_err(
                "read the repository index",
                &chart.repo_url,
                format!("invalid chart URL: {e}"),
                false,
            )
        })?;
        // Credentials go to the repository's own host only, as Helm does without --pass-credentials.
        let auth = chart
            .credentials
            .as_ref()
            .filter(|_| same_origin(&base, &url))
            .map(Self::basic);
        let action = format!("download chart {} {}", chart.chart, entry.version);
        let (status, _, body) = self
            .get(&url, None, auth.as_deref(), MAX_CHART_BYTES, &action)
            .await?;
        Self::check_status(status, &action, &url)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(HelmError::DigestMismatch {
                chart: format!("{} {}", chart.chart, entry.version),
                url: strip_userinfo(url.as_str()),
                expected,
                actual,
            });
        }
        let dir = self.store(&actual, &body)?;
        Ok(FetchedChart {
            name: chart.chart.clone(),
            version: version.to_string(),
            digest: actual,
            dir,
            downloaded: true,
        })
    }

    /// The unpacked directory of a cached package.
    fn cached(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.join(digest.replace(':', "-"));
        dir.join(".complete")
            .exists()
            .then(|| chart_root(&dir))
            .flatten()
    }

    /// Unpacks a package into the cache under its digest.
    fn store(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, HelmError> {
        let _guard = self.unpack_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = self.cached(digest) {
            return Ok(found);
        }
        let dir = self.cache_dir.join(digest.replace(':', "-"));
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| HelmError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(io("create", &self.cache_dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&self.cache_dir)
            .map_err(io("create a directory in", &self.cache_dir))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive.set_preserve_permissions(false);
        archive.set_overwrite(false);
        // `unpack` refuses entries that would land outside the directory.
        archive.unpack(tmp.path()).map_err(|e| HelmError::Values {
            origin: format!("chart package {digest}"),
            reason: format!("not a valid chart archive: {e}"),
        })?;
        if chart_root(tmp.path()).is_none() {
            return Err(HelmError::Values {
                origin: format!("chart package {digest}"),
                reason: "the archive holds no Chart.yaml".into(),
            });
        }
        std::fs::write(tmp.path().join(".complete"), b"").map_err(io("write", tmp.path()))?;
        let _ = std::fs::remove_dir_all(&dir);
        let kept = tmp.keep();
        std::fs::rename(&kept, &dir).map_err(io("rename", &kept))?;
        chart_root(&dir).ok_or_else(|| HelmError::Values {
            origin: format!("chart package {digest}"),
            reason: "the archive holds no Chart.yaml".into(),
        })
    }

    async fn fetch_oci(
        &self,
        chart: &RemoteChart,
        constraint: &Constraint,
    ) -> Result<FetchedChart, HelmError> {
        let rest = chart
            .repo_url
            .trim_start_matches("oci://")
            .trim_end_matches('/');
        let rest = strip_userinfo(&format!("x://{rest}"));
        let rest = rest.trim_start_matches("x://");
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| HelmError::invalid(format!("OCI repository {rest:?} has no path")))?;
        let repository = if chart.chart.is_empty() {
            path.to_owned()
        } else {
            format!("{path}/{}", chart.chart.trim_matches('/'))
        };
        let name = repository
            .rsplit('/')
            .next()
            .unwrap_or(&repository)
            .to_owned();
        let scheme = if chart.plain_http || is_loopback(host.split(':').next().unwrap_or(host)) {
            "http"
        } else {
            "https"
        };
        let base = reqwest::Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| HelmError::invalid(format!("invalid OCI registry {host:?}: {e}")))?;
        let shown = format!("oci://{host}/{repository}");
        let mut session = OciSession {
            fetcher: self,
            creds: chart.credentials.as_ref(),
            token: None,
            shown: &shown,
        };

        // Exact versions need no tag listing.
        let trimmed = chart.version.trim();
        let exact =
            semver::Version::parse(trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed)).ok();
        let version = match exact {
            Some(v) => v,
            None => {
                let tags = session.tags(&base, &repository).await?;
                let versions: Vec<String> = tags.iter().map(|t| t.replace('_', "+")).collect();
                let (_, v) = constraint
                    .best(versions.iter().map(String::as_str))
                    .ok_or_else(|| {
                        no_match(chart, constraint, versions.iter().map(String::as_str))
                    })?;
                v
            }
        };
        let tag = version.to_string().replace('+', "_");
        let manifest_url = base
            .join(&format!("v2/{repository}/manifests/{tag}"))
            .map_err(|e| HelmError::invalid(e.to_string()))?;
        let action = format!("read the manifest of {name} {version}");
        let (status, _, body) = session
            .get(
                &manifest_url,
                Some("application/vnd.oci.image.manifest.v1+json"),
                4 * 1024 * 1024,
                &action,
            )
            .await?;
        if status.as_u16() == 404 {
            return Err(HelmError::NoVersion {
                chart: name,
                constraint: constraint.to_string(),
                url: shown,
                reason: format!("tag {tag} not found"),
            });
        }
        Fetcher::check_status(status, &action, &manifest_url)?;
        let manifest: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| repo_err(&action, &shown, format!("invalid manifest: {e}"), false))?;
        let layer = manifest["layers"]
            .as_array()
            .and_then(|ls| {
                ls.iter().find(|l| {
                    l["mediaType"].as_str()
                        == Some("application/vnd.cncf.helm.chart.content.v1.tar+gzip")
                })
            })
            .ok_or_else(|| {
                repo_err(
                    &action,
                    &shown,
                    "the manifest holds no Helm chart layer",
                    false,
                )
            })?;
        let digest = layer["digest"]
            .as_str()
            .filter(|d| {
                d.starts_with("sha256:")
                    && d.len() == 71
                    && d[7..].bytes().all(|b| b.is_ascii_hexdigit())
            })
            .ok_or_else(|| {
                repo_err(
                    &action,
                    &shown,
                    "the chart layer has no sha256 digest",
                    false,
                )
            })?
            .to_ascii_lowercase();
        if let Some(found) = self.cached(&digest) {
            return Ok(FetchedChart {
                name,
                version: version.to_string(),
                digest,
                dir: found,
                downloaded: false,
            });
        }
        let blob_url = base
            .join(&format!("v2/{repository}/blobs/{digest}"))
            .map_err(|e| HelmError::invalid(e.to_string()))?;
        let action = format!("download chart {name} {version}");
        let (status, _, body) = session
            .get(&blob_url, None, MAX_CHART_BYTES, &action)
            .await?;
        Fetcher::check_status(status, &action, &blob_url)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if actual != digest {
            return Err(HelmError::DigestMismatch {
                chart: format!("{name} {version}"),
                url: shown,
                expected: digest,
                actual,
            });
        }
        let dir = self.store(&actual, &body)?;
        Ok(FetchedChart {
            name,
            version: version.to_string(),
            digest: actual,
            dir,
            downloaded: true,
        })
    }
}

fn no_match<'a>(
    chart: &RemoteChart,
    constraint: &Constraint,
    versions: impl Iterator<Item = &'a str>,
) -> HelmError {
    let mut all: Vec<&str> = versions.collect();
    all.sort_by_key(|v| std::cmp::Reverse(parse_version(v)));
    let shown: Vec<&str> = all.iter().take(10).copied().collect();
    HelmError::NoVersion {
        chart: if chart.chart.is_empty() {
            chart.display_url()
        } else {
            chart.chart.clone()
        },
        constraint: constraint.to_string(),
        url: chart.display_url(),
        reason: if all.is_empty() {
            "no versions published".into()
        } else {
            format!("no version matches; newest: {}", shown.join(", "))
        },
    }
}

/// The repository URL as a base for relative URLs (with a trailing slash).
fn repo_base(url: &str) -> Result<reqwest::Url, HelmError> {
    let with_slash = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    let parsed = reqwest::Url::parse(&with_slash).map_err(|e| {
        HelmError::invalid(format!(
            "invalid repository URL {:?}: {e}",
            strip_userinfo(url)
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(HelmError::invalid(format!(
            "repository URL {:?} is not http(s):// nor oci://",
            strip_userinfo(url)
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(HelmError::invalid(
            "credentials belong in a Secret, not in the repository URL",
        ));
    }
    Ok(parsed)
}

/// The directory holding `Chart.yaml`: the directory itself or its single subdirectory (packages hold `name/`).
fn chart_root(dir: &Path) -> Option<PathBuf> {
    if dir.join("Chart.yaml").is_file() {
        return Some(dir.to_path_buf());
    }
    let mut subdirs = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir());
    let first = subdirs.next()?;
    if subdirs.next().is_some() {
        return None;
    }
    let p = first.path();
    p.join("Chart.yaml").is_file().then_some(p)
}

/// One conversation with a registry: answers 401 challenges (Basic, or Bearer token service) once.
struct OciSession<'a> {
    fetcher: &'a Fetcher,
    creds: Option<&'a RepoCredentials>,
    token: Option<String>,
    shown: &'a str,
}

impl OciSession<'_> {
    async fn get(
        &mut self,
        url: &reqwest::Url,
        accept: Option<&str>,
        limit: usize,
        action: &str,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), HelmError> {
        let first = self
            .fetcher
            .get(url, accept, self.token.as_deref(), limit, action)
            .await?;
        if first.0.as_u16() != 401 {
            return Ok(first);
        }
        let challenge = first
            .1
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let auth = self.answer(&challenge, action).await?;
        self.token = Some(auth);
        self.fetcher
            .get(url, accept, self.token.as_deref(), limit, action)
            .await
    }

    async fn answer(&self, challenge: &str, action: &str) -> Result<String, HelmError> {
        let lower = challenge.to_ascii_lowercase();
        if lower.starts_with("basic") {
            return match self.creds {
                Some(c) => Ok(Fetcher::basic(c)),
                None => Err(repo_err(
                    action,
                    self.shown,
                    format!(
                        "401 Unauthorized: the registry needs credentials ({})",
                        credentials_hint()
                    ),
                    false,
                )),
            };
        }
        if !lower.starts_with("bearer") {
            return Err(repo_err(action, self.shown, "401 Unauthorized", false));
        }
        let params = parse_challenge(&challenge[6..]);
        let realm = params.get("realm").ok_or_else(|| {
            repo_err(
                action,
                self.shown,
                "401 with a Bearer challenge without realm",
                false,
            )
        })?;
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            repo_err(
                action,
                self.shown,
                format!("invalid token realm: {e}"),
                false,
            )
        })?;
        {
            let mut q = url.query_pairs_mut();
            for k in ["service", "scope"] {
                if let Some(v) = params.get(k) {
                    q.append_pair(k, v);
                }
            }
        }
        let basic = self.creds.map(Fetcher::basic);
        let (status, _, body) = self
            .fetcher
            .get(
                &url,
                None,
                basic.as_deref(),
                1024 * 1024,
                "get a registry token",
            )
            .await?;
        Fetcher::check_status(status, "get a registry token", &url)?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            repo_err(
                "get a registry token",
                self.shown,
                format!("invalid token response: {e}"),
                false,
            )
        })?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| {
                repo_err(
                    "get a registry token",
                    self.shown,
                    "the token response holds no token",
                    false,
                )
            })?;
        Ok(format!("Bearer {token}"))
    }

    async fn tags(
        &mut self,
        base: &reqwest::Url,
        repository: &str,
    ) -> Result<Vec<String>, HelmError> {
        let mut url = base
            .join(&format!("v2/{repository}/tags/list"))
            .map_err(|e| HelmError::invalid(e.to_string()))?;
        let mut tags = Vec::new();
        for _ in 0..100 {
            let action = "list the chart's tags";
            let (status, headers, body) = self
                .get(&url, Some("application/json"), 16 * 1024 * 1024, action)
                .await?;
            if status.as_u16() == 404 {
                break;
            }
            Fetcher::check_status(status, action, &url)?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                repo_err(action, self.shown, format!("invalid tag list: {e}"), false)
            })?;
            tags.extend(
                v["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            );
            // Pagination: `Link: </v2/...?last=x&n=y>; rel="next"`.
            let next = headers
                .get(reqwest::header::LINK)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.split(';').next())
                .map(|l| {
                    l.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                });
            match next.and_then(|n| url.join(&n).ok()) {
                Some(n) if same_origin(&n, base) => url = n,
                _ => break,
            }
        }
        Ok(tags)
    }
}

fn parse_challenge(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_owned());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let p = parse_challenge(
            r#"realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.test/token");
        assert_eq!(p["service"], "registry.test");
        assert_eq!(p["scope"], "repository:a/b:pull");
    }

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(strip_userinfo("https://u:p@h.test/x"), "https://h.test/x");
        assert_eq!(strip_userinfo("oci://h.test/a@b"), "oci://h.test/a@b");
        assert!(repo_base("https://u:p@h.test/x").is_err());
        assert_eq!(
            repo_base("https://h.test/x")
                .unwrap()
                .join("index.yaml")
                .unwrap()
                .as_str(),
            "https://h.test/x/index.yaml"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("registry.test"));
    }

    #[test]
    fn credentials_are_not_debugged() {
        let c = RepoCredentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
