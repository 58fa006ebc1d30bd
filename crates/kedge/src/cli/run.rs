//! `kedge run`: the controller.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use kedge_controller::runner::{RunConfig, run as run_controller};
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
    /// Address of the HTTP endpoints (probes, metrics, API, web UI, webhooks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Mark session cookies Secure (when the UI is reached over TLS, e.g. through an ingress).
    #[arg(long)]
    pub secure_cookies: bool,
    /// Serve only probes and metrics: no API, web UI or webhooks.
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
    /// How often the leader renews its Lease (and the other replicas try to take it); at most half the duration.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lease_renew_interval: std::time::Duration,
    /// Applications compared or synced at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Let kustomizations name remote bases (Git repositories or URLs in `resources`, `components`, `bases`, ...,
    /// and Helm chart repositories), which kustomize then fetches with its own credentials and network access.
    /// Off by default: a kustomization may name only files of its repository.
    #[arg(long)]
    pub allow_remote_bases: bool,
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
pub fn run(kube: &KubeArgs, args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(async move {
        kedge_source::install_crypto_provider();
        let config = kube.config().await?;
        let namespace = if args.all_namespaces {
            None
        } else {
            Some(
                kube.namespace
                    .clone()
                    .unwrap_or_else(|| config.default_namespace.clone()),
            )
        };
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
            .unwrap_or_else(|| "kedge".to_owned());
        rc.namespace = namespace;
        rc.poll_interval = args.poll_interval;
        rc.resync_interval = args.resync_interval;
        rc.listen = Some(args.listen);
        rc.lease_duration = args.lease_duration;
        rc.lease_renew_interval = args.lease_renew_interval;
        rc.concurrency = args.concurrency;
        rc.allow_remote_bases = args.allow_remote_bases;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signal.cancel();
        });
        let mut server = kedge_server::ServerConfig::new(rc.lease_namespace.clone());
        server.secure_cookies = args.secure_cookies;
        let routes = (!args.no_ui).then(|| kedge_server::route_builder(server));
        run_controller(config, rc, shutdown, routes)
            .await
            .context("controller failed")
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
