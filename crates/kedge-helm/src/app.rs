//! Applications: what the controller's pipeline calls. Reads `valuesFrom` and repository credentials from the
//! application's namespace and capabilities from the destination cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kedge_api::{Application, HelmValuesKind, RepositorySecrets};
use kedge_render::{RenderedObject, RenderedSet};
use kedge_source::{FileTree, HistoryChange, Revision};
use kube::ResourceExt;
use kube::api::Api;

use crate::error::HelmError;
use crate::hooks::{ReleaseMode, has_helm_annotations, map_hooks};
use crate::remote::{RemoteChart, RepoCredentials, strip_userinfo};
use crate::values::ValuesLayer;
use crate::{Capabilities, HelmOptions, HelmOutput, HelmRenderer};

/// Whether the application's chart comes from a Helm repository or an OCI registry (rather than Git).
pub fn is_remote_chart(app: &Application) -> bool {
    let src = &app.spec.source;
    src.repo_url.trim().starts_with("oci://") || src.chart.as_deref().is_some_and(|c| !c.is_empty())
}

/// Install until the application has synced successfully once, upgrade after.
pub fn release_mode(app: &Application) -> ReleaseMode {
    let synced = app
        .status
        .as_ref()
        .is_some_and(|s| s.history.iter().any(|h| h.was_deployed()));
    if synced {
        ReleaseMode::Upgrade
    } else {
        ReleaseMode::Install
    }
}

fn destination_namespace(app: &Application) -> String {
    app.spec
        .destination
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| app.namespace().unwrap_or_default())
}

/// The render options of an application's `source.helm`.
pub fn helm_options(app: &Application) -> HelmOptions {
    let helm = app.spec.source.helm.clone().unwrap_or_default();
    HelmOptions {
        release_name: helm
            .release_name
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| app.name_any()),
        namespace: destination_namespace(app),
        value_files: helm.value_files,
        values: helm.values,
        values_object: helm.values_object,
        parameters: helm.parameters,
        skip_crds: helm.skip_crds,
        kube_version: helm.kube_version,
        api_versions: helm.api_versions,
        patches: helm
            .post_renderer
            .and_then(|p| p.kustomize)
            .map(|k| k.patches)
            .unwrap_or_default(),
        mode: release_mode(app),
        ref_values: Vec::new(),
    }
}

/// The chart of an application whose chart comes from a repository (without credentials).
pub fn remote_chart_of(app: &Application, revision: Option<&str>) -> RemoteChart {
    let src = &app.spec.source;
    RemoteChart {
        repo_url: src.repo_url.trim().to_owned(),
        chart: src.chart.clone().unwrap_or_default(),
        version: revision.unwrap_or(&src.target_revision).to_owned(),
        credentials: None,
        plain_http: false,
    }
}

/// Resolves a destination cluster for [`AppInputs::with_destination`].
pub type Destination = Arc<
    dyn Fn() -> futures::future::BoxFuture<
            'static,
            Result<Option<(String, kube::Client)>, Box<dyn std::error::Error + Send + Sync>>,
        > + Send
        + Sync,
>;

/// The cluster-side inputs of one application's render, read lazily (only when a chart is rendered).
#[derive(Clone)]
pub struct AppInputs {
    client: kube::Client,
    /// Resolves the cluster the application deploys to, when it may not be the one of `client`: its name and a
    /// client, or `None` for the cluster of `client`. Asked only when a chart is rendered.
    destination: Option<Destination>,
    handle: Option<tokio::runtime::Handle>,
    app_namespace: String,
    values_from: Vec<kedge_api::HelmValuesReference>,
    options: HelmOptions,
    ignore_missing_value_files: bool,
}

impl std::fmt::Debug for AppInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInputs")
            .field("app_namespace", &self.app_namespace)
            .field("values_from", &self.values_from)
            .finish_non_exhaustive()
    }
}

