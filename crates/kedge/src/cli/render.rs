//! `kedge render`: renders a local directory, a path of a Git repository or a Helm chart (local, from a Helm
//! repository or an OCI registry) exactly as the controller would, and prints the objects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kedge_helm::{
    Capabilities, HelmConfig, HelmOptions, HelmRenderer, ReleaseMode, RemoteChart, RepoCredentials,
};
use kedge_render::{
    CacheConfig, KustomizeConfig, RenderConfig, RenderOptions, RenderedSet, Renderer, kustomize,
};
use kedge_source::{FetchRequest, FileTree, Limits, LocalTree, RepoSpec, Source, SourceConfig};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A YAML stream, one document per object, separated by `---`.
    Yaml,
    /// One JSON `List` holding every object.
    Json,
}

/// Arguments of `kedge render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// What to render.
    #[command(flatten)]
    pub source: RenderSourceArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

/// What to render and how: a directory, a Git path or a Helm chart, with the renderer's options (shared by
/// `kedge render` and `kedge policy check`).
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(true).args(["dir", "repo", "chart"]))]
pub struct RenderSourceArgs {
    /// The application directory on disk.
    pub dir: Option<PathBuf>,
    /// The root of the tree the directory belongs to (kustomizations may reach anything inside it, nothing
    /// outside). Default: the enclosing Git work tree, else the current directory when it holds the directory,
    /// else the directory itself.
    #[arg(long, requires = "dir")]
    pub root: Option<PathBuf>,
    /// A Git repository URL to render from instead of a local directory (with --path); with --chart, a Helm
    /// repository (`https://...`) or OCI registry path (`oci://host/path`).
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch, tag, commit or semver constraint to render (with --repo); with --chart, the chart version or
    /// constraint (`HEAD`: the newest).
    #[arg(long, default_value = "HEAD", requires = "repo")]
    pub revision: String,
    /// A Helm chart: its name in the --repo Helm repository or OCI registry, or a local chart directory.
    #[arg(long)]
    pub chart: Option<String>,
    /// Helm options.
    #[command(flatten)]
    pub helm: Box<HelmArgs>,
    /// The application path inside the repository (with --repo).
    #[arg(long, requires = "repo")]
    pub path: Option<String>,
    /// Read subdirectories too (directory sources).
    #[arg(long)]
    pub recurse: bool,
    /// Only files matching these globs, relative to the application directory (comma-separated or `{a,b}`).
    #[arg(long)]
    pub include: Option<String>,
    /// Skip files matching these globs, relative to the application directory (comma-separated or `{a,b}`).
    #[arg(long)]
    pub exclude: Option<String>,
    /// The kustomize binary (a path ending in `kubectl` runs `kubectl kustomize`). Default:
    /// `$KEDGE_CACHE/bin/kustomize`, else `kustomize` on PATH, else `kubectl kustomize`.
    #[arg(long, env = "KEDGE_KUSTOMIZE")]
    pub kustomize: Option<PathBuf>,
    /// Seconds a kustomize build may take before it is killed.
    #[arg(long, default_value_t = 60)]
    pub kustomize_timeout: u64,
    /// Let kustomizations name remote bases (URLs or Git repositories), as `kedge run --allow-remote-bases` does;
    /// refused by default.
    #[arg(long)]
    pub allow_remote_bases: bool,
    /// Where Git mirrors are kept (with --repo). Default: `$KEDGE_CACHE/source`.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// The Helm flags of `kedge render`, named after the Application's `source.helm` fields.
#[derive(Args, Debug)]
pub struct HelmArgs {
    /// Helm: the release name.
    #[arg(long, default_value = "release")]
    pub release_name: String,
    /// Helm: the release (destination) namespace.
    #[arg(long, default_value = "default")]
    pub dest_namespace: String,
    /// Helm: a values file, relative to the chart (repeatable; later files win).
    #[arg(long = "value-file")]
    pub value_files: Vec<String>,
    /// Helm: inline values as a YAML string (after the value files).
    #[arg(long)]
    pub values: Option<String>,
    /// Helm: `name=value` as `helm --set` takes it (repeatable, applied last).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Helm: `name=value`, kept a string (repeatable).
    #[arg(long = "set-string")]
    pub set_string: Vec<String>,
    /// Helm: leave out the chart's CRDs.
    #[arg(long)]
    pub skip_crds: bool,
    /// Helm: the Kubernetes version templates see.
    #[arg(long)]
    pub kube_version: Option<String>,
    /// Helm: an API version templates see (`group/version` or `group/version/Kind`; repeatable).
    #[arg(long = "api-versions")]
    pub api_versions: Vec<String>,
    /// Helm: a YAML file holding a list of kustomize patches (`[{patch: ..., target: {kind: ...}}]`) applied to
    /// the output.
    #[arg(long)]
    pub post_render_patches: Option<PathBuf>,
    /// Helm: render as an upgrade (pre-upgrade/post-upgrade hooks) instead of the first install.
    #[arg(long)]
    pub upgrade: bool,
    /// Helm: the user name for the chart repository; the password comes from $KEDGE_HELM_PASSWORD.
    #[arg(long)]
    pub repo_username: Option<String>,
    /// The helm binary. Default: `$KEDGE_CACHE/bin/helm`, else `helm` on PATH.
    #[arg(long, env = "KEDGE_HELM")]
    pub helm: Option<PathBuf>,
}

/// Runs `kedge render`.
pub fn run(args: RenderArgs) -> anyhow::Result<()> {
    let set = render(&args.source)?;
    print(&set, args.output)
}

/// Renders what the arguments name, as the controller would.
pub fn render(args: &RenderSourceArgs) -> anyhow::Result<std::sync::Arc<RenderedSet>> {
    let renderer = Renderer::new(RenderConfig {
        kustomize: KustomizeConfig {
            binary: args.kustomize.clone(),
            timeout: Duration::from_secs(args.kustomize_timeout),
            allow_remote_bases: args.allow_remote_bases,
            ..KustomizeConfig::default()
        },
        // One render per process: the cache would only cost dir_id look-ups.
        cache: CacheConfig {
            max_entries: 0,
            max_bytes: 0,
        },
    });
    let options = RenderOptions {
        recurse: args.recurse,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        // Decrypted Secrets are not printed: a SOPS-encrypted document is reported as an error here.
        decryption: None,
    };
    let helm = HelmRenderer::new(HelmConfig {
        binary: args.helm.helm.clone(),
        kustomize: renderer.config().kustomize.clone(),
        max_cached_renders: 0,
        ..HelmConfig::default()
    });
    let helm_options = helm_options(&args.helm)?;
    let caps = Capabilities::default();
    let local = match (&args.dir, &args.chart, &args.repo) {
        (Some(dir), _, _) => Some(dir.clone()),
        (None, Some(chart), None) => Some(PathBuf::from(chart)),
        _ => None,
    };
    let set = match (local, &args.repo) {
        (Some(dir), _) => {
            let local = local_root(&dir, args.root.as_deref())?;
            let (root, path) = (&local.root, local.path.as_str());
            let tree = LocalTree::new(root, Limits::default())
                .with_context(|| format!("failed to open {}", root.display()))?;
            if kedge_helm::is_chart_dir(&tree, path) {
                helm.render_tree(&tree, path, &helm_options, &[], &caps)
                    .with_context(|| {
                        format!(
                            "failed to render chart {} in {}",
                            dir.display(),
                            local.describe()
                        )
                    })?
                    .rendered
                    .clone()
            } else {
                let set = renderer.render(&tree, path, &options).with_context(|| {
                    format!("failed to render {} in {}", dir.display(), local.describe())
                })?;
                kedge_helm::with_hooks_mapped(set, helm_options.mode)
            }
        }
        (None, Some(url)) if args.chart.is_some() || url.starts_with("oci://") => {
            let chart = RemoteChart {
                repo_url: url.clone(),
                chart: args.chart.clone().unwrap_or_default(),
                version: args.revision.clone(),
                credentials: args.helm.repo_username.as_ref().map(|u| RepoCredentials {
                    username: u.clone(),
                    password: std::env::var("KEDGE_HELM_PASSWORD").unwrap_or_default(),
                }),
                plain_http: false,
            };
            let runtime = super::kube::runtime()?;
            let fetched = runtime
                .block_on(helm.fetch(&chart))
                .with_context(|| format!("failed to fetch chart from {}", chart.display_url()))?;
            eprintln!(
                "kedge: rendering chart {} {} ({})",
                fetched.name, fetched.version, fetched.digest
            );
            helm.render_fetched(&fetched, &helm_options, &[], &caps)
                .with_context(|| format!("failed to render chart {}", fetched.name))?
                .rendered
                .clone()
        }
        (None, Some(url)) => {
            if args.path.is_none() {
                bail!("--repo needs --path (a Git repository) or --chart (a Helm repository)");
            }
            let path = args.path.clone().unwrap_or_default();
            let repo = RepoSpec::new(url).context("invalid repository URL")?;
            let shown = repo.display_url().to_owned();
            let cache = match &args.cache_dir {
                Some(c) => c.clone(),
                None => kustomize::cache_dir()
                    .context("cannot find a cache directory: set KEDGE_CACHE or HOME")?
                    .join("source"),
            };
            let source = Source::new(SourceConfig::new(cache))?;
            let snapshot = source
                .fetch(&FetchRequest::new(repo, args.revision.clone()).with_path(path.clone()))
                .with_context(|| format!("failed to fetch {shown} at {}", args.revision))?;
            eprintln!(
                "kedge: rendering {} at {}",
                snapshot.describe(),
                snapshot.revision().sha
            );
            if kedge_helm::is_chart_dir(&snapshot, &path) {
                helm.render_tree(&snapshot, &path, &helm_options, &[], &caps)
                    .with_context(|| format!("failed to render chart {path:?} of {shown}"))?
                    .rendered
                    .clone()
            } else {
                let set = renderer
                    .render(&snapshot, &path, &options)
                    .with_context(|| format!("failed to render {path:?} of {shown}"))?;
                kedge_helm::with_hooks_mapped(set, helm_options.mode)
            }
        }
        (None, None) => bail!("give a directory, --repo or --chart"),
    };
    Ok(set)
}

/// The Helm options of the command line, as `source.helm` would give them.
fn helm_options(args: &HelmArgs) -> anyhow::Result<HelmOptions> {
    let mut parameters = Vec::new();
    for (list, force_string) in [(&args.set, false), (&args.set_string, true)] {
        for p in list {
            let (name, value) = p
                .split_once('=')
                .with_context(|| format!("--set {p:?}: expected name=value"))?;
            parameters.push(kedge_api::HelmParameter {
                name: name.to_owned(),
                value: value.to_owned(),
                force_string,
            });
        }
    }
    let patches = match &args.post_render_patches {
        None => Vec::new(),
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("failed to read {}", file.display()))?;
            serde_saphyr::from_str(&text)
                .with_context(|| format!("failed to parse patches in {}", file.display()))?
        }
    };
    Ok(HelmOptions {
        release_name: args.release_name.clone(),
        namespace: args.dest_namespace.clone(),
        value_files: args.value_files.clone(),
        values: args.values.clone(),
        values_object: None,
        parameters,
        skip_crds: args.skip_crds,
        kube_version: args.kube_version.clone(),
        api_versions: args.api_versions.clone(),
        patches,
        mode: if args.upgrade {
            ReleaseMode::Upgrade
        } else {
            ReleaseMode::Install
        },
        ref_values: Vec::new(),
    })
}

