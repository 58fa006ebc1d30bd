//! `kedge run`: the controller.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use kedge_controller::runner::{RunConfig, SHUTDOWN_TAIL, run as run_controller};
use tokio_util::sync::CancellationToken;

use super::kube::{KubeArgs, runtime};

/// Flags of `kedge run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Watch Applications in every namespace (default: only the namespace of -n or the context).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// How often each repository is asked whether it moved (plus up to 10% jitter).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub poll_interval: std::time::Duration,
    /// How often every application is compared again without any trigger.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub resync_interval: std::time::Duration,
    /// Address of the HTTP endpoints (probes, API, web UI, webhooks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`/metrics`), a listener of its own so that the UI port does not
    /// expose it; not served unless given (`kedge install` serves it on 0.0.0.0:9090).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Accept webhook pushes without a signature from Git providers that have no secret in Secret `kedge-webhook`
    /// (refused by default).
    #[arg(long)]
    pub webhook_allow_unsigned: bool,
    /// Mark session cookies Secure (when the UI is reached over TLS, e.g. through an ingress).
    #[arg(long)]
    pub secure_cookies: bool,
    /// Namespaces (globs, comma-separated, e.g. 'team-*') besides Kedge's own whose Applications this controller
    /// reconciles; the controller then watches every namespace, and each application's project must list its
    /// namespace in `sourceNamespaces`.
    #[arg(long, value_name = "GLOBS", value_delimiter = ',')]
    pub application_namespaces: Vec<String>,
    /// The web UI's external URL (e.g. https://kedge.example.com): notifications and commit statuses link to each
    /// application's page there.
    #[arg(long, value_name = "URL")]
    pub ui_url: Option<String>,
    /// Log in through this OpenID Connect provider (its issuer URL, e.g. https://dex.example.com): the login page
    /// offers "Log in with SSO". Needs --ui-url (the provider sends the browser back to <ui-url>/auth/callback,
    /// which must be registered there) and --oidc-client-id; the client secret is read from Secret `kedge-oidc`
    /// (key `clientSecret`) in Kedge's namespace at each login.
    #[arg(long, value_name = "URL", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// The client ID registered at the OIDC provider.
    #[arg(long, value_name = "ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// Scopes asked of the OIDC provider (comma-separated; `openid` is always asked for). Some providers have no
    /// `groups` scope and put the groups claim in the token anyway: leave it out for them.
    #[arg(
        long,
        value_name = "SCOPES",
        value_delimiter = ',',
        default_value = "openid,profile,email,groups",
        requires = "oidc_issuer"
    )]
    pub oidc_scopes: Vec<String>,
    /// The claim of the ID token (or, when absent there, of the userinfo answer) that lists the user's groups.
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "groups",
        requires = "oidc_issuer"
    )]
    pub oidc_groups_claim: String,
    /// OIDC groups (comma-separated) whose members are admins.
    #[arg(
        long,
        value_name = "GROUPS",
        value_delimiter = ',',
        requires = "oidc_issuer"
    )]
    pub oidc_admin_groups: Vec<String>,
    /// OIDC groups (comma-separated) whose members may read everything. Users in neither list have no rights of
    /// their own: the project roles that list one of their groups decide what they may see and do.
    #[arg(
        long,
        value_name = "GROUPS",
        value_delimiter = ',',
        requires = "oidc_issuer"
    )]
    pub oidc_readonly_groups: Vec<String>,
    /// Serve only probes (and metrics on --metrics-listen): no API, web UI or webhooks.
    #[arg(long)]
    pub no_ui: bool,
    /// Cache folder for Git mirrors (default: $KEDGE_CACHE/controller or ~/.cache/kedge/controller).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Namespace of the leader-election Lease (default: the Applications' namespace, or `kedge` with -A).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Identity of this replica in leader election (default: $POD_NAME or the host name plus the process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long the leader's Lease holds after its last renewal: a crashed leader is replaced after at most this.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: std::time::Duration,
    /// How often the leader renews its Lease (and the other replicas try to take it); at most half the renew deadline.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lease_renew_interval: std::time::Duration,
    /// A leader that could not renew its Lease for this long stops writing; shorter than the lease duration, so that
    /// it has stopped before another replica may take over.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: std::time::Duration,
    /// On SIGTERM, how long running syncs may take to finish before they are abandoned (the next leader resumes
    /// them); then the Lease is released and the process exits. Keep it below the pod's
    /// terminationGracePeriodSeconds (30 s by default) minus about 5 s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Applications compared or synced at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Let kustomizations name remote bases (Git repositories or URLs in `resources`, `components`, `bases`, ...,
    /// and Helm chart repositories), which kustomize then fetches with its own credentials and network access.
    /// Off by default: a kustomization may name only files of its repository.
    #[arg(long)]
    pub allow_remote_bases: bool,
    /// Most pack data one Git fetch may receive (e.g. `512Mi`, `2Gi`); a larger fetch is refused and nothing of it
    /// kept.
    #[arg(long, default_value = "1Gi", value_parser = parse_size)]
    pub max_fetch_size: u64,
    /// How replicas divide the work: `applications` (each replica reconciles its share of the applications, found
    /// by consistent hashing over the live replicas' Leases; one replica alone has them all) or `off` (the leader
    /// reconciles everything and the other replicas stand by).
    #[arg(long, default_value = "applications", value_name = "MODE")]
    pub sharing: kedge_controller::runner::Sharing,
    /// Git mirrors and checkouts that no application used for this long are removed (checked every hour).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub mirror_max_idle: std::time::Duration,
    /// Export traces of every reconcile pass over OTLP/HTTP (protobuf) to this collector, e.g.
    /// `http://otel-collector:4318` (`/v1/traces` is appended unless given). Without it, the standard
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL) or OTEL_EXPORTER_OTLP_ENDPOINT (a base URL) is used; with
    /// none of them no traces are exported. See docs/tracing.md.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// A size in bytes, with an optional binary (`Ki`, `Mi`, `Gi`) or decimal (`k`, `M`, `G`) suffix, as Kubernetes
