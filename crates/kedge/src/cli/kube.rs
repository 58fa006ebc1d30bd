//! Connection flags shared by every command that talks to a cluster, with kubectl's names and meanings.

use anyhow::Context as _;
use clap::Args;

/// Which cluster and namespace.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the Applications (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

impl KubeArgs {
    /// The client configuration these flags select.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("failed to read kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .context("failed to load kubeconfig")?
            }
            None => kube::Config::from_kubeconfig(&options)
                .await
                .or_else(|_| kube::Config::incluster())
                .context("no kubeconfig found and not running in a cluster")?,
        };
        Ok(config)
    }

    /// A client plus the namespace to use (the flag, else the context's default).
    pub async fn client(&self) -> anyhow::Result<(kube::Client, String)> {
        kedge_source::install_crypto_provider();
        let config = self.config().await?;
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            kube::Client::try_from(config).context("failed to create the Kubernetes client")?;
        Ok((client, ns))
    }
}

/// A tokio runtime for the async commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}
