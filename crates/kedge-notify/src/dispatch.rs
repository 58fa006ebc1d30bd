//! The running notifier: reads Alerts and Providers from watches, routes each notice to the Providers whose Alerts
//! select it, and delivers it from one queue per Provider (in order, retried with backoff), reporting how deliveries
//! go in the Provider's status and in metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::{Alert, Condition, EventSeverity, Provider, ProviderType};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channel::{self, Channel, Extras, Outgoing};
use crate::limit::{Limiter, Verdict};
use crate::metrics::NotifyMetrics;
use crate::notice::Notice;

/// How the notifier runs.
#[derive(Clone, Debug)]
pub struct NotifierConfig {
    /// Only Alerts and Providers of this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// The UI's external URL (e.g. `https://kedge.example.com`): messages link to the application's page.
    pub ui_url: Option<String>,
    /// Attempts per delivery before it is given up (default 6).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each (default 1 s).
    pub first_backoff: Duration,
    /// The longest wait between attempts (default 30 s).
    pub max_backoff: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            ui_url: None,
            max_attempts: 6,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Notices waiting to be routed; beyond this many, new ones are dropped (and counted).
const QUEUE: usize = 4096;
/// Notices waiting in one Provider's queue.
const PROVIDER_QUEUE: usize = 1024;
/// The default timeout of one attempt.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Hands notices to the notifier. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
    metrics: NotifyMetrics,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the notifier: watches with `read`, writes Provider and Alert statuses with `write`, until `shutdown`.
    pub fn spawn(
        read: Client,
        write: Client,
        config: NotifierConfig,
        metrics: NotifyMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (providers, provider_writer) = reflector::store::<Provider>();
        let (alerts, alert_writer) = reflector::store::<Alert>();
        let (provider_api, alert_api): (Api<Provider>, Api<Alert>) = match &config.namespace {
            Some(ns) => (
                Api::namespaced(read.clone(), ns),
                Api::namespaced(read.clone(), ns),
            ),
            None => (Api::all(read.clone()), Api::all(read.clone())),
        };
        let changed = Arc::new(tokio::sync::Notify::new());
        let watch_providers = watcher(provider_api, watcher::Config::default())
            .default_backoff()
            .reflect(provider_writer)
            .touched_objects()
            .for_each({
                let changed = changed.clone();
                move |_| {
                    changed.notify_one();
                    futures::future::ready(())
                }
            });
        let watch_alerts = watcher(alert_api, watcher::Config::default())
            .default_backoff()
            .reflect(alert_writer)
            .touched_objects()
            .for_each({
                let changed = changed.clone();
                move |_| {
                    changed.notify_one();
                    futures::future::ready(())
                }
            });
        let shared = Arc::new(Shared {
            read,
            write,
            providers,
            alerts,
            config,
            metrics: metrics.clone(),
            http: http_client(),
            limiter: Mutex::new(Limiter::default()),
        });
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = futures::future::join(watch_providers, watch_alerts) => {}
                _ = stop.cancelled() => {}
            }
        });
        tokio::spawn(validate_loop(shared.clone(), changed, shutdown.clone()));
        tokio::spawn(route(shared, rx, shutdown));
        Self { tx, metrics }
    }

    /// Queues `notice` for delivery; when the queue is full it is dropped and counted.
    pub fn notify(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            self.metrics.dropped("", "queue_full");
        }
    }
}