/// quantities are written.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512Mi, 2Gi)"))?;
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (Ki, Mi, Gi, k, M or G)"
            ));
        }
    };
    match n.checked_mul(factor) {
        Some(0) => Err("the size must be larger than zero".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{s:?} is too large")),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    kedge_api::parse_duration(s).map_err(|e| e.to_string())
}

/// The default cache folder.
pub fn default_cache_dir(sub: &str) -> PathBuf {
    let base = std::env::var_os("KEDGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kedge")))
        .unwrap_or_else(|| std::env::temp_dir().join("kedge"));
    base.join(sub)
}

/// Runs the controller until SIGINT or SIGTERM.
///
/// On the signal, no new pass starts; passes already running have `--shutdown-grace` to finish, then the Lease is
/// released and the process exits. Whatever still waits after that and a few more seconds does not hold the exit: a
/// watchdog thread ends the process. A second signal ends it at once.
pub fn run(kube: &KubeArgs, args: RunArgs) -> anyhow::Result<()> {
    // Flags that do not fit together are refused before anything starts.
    let oidc = oidc_config(&args)?;
    // Before anything builds a TLS client (the trace exporter's included).
    kedge_source::install_crypto_provider();
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        format!(
            "{}-{}",
            if host.is_empty() { "kedge" } else { &host },
            std::process::id()
        )
    });
    // Outside the runtime: the exporter sends from a thread of its own, and its last spans are sent after the
    // runtime stopped.
    let telemetry = kedge::telemetry::Telemetry::init(args.otlp_endpoint.as_deref(), &identity)?;
    if let Some(endpoint) = telemetry.endpoint() {
        tracing::info!(endpoint = %endpoint.url, from = endpoint.origin, "exporting traces over OTLP");
    }
    let rt = runtime()?;
    let grace = args.shutdown_grace;
    let result = rt.block_on(async move {
        // The signal handlers first: a signal that comes while the rest starts up is a shutdown like any other.
        let shutdown = CancellationToken::new();
        {
            let mut signals = Signals::new()?;
            let signal = shutdown.clone();
            tokio::spawn(async move {
                signals.next().await;
                tracing::info!("shutting down");
                signal.cancel();
                watchdog(grace + SHUTDOWN_TAIL + std::time::Duration::from_secs(2));
                signals.next().await;
                tracing::warn!("second signal: exiting at once");
                std::process::exit(130);
            });
        }
        let config = kube.config().await?;
        let namespace = if args.all_namespaces || !args.application_namespaces.is_empty() {
            None
        } else {
            Some(
                kube.namespace
                    .clone()
                    .unwrap_or_else(|| config.default_namespace.clone()),
            )
        };
        let mut rc = RunConfig::new(
            args.cache_dir
                .clone()
                .unwrap_or_else(|| default_cache_dir("controller")),
            identity,
        );
        rc.lease_namespace = args
            .lease_namespace
            .clone()
            .or_else(|| namespace.clone())
            .or_else(|| {
                // Watching every namespace for application namespaces: Kedge's own is the one named, if any.
                (!args.application_namespaces.is_empty())
                    .then(|| kube.namespace.clone())
                    .flatten()
            })
            .unwrap_or_else(|| "kedge".to_owned());
        rc.namespace = namespace;
        rc.poll_interval = args.poll_interval;
        rc.resync_interval = args.resync_interval;
        rc.listen = Some(args.listen);
        rc.metrics_listen = args.metrics_listen;
        rc.lease_duration = args.lease_duration;
        rc.lease_renew_interval = args.lease_renew_interval;
        rc.lease_renew_deadline = args.lease_renew_deadline;
        rc.shutdown_grace = args.shutdown_grace;
        rc.concurrency = args.concurrency;
        rc.allow_remote_bases = args.allow_remote_bases;
        rc.sharing = args.sharing;
        rc.max_fetch_bytes = args.max_fetch_size;
        rc.mirror_max_idle = args.mirror_max_idle;
        rc.ui_url = args.ui_url.clone();
        rc.application_namespaces = args.application_namespaces.clone();
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let mut server = kedge_server::ServerConfig::new(rc.lease_namespace.clone());
        server.secure_cookies = args.secure_cookies;
        server.webhook_allow_unsigned = args.webhook_allow_unsigned;
        if args.webhook_allow_unsigned && args.no_ui {
            anyhow::bail!(
                "--webhook-allow-unsigned has no effect with --no-ui (no webhooks are served)"
            );
        }
        server.oidc = oidc;
        let routes = (!args.no_ui).then(|| kedge_server::route_builder(server));
        run_controller(config, rc, shutdown, routes)
            .await
            .context("controller failed")
    });
    // Blocking work still running (a git fetch from a server that stopped answering) does not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // The spans of the last passes (the batch not sent yet) go out before the process ends.
    telemetry.shutdown();
    result
}

