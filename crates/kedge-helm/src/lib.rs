//! Resolves and renders Helm charts from Git paths, Helm HTTP repositories and OCI registries with the helm binary.
//!
//! # Sources
//!
//! - A chart in a file tree (a Git path or a local directory holding `Chart.yaml`, with its `charts/`
//!   vendored): [`HelmRenderer::render_tree`]. Its digest is the tree's [`FileTree::dir_id`] of the chart path.
//! - A chart in a Helm HTTP repository (`index.yaml`) or an OCI registry (`oci://host/path`):
//!   [`HelmRenderer::fetch`] resolves the version constraint ([`version::Constraint`], Helm's syntax) to the
//!   highest matching version, downloads the package (credentials go only to the repository's host), checks
//!   its sha256 digest and unpacks it into the chart cache under that digest; [`HelmRenderer::render_fetched`]
//!   renders it. Repository indexes are kept for [`HelmConfig::index_ttl`].
//!
//! # Rendering
//!
//! `helm template RELEASE CHART --namespace NS --kube-version V --api-versions ... --include-crds` (test
//! hooks included: they are set apart, never synced, for `kedge app test`), with values passed as one `--values`
//! file per layer in this order: the `valueFiles`, `values`, `valuesObject`, the `valuesFrom` documents, then
//! `parameters` as `--set` / `--set-string`. Helm runs with a private empty home (no user configuration, plugins or repositories), only
//! `PATH` from the environment, a timeout and an output limit. Its output is parsed like any other YAML
//! stream (objects keep the template file they came from), optionally post-rendered with kustomize patches,
//! and its hooks mapped to Kedge hooks ([`hooks`]). Values read from Secrets are masked in Helm's error
//! messages and never appear in errors or logs.
//!
//! Renders are cached (in memory, bounded) under a key made of the chart digest and a digest of everything
//! else the render reads: values, parameters, release name, namespace, capabilities, mode and patches.
//!
//! # Applications
//!
//! [`HelmRenderer::render_application`] (remote charts) and [`HelmRenderer::render_chart_path`] (a chart in a
//! fetched tree; which paths are charts is [`kedge_render::source_kind`]'s decision, and directories and
//! kustomizations render with [`kedge_render::Renderer`], Helm hook annotations mapped by [`split_hooks`]) take an [`Application`](kedge_api::Application) as the controller does: credentials from
//! repository Secrets, `valuesFrom` from the application's namespace, capabilities from the destination
//! cluster's discovery (cached for [`HelmConfig::capabilities_ttl`]), `pre-install` hooks until the first
//! successful sync and `pre-upgrade` hooks after. Both also return the `pre-delete` / `post-delete` hooks
//! ([`AppRender::delete_hooks`]), which the controller runs when the application is deleted
//! ([`map_delete_hooks`]).

pub mod error;
pub mod hooks;
pub mod remote;
pub mod values;
pub mod version;

mod app;
mod command;
mod render;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kedge_render::{KustomizeConfig, RenderedObject, RenderedSet};

pub use app::{
    AppInputs, AppRender, Destination, helm_options, is_chart_dir, is_remote_chart, release_mode,
    remote_chart_of, split_hooks, value_file_in_tree, with_hooks_mapped,
};
pub use error::HelmError;
pub use hooks::{MappedHooks, ReleaseMode, map_delete_hooks, map_hooks, map_test_hooks};
pub use remote::{FetchedChart, RemoteChart, RepoCredentials};
pub use values::ValuesLayer;

/// How to run Helm and keep charts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmConfig {
    /// The helm binary; `None` looks for `$KEDGE_HELM`, `$KEDGE_CACHE/bin/helm`, then `helm` on `PATH`.
    pub binary: Option<PathBuf>,
    /// How long one `helm template` may take.
    pub timeout: Duration,
    /// The most bytes of output accepted from one `helm template`.
    pub max_output_bytes: usize,
    /// Where downloaded charts are unpacked; default `$KEDGE_CACHE/helm/charts`.
    pub cache_dir: Option<PathBuf>,
    /// How long a repository's `index.yaml` is reused before it is read again.
    pub index_ttl: Duration,
    /// How long the destination cluster's version and API versions are reused.
    pub capabilities_ttl: Duration,
    /// Timeout of one HTTP request to a repository or registry.
    pub http_timeout: Duration,
    /// How many renders are kept in memory (0 disables the cache).
    pub max_cached_renders: usize,
    /// How to run kustomize for post-render patches.
    pub kustomize: KustomizeConfig,
}