impl AppInputs {
    /// The inputs of `app`; call from async code (it keeps the runtime handle for the blocking render).
    pub fn new(client: &kube::Client, app: &Application) -> Self {
        AppInputs {
            client: client.clone(),
            destination: None,
            handle: tokio::runtime::Handle::try_current().ok(),
            app_namespace: app.namespace().unwrap_or_default(),
            values_from: app
                .spec
                .source
                .helm
                .as_ref()
                .map(|h| h.values_from.clone())
                .unwrap_or_default(),
            options: helm_options(app),
            ignore_missing_value_files: app
                .spec
                .source
                .helm
                .as_ref()
                .is_some_and(|h| h.ignore_missing_value_files),
        }
    }

    /// Reads `.Capabilities` from the cluster `resolve` names (a registered cluster's name and a client for it, or
    /// `None` for the cluster of the inputs' own client, which still serves `valuesFrom`). `resolve` is called only
    /// when a chart is rendered, so that other sources never pay for it.
    pub fn with_destination(mut self, resolve: Destination) -> Self {
        self.destination = Some(resolve);
        self
    }

    /// The capabilities of the destination cluster.
    async fn capabilities(&self, helm: &HelmRenderer) -> Result<Arc<Capabilities>, HelmError> {
        let remote = match &self.destination {
            Some(resolve) => resolve().await.map_err(HelmError::Destination)?,
            None => None,
        };
        match remote {
            Some((name, client)) => helm.capabilities_of(&name, &client).await,
            None => helm.capabilities(&self.client).await,
        }
    }

    /// The render options.
    pub fn options(&self) -> &HelmOptions {
        &self.options
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> Result<F::Output, HelmError> {
        match &self.handle {
            Some(h) => Ok(h.block_on(f)),
            None => Err(HelmError::Task(
                "no async runtime to read from the cluster".into(),
            )),
        }
    }
}

/// Reads the `valuesFrom` documents of an application.
pub(crate) async fn read_values_from(
    client: &kube::Client,
    namespace: &str,
    refs: &[kedge_api::HelmValuesReference],
) -> Result<Vec<ValuesLayer>, HelmError> {
    let mut layers = Vec::with_capacity(refs.len());
    for r in refs {
        let key = r.key.clone().unwrap_or_else(|| "values.yaml".into());
        let (kind, data): (&'static str, Option<BTreeMap<String, Vec<u8>>>) = match r.kind {
            HelmValuesKind::Secret => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let s = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|source| HelmError::Kube {
                        action: format!("read Secret {namespace}/{}", r.name),
                        source,
                    })?;
                let data = s.map(|s| {
                    let mut m: BTreeMap<String, Vec<u8>> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in s.string_data.unwrap_or_default() {
                        m.insert(k, v.into_bytes());
                    }
                    m
                });
                ("Secret", data)
            }
            HelmValuesKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let c = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|source| HelmError::Kube {
                        action: format!("read ConfigMap {namespace}/{}", r.name),
                        source,
                    })?;
                let data = c.map(|c| {
                    c.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect()
                });
                ("ConfigMap", data)
            }
        };
        let missing = |reason: &str| HelmError::ValuesFrom {
            kind,
            namespace: namespace.to_owned(),
            name: r.name.clone(),
            key: key.clone(),
            reason: reason.to_owned(),
        };
        let Some(data) = data else {
            if r.optional {
                continue;
            }
            return Err(missing("not found"));
        };
        let Some(bytes) = data.get(&key) else {
            if r.optional {
                continue;
            }
            return Err(missing("no such key"));
        };
        let origin = format!("{kind} {namespace}/{} key {key}", r.name);
        layers.push(match r.kind {
            HelmValuesKind::Secret => ValuesLayer::secret(origin, bytes.clone()),
            HelmValuesKind::ConfigMap => ValuesLayer::plain(origin, bytes.clone()),
        });
    }
    Ok(layers)
}