fn http_client() -> Result<reqwest::Client, String> {
    kedge_source::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("kedge/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

struct Shared {
    read: Client,
    write: Client,
    providers: Store<Provider>,
    alerts: Store<Alert>,
    config: NotifierConfig,
    metrics: NotifyMetrics,
    http: Result<reqwest::Client, String>,
    limiter: Mutex<Limiter>,
}

/// One notice for one Provider, with what its Alert adds.
struct Job {
    notice: Arc<Notice>,
    summary: Option<String>,
}

/// Whether `alert` selects `notice` for a Provider of `type_`.
pub fn selects(alert: &Alert, type_: ProviderType, notice: &Notice) -> bool {
    let spec = &alert.spec;
    if spec.suspend {
        return false;
    }
    let kind = notice.kind;
    // With severity `error`, problems go out, and their ends too where a channel tracks problems (Alertmanager).
    if spec.event_severity == EventSeverity::Error
        && !(kind.is_problem()
            || (type_ == ProviderType::Alertmanager && kind.resolves().is_some()))
    {
        return false;
    }
    if !spec.events.is_empty() && !spec.events.contains(&kind) {
        return false;
    }
    if !spec.projects.is_empty() && !spec.projects.contains(&notice.app.project) {
        return false;
    }
    let alert_ns = alert.namespace().unwrap_or_default();
    spec.event_sources.iter().any(|s| {
        let ns = s.namespace.as_deref().unwrap_or(&alert_ns);
        (ns == "*" || ns == notice.app.namespace)
            && (s.name == "*" || s.name == notice.app.name)
            && s.match_labels
                .iter()
                .all(|(k, v)| notice.app.labels.get(k) == Some(v))
    })
}

async fn route(shared: Arc<Shared>, mut rx: mpsc::Receiver<Notice>, shutdown: CancellationToken) {
    let mut workers: HashMap<String, mpsc::Sender<Job>> = HashMap::new();
    let mut last_prune = Instant::now();
    loop {
        let notice = tokio::select! {
            n = rx.recv() => match n { Some(n) => Arc::new(n), None => return },
            _ = shutdown.cancelled() => return,
        };
        if last_prune.elapsed() > Duration::from_secs(60) {
            if let Ok(mut l) = shared.limiter.lock() {
                l.prune(Instant::now());
            }
            last_prune = Instant::now();
        }
        for alert in shared.alerts.state() {
            let ns = alert.namespace().unwrap_or_default();
            let provider_ref =
                ObjectRef::<Provider>::new(&alert.spec.provider_ref.name).within(&ns);
            let Some(provider) = shared.providers.get(&provider_ref) else {
                continue;
            };
            if provider.spec.suspend || !selects(&alert, provider.spec.type_, &notice) {
                continue;
            }
            let key = format!("{ns}/{}", provider.name_any());
            let worker = workers.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PROVIDER_QUEUE);
                tokio::spawn(work(
                    shared.clone(),
                    ns.clone(),
                    provider.name_any(),
                    rx,
                    shutdown.clone(),
                ));
                tx
            });
            let job = Job {
                notice: notice.clone(),
                summary: alert.spec.summary.clone(),
            };
            if worker.try_send(job).is_err() {
                shared.metrics.dropped(&key, "queue_full");
            }
        }
    }
}

/// What a Provider's status says, as last written by its worker.
#[derive(Clone, PartialEq, Eq)]
struct Reported {
    ok: bool,
    reason: &'static str,
    message: String,
}