impl Default for HelmConfig {
    fn default() -> Self {
        HelmConfig {
            binary: None,
            timeout: Duration::from_secs(120),
            max_output_bytes: 256 * 1024 * 1024,
            cache_dir: None,
            index_ttl: Duration::from_secs(10),
            capabilities_ttl: Duration::from_secs(300),
            http_timeout: Duration::from_secs(60),
            max_cached_renders: 256,
            kustomize: KustomizeConfig::default(),
        }
    }
}

/// What templates see as `.Capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// `--kube-version`, e.g. `v1.36.0`; Helm's default when `None`.
    pub kube_version: Option<String>,
    /// `--api-versions`: `group/version` and `group/version/Kind` entries.
    pub api_versions: Vec<String>,
}

/// Everything a render takes besides the chart and the values layers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HelmOptions {
    /// The release name.
    pub release_name: String,
    /// The release namespace (the destination namespace).
    pub namespace: String,
    /// Values files, relative to the chart directory.
    pub value_files: Vec<String>,
    /// Inline values (YAML).
    pub values: Option<String>,
    /// Values as an object.
    pub values_object: Option<serde_json::Value>,
    /// `--set` / `--set-string` values, applied last.
    pub parameters: Vec<kedge_api::HelmParameter>,
    /// Leave out the chart's CRDs.
    pub skip_crds: bool,
    /// Overrides the discovered Kubernetes version.
    pub kube_version: Option<String>,
    /// Replaces the discovered API versions when not empty.
    pub api_versions: Vec<String>,
    /// Kustomize patches applied to Helm's output.
    pub patches: Vec<kedge_api::KustomizePatch>,
    /// Install (first sync) or upgrade.
    pub mode: ReleaseMode,
    /// Value files read from another source of `spec.sources` (`$values/envs/prod.yaml`, where `values` is that
    /// source's `ref`): the entry of `value_files` and its content, read by the caller at the source's revision.
    pub ref_values: Vec<(String, Vec<u8>)>,
}

impl HelmOptions {
    /// Leaves out the value files for which `exists` is false (`ignoreMissingValueFiles`); returns them.
    pub fn skip_missing_value_files(&mut self, exists: impl Fn(&str) -> bool) -> Vec<String> {
        let refs: Vec<String> = self.ref_values.iter().map(|(f, _)| f.clone()).collect();
        let (kept, missing) = std::mem::take(&mut self.value_files)
            .into_iter()
            .partition(|f| {
                if is_ref_value_file(f) {
                    refs.contains(f)
                } else {
                    exists(f)
                }
            });
        self.value_files = kept;
        missing
    }
}

/// Whether a value file names another source (`$ref/path`) rather than a file of the chart.
pub fn is_ref_value_file(f: &str) -> bool {
    f.starts_with('$')
}

/// The result of rendering a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct HelmOutput {
    /// The objects to sync (Helm hooks mapped to Kedge hooks). `inputs` holds the chart and values digests.
    pub rendered: Arc<RenderedSet>,
    /// `pre-delete` / `post-delete` hooks, not part of a sync.
    pub delete_hooks: Vec<RenderedObject>,
    /// Helm test hooks, not part of a sync (see [`map_test_hooks`]).
    pub test_hooks: Vec<RenderedObject>,
    /// The chart's digest (`sha256:...` for packages, the tree id for charts in Git).
    pub chart_digest: String,
    /// A digest of everything else the render read (values, parameters, options, capabilities).
    pub values_digest: String,
}

/// Render cache counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HelmStats {
    /// Renders served from the cache.
    pub hits: u64,
    /// Renders that ran helm.
    pub misses: u64,
    /// Renders kept.
    pub entries: usize,
}

