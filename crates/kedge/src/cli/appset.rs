//! `kedge appset`: what an ApplicationSet produces and how its rollout stands. `generate` prints the Applications a
//! set would produce now, reading the registered Clusters from the cluster (only when the set has a clusters
//! generator) and Git as the controller does; `rollout` shows a `RollingSync` set's rollout and lets it pass a
//! Degraded Application (`--resume`) or wait for it again (`--restart`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use kedge_api::{ApplicationSet, Cluster, ROLLOUT_SKIP_ANNOTATION};
use std::sync::Arc;

use kedge_api::RepositorySecrets;
use kedge_appset::{GitFiles, Inputs, fetch_tree, generate, parse_set};
use kedge_controller::pipeline::credentials_for;
use kedge_source::{FileTree, RepoSpec, Source, SourceConfig};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::kube::{KubeArgs, runtime};
use super::render::{Format, print_objects};

/// `kedge appset` subcommands.
#[derive(Subcommand, Debug)]
pub enum AppsetCommand {
    /// Print the Applications an ApplicationSet file produces now (an Argo CD ApplicationSet is read too). Clusters
    /// come from Kedge's namespace (-n) of the current context, repositories from Git.
    Generate {
        /// The ApplicationSet file (YAML or JSON; `-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
        output: Format,
        /// Where Git mirrors are kept. Default: `$KEDGE_CACHE/source`.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Show the rollout of a RollingSync set (each Application's step and state); with --resume, let it pass the
    /// Applications that stop it (Degraded, or their sync failed) at their current revision; with --restart, drop
    /// what --resume allowed, so that the rollout waits for every Application again.
    Rollout {
        /// The ApplicationSet's name.
        name: String,
        /// Let the rollout pass the Applications that stop it now.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Forget what --resume allowed.
        #[arg(long)]
        restart: bool,
    },
}

/// Runs a `kedge appset` subcommand.
pub fn run(kube: &KubeArgs, cmd: AppsetCommand) -> anyhow::Result<u8> {
    match cmd {
        AppsetCommand::Generate {
            file,
            output,
            cache_dir,
        } => generate_cmd(kube, &file, output, cache_dir),
        AppsetCommand::Rollout {
            name,
            resume,
            restart,
        } => runtime()?.block_on(rollout_cmd(kube, &name, resume, restart)),
    }
}

async fn rollout_cmd(
    kube: &KubeArgs,
    name: &str,
    resume: bool,
    restart: bool,
) -> anyhow::Result<u8> {
    let (client, ns) = kube.client().await?;
    let api: Api<ApplicationSet> = Api::namespaced(client, &ns);
    let set = api
        .get_opt(name)
        .await
        .with_context(|| format!("failed to read application set {name} in namespace {ns}"))?
        .with_context(|| format!("application set {name} not found in namespace {ns}"))?;
    let rolling = set
        .spec
        .strategy
        .as_ref()
        .is_some_and(|s| s.type_ == "RollingSync");
    if !rolling {
        bail!(
            "application set {name} has no RollingSync strategy: its Applications sync all at once"
        );
    }
    let status = set.status.clone().unwrap_or_default();
    if resume {
        let pass: Vec<String> = status
            .application_status
            .iter()
            .filter(|e| e.status == "Degraded")
            .filter_map(|e| {
                e.target_revisions
                    .first()
                    .map(|r| format!("{}@{r}", e.application))
            })
            .collect();
        if pass.is_empty() {
            bail!("the rollout of {name} is not stopped by any Application: nothing to resume");
        }
        let mut all: Vec<String> = set
            .annotations()
            .get(ROLLOUT_SKIP_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for p in &pass {
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        let patch = serde_json::json!({ "metadata": { "annotations": { ROLLOUT_SKIP_ANNOTATION: all.join(",") } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("failed to annotate application set {name}"))?;
        println!("the rollout of {name} passes {}", pass.join(", "));
        return Ok(0);
    }
    if restart {
        let patch =
            serde_json::json!({ "metadata": { "annotations": { ROLLOUT_SKIP_ANNOTATION: null } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("failed to annotate application set {name}"))?;
        println!("the rollout of {name} waits for every Application again");
        return Ok(0);
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "RolloutProgressing")
    {
        println!("{}: {}", c.reason, c.message);
    }
    println!(
        "{:<32} {:<5} {:<12} {:<9} MESSAGE",
        "APPLICATION", "STEP", "STATUS", "REVISION"
    );
    for e in &status.application_status {
        let rev = e
            .target_revisions
            .first()
            .map(|r| r.get(..7).unwrap_or(r))
            .unwrap_or("-");
        println!(
            "{:<32} {:<5} {:<12} {:<9} {}",
            e.application,
            if e.step.is_empty() { "-" } else { &e.step },
            e.status,
            rev,
            e.message
        );
    }
    Ok(0)
}

fn generate_cmd(
    kube: &KubeArgs,
    file: &std::path::Path,
    output: Format,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("failed to read standard input")?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?
    };
    let parsed = parse_set(&text)
        .with_context(|| format!("{} is not a usable ApplicationSet", file.display()))?;
    let mut set = parsed.set;
    for note in &parsed.notes {
        eprintln!("kedge: note: {note}");
    }
    let rt = runtime()?;
    let clusters = if uses_generator(&set.spec, "clusters") {
        let (clusters, ns) = rt.block_on(list_clusters(kube))?;
        if set.metadata.namespace.is_none() {
            set.metadata.namespace = Some(ns);
        }
        clusters
    } else {
        Vec::new()
    };
    if set.metadata.namespace.is_none() {
        // Where the Applications would live: -n, else the context's namespace, else `default`.
        let context_ns = || rt.block_on(kube.config()).ok().map(|c| c.default_namespace);
        set.metadata.namespace = kube.namespace.clone().or_else(context_ns);
    }
    kedge_source::install_crypto_provider();
    let cache = match cache_dir {
        Some(c) => c,
        None => kedge_render::kustomize::cache_dir()
            .context("cannot find a cache directory: set KEDGE_CACHE or HOME")?
            .join("source"),
    };
    let source = Source::new(SourceConfig::new(cache))?;
    let git = CliGit::new(kube, &set, source, rt);
    let apps = generate(&set, &Inputs::new(&clusters, &git)).with_context(|| {
        format!(
            "ApplicationSet {} produces no Applications",
            set.metadata.name.as_deref().unwrap_or("")
        )
    })?;
    let mut objects = Vec::with_capacity(apps.len());
    for app in &apps {
        let mut value =
            serde_json::to_value(&app.application).context("failed to write an Application")?;
        if let Some(m) = value.as_object_mut() {
            m.remove("status");
        }
        objects.push(value);
    }
    print_objects(objects.iter(), output)?;
    eprintln!("kedge: {} application(s)", apps.len());
    Ok(0)
}

/// Git as the controller reads it: credentials from the repository Secrets of the set's namespace when the
/// cluster can be reached, anonymous access otherwise (with a note).
struct CliGit {
    source: Source,
    runtime: tokio::runtime::Runtime,
    secrets: Option<(RepositorySecrets, String)>,
}

impl CliGit {
    fn new(
        kube: &KubeArgs,
        set: &kedge_api::ApplicationSet,
        source: Source,
        runtime: tokio::runtime::Runtime,
    ) -> Self {
        let mut secrets = None;
        if uses_generator(&set.spec, "git") {
            match runtime.block_on(kube.client()) {
                Ok((client, ns)) => {
                    let ns = set.metadata.namespace.clone().unwrap_or(ns);
                    secrets = Some((RepositorySecrets::Read(client), ns));
                }
                Err(e) => eprintln!(
                    "kedge: note: no cluster to read repository Secrets from ({e}); repositories are read without \
                     credentials"
                ),
            }
        }
        Self {
            source,
            runtime,
            secrets,
        }
    }
}

impl GitFiles for CliGit {
    fn tree(&self, repo_url: &str, revision: &str) -> Result<Arc<dyn FileTree>, String> {
        let repo = RepoSpec::new(repo_url).map_err(|e| e.to_string())?;
        let repo = match &self.secrets {
            Some((secrets, ns)) => {
                let (credentials, insecure) = self
                    .runtime
                    .block_on(credentials_for(secrets, ns, repo_url))
                    .map_err(|e| e.to_string())?;
                repo.with_credentials(credentials).insecure(insecure)
            }
            None => repo,
        };
        fetch_tree(&self.source, repo, revision)
    }
}

/// Whether a generator of `kind` appears anywhere (nested generators are free-form JSON).
fn uses_generator(spec: &kedge_api::ApplicationSetSpec, kind: &str) -> bool {
    fn walk(v: &serde_json::Value, kind: &str) -> bool {
        match v {
            serde_json::Value::Object(m) => m.iter().any(|(k, v)| k == kind || walk(v, kind)),
            serde_json::Value::Array(a) => a.iter().any(|v| walk(v, kind)),
            _ => false,
        }
    }
    serde_json::to_value(&spec.generators).is_ok_and(|v| walk(&v, kind))
}

async fn list_clusters(kube: &KubeArgs) -> anyhow::Result<(Vec<Cluster>, String)> {
    let (client, ns) = kube
        .client()
        .await
        .context("the set has a clusters generator, which reads the registered Clusters")?;
    let api: Api<Cluster> = Api::namespaced(client, &ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok((list.items, ns)),
        Err(kube::Error::Api(e)) if e.code == 404 => bail!(
            "the set has a clusters generator, but the Cluster CRD is not installed (kedge install) in the current \
             context"
        ),
        Err(e) => Err(e).with_context(|| format!("failed to list the Clusters in namespace {ns}")),
    }
}
