//! The logs and traces of `kedge run`: log lines on stderr, and, when an OTLP endpoint is configured, the spans of
//! every reconcile pass (see `kedge_controller::trace`) exported over OTLP/HTTP with protobuf in batches.
//!
//! Without an endpoint nothing of OpenTelemetry is built: the pass spans are disabled at their call sites and the
//! logs are what they were. The endpoint comes from `--otlp-endpoint`, else from the standard environment
//! variables `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) and `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL,
//! `/v1/traces` appended); `OTEL_SDK_DISABLED=true` turns exporting off. The service is `kedge` unless
//! `OTEL_SERVICE_NAME` says otherwise, and `service.instance.id` is the replica's identity.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// The flag that names the endpoint.
pub const ENDPOINT_FLAG: &str = "--otlp-endpoint";
/// The standard variable of the trace endpoint, used as is.
pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The standard variable of the base endpoint of every signal; traces go to its `/v1/traces`.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable of the service name.
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
/// The standard variable that turns the SDK off.
pub const SDK_DISABLED_ENV: &str = "OTEL_SDK_DISABLED";
/// The service name without `OTEL_SERVICE_NAME`.
pub const DEFAULT_SERVICE_NAME: &str = "kedge";
/// The path of the trace signal under a base endpoint.
const TRACES_PATH: &str = "/v1/traces";
/// How long the exit waits for the last spans to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why logs or traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an http(s) URL.
    #[error(
        "invalid OTLP endpoint {value:?} (from {origin}): {reason}; expected an http:// or https:// URL such as \
         http://otel-collector:4318"
    )]
    InvalidEndpoint {
        /// The flag or environment variable it came from.
        origin: &'static str,
        /// What it said.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("failed to set up the OTLP trace exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed.
    #[error("failed to install the log and trace subscriber")]
    Subscriber(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where traces go: the full URL the exporter posts to, and where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL of the trace signal (`.../v1/traces`).
    pub url: String,
    /// The flag or environment variable it came from.
    pub origin: &'static str,
}

/// The trace endpoint: `flag` (a base URL like `OTEL_EXPORTER_OTLP_ENDPOINT`, or the full `.../v1/traces`), else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`; `None` when none
/// is set (empty counts as unset) or `OTEL_SDK_DISABLED` is `true`. `env` reads a variable.
pub fn resolve_endpoint(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Endpoint>, TelemetryError> {
    let set = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(value) = flag.map(str::trim).filter(|v| !v.is_empty()) {
        return base_endpoint(value, ENDPOINT_FLAG).map(Some);
    }
    if set(env(SDK_DISABLED_ENV)).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(value) = set(env(TRACES_ENDPOINT_ENV)) {
        check_url(&value, TRACES_ENDPOINT_ENV)?;
        return Ok(Some(Endpoint {
            url: value,
            origin: TRACES_ENDPOINT_ENV,
        }));
    }
    match set(env(ENDPOINT_ENV)) {
        Some(value) => base_endpoint(&value, ENDPOINT_ENV).map(Some),
        None => Ok(None),
    }
}

/// A base URL with the trace path appended (unless it is already there).
fn base_endpoint(value: &str, origin: &'static str) -> Result<Endpoint, TelemetryError> {
    let uri = check_url(value, origin)?;
    let url = if uri.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        value.to_owned()
    } else {
        format!("{}{TRACES_PATH}", value.trim_end_matches('/'))
    };
    Ok(Endpoint { url, origin })
}

/// Checks that `value` is an absolute http(s) URL with a host, and no query (a base URL gets a path appended).
fn check_url(value: &str, origin: &'static str) -> Result<http::Uri, TelemetryError> {
    let invalid = |reason: String| TelemetryError::InvalidEndpoint {
        origin,
        value: value.to_owned(),
        reason,
    };
    let uri: http::Uri = value.parse().map_err(|e| invalid(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(format!("unsupported scheme {other:?}"))),
        None => return Err(invalid("not an absolute URL".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    if uri.query().is_some() {
        return Err(invalid("a query is not allowed".into()));
    }
    Ok(uri)
}

/// The service name: `OTEL_SERVICE_NAME`, else `kedge`.
pub fn service_name(env: impl Fn(&str) -> Option<String>) -> String {
    env(SERVICE_NAME_ENV)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
}

/// The tracer provider exporting to `endpoint` in batches, or `None` (nothing built) without an endpoint.
///
/// Builds an HTTP client of its own (on a thread of the exporter); TLS uses the process's default rustls crypto
/// provider, which must be installed first (`kedge_source::install_crypto_provider`).
pub fn tracer_provider(
    endpoint: Option<&Endpoint>,
    service: &str,
    instance: &str,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.url.clone())
        .build()
        .map_err(TelemetryError::Exporter)?;
    // `Resource::builder` also reads OTEL_RESOURCE_ATTRIBUTES; the name and instance given here win.
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance.to_owned(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// The installed logs and traces; [`shutdown`](Self::shutdown) sends the spans still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    endpoint: Option<Endpoint>,
}

impl Telemetry {
    /// Installs the global subscriber: logs to stderr filtered by `RUST_LOG` (default `info,kube=warn`), and the
    /// pass spans exported to the configured endpoint, if any (`flag` is `--otlp-endpoint`). `identity` is the
    /// replica's, its `service.instance.id`.
    pub fn init(flag: Option<&str>, identity: &str) -> Result<Self, TelemetryError> {
        let env = |name: &str| std::env::var(name).ok();
        let endpoint = resolve_endpoint(flag, env)?;
        let provider = tracer_provider(endpoint.as_ref(), &service_name(env), identity)?;
        let logs = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,kube=warn"))
            // The pass spans are for traces only; the logs keep their own `reconcile{app=...}` span.
            .add_directive(
                format!("{}=off", kedge_controller::trace::TARGET)
                    .parse()
                    .unwrap_or_else(|_| LevelFilter::OFF.into()),
            );
        match &provider {
            None => tracing_subscriber::fmt()
                .with_env_filter(logs)
                .with_writer(std::io::stderr)
                .try_init()
                .map_err(TelemetryError::Subscriber)?,
            Some(provider) => {
                let tracer = provider.tracer("kedge");
                // The pass spans, and warnings and errors as events of the span they happen in.
                let traced = Targets::new()
                    .with_target(kedge_controller::trace::TARGET, LevelFilter::INFO)
                    .with_default(LevelFilter::WARN);
                tracing_subscriber::registry()
                    .with(fmt::layer().with_writer(std::io::stderr).with_filter(logs))
                    .with(
                        tracing_opentelemetry::layer()
                            .with_tracer(tracer)
                            .with_threads(false)
                            .with_target(false)
                            .with_tracked_inactivity(false)
                            .with_filter(traced),
                    )
                    .try_init()
                    .map_err(|e| TelemetryError::Subscriber(Box::new(e)))?;
            }
        }
        Ok(Self { provider, endpoint })
    }

    /// Where spans go, when they are exported.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }

    /// Sends the spans still queued (waiting at most a few seconds for the collector) and stops exporting.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!(error = %err, "failed to send the last spans");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn without_an_endpoint_no_exporter_is_built() {
        assert_eq!(resolve_endpoint(None, env(&[])).expect("resolves"), None);
        assert_eq!(
            resolve_endpoint(Some(" "), env(&[(ENDPOINT_ENV, "")])).expect("resolves"),
            None,
            "empty values count as unset"
        );
        let provider = tracer_provider(None, "kedge", "replica-0").expect("nothing to build");
        assert!(provider.is_none());
    }

    #[test]
    fn an_invalid_endpoint_is_an_error_naming_where_it_came_from() {
        for bad in [
            "localhost:4318",
            "ftp://collector:4318",
            "collector",
            "http://",
            "http://c:4318/?q=1",
        ] {
            let err = resolve_endpoint(Some(bad), env(&[])).expect_err(bad);
            let msg = err.to_string();
            assert!(
                msg.contains("--otlp-endpoint") && msg.contains(bad),
                "{bad}: {msg}"
            );
        }
        let err = resolve_endpoint(None, env(&[(TRACES_ENDPOINT_ENV, "not a url")]))
            .expect_err("invalid");
        assert!(err.to_string().contains(TRACES_ENDPOINT_ENV), "{err}");
        let err =
            resolve_endpoint(None, env(&[(ENDPOINT_ENV, "grpc://x:4317")])).expect_err("invalid");
        assert!(err.to_string().contains(ENDPOINT_ENV), "{err}");
    }

    #[test]
    fn endpoints_follow_the_flag_then_the_standard_variables() {
        let url = |flag: Option<&str>, vars: &[(&str, &str)]| {
            resolve_endpoint(flag, env(vars))
                .expect("valid")
                .map(|e| (e.url, e.origin))
        };
        assert_eq!(
            url(Some("http://c:4318"), &[]),
            Some(("http://c:4318/v1/traces".into(), ENDPOINT_FLAG))
        );
        assert_eq!(
            url(Some("https://c:4318/base/"), &[]),
            Some(("https://c:4318/base/v1/traces".into(), ENDPOINT_FLAG))
        );
        assert_eq!(
            url(Some("http://c:4318/v1/traces"), &[]),
            Some(("http://c:4318/v1/traces".into(), ENDPOINT_FLAG))
        );
        let both = [
            (TRACES_ENDPOINT_ENV, "http://t:4318/custom"),
            (ENDPOINT_ENV, "http://all:4318"),
        ];
        assert_eq!(
            url(Some("http://flag:4318"), &both),
            Some(("http://flag:4318/v1/traces".into(), ENDPOINT_FLAG))
        );
        assert_eq!(
            url(None, &both),
            Some(("http://t:4318/custom".into(), TRACES_ENDPOINT_ENV))
        );
        assert_eq!(
            url(None, &both[1..]),
            Some(("http://all:4318/v1/traces".into(), ENDPOINT_ENV))
        );
        let disabled = [
            (SDK_DISABLED_ENV, "true"),
            (ENDPOINT_ENV, "http://all:4318"),
        ];
        assert_eq!(url(None, &disabled), None);
    }

    #[test]
    fn the_service_is_kedge_unless_named() {
        assert_eq!(service_name(env(&[])), "kedge");
        assert_eq!(service_name(env(&[(SERVICE_NAME_ENV, "")])), "kedge");
        assert_eq!(
            service_name(env(&[(SERVICE_NAME_ENV, "kedge-prod")])),
            "kedge-prod"
        );
    }

    #[test]
    fn an_endpoint_builds_an_exporter_without_contacting_it() {
        kedge_source::install_crypto_provider();
        let endpoint = resolve_endpoint(Some("http://127.0.0.1:9"), env(&[]))
            .expect("valid")
            .expect("set");
        let provider = tracer_provider(Some(&endpoint), "kedge", "replica-0")
            .expect("builds")
            .expect("an exporter");
        // Nothing was recorded, so nothing is sent: shutting down does not wait for the (closed) port.
        provider
            .shutdown_with_timeout(Duration::from_secs(5))
            .expect("shuts down");
    }
}