/// Credentials for a chart repository from the repository Secrets of `namespace` (exact `repository` match
/// first, else the longest `repo-creds` prefix of whole path segments on the same scheme, host and port; a Secret
/// `url` without a scheme, as Argo CD writes OCI registries, is read as `oci://`).
pub(crate) async fn credentials_for(
    secrets: &RepositorySecrets,
    namespace: &str,
    url: &str,
) -> Result<Option<RepoCredentials>, HelmError> {
    if namespace.is_empty() {
        return Ok(None);
    }
    let best = secrets
        .find(namespace, url)
        .await
        .map_err(|source| HelmError::Kube {
            action: format!("list repository Secrets in {namespace}"),
            source,
        })?;
    Ok(best.and_then(|data| {
        let password = data.get("password").cloned()?;
        Some(RepoCredentials {
            username: data.get("username").cloned().unwrap_or_default(),
            password,
        })
    }))
}

/// The cluster's version and API versions, as Helm's `--kube-version` and `--api-versions` take them.
pub(crate) async fn discover(client: &kube::Client) -> Result<Capabilities, HelmError> {
    let version = client
        .apiserver_version()
        .await
        .map_err(|source| HelmError::Kube {
            action: "read the cluster's version".into(),
            source,
        })?;
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .map_err(|source| HelmError::Kube {
            action: "discover the cluster's API versions".into(),
            source,
        })?;
    let mut api_versions = Vec::new();
    for group in discovery.groups() {
        for ver in group.versions() {
            let gv = if group.name().is_empty() {
                ver.to_owned()
            } else {
                format!("{}/{ver}", group.name())
            };
            api_versions.push(gv.clone());
            for (ar, _) in group.versioned_resources(ver) {
                api_versions.push(format!("{gv}/{}", ar.kind));
            }
        }
    }
    api_versions.sort();
    api_versions.dedup();
    // Helm wants a semantic version; providers add build metadata (`v1.30.2+k3s1`, `v1.29.1-gke.100`).
    let kube_version = version
        .git_version
        .split(['+', '-'])
        .next()
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Ok(Capabilities {
        kube_version,
        api_versions,
    })
}