/// Delivers one Provider's notices in order.
async fn work(
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    mut rx: mpsc::Receiver<Job>,
    shutdown: CancellationToken,
) {
    let key = format!("{namespace}/{name}");
    let mut reported: Option<Reported> = None;
    let mut delivered_written: Option<Instant> = None;
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = shutdown.cancelled() => return,
        };
        let Some(provider) = shared
            .providers
            .get(&ObjectRef::new(&name).within(&namespace))
        else {
            continue;
        };
        if provider.spec.suspend {
            continue;
        }
        let verdict = shared
            .limiter
            .lock()
            .map(|mut l| l.check(&key, &job.notice, Instant::now()))
            .unwrap_or(Verdict::Send);
        if verdict != Verdict::Send {
            tracing::debug!(provider = %key, app = %job.notice.app.key(), kind = %job.notice.kind, reason = verdict.reason(), "notice dropped");
            shared.metrics.dropped(&key, verdict.reason());
            continue;
        }
        let link = shared.config.ui_url.as_deref().map(|base| {
            format!(
                "{}/applications/{}/{}",
                base.trim_end_matches('/'),
                job.notice.app.namespace,
                job.notice.app.name
            )
        });
        let extras = Extras {
            summary: job.summary.as_deref(),
            link: link.as_deref(),
        };
        let outgoing = match resolve(&shared, &provider).await.and_then(|ch| {
            channel::build(&ch, &job.notice, extras)
                .map(|o| o.map(|o| (o, timeout_of(&provider))))
                .map_err(|e| e.to_string())
        }) {
            Ok(Some(o)) => o,
            Ok(None) => continue,
            Err(message) => {
                shared.metrics.failed(&key);
                let r = Reported {
                    ok: false,
                    reason: "InvalidSpec",
                    message: format!("cannot send {}: {message}", job.notice.kind),
                };
                write_status(&shared, &provider, &r, false).await;
                reported = Some(r);
                continue;
            }
        };
        let (out, timeout) = outgoing;
        let mut attempt = 1;
        let result = loop {
            let started = Instant::now();
            let result = send(&shared, &out, timeout).await;
            shared
                .metrics
                .observe(&key, started.elapsed().as_secs_f64());
            match result {
                Ok(()) => break Ok(()),
                Err(f) if !f.retry || attempt >= shared.config.max_attempts => {
                    break Err((f.message, attempt));
                }
                Err(f) => {
                    let wait = backoff(&shared.config, attempt);
                    tracing::info!(provider = %key, kind = %job.notice.kind, attempt, error = %f.message, "delivery failed; retrying");
                    let r = Reported {
                        ok: false,
                        reason: "DeliveryFailing",
                        message: format!(
                            "delivering {} of {}: attempt {attempt} of {} failed: {}; retrying in {}s",
                            job.notice.kind,
                            job.notice.app.key(),
                            shared.config.max_attempts,
                            f.message,
                            wait.as_secs()
                        ),
                    };
                    if reported.as_ref() != Some(&r) {
                        write_status(&shared, &provider, &r, false).await;
                        reported = Some(r);
                    }
                    shared.metrics.retried(&key);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    attempt += 1;
                }
            }
        };
        match result {
            Ok(()) => {
                shared.metrics.sent(&key);
                let r = Reported {
                    ok: true,
                    reason: "Delivered",
                    message: format!("delivered {} of {}", job.notice.kind, job.notice.app.key()),
                };
                // A success is written when the condition turns, and otherwise at most once a minute.
                let turned = reported.as_ref().is_none_or(|p| !p.ok);
                if turned || delivered_written.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    write_status(&shared, &provider, &r, true).await;
                    delivered_written = Some(Instant::now());
                }
                reported = Some(r);
            }
            Err((message, attempts)) => {
                shared.metrics.failed(&key);
                tracing::warn!(provider = %key, kind = %job.notice.kind, app = %job.notice.app.key(), attempts, error = %message, "delivery failed");
                let r = Reported {
                    ok: false,
                    reason: "DeliveryFailed",
                    message: format!(
                        "delivering {} of {} failed after {attempts} attempt(s): {message}",
                        job.notice.kind,
                        job.notice.app.key()
                    ),
                };
                write_status(&shared, &provider, &r, false).await;
                reported = Some(r);
            }
        }
    }
}

/// The wait after failed attempt `attempt` (1-based).
fn backoff(config: &NotifierConfig, attempt: u32) -> Duration {
    config
        .first_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(config.max_backoff)
}

