//! `kedge render`: renders a local directory or a path of a Git repository exactly as the controller would, and
//! prints the objects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
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
#[command(group = clap::ArgGroup::new("source").required(true).args(["dir", "repo"]))]
pub struct RenderArgs {
    /// The application directory on disk.
    pub dir: Option<PathBuf>,
    /// The root of the tree the directory belongs to (kustomizations may reach anything inside it). Default: the
    /// enclosing Git work tree, else the directory itself.
    #[arg(long, requires = "dir")]
    pub root: Option<PathBuf>,
    /// A Git repository URL to render from instead of a local directory.
    #[arg(long, requires = "path")]
    pub repo: Option<String>,
    /// Branch, tag, commit or semver constraint to render (with --repo).
    #[arg(long, default_value = "HEAD", requires = "repo")]
    pub revision: String,
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
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// The kustomize binary (a path ending in `kubectl` runs `kubectl kustomize`). Default:
    /// `$KEDGE_CACHE/bin/kustomize`, else `kustomize` on PATH, else `kubectl kustomize`.
    #[arg(long, env = "KEDGE_KUSTOMIZE")]
    pub kustomize: Option<PathBuf>,
    /// Seconds a kustomize build may take before it is killed.
    #[arg(long, default_value_t = 60)]
    pub kustomize_timeout: u64,
    /// Where Git mirrors are kept (with --repo). Default: `$KEDGE_CACHE/source`.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Runs `kedge render`.
pub fn run(args: RenderArgs) -> anyhow::Result<()> {
    let renderer = Renderer::new(RenderConfig {
        kustomize: KustomizeConfig {
            binary: args.kustomize.clone(),
            timeout: Duration::from_secs(args.kustomize_timeout),
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
    };
    let set = match (&args.dir, &args.repo) {
        (Some(dir), _) => {
            let (root, path) = local_root(dir, args.root.as_deref())?;
            let tree = LocalTree::new(&root, Limits::default())
                .with_context(|| format!("failed to open {}", root.display()))?;
            renderer
                .render(&tree, &path, &options)
                .with_context(|| format!("failed to render {}", dir.display()))?
        }
        (None, Some(url)) => {
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
            renderer
                .render(&snapshot, &path, &options)
                .with_context(|| format!("failed to render {path:?} of {shown}"))?
        }
        (None, None) => bail!("give a directory or --repo"),
    };
    print(&set, args.output)
}

/// The tree root and the application path inside it.
fn local_root(dir: &Path, root: Option<&Path>) -> anyhow::Result<(PathBuf, String)> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("failed to open {}", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let root = match root {
        Some(r) => r
            .canonicalize()
            .with_context(|| format!("failed to open {}", r.display()))?,
        None => dir
            .ancestors()
            .find(|a| a.join(".git").exists())
            .unwrap_or(&dir)
            .to_path_buf(),
    };
    let rel = dir
        .strip_prefix(&root)
        .with_context(|| format!("{} is not inside {}", dir.display(), root.display()))?;
    let path = rel
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", rel.display()))?
        .to_owned();
    Ok((root, path))
}

fn print(set: &RenderedSet, format: Format) -> anyhow::Result<()> {
    let mut text = String::new();
    match format {
        Format::Yaml => {
            for (i, o) in set.objects.iter().enumerate() {
                if i > 0 {
                    text.push_str("---\n");
                }
                let doc = serde_saphyr::to_string(&o.object).context("failed to write YAML")?;
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
                "items": set.objects.iter().map(|o| &o.object).collect::<Vec<_>>(),
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