impl HelmRenderer {
    /// Renders an application whose chart comes from a Helm repository or OCI registry: credentials from
    /// the repository Secrets of its namespace, the version resolved from `revision` (or the spec's
    /// `targetRevision`), `valuesFrom` and capabilities read from the cluster. The returned revision's `sha`
    /// is the chart version and its `tree` the package digest.
    pub async fn render_application(
        self: &Arc<Self>,
        inputs: &AppInputs,
        secrets: &RepositorySecrets,
        app: &Application,
        revision: Option<&str>,
        ref_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(Revision, AppRender), HelmError> {
        let client = &inputs.client;
        let mut chart = remote_chart_of(app, revision);
        if chart.repo_url.is_empty() {
            return Err(HelmError::invalid("spec.source.repoURL is empty"));
        }
        let ns = app.namespace().unwrap_or_default();
        chart.credentials = credentials_for(secrets, &ns, &chart.repo_url).await?;
        let fetched = self.fetch(&chart).await?;
        let extra = read_values_from(client, &ns, &inputs.values_from).await?;
        let capabilities = inputs.capabilities(self).await?;
        let mut options = inputs.options.clone();
        options.ref_values = ref_values;
        if inputs.ignore_missing_value_files {
            let root = fetched.dir.clone();
            let missing = options.skip_missing_value_files(|f| {
                kedge_source::tree::clean_relative(f)
                    .map_or(true, |parts| root.join(parts.join("/")).exists())
            });
            log_skipped(&missing);
        }
        let out = {
            let (this, fetched) = (self.clone(), fetched.clone());
            tokio::task::spawn_blocking(move || {
                this.render_fetched(&fetched, &options, &extra, &capabilities)
            })
            .await
            .map_err(|e| HelmError::Task(e.to_string()))??
        };
        let revision = Revision {
            repo: strip_userinfo(&chart.repo_url),
            requested: chart.version.clone(),
            sha: fetched.version.clone(),
            ref_name: Some(format!("{}@{}", fetched.name, fetched.version)),
            tree: fetched.digest.clone(),
            shallow: false,
            history: HistoryChange::NotChecked,
            fetched: fetched.downloaded,
        };
        Ok((revision, AppRender::of(&out)))
    }

    /// Renders the chart at the application path of a fetched tree (a directory holding `Chart.yaml`, see
    /// [`kedge_render::source_kind`]), from a blocking thread: `valuesFrom` and capabilities read from the cluster,
    /// Helm hooks mapped. Directories and kustomizations render with [`kedge_render::Renderer`] and
    /// [`split_hooks`].
    pub fn render_chart_path(
        &self,
        tree: &dyn FileTree,
        path: &str,
        inputs: &AppInputs,
    ) -> Result<AppRender, HelmError> {
        let (extra, caps) = inputs.block_on(async {
            let extra =
                read_values_from(&inputs.client, &inputs.app_namespace, &inputs.values_from)
                    .await?;
            let caps = inputs.capabilities(self).await?;
            Ok::<_, HelmError>((extra, caps))
        })??;
        let out = if inputs.ignore_missing_value_files {
            let mut options = inputs.options.clone();
            let missing = options.skip_missing_value_files(|f| value_file_in_tree(tree, path, f));
            log_skipped(&missing);
            self.render_tree(tree, path, &options, &extra, &caps)?
        } else {
            self.render_tree(tree, path, &inputs.options, &extra, &caps)?
        };
        Ok(AppRender::of(&out))
    }
}

/// Whether value file `file` of the chart at `chart_path` exists in `tree`. Paths that are not clean, and
/// errors other than "not found", count as existing, so that reading the file reports them.
pub fn value_file_in_tree(tree: &dyn FileTree, chart_path: &str, file: &str) -> bool {
    let joined = if chart_path.trim_matches('/').is_empty() {
        file.to_owned()
    } else {
        format!("{chart_path}/{file}")
    };
    let Ok(parts) = kedge_source::tree::clean_relative(&joined) else {
        return true;
    };
    !matches!(
        tree.read_file(&parts.join("/")),
        Err(kedge_source::TreeError::NotFound { .. })
    )
}

fn log_skipped(missing: &[String]) {
    if !missing.is_empty() {
        tracing::debug!(files = ?missing, "missing value files skipped (ignoreMissingValueFiles)");
    }
}

/// What an application's render gives the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRender {
    /// The objects to sync, Helm hooks mapped to Kedge hooks.
    pub rendered: Arc<RenderedSet>,
    /// The `pre-delete` / `post-delete` hooks, as Helm declares them (not mapped: see
    /// [`map_delete_hooks`](crate::hooks::map_delete_hooks)).
    pub delete_hooks: Vec<RenderedObject>,
    /// The Helm test hooks, as Helm declares them (not mapped: see
    /// [`map_test_hooks`](crate::hooks::map_test_hooks)).
    pub test_hooks: Vec<RenderedObject>,
}

impl AppRender {
    fn of(out: &HelmOutput) -> Self {
        AppRender {
            rendered: out.rendered.clone(),
            delete_hooks: out.delete_hooks.clone(),
            test_hooks: out.test_hooks.clone(),
        }
    }
}

/// A rendered set (directory or Kustomize) with Helm hook annotations mapped, and its delete and test hooks apart.
pub fn split_hooks(set: Arc<RenderedSet>, mode: ReleaseMode) -> AppRender {
    if !has_helm_annotations(&set.objects) {
        return AppRender {
            rendered: set,
            delete_hooks: Vec::new(),
            test_hooks: Vec::new(),
        };
    }
    let mapped = map_hooks(set.objects.clone(), mode);
    AppRender {
        rendered: Arc::new(RenderedSet {
            objects: mapped.objects,
            kind: set.kind,
            inputs: set.inputs.clone(),
        }),
        delete_hooks: mapped.delete_hooks,
        test_hooks: mapped.test_hooks,
    }
}

/// A rendered set with Helm hook annotations mapped (the same set when it has none); delete hooks are left out.
pub fn with_hooks_mapped(set: Arc<RenderedSet>, mode: ReleaseMode) -> Arc<RenderedSet> {
    split_hooks(set, mode).rendered
}

/// Whether `path` of `tree` is a chart (holds `Chart.yaml`; [`kedge_render::source_kind`] decides).
pub fn is_chart_dir(tree: &dyn FileTree, path: &str) -> bool {
    kedge_render::source_kind(tree, path).is_ok_and(|k| k == kedge_render::SourceKind::Helm)
}