fn timeout_of(provider: &Provider) -> Duration {
    provider
        .spec
        .timeout
        .as_deref()
        .and_then(|t| kedge_api::parse_duration(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// A failed attempt: whether to try again, and why (never the address or a token).
struct Failure {
    retry: bool,
    message: String,
}

async fn send(shared: &Shared, out: &Outgoing, timeout: Duration) -> Result<(), Failure> {
    let http = shared.http.as_ref().map_err(|e| Failure {
        retry: false,
        message: format!("HTTP client: {e}"),
    })?;
    let mut req = http
        .post(&out.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(out.body.clone());
    for (k, v) in &out.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let response = req.send().await.map_err(|e| Failure {
        retry: true,
        message: describe(&e.without_url()),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    // GitLab refuses a status equal to the one the commit has; that status is what was to be said.
    if status == reqwest::StatusCode::BAD_REQUEST && body.contains("Cannot transition status") {
        return Ok(());
    }
    let snippet: String = body.chars().take(200).collect();
    Err(Failure {
        retry: status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT,
        message: if snippet.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", snippet.trim())
        },
    })
}

/// An error and its causes in one line.
fn describe(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = e.source();
    }
    s
}

/// The Provider with its Secret read.
async fn resolve(shared: &Shared, provider: &Provider) -> Result<Channel, String> {
    let spec = &provider.spec;
    let mut ch = Channel {
        type_: spec.type_,
        address: spec.address.clone(),
        channel: spec.channel.clone(),
        username: spec.username.clone(),
        token: None,
        headers: Vec::new(),
        body: spec.body.clone(),
    };
    if let Some(secret_ref) = &spec.secret_ref {
        let ns = provider.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(shared.read.clone(), &ns);
        let secret = secrets
            .get_opt(&secret_ref.name)
            .await
            .map_err(|e| format!("reading Secret {}: {e}", secret_ref.name))?
            .ok_or_else(|| format!("Secret {} not found", secret_ref.name))?;
        let data = secret.data.unwrap_or_default();
        let text = |key: &str| -> Result<Option<String>, String> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.0.clone())
                        .map(|s| s.trim().to_owned())
                        .map_err(|_| format!("Secret {}: key {key} is not text", secret_ref.name))
                })
                .transpose()
        };
        if let Some(address) = text("address")? {
            ch.address = Some(address);
        }
        ch.token = text("token")?;
        if let Some(headers) = text("headers")? {
            let map: BTreeMap<String, String> = serde_saphyr::from_str(&headers).map_err(|_| {
                format!(
                    "Secret {}: key headers is not a YAML map of strings",
                    secret_ref.name
                )
            })?;
            ch.headers.extend(map);
        }
    }
    ch.headers
        .extend(spec.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(ch)
}

/// Why a Provider cannot be used, from its spec alone (the Secret is checked when it is read).
pub fn check_provider(provider: &Provider) -> Result<(), String> {
    let spec = &provider.spec;
    let t = spec.type_;
    if spec.channel.is_some() && t != ProviderType::Slack {
        return Err(format!("spec.channel applies to slack only, not {t}"));
    }
    if spec.username.is_some() && t != ProviderType::Slack {
        return Err(format!("spec.username applies to slack only, not {t}"));
    }
    if spec.body.is_some() && !t.is_generic() {
        return Err(format!(
            "spec.body applies to generic and generic-hmac only, not {t}"
        ));
    }
    if !spec.headers.is_empty() && !t.is_generic() {
        return Err(format!(
            "spec.headers applies to generic and generic-hmac only, not {t}"
        ));
    }
    if let Some(timeout) = &spec.timeout {
        kedge_api::parse_duration(timeout).map_err(|e| format!("spec.timeout: {e}"))?;
    }
    if let Some(body) = &spec.body {
        channel::check_template(body).map_err(|e| format!("spec.body: {e}"))?;
    }
    for (k, v) in &spec.headers {
        reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("spec.headers: {k:?} is not a header name"))?;
        channel::check_template(v).map_err(|e| format!("spec.headers[{k}]: {e}"))?;
    }
    if let Some(a) = &spec.address
        && !(a.starts_with("http://") || a.starts_with("https://"))
    {
        return Err("spec.address is not an http:// or https:// URL".into());
    }
    let needs_secret = t == ProviderType::GenericHmac || t.is_commit_status();
    if needs_secret && spec.secret_ref.is_none() {
        return Err(format!("{t} needs spec.secretRef with a `token` key"));
    }
    if spec.address.is_none() && spec.secret_ref.is_none() && !t.is_commit_status() {
        return Err(format!(
            "{t} needs spec.address or a Secret with an `address` key"
        ));
    }
    Ok(())
}