/// The OIDC login settings of the flags (`None` without --oidc-issuer).
fn oidc_config(args: &RunArgs) -> anyhow::Result<Option<kedge_server::OidcConfig>> {
    let (Some(issuer), Some(client_id)) = (&args.oidc_issuer, &args.oidc_client_id) else {
        return Ok(None);
    };
    if args.no_ui {
        anyhow::bail!("--oidc-issuer has no effect with --no-ui (no web UI or API is served)");
    }
    let Some(ui_url) = args.ui_url.as_deref().map(|u| u.trim_end_matches('/')) else {
        anyhow::bail!(
            "--oidc-issuer needs --ui-url: the identity provider sends the browser back to <ui-url>/auth/callback"
        );
    };
    if !(ui_url.starts_with("https://") || ui_url.starts_with("http://")) {
        anyhow::bail!("--ui-url must be an http(s) URL for OIDC login, not {ui_url:?}");
    }
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        anyhow::bail!("--oidc-issuer must be an http(s) URL, not {issuer:?}");
    }
    let list = |l: &[String]| -> Vec<String> {
        l.iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut config = kedge_server::OidcConfig::new(
        issuer.clone(),
        client_id.clone(),
        format!("{ui_url}/auth/callback"),
    );
    config.scopes = list(&args.oidc_scopes);
    config.groups_claim = args.oidc_groups_claim.trim().to_owned();
    if config.groups_claim.is_empty() {
        anyhow::bail!("--oidc-groups-claim must name a claim");
    }
    config.admin_groups = list(&args.oidc_admin_groups);
    config.readonly_groups = list(&args.oidc_readonly_groups);
    Ok(Some(config))
}

/// SIGINT and SIGTERM, listened to from the moment they are created.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Ends the process if it is still running `after` from now, whatever it waits for (a thread of its own, so that
/// not even a runtime whose tasks all wait can hold it).
fn watchdog(after: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::error!(
            "shutdown did not finish within {}s; exiting",
            after.as_secs_f64()
        );
        std::process::exit(1);
    });
}

#[cfg(test)]
mod tests {
    use super::{RunArgs, oidc_config, parse_size};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn oidc_flags_make_the_server_settings() {
        let args = parse(&[]).expect("no flags");
        assert!(oidc_config(&args).expect("no OIDC").is_none());
        let args = parse(&[
            "--ui-url",
            "https://kedge.example.com/",
            "--oidc-issuer",
            "https://idp.example.com",
            "--oidc-client-id",
            "kedge",
            "--oidc-admin-groups",
            "ops, platform",
            "--oidc-readonly-groups",
            "audit",
        ])
        .expect("flags");
        let c = oidc_config(&args).expect("valid").expect("configured");
        assert_eq!(c.redirect_url, "https://kedge.example.com/auth/callback");
        assert_eq!(c.scopes, ["openid", "profile", "email", "groups"]);
        assert_eq!(c.groups_claim, "groups");
        assert_eq!(c.admin_groups, ["ops", "platform"]);
        assert_eq!(c.readonly_groups, ["audit"]);
    }

    #[test]
    fn oidc_without_a_ui_url_or_a_client_id_is_refused() {
        let args = parse(&[
            "--oidc-issuer",
            "https://idp.example.com",
            "--oidc-client-id",
            "kedge",
        ])
        .expect("flags");
        let err = oidc_config(&args).expect_err("no --ui-url").to_string();
        assert!(err.contains("--ui-url"), "{err}");
        assert!(parse(&["--oidc-issuer", "https://idp.example.com"]).is_err());
        assert!(parse(&["--oidc-admin-groups", "ops"]).is_err());
        assert!(parse(&["--oidc-client-id", "kedge"]).is_err());
    }

    #[test]
    fn sizes_read_as_kubernetes_quantities() {
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "0", "1Ti", "Mi", "1.5Gi", "99999999999999999999Gi"] {
            assert!(parse_size(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
