//! `kedge appset`: what an ApplicationSet produces. `generate` prints the Applications a set would produce now,
//! reading the registered Clusters from the cluster (only when the set has a clusters generator) and Git as the
//! controller does.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use kedge_api::Cluster;
use kedge_appset::{Inputs, generate, notes, parse_set};
use kedge_source::{Source, SourceConfig};
use kube::api::{Api, ListParams};

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
}

/// Runs a `kedge appset` subcommand.
pub fn run(kube: &KubeArgs, cmd: AppsetCommand) -> anyhow::Result<u8> {
    match cmd {
        AppsetCommand::Generate {
            file,
            output,
            cache_dir,
        } => generate_cmd(kube, &file, output, cache_dir),
    }
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
    for note in parsed.notes.iter().chain(&notes(&set.spec)) {
        eprintln!("kedge: note: {note}");
    }
    let clusters = if uses_clusters(&set.spec) {
        let (clusters, ns) = runtime()?.block_on(list_clusters(kube))?;
        if set.metadata.namespace.is_none() {
            set.metadata.namespace = Some(ns);
        }
        clusters
    } else {
        Vec::new()
    };
    if set.metadata.namespace.is_none() {
        // Where the Applications would live: -n, else the context's namespace, else `default`.
        let context_ns = || {
            runtime()
                .ok()?
                .block_on(kube.config())
                .ok()
                .map(|c| c.default_namespace)
        };
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
    let apps = generate(&set, &Inputs::new(&clusters, &source)).with_context(|| {
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

/// Whether a clusters generator appears anywhere (nested generators are free-form JSON).
fn uses_clusters(spec: &kedge_api::ApplicationSetSpec) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => m.iter().any(|(k, v)| k == "clusters" || walk(v)),
            serde_json::Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    serde_json::to_value(&spec.generators).is_ok_and(|v| walk(&v))
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