/// Checks every Provider and Alert when one changes (and every minute, for their Secrets) and writes the outcome in
/// their status: a Provider that cannot be used, an Alert whose Provider is missing.
async fn validate_loop(
    shared: Arc<Shared>,
    changed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.cancelled() => return,
        }
        // Let a burst of changes settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for provider in shared.providers.state() {
            let verdict = match check_provider(&provider) {
                Err(message) => Some(Reported {
                    ok: false,
                    reason: "InvalidSpec",
                    message,
                }),
                Ok(()) => match resolve(&shared, &provider).await {
                    Err(message) => Some(Reported {
                        ok: false,
                        reason: "SecretError",
                        message,
                    }),
                    Ok(ch) => missing_secret_keys(&ch).map(|message| Reported {
                        ok: false,
                        reason: "SecretError",
                        message,
                    }),
                },
            };
            let current = ready_of(provider.status.as_ref().map(|s| &s.conditions));
            let wanted = match verdict {
                Some(r) => r,
                // Valid: only a Provider not yet reported on, or reported invalid, is marked so; delivery outcomes
                // stay until the next delivery.
                None if current.is_none_or(|c| {
                    c.status != "True" && matches!(c.reason.as_str(), "InvalidSpec" | "SecretError")
                }) =>
                {
                    Reported {
                        ok: true,
                        reason: "Valid",
                        message: format!("{} provider ready", provider.spec.type_),
                    }
                }
                None => continue,
            };
            if current.is_none_or(|c| {
                c.reason != wanted.reason
                    || c.message != wanted.message
                    || (c.status == "True") != wanted.ok
            }) {
                write_status(&shared, &provider, &wanted, false).await;
            }
        }
        for alert in shared.alerts.state() {
            let ns = alert.namespace().unwrap_or_default();
            let name = &alert.spec.provider_ref.name;
            let wanted = match shared
                .providers
                .get(&ObjectRef::<Provider>::new(name).within(&ns))
            {
                None => Reported {
                    ok: false,
                    reason: "ProviderNotFound",
                    message: format!("Provider {name} not found in namespace {ns}"),
                },
                Some(p) => Reported {
                    ok: true,
                    reason: "Valid",
                    message: format!("delivers to Provider {name} ({})", p.spec.type_),
                },
            };
            let current = ready_of(alert.status.as_ref().map(|s| &s.conditions));
            if current.is_none_or(|c| c.reason != wanted.reason || c.message != wanted.message) {
                let api: Api<Alert> = Api::namespaced(shared.write.clone(), &ns);
                let status = json!({ "status": { "conditions": [condition(&wanted, alert.metadata.generation, current)] } });
                if let Err(e) = api
                    .patch_status(
                        &alert.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await
                {
                    tracing::warn!(alert = %alert.name_any(), error = %e, "cannot write the Alert's status");
                }
            }
        }
    }
}

/// Keys the Secret must hold for the channel (reported before any delivery fails for lack of them).
fn missing_secret_keys(ch: &Channel) -> Option<String> {
    let needs_token = ch.type_ == ProviderType::GenericHmac || ch.type_.is_commit_status();
    if needs_token && ch.token.as_deref().is_none_or(str::is_empty) {
        return Some(format!("{} needs the Secret's `token` key", ch.type_));
    }
    if !ch.type_.is_commit_status() && ch.address.as_deref().is_none_or(str::is_empty) {
        return Some(format!(
            "{} needs spec.address or the Secret's `address` key",
            ch.type_
        ));
    }
    if let Some(a) = &ch.address
        && !(a.starts_with("http://") || a.starts_with("https://"))
    {
        return Some("the address is not an http:// or https:// URL".into());
    }
    None
}