struct Cache {
    max: usize,
    map: HashMap<String, Arc<HelmOutput>>,
    order: VecDeque<String>,
    hits: u64,
    misses: u64,
}

impl Cache {
    fn get(&mut self, key: &str) -> Option<Arc<HelmOutput>> {
        let hit = self.map.get(key).cloned();
        if hit.is_some() {
            self.hits += 1;
            if let Some(pos) = self.order.iter().position(|k| k == key) {
                self.order.remove(pos);
            }
            self.order.push_back(key.to_owned());
        } else {
            self.misses += 1;
        }
        hit
    }

    fn insert(&mut self, key: String, value: Arc<HelmOutput>) {
        if self.max == 0 {
            return;
        }
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > self.max {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }
}

/// Renders charts, with caches of renders, repository indexes, packages and cluster capabilities.
pub struct HelmRenderer {
    config: HelmConfig,
    fetcher: remote::Fetcher,
    cache: Mutex<Cache>,
    /// By cluster (`""` for the cluster of the renderer's own client).
    capabilities: tokio::sync::Mutex<HashMap<String, (Instant, Arc<Capabilities>)>>,
}

impl Default for HelmRenderer {
    fn default() -> Self {
        HelmRenderer::new(HelmConfig::default())
    }
}

impl std::fmt::Debug for HelmRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmRenderer")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl HelmRenderer {
    /// A renderer with empty caches. Charts are kept in [`HelmConfig::cache_dir`], else
    /// `$KEDGE_CACHE/helm/charts`, else a directory under the system's temporary directory.
    pub fn new(config: HelmConfig) -> Self {
        let cache_dir = match &config.cache_dir {
            Some(d) => d.clone(),
            None => kedge_render::kustomize::cache_dir()
                .unwrap_or_else(|| std::env::temp_dir().join("kedge"))
                .join("helm")
                .join("charts"),
        };
        let fetcher = remote::Fetcher::new(cache_dir, config.index_ttl, config.http_timeout);
        HelmRenderer {
            cache: Mutex::new(Cache {
                max: config.max_cached_renders,
                map: HashMap::new(),
                order: VecDeque::new(),
                hits: 0,
                misses: 0,
            }),
            fetcher,
            capabilities: tokio::sync::Mutex::default(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HelmConfig {
        &self.config
    }

    /// Render cache counters.
    pub fn stats(&self) -> HelmStats {
        let c = self.lock();
        HelmStats {
            hits: c.hits,
            misses: c.misses,
            entries: c.map.len(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a chart of a repository or registry to one version and makes it available on disk.
    pub async fn fetch(&self, chart: &RemoteChart) -> Result<FetchedChart, HelmError> {
        self.fetcher.fetch(chart).await
    }

    /// The version and API versions of the cluster `client` reaches, from discovery (cached).
    pub async fn capabilities(
        &self,
        client: &kube::Client,
    ) -> Result<Arc<Capabilities>, HelmError> {
        self.capabilities_of("", client).await
    }

    /// The version and API versions of the cluster `key` (a registered cluster's name), reached with `client`,
    /// from discovery (cached per cluster).
    pub async fn capabilities_of(
        &self,
        key: &str,
        client: &kube::Client,
    ) -> Result<Arc<Capabilities>, HelmError> {
        let mut slots = self.capabilities.lock().await;
        if let Some((at, caps)) = slots.get(key)
            && at.elapsed() < self.config.capabilities_ttl
        {
            return Ok(caps.clone());
        }
        let caps = Arc::new(app::discover(client).await?);
        slots.insert(key.to_owned(), (Instant::now(), caps.clone()));
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_value_files_are_left_out_in_order() {
        let mut o = HelmOptions {
            value_files: vec!["a.yaml".into(), "gone.yaml".into(), "b.yaml".into()],
            ..HelmOptions::default()
        };
        let missing = o.skip_missing_value_files(|f| f != "gone.yaml");
        assert_eq!(missing, ["gone.yaml"]);
        assert_eq!(o.value_files, ["a.yaml", "b.yaml"]);
        assert!(o.skip_missing_value_files(|_| true).is_empty());
        assert_eq!(o.value_files.len(), 2);
    }
}