/// Where the root of the tree a local directory renders in came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootOrigin {
    /// `--root`.
    Flag,
    /// The enclosing Git work tree.
    Git,
    /// The current directory, which holds the application directory.
    CurrentDir,
    /// The application directory itself.
    Dir,
}

impl std::fmt::Display for RootOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flag => "--root",
            Self::Git => "the enclosing Git work tree",
            Self::CurrentDir => "the current directory",
            Self::Dir => "the directory itself, which is outside the current directory; set --root",
        })
    }
}

/// The tree a local directory renders in: its root (and where that came from) and the application path inside it.
struct LocalRoot {
    root: PathBuf,
    origin: RootOrigin,
    path: String,
}

impl LocalRoot {
    /// The root for error messages: `tree root /x (the current directory)`.
    fn describe(&self) -> String {
        format!("tree root {} ({})", self.root.display(), self.origin)
    }
}

/// The tree root and the application path inside it: `--root`, else the enclosing Git work tree, else the current
/// directory when it holds `dir` (as `kubectl kustomize` reads `../../base` from there), else `dir` itself.
fn local_root(dir: &Path, root: Option<&Path>) -> anyhow::Result<LocalRoot> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("failed to open {}", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|c| c.canonicalize().ok());
    let (root, origin) = match root {
        Some(r) => (
            r.canonicalize()
                .with_context(|| format!("failed to open {}", r.display()))?,
            RootOrigin::Flag,
        ),
        None => match dir.ancestors().find(|a| a.join(".git").exists()) {
            Some(git) => (git.to_path_buf(), RootOrigin::Git),
            None => match cwd {
                Some(cwd) if dir.starts_with(&cwd) => (cwd, RootOrigin::CurrentDir),
                _ => (dir.clone(), RootOrigin::Dir),
            },
        },
    };
    let rel = dir
        .strip_prefix(&root)
        .with_context(|| format!("{} is not inside {}", dir.display(), root.display()))?;
    let path = rel
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", rel.display()))?
        .to_owned();
    Ok(LocalRoot { root, origin, path })
}

fn print(set: &RenderedSet, format: Format) -> anyhow::Result<()> {
    print_objects(set.objects.iter().map(|o| &o.object), format)
}

/// Prints objects to stdout as a YAML stream or one JSON `List` (shared by the commands that print objects).
pub fn print_objects<'a>(
    objects: impl Iterator<Item = &'a serde_json::Value>,
    format: Format,
) -> anyhow::Result<()> {
    let objects: Vec<&serde_json::Value> = objects.collect();
    let mut text = String::new();
    match format {
        Format::Yaml => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    text.push_str("---\n");
                }
                let doc = serde_saphyr::to_string(o).context("failed to write YAML")?;
                text.push_str(&doc);
                if !doc.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
        Format::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {},
                "items": objects,
            });
            text = serde_json::to_string_pretty(&list).context("failed to write JSON")?;
            text.push('\n');
        }
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`kedge render ... | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("failed to write to stdout"),
    }
}