fn ready_of(conditions: Option<&Vec<Condition>>) -> Option<&Condition> {
    conditions?.iter().find(|c| c.type_ == "Ready")
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

fn condition(
    r: &Reported,
    generation: Option<i64>,
    current: Option<&Condition>,
) -> serde_json::Value {
    let status = if r.ok { "True" } else { "False" };
    let transition = match current {
        Some(c) if c.status == status => c.last_transition_time.clone().unwrap_or_else(now),
        _ => now(),
    };
    json!({
        "type": "Ready",
        "status": status,
        "reason": r.reason,
        "message": r.message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    })
}

async fn write_status(shared: &Shared, provider: &Provider, r: &Reported, delivered: bool) {
    let ns = provider.namespace().unwrap_or_default();
    // The latest status (the worker's copy may predate the validator's write).
    let current = shared
        .providers
        .get(&ObjectRef::new(&provider.name_any()).within(&ns))
        .and_then(|p| p.status.clone());
    let mut status = json!({
        "conditions": [condition(r, provider.metadata.generation, ready_of(current.as_ref().map(|s| &s.conditions)))]
    });
    if delivered {
        status["lastDelivered"] = json!(now());
    } else if matches!(r.reason, "DeliveryFailed" | "DeliveryFailing") {
        status["lastFailed"] = json!(now());
    }
    let api: Api<Provider> = Api::namespaced(shared.write.clone(), &ns);
    if let Err(e) = api
        .patch_status(
            &provider.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
    {
        tracing::warn!(provider = %provider.name_any(), error = %e, "cannot write the Provider's status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::tests::notice;
    use kedge_api::{AlertSpec, NoticeKind, ProviderSpec};

    fn alert(spec: serde_json::Value) -> Alert {
        let spec: AlertSpec = serde_json::from_value(spec).expect("alert spec");
        let mut a = Alert::new("a", spec);
        a.metadata.namespace = Some("team-a".into());
        a
    }

    #[test]
    fn alerts_select_by_source_labels_events_projects_and_severity() {
        let n = notice(NoticeKind::SyncSucceeded);
        let any = alert(
            json!({ "providerRef": { "name": "p" }, "eventSources": [{ "kind": "Application", "name": "*" }] }),
        );
        assert!(selects(&any, ProviderType::Slack, &n));
        let other_ns = alert(json!({ "providerRef": { "name": "p" },
            "eventSources": [{ "kind": "Application", "name": "*", "namespace": "team-b" }] }));
        assert!(!selects(&other_ns, ProviderType::Slack, &n));
        let by_label = alert(json!({ "providerRef": { "name": "p" },
            "eventSources": [{ "kind": "Application", "name": "*", "matchLabels": { "tier": "frontend" } }] }));
        assert!(selects(&by_label, ProviderType::Slack, &n));
        let wrong_label = alert(json!({ "providerRef": { "name": "p" },
            "eventSources": [{ "kind": "Application", "name": "*", "matchLabels": { "tier": "db" } }] }));
        assert!(!selects(&wrong_label, ProviderType::Slack, &n));
        let errors = alert(
            json!({ "providerRef": { "name": "p" }, "eventSeverity": "error",
            "eventSources": [{ "kind": "Application", "name": "web" }] }),
        );
        assert!(!selects(&errors, ProviderType::Slack, &n));
        assert!(selects(
            &errors,
            ProviderType::Slack,
            &notice(NoticeKind::SyncFailed)
        ));
        // Alertmanager hears the end of a problem even with severity `error`.
        assert!(selects(&errors, ProviderType::Alertmanager, &n));
        let events = alert(
            json!({ "providerRef": { "name": "p" }, "events": ["HealthDegraded"],
            "eventSources": [{ "kind": "Application", "name": "*" }] }),
        );
        assert!(!selects(&events, ProviderType::Slack, &n));
        let projects = alert(
            json!({ "providerRef": { "name": "p" }, "projects": ["payments"],
            "eventSources": [{ "kind": "Application", "name": "*" }] }),
        );
        assert!(!selects(&projects, ProviderType::Slack, &n));
        let mut suspended = any.clone();
        suspended.spec.suspend = true;
        assert!(!selects(&suspended, ProviderType::Slack, &n));
    }

    fn provider(spec: serde_json::Value) -> Provider {
        let spec: ProviderSpec = serde_json::from_value(spec).expect("provider spec");
        Provider::new("p", spec)
    }

    #[test]
    fn providers_refuse_fields_their_type_does_not_use() {
        assert!(
            check_provider(&provider(
                json!({ "type": "slack", "address": "https://hooks.example/x", "channel": "#a" })
            ))
            .is_ok()
        );
        let err = check_provider(&provider(
            json!({ "type": "msteams", "address": "https://x", "channel": "#a" }),
        ))
        .expect_err("channel");
        assert!(err.contains("spec.channel"), "{err}");
        let err = check_provider(&provider(
            json!({ "type": "slack", "address": "https://x", "body": "{}" }),
        ))
        .expect_err("body");
        assert!(err.contains("spec.body"), "{err}");
        let err = check_provider(&provider(json!({ "type": "github" }))).expect_err("token");
        assert!(err.contains("secretRef"), "{err}");
        let err = check_provider(&provider(json!({ "type": "generic" }))).expect_err("address");
        assert!(err.contains("address"), "{err}");
        let err = check_provider(&provider(
            json!({ "type": "generic", "address": "https://x", "timeout": "soon" }),
        ))
        .expect_err("timeout");
        assert!(err.contains("spec.timeout"), "{err}");
        let err = check_provider(&provider(
            json!({ "type": "generic", "address": "https://x", "body": "{{ x" }),
        ))
        .expect_err("template");
        assert!(err.contains("spec.body"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = NotifierConfig::default();
        assert_eq!(backoff(&c, 1), Duration::from_secs(1));
        assert_eq!(backoff(&c, 3), Duration::from_secs(4));
        assert_eq!(backoff(&c, 10), Duration::from_secs(30));
    }
}
