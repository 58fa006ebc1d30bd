//! One pass of the pipeline for an Application: fetch its revision, render its path, plan against the cluster.
//!
//! Shared by the controller's reconcile and by CLI commands that preview (`kedge app diff --revision`), so that a
//! preview computes exactly what a sync would apply.

use std::collections::HashMap;
use std::sync::Arc;

use kedge_api::{Application, ObjectRef, RepositorySecrets};
use kedge_engine::health::HealthRule;
use kedge_engine::ignore::IgnoreRule;
use kedge_engine::object::ObjectId as EngineObjectId;
use kedge_engine::plan::Plan;
use kedge_engine::{AppRef, AppSpec, DesiredObject, Engine};
use kedge_render::{RenderOptions, RenderedSet, Renderer};
use kedge_source::repo::{Credentials, RepoSpec, Secret as SecretString};
use kedge_source::revision::Revision;
use kedge_source::source::{FetchRequest, Source};
use kedge_source::tree::FileTree as _;
use kedge_verify::TrustedKeys;
use kube::ResourceExt;
use tracing::Instrument as _;

use crate::trace::phase_span;

pub use kedge_api::SECRET_TYPE_LABEL;

/// Why a pass failed, classified for conditions and events.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The spec cannot be acted on.
    #[error("invalid application spec: {0}")]
    InvalidSpec(String),
    /// Reading repository credentials failed.
    #[error("failed to read repository credentials: {0}")]
    Credentials(String),
    /// Fetching or resolving the revision failed.
    #[error(transparent)]
    Source(#[from] kedge_source::SourceError),
    /// Rendering the manifests failed.
    #[error(transparent)]
    Render(#[from] kedge_render::RenderError),
    /// Planning against the cluster failed.
    #[error(transparent)]
    Engine(#[from] kedge_engine::error::EngineError),
    /// Resolving or rendering a Helm chart failed.
    #[error(transparent)]
    Helm(kedge_helm::HelmError),
    /// The trusted keys of `spec.source.verify` could not be read.
    #[error("failed to read the trusted keys: {0}")]
    VerifyKeys(String),
    /// The age keys of `spec.decryption` could not be read.
    #[error("failed to read the decryption keys: {0}")]
    DecryptionKeys(String),
    /// The commit is not signed by a trusted key.
    #[error("signature verification failed: {0}")]
    Unverified(String),
    /// The stored inventory cannot be read.
    #[error(transparent)]
    Inventory(#[from] kedge_api::InventoryError),
    /// The destination cluster cannot be reached (credentials, Secret, registry).
    #[error("destination unavailable: {0}")]
    Cluster(String),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The application's project does not allow what it asks for (nothing was fetched, or nothing applied).
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// A `deny` constraint of the project's policies refuses the rendered objects (nothing was applied).
    #[error("denied by policy: {0}")]
    PolicyDenied(String),
    /// The project's policies cannot be used: a source that cannot be fetched or read, an invalid template or
    /// constraint, live objects for `data.inventory` that cannot be listed. No sync runs without them.
    #[error("cannot check the policies of project {project}: {message}")]
    Policies {
        /// The project.
        project: String,
        /// What failed, naming the source and file.
        message: String,
        /// Whether trying again may help (a fetch or read that failed) rather than needing a fix.
        retryable: bool,
    },
}

impl PipelineError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            PipelineError::InvalidSpec(_) => "InvalidSpec",
            PipelineError::Credentials(_) | PipelineError::Source(_) => "SourceFailed",
            PipelineError::Render(_) => "RenderFailed",
            PipelineError::Engine(_) => "ComparisonFailed",
            PipelineError::Inventory(_) => "InventoryUnreadable",
            PipelineError::Cluster(_) => "ClusterUnavailable",
            PipelineError::Task(_) => "InternalError",
            PipelineError::Helm(e) => e.reason(),
            PipelineError::VerifyKeys(_) | PipelineError::Unverified(_) => "VerificationFailed",
            PipelineError::DecryptionKeys(_) => "DecryptionFailed",
            PipelineError::NotPermitted(_) => "NotPermitted",
            PipelineError::PolicyDenied(_) => "PolicyDenied",
            PipelineError::Policies { .. } => "PolicyFailed",
        }
    }

    /// Whether the same input may succeed later (network trouble) rather than needing a new commit or spec.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_retryable(),
            PipelineError::Engine(_)
            | PipelineError::Cluster(_)
            | PipelineError::Credentials(_)
            | PipelineError::Task(_)
            | PipelineError::VerifyKeys(_)
            | PipelineError::DecryptionKeys(_) => true,
            PipelineError::InvalidSpec(_)
            | PipelineError::Render(_)
            | PipelineError::Inventory(_)
            | PipelineError::Unverified(_)
            | PipelineError::NotPermitted(_)
            | PipelineError::PolicyDenied(_) => false,
            PipelineError::Policies { retryable, .. } => *retryable,
            PipelineError::Helm(e) => e.is_retryable(),
        }
    }
}

impl From<kedge_helm::HelmError> for PipelineError {
    fn from(e: kedge_helm::HelmError) -> Self {
        match e {
            kedge_helm::HelmError::Source(e) => PipelineError::Source(e),
            kedge_helm::HelmError::Render(e) => PipelineError::Render(e),
            // The pipeline's own error, passed through the chart's render (see `helm_inputs`).
            kedge_helm::HelmError::Destination(e) => match e.downcast::<PipelineError>() {
                Ok(e) => *e,
                Err(e) => PipelineError::Cluster(e.to_string()),
            },
            other => PipelineError::Helm(other),
        }
    }
}

/// A fetched and rendered revision.
#[derive(Debug)]
pub struct Rendered {
    /// The resolved revision.
    pub revision: Revision,
    /// The objects.
    pub out: kedge_helm::AppRender,
    /// What was signed and by which trusted key, when `spec.source.verify` asked.
    pub verified: Option<Verified>,
}

/// The result of one pass: what Git says, and how the cluster compares.
pub struct Comparison {
    /// The resolved revision.
    pub revision: Revision,
    /// The rendered objects.
    pub rendered: Arc<RenderedSet>,
    /// The plan against the live cluster.
    pub plan: Plan,
    /// The engine of the cluster the plan was made against (the one a sync of it must use).
    pub engine: Arc<Engine>,
}

impl std::fmt::Debug for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comparison")
            .field("revision", &self.revision)
            .field("rendered", &self.rendered)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// How long a read of a key Secret (`spec.source.verify`, `spec.decryption`) is reused.
pub const KEY_SECRET_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Key Secrets read recently, by `namespace/name`, with when they were read.
type KeySecrets = HashMap<String, (std::time::Instant, Arc<k8s_openapi::api::core::v1::Secret>)>;

/// Parsed trusted keys by `namespace/secret`, with the Secret's resource version they were parsed from.
type TrustedKeysCache = HashMap<String, (String, Arc<TrustedKeys>)>;

/// The rooms of the pipeline, shared by every application.
#[derive(Clone)]
pub struct Pipeline {
    client: kube::Client,
    source: Source,
    renderer: Arc<Renderer>,
    engine: Arc<Engine>,
    helm: Arc<kedge_helm::HelmRenderer>,
    secrets: RepositorySecrets,
    trusted: Arc<std::sync::Mutex<TrustedKeysCache>>,
    key_secrets: Arc<std::sync::Mutex<KeySecrets>>,
    /// The registered clusters, for the Helm capabilities of an application's destination.
    clusters: Option<Arc<crate::clusters::ClusterPool>>,
}

impl Pipeline {
    /// Assembles a pipeline.
    pub fn new(
        client: kube::Client,
        source: Source,
        renderer: Arc<Renderer>,
        engine: Arc<Engine>,
    ) -> Self {
        Self {
            secrets: RepositorySecrets::Read(client.clone()),
            client,
            source,
            renderer,
            engine,
            helm: Arc::new(kedge_helm::HelmRenderer::default()),
            trusted: Arc::default(),
            key_secrets: Arc::default(),
            clusters: None,
        }
    }

    /// Renders charts with the capabilities of each application's destination among `clusters` (without, every
    /// chart sees the cluster of the pipeline's client).
    pub fn with_clusters(mut self, clusters: Arc<crate::clusters::ClusterPool>) -> Self {
        self.clusters = Some(clusters);
        self
    }

    /// The cluster-side inputs of a chart's render: `valuesFrom` from the application's namespace here, and
    /// `.Capabilities` from the cluster it deploys to, whose engine is looked up only if a chart is rendered.
    fn helm_inputs(&self, app: &Application) -> kedge_helm::AppInputs {
        let inputs = kedge_helm::AppInputs::new(&self.client, app);
        match &self.clusters {
            Some(pool) if !app.spec.is_in_cluster() => {
                let (pool, app) = (pool.clone(), Arc::new(app.clone()));
                inputs.with_destination(Arc::new(move || {
                    let (pool, app) = (pool.clone(), app.clone());
                    Box::pin(async move {
                        match pool.engine_for(&app).await {
                            Ok((Some(name), engine)) => Ok(Some((name, engine.client().clone()))),
                            Ok((None, _)) => Ok(None),
                            Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                        }
                    })
                }))
            }
            _ => inputs,
        }
    }

    /// Reads repository credentials through `secrets` (e.g. a watch-backed cache) instead of a LIST per lookup.
    pub fn with_repository_secrets(mut self, secrets: RepositorySecrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Replaces the Helm renderer (helm binary, chart cache, timeouts).
    pub fn with_helm(mut self, helm: Arc<kedge_helm::HelmRenderer>) -> Self {
        self.helm = helm;
        self
    }

    /// The Kubernetes client of every room.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The engine (for syncs and prunes).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine of the cluster Kedge runs in, shared.
    pub fn engine_arc(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Where repository credentials are read.
    pub fn repository_secrets(&self) -> &RepositorySecrets {
        &self.secrets
    }

    /// The source (for the repository poller).
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The repository of an application, with credentials from Secrets in its namespace.
    pub async fn repo_for(&self, app: &Application) -> Result<RepoSpec, PipelineError> {
        let url = app.spec.git_source().repo_url.trim();
        if url.is_empty() {
            return Err(PipelineError::InvalidSpec(
                "spec.source.repoURL is empty".into(),
            ));
        }
        let repo = RepoSpec::new(url).map_err(|e| PipelineError::InvalidSpec(e.to_string()))?;
        let ns = app.namespace().unwrap_or_default();
        let (credentials, insecure) = credentials_for(&self.secrets, &ns, url).await?;
        Ok(repo.with_credentials(credentials).insecure(insecure))
    }

    /// Fetches `revision` (or the spec's target revision), renders the application's path and plans it.
    pub async fn compare(
        &self,
        app: &Application,
        revision: Option<&str>,
        previous_sha: Option<String>,
    ) -> Result<Comparison, PipelineError> {
        let rendered = self.render(app, revision, previous_sha).await?;
        self.plan(app, rendered.revision, rendered.out.rendered)
            .await
    }

    /// The Helm `pre-delete` / `post-delete` hooks of the application's deployed revision (the newest
    /// successful sync in its history, else `status.sync.revision`), as the hooks of the sync that deletes it:
    /// `pre-delete` as `PreSync`, `post-delete` as `PostSync`, ordered by hook weight, deleted per their delete
    /// policy (by default once they succeeded: see [`kedge_helm::map_delete_hooks`]).
    ///
    /// An application that never rendered (no revision) has none and is not rendered. Charts in Git, in
    /// repositories and plain directories with Helm hook annotations are all rendered the way `compare` does.
    pub async fn delete_hooks(
        &self,
        app: &Application,
    ) -> Result<Vec<DesiredObject>, PipelineError> {
        let Some(revision) = deployed_revision(app) else {
            return Ok(Vec::new());
        };
        let rendered = self.render(app, Some(&revision), None).await?;
        Ok(kedge_helm::map_delete_hooks(rendered.out.delete_hooks)
            .into_iter()
            .map(|o| DesiredObject {
                object: o.object,
                source: Some(o.source.to_string()),
            })
            .collect())
    }

    /// The Helm test hooks (`helm.sh/hook: test`) of the application's deployed revision, as `Sync` hooks of a run
    /// that applies nothing else, ordered by hook weight (see [`kedge_helm::map_test_hooks`]): what
    /// `kedge app test` runs. `None` for an application that was never deployed.
    pub async fn test_hooks(
        &self,
        app: &Application,
    ) -> Result<Option<Vec<DesiredObject>>, PipelineError> {
        let Some(revision) = deployed_revision(app) else {
            return Ok(None);
        };
        let rendered = self.render(app, Some(&revision), None).await?;
        let hooks = kedge_helm::map_test_hooks(rendered.out.test_hooks)
            .map_err(PipelineError::InvalidSpec)?;
        Ok(Some(
            hooks
                .into_iter()
                .map(|o| DesiredObject {
                    object: o.object,
                    source: Some(o.source.to_string()),
                })
                .collect(),
        ))
    }

    /// Fetches and renders `revision` (or the spec's target revision).
    pub async fn render(
        &self,
        app: &Application,
        revision: Option<&str>,
        previous_sha: Option<String>,
    ) -> Result<Rendered, PipelineError> {
        // A spec asking for what Kedge does not do is refused before anything is fetched.
        let checked = crate::spec_check::check(app)?;
        if !app.spec.sources.is_empty() {
            return Box::pin(self.render_sources(app, revision, previous_sha)).await;
        }
        let verify = self.trusted_keys(app).await?;
        if kedge_helm::is_remote_chart(app) {
            if verify.is_some() {
                return Err(PipelineError::InvalidSpec(
                    "spec.source.verify checks Git commit signatures; this source is a Helm repository or OCI chart"
                        .into(),
                ));
            }
            let inputs = self.helm_inputs(app);
            // Pulling the chart and rendering it are one step of kedge-helm.
            let span = phase_span!("render", app, kedge.source = "chart");
            let (revision, out) = self
                .helm
                .render_application(&inputs, &self.secrets, app, revision, Vec::new())
                .instrument(span.clone())
                .await
                .inspect_err(|e| crate::trace::fail(&span, &crate::reconcile::error_chain(e)))?;
            crate::trace::revision(&span, &revision.sha);
            return Ok(Rendered {
                revision,
                out,
                verified: None,
            });
        }
        let repo = self.repo_for(app).await?;
        let wanted = revision
            .unwrap_or(&app.spec.source.target_revision)
            .to_owned();
        let path = app.spec.source.path.clone();
        let request = FetchRequest::new(repo, wanted)
            .with_path(path.clone())
            .with_previous(previous_sha);
        let source = self.source.clone();
        let renderer = self.renderer.clone();
        let mut options = render_options(app);
        options.decryption = self.decryption_keys(app).await?;
        let helm = self.helm.clone();
        let inputs = self.helm_inputs(app);
        let app_for_vars = app.clone();
        // The pass's span (a reconcile's), which the phases below belong to from the blocking thread.
        let pass = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let app = &app_for_vars;
            let span = phase_span!(parent: &pass, "fetch", app);
            let snapshot = span
                .in_scope(|| source.fetch(&request))
                .inspect_err(|e| crate::trace::fail(&span, &crate::reconcile::error_chain(e)))?;
            let sha = snapshot.revision().sha.clone();
            crate::trace::revision(&span, &sha);
            // The pass knows its revision from here on, even if what follows fails.
            crate::trace::revision(&pass, &sha);
            drop(span);
            let verified = match &verify {
                Some(verification) => {
                    let span = phase_span!(parent: &pass, "verify", app);
                    crate::trace::revision(&span, &sha);
                    let checked = span
                        .in_scope(|| check_signature(&snapshot, verification))
                        .inspect_err(|e| crate::trace::fail(&span, e))?;
                    Some(checked)
                }
                None => None,
            };
            let span = phase_span!(
                parent: &pass,
                "render",
                app,
                kedge.source = tracing::field::Empty,
                kedge.objects = tracing::field::Empty
            );
            crate::trace::revision(&span, &sha);
            let _entered = span.enter();
            let rendered = (|| {
            // kedge-render decides how the path renders: a chart with Helm, a directory or kustomization with the
            // renderer; Helm hook annotations are mapped either way.
            let kind = kedge_render::source_kind(&snapshot, &path)?;
            if checked.helm && kind != kedge_render::SourceKind::Helm {
                return Err(PipelineError::InvalidSpec(format!(
                    "spec.source.helm is set but path {path:?} is not a Helm chart (no Chart.yaml): Helm options \
                     apply only to charts, as in Argo CD"
                )));
            }
            if checked.kustomize.is_some() && kind != kedge_render::SourceKind::Kustomize {
                return Err(PipelineError::InvalidSpec(format!(
                    "spec.source.kustomize is set but path {path:?} is {}: kustomize options apply only to \
                     kustomize sources (a directory with kustomization.yaml), as in Argo CD",
                    if kind == kedge_render::SourceKind::Helm {
                        "a Helm chart"
                    } else {
                        "a plain directory"
                    }
                )));
            }
            let mut kustomize = checked.kustomize.clone();
            if checked.annotations_envsubst
                && let Some(k) = kustomize.as_mut()
            {
                let vars = crate::spec_check::build_variables(app, &snapshot.revision().sha);
                crate::spec_check::substitute_annotations(k, &vars)?;
            }
            span.record("kedge.source", tracing::field::debug(kind));
            let out = match kind {
                kedge_render::SourceKind::Helm => {
                    helm.render_chart_path(&snapshot, &path, &inputs)?
                }
                kedge_render::SourceKind::Directory | kedge_render::SourceKind::Kustomize => {
                    let set = renderer.render_with(
                        &snapshot,
                        &path,
                        &options,
                        kustomize.as_ref(),
                    )?;
                    kedge_helm::split_hooks(set, inputs.options().mode)
                }
            };
            span.record("kedge.objects", out.rendered.objects.len());
            Ok::<_, PipelineError>(Rendered {
                revision: snapshot.revision().clone(),
                out,
                verified,
            })
            })();
            if let Err(e) = &rendered {
                crate::trace::fail(&span, &crate::reconcile::error_chain(e));
            }
            rendered
        })
        .await
        .map_err(|e| PipelineError::Task(e.to_string()))?
    }

    /// Renders every source of `spec.sources` (paths of one repository at one revision, see
    /// [`crate::spec_check::check`]) at the same commit and combines their objects; an object two sources define is
    /// an error naming both.
    async fn render_sources(
        &self,
        app: &Application,
        revision: Option<&str>,
        previous_sha: Option<String>,
    ) -> Result<Rendered, PipelineError> {
        // A chart with value files from the other sources (`$ref/path`): those render nothing themselves.
        if let Some(chart) = app
            .spec
            .sources
            .iter()
            .find(|s| s.ref_.is_none() && s.chart.as_deref().is_some_and(|c| !c.is_empty()))
        {
            return self.render_chart_with_refs(app, chart, revision).await;
        }
        let mut combined: Option<Rendered> = None;
        for source in &app.spec.sources {
            let mut one = app.clone();
            one.spec.source = source.clone();
            one.spec.sources.clear();
            // Every source at the commit the first one resolved to, so that a push between them cannot mix commits.
            let at = combined.as_ref().map(|c| c.revision.sha.clone());
            let rendered = self
                .render(&one, at.as_deref().or(revision), previous_sha.clone())
                .await?;
            combined = Some(match combined {
                None => rendered,
                Some(mut all) => {
                    let mut set = (*all.out.rendered).clone();
                    set.objects
                        .extend(rendered.out.rendered.objects.iter().cloned());
                    set.inputs
                        .extend(rendered.out.rendered.inputs.iter().cloned());
                    all.out.rendered = Arc::new(set);
                    all.out.delete_hooks.extend(rendered.out.delete_hooks);
                    all.out.test_hooks.extend(rendered.out.test_hooks);
                    all
                }
            });
        }
        let combined =
            combined.ok_or_else(|| PipelineError::InvalidSpec("spec.sources is empty".into()))?;
        let mut errors = Vec::new();
        kedge_render::object::check_duplicates(&combined.out.rendered.objects, &mut errors);
        if !errors.is_empty() {
            return Err(kedge_render::RenderError::from_list("spec.sources", errors).into());
        }
        Ok(combined)
    }

    /// Renders the chart source of `spec.sources` with the value files it reads from the `ref` sources
    /// (`$values/envs/prod/values.yaml`), each read at its source's revision, in the order the chart lists them.
    /// The revision is the chart's version; the commits of the ref sources are inputs of the render, so that a
    /// change of values there is a change of the application.
    async fn render_chart_with_refs(
        &self,
        app: &Application,
        chart: &kedge_api::ApplicationSource,
        revision: Option<&str>,
    ) -> Result<Rendered, PipelineError> {
        let value_files = chart
            .helm
            .as_ref()
            .map(|h| h.value_files.clone())
            .unwrap_or_default();
        let mut ref_values = Vec::new();
        let mut ref_inputs = Vec::new();
        for source in app.spec.sources.iter().filter(|s| s.ref_.is_some()) {
            let name = source.ref_.clone().unwrap_or_default();
            let prefix = format!("${name}/");
            let wanted: Vec<String> = value_files
                .iter()
                .filter(|f| f.starts_with(&prefix))
                .cloned()
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let mut one = app.clone();
            one.spec.source = source.clone();
            one.spec.sources.clear();
            let repo = self.repo_for(&one).await?;
            let request = FetchRequest::new(repo, source.target_revision.clone());
            let fetcher = self.source.clone();
            let (sha, files) = tokio::task::spawn_blocking(move || {
                let snapshot = fetcher.fetch(&request)?;
                let mut files = Vec::with_capacity(wanted.len());
                for f in wanted {
                    let rel = f[prefix.len()..].to_owned();
                    let bytes = snapshot.read_file(&rel).map_err(|e| {
                        PipelineError::InvalidSpec(format!(
                            "value file {f:?}: {rel} of source {name} ({}) cannot be read: {e}",
                            snapshot.describe()
                        ))
                    })?;
                    files.push((f, bytes));
                }
                Ok::<_, PipelineError>((snapshot.revision().sha.clone(), files))
            })
            .await
            .map_err(|e| PipelineError::Task(e.to_string()))??;
            ref_inputs.push((
                format!("ref {}", source.ref_.clone().unwrap_or_default()),
                sha,
            ));
            ref_values.extend(files);
        }
        let mut one = app.clone();
        one.spec.source = chart.clone();
        one.spec.sources.clear();
        let inputs = self.helm_inputs(&one);
        let span = phase_span!("render", app, kedge.source = "chart");
        let (revision, mut out) = self
            .helm
            .render_application(&inputs, &self.secrets, &one, revision, ref_values)
            .instrument(span.clone())
            .await
            .inspect_err(|e| crate::trace::fail(&span, &crate::reconcile::error_chain(e)))?;
        crate::trace::revision(&span, &revision.sha);
        let mut set = (*out.rendered).clone();
        set.inputs.extend(ref_inputs);
        out.rendered = Arc::new(set);
        Ok(Rendered {
            revision,
            out,
            verified: None,
        })
    }

    /// The keys `spec.source.verify` trusts, with the Secret's name, or `None` when commits are not verified.
    ///
    /// The Secret is read at most every [`KEY_SECRET_TTL`] (a key removed from it is distrusted within that time);
    /// its keys are parsed again only when its resource version changes.
    async fn trusted_keys(&self, app: &Application) -> Result<Option<Verification>, PipelineError> {
        let Some(verify) = app.spec.source.verify.as_ref() else {
            return Ok(None);
        };
        let mode = VerifyMode::parse(&verify.mode).ok_or_else(|| {
            PipelineError::InvalidSpec(format!(
                "spec.source.verify.mode {:?} is not supported: HEAD (the commit), Tag (the annotated tag the \
                 revision names) or TagAndHEAD (both)",
                verify.mode
            ))
        })?;
        let (name, secret) = self
            .key_secret(
                app,
                &verify.secret_ref,
                "spec.source.verify.secretRef",
                PipelineError::VerifyKeys,
            )
            .await?;
        let name = name.as_str();
        let ns = app.namespace().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let version = secret.resource_version().unwrap_or_default();
        {
            let cache = self.trusted.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((v, keys)) = cache.get(&key)
                && *v == version
            {
                return Ok(Some(Verification {
                    keys: keys.clone(),
                    secret: name.to_owned(),
                    mode,
                }));
            }
        }
        let empty = std::collections::BTreeMap::new();
        let data = secret.data.as_ref().unwrap_or(&empty);
        let keys = TrustedKeys::parse(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())))
            .map_err(|e| PipelineError::VerifyKeys(format!("Secret {name}: {e}")))?;
        if keys.is_empty() {
            return Err(PipelineError::VerifyKeys(format!(
                "Secret {name} (spec.source.verify.secretRef) holds no keys"
            )));
        }
        let keys = Arc::new(keys);
        self.trusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (version, keys.clone()));
        Ok(Some(Verification {
            keys,
            secret: name.to_owned(),
            mode,
        }))
    }

    /// Reads the key Secret that the spec field `field` (`secret_ref`) names in the application's namespace; an empty
    /// name is an invalid spec, a failed read becomes `read_error` (the message names the field).
    ///
    /// Key Secrets are shared by many applications and read on every pass that renders: a read is reused for
    /// [`KEY_SECRET_TTL`], so a thousand applications cost one read per Secret, and a changed or removed key takes
    /// effect within that time.
    async fn key_secret(
        &self,
        app: &Application,
        secret_ref: &kedge_api::LocalSecretReference,
        field: &str,
        read_error: fn(String) -> PipelineError,
    ) -> Result<(String, Arc<k8s_openapi::api::core::v1::Secret>), PipelineError> {
        let name = secret_ref.name.trim();
        if name.is_empty() {
            return Err(PipelineError::InvalidSpec(format!("{field}.name is empty")));
        }
        self.secret(app, name, field)
            .await
            .map(|secret| (name.to_owned(), secret))
            .map_err(read_error)
    }

    async fn secret(
        &self,
        app: &Application,
        name: &str,
        field: &str,
    ) -> Result<Arc<k8s_openapi::api::core::v1::Secret>, String> {
        let ns = app.namespace().unwrap_or_default();
        let key = format!("{ns}/{name}");
        {
            let cache = self.key_secrets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, secret)) = cache.get(&key)
                && at.elapsed() < KEY_SECRET_TTL
            {
                return Ok(secret.clone());
            }
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.client.clone(), &ns);
        let secret = Arc::new(
            api.get_opt(name)
                .await
                .map_err(|e| format!("Secret {ns}/{name}: {e}"))?
                .ok_or_else(|| format!("Secret {name} ({field}) not found in namespace {ns}"))?,
        );
        let mut cache = self.key_secrets.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < KEY_SECRET_TTL);
        cache.insert(key, (std::time::Instant::now(), secret.clone()));
        Ok(secret)
    }

    /// The age keys of `spec.decryption`, or `None` when the application decrypts nothing.
    async fn decryption_keys(
        &self,
        app: &Application,
    ) -> Result<Option<kedge_render::Decryption>, PipelineError> {
        let Some(decryption) = app.spec.decryption.as_ref() else {
            return Ok(None);
        };
        if !decryption.provider.trim().eq_ignore_ascii_case("sops") {
            return Err(PipelineError::InvalidSpec(format!(
                "spec.decryption.provider {:?} is not supported (sops)",
                decryption.provider
            )));
        }
        let (name, secret) = self
            .key_secret(
                app,
                &decryption.secret_ref,
                "spec.decryption.secretRef",
                PipelineError::DecryptionKeys,
            )
            .await?;
        let name = name.as_str();
        let id = format!(
            "{}/{name}@{}",
            app.namespace().unwrap_or_default(),
            secret.resource_version().unwrap_or_default()
        );
        let empty = std::collections::BTreeMap::new();
        let data = secret.data.as_ref().unwrap_or(&empty);
        let files: Vec<(&str, &[u8])> = data
            .iter()
            .filter(|(k, _)| k.ends_with(".agekey"))
            .map(|(k, v)| (k.as_str(), v.0.as_slice()))
            .collect();
        if files.is_empty() {
            return Err(PipelineError::DecryptionKeys(format!(
                "Secret {name} (spec.decryption.secretRef) has no value whose name ends with .agekey"
            )));
        }
        let keys = kedge_sops::Identities::parse(files)
            .map_err(|e| PipelineError::DecryptionKeys(format!("Secret {name}: {e}")))?;
        Ok(Some(kedge_render::Decryption::new(Arc::new(keys), id)))
    }

    /// Plans a rendered revision against the cluster.
    pub async fn plan(
        &self,
        app: &Application,
        revision: Revision,
        rendered: Arc<RenderedSet>,
    ) -> Result<Comparison, PipelineError> {
        self.plan_on(self.engine.clone(), app, revision, rendered)
            .await
    }

    /// Plans a rendered revision against the cluster of `engine` (the application's destination).
    pub async fn plan_on(
        &self,
        engine: Arc<Engine>,
        app: &Application,
        revision: Revision,
        rendered: Arc<RenderedSet>,
    ) -> Result<Comparison, PipelineError> {
        let spec = engine_spec(app)?;
        let desired = rendered
            .objects
            .iter()
            .map(|o| DesiredObject {
                object: o.object.clone(),
                source: Some(o.source.to_string()),
            })
            .collect();
        let inventory = inventory_of(app)?;
        let plan = engine.plan(&spec, desired, &inventory).await?;
        Ok(Comparison {
            revision,
            rendered,
            plan,
            engine,
        })
    }
}

/// What `spec.source.verify` asks to be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerifyMode {
    /// The commit the revision resolves to.
    Head,
    /// The annotated tag the revision names.
    Tag,
    /// Both.
    TagAndHead,
}

impl VerifyMode {
    fn parse(mode: &str) -> Option<Self> {
        match mode.trim().to_ascii_lowercase().as_str() {
            "" | "head" => Some(VerifyMode::Head),
            "tag" => Some(VerifyMode::Tag),
            "tagandhead" => Some(VerifyMode::TagAndHead),
            _ => None,
        }
    }
}

/// The trusted keys of `spec.source.verify`, the Secret they come from, and what must be signed.
#[derive(Clone)]
struct Verification {
    keys: Arc<TrustedKeys>,
    secret: String,
    mode: VerifyMode,
}

/// What was verified (`commit 3f2a9c1`, `tag v1.2.0`) and the trusted key that signed it.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The commit or tag, for messages.
    pub subject: String,
    /// The key.
    pub signer: kedge_verify::Signer,
}

/// Checks the signatures `verification` asks for: the snapshot's commit, its annotated tag, or both.
fn check_signature(
    snapshot: &kedge_source::Snapshot,
    verification: &Verification,
) -> Result<Verified, PipelineError> {
    let secret = &verification.secret;
    let revision = snapshot.revision();
    let short = revision.sha.get(..7).unwrap_or(&revision.sha);
    let refused = |what: String| {
        PipelineError::Unverified(format!(
            "{what} (spec.source.verify accepts only what a key in Secret {secret} signed)"
        ))
    };
    let check = |subject: String, signature: &str, payload: &[u8]| {
        verification
            .keys
            .verify(signature, payload)
            .map(|signer| Verified {
                subject: subject.clone(),
                signer,
            })
            .map_err(|e| {
                PipelineError::Unverified(format!("{subject}: {e} (trusted keys: Secret {secret})"))
            })
    };
    let mut verified = None;
    if matches!(verification.mode, VerifyMode::Tag | VerifyMode::TagAndHead) {
        let tag = revision
            .ref_name
            .as_deref()
            .and_then(|r| r.strip_prefix("refs/tags/"))
            .unwrap_or_default()
            .to_owned();
        verified = Some(match snapshot.tag_signature()? {
            kedge_source::TagSignature::NotATag => {
                return Err(refused(format!(
                    "revision {:?} is not a tag, and verify.mode {:?} checks the tag's signature",
                    revision.requested,
                    if verification.mode == VerifyMode::Tag {
                        "Tag"
                    } else {
                        "TagAndHEAD"
                    }
                )));
            }
            kedge_source::TagSignature::Lightweight => {
                return Err(refused(format!(
                    "tag {tag} is a lightweight tag, which cannot be signed"
                )));
            }
            kedge_source::TagSignature::Unsigned => {
                return Err(refused(format!("tag {tag} is not signed")));
            }
            kedge_source::TagSignature::Signed { signature, payload } => {
                check(format!("tag {tag}"), &signature, &payload)?
            }
        });
    }
    if matches!(verification.mode, VerifyMode::Head | VerifyMode::TagAndHead) {
        let commit = match snapshot.commit_signature()? {
            None => return Err(refused(format!("commit {short} is not signed"))),
            Some((signature, payload)) => check(format!("commit {short}"), &signature, &payload)?,
        };
        verified = Some(match verified {
            Some(tag) => Verified {
                subject: format!("{} and {}", tag.subject, commit.subject),
                signer: commit.signer,
            },
            None => commit,
        });
    }
    let verified = verified.ok_or_else(|| refused("nothing to verify".into()))?;
    tracing::debug!(subject = %verified.subject, kind = verified.signer.kind, key = %verified.signer.fingerprint, "signature verified");
    Ok(verified)
}

/// The revision whose objects are deployed: the newest successful sync in the history, else the last compared
/// revision.
fn deployed_revision(app: &Application) -> Option<String> {
    let status = app.status.as_ref()?;
    status
        .history
        .iter()
        .filter(|h| h.was_deployed() && !h.revision.is_empty())
        .max_by_key(|h| h.id)
        .map(|h| h.revision.clone())
        .or_else(|| status.sync.revision.clone().filter(|r| !r.is_empty()))
}

/// The render options of an application's directory settings.
pub fn render_options(app: &Application) -> RenderOptions {
    let dir = app.spec.source.directory.clone().unwrap_or_default();
    let non_empty = |s: String| (!s.trim().is_empty()).then_some(s);
    RenderOptions {
        recurse: dir.recurse,
        include: non_empty(dir.include),
        exclude: non_empty(dir.exclude),
        decryption: None,
    }
}

/// The engine's view of an application's spec.
pub fn engine_spec(app: &Application) -> Result<AppSpec, PipelineError> {
    let ns = app.namespace().unwrap_or_default();
    let dest = app
        .spec
        .destination
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ns.clone());
    let mut spec = AppSpec::new(AppRef::new(ns, app.name_any()), dest);
    spec.ignore_differences = app
        .spec
        .ignore_differences
        .iter()
        .map(|d| IgnoreRule {
            group: d.group.clone(),
            kind: d.kind.clone(),
            name: d.name.clone(),
            namespace: d.namespace.clone(),
            json_pointers: d.json_pointers.clone(),
            managed_fields_managers: d.managed_fields_managers.clone(),
        })
        .collect();
    for rule in &spec.ignore_differences {
        rule.validate()
            .map_err(|e| PipelineError::InvalidSpec(e.to_string()))?;
    }
    spec.health_rules = app
        .spec
        .health_checks
        .iter()
        .map(|h| HealthRule {
            group: h.group.clone(),
            kind: h.kind.clone(),
            expression: h.expression.clone(),
        })
        .collect();
    let options = crate::spec_check::sync_options(app.spec.sync_policy.as_ref())
        .map_err(PipelineError::InvalidSpec)?;
    spec.fail_on_shared_resource = options.fail_on_shared_resource;
    // The application's sync options reach every object as its own would (PruneLast, Replace, Validate=false, ...).
    spec.object_defaults = options.objects;
    Ok(spec)
}

/// The stored inventory of an application, in the engine's terms (an error when it cannot be read: nothing may
/// be pruned then).
pub fn inventory_of(app: &Application) -> Result<Vec<EngineObjectId>, PipelineError> {
    let Some(status) = app.status.as_ref() else {
        return Ok(Vec::new());
    };
    Ok(status.inventory_refs()?.iter().map(to_engine_id).collect())
}

/// Converts a stored object reference into the engine's identity.
pub fn to_engine_id(r: &ObjectRef) -> EngineObjectId {
    EngineObjectId {
        group: r.group.to_string(),
        kind: r.kind.to_string(),
        namespace: (!r.namespace.is_empty()).then(|| r.namespace.to_string()),
        name: r.name.to_string(),
    }
}

/// Converts the engine's identity into a stored object reference.
pub fn from_engine_id(id: &EngineObjectId, version: &str) -> ObjectRef {
    ObjectRef {
        group: id.group.as_str().into(),
        version: version.into(),
        kind: id.kind.as_str().into(),
        namespace: id.namespace.as_deref().unwrap_or_default().into(),
        name: id.name.as_str().into(),
    }
}

/// Finds the credentials for `url` among the repository Secrets of `namespace`: an exact `repository` match wins
/// over the longest matching `repo-creds` prefix. Returns anonymous access when none matches.
pub async fn credentials_for(
    secrets: &RepositorySecrets,
    namespace: &str,
    url: &str,
) -> Result<(Credentials, bool), PipelineError> {
    if namespace.is_empty() {
        return Ok((Credentials::None, false));
    }
    let best = secrets.find(namespace, url).await.map_err(|e| {
        PipelineError::Credentials(format!("failed to list Secrets in {namespace}: {e}"))
    })?;
    let Some(data) = best else {
        return Ok((Credentials::None, false));
    };
    let insecure = data
        .get("insecure")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let credentials = if let Some(key) = data.get("sshPrivateKey") {
        Credentials::SshKey {
            private_key: SecretString::new(key.clone()),
            known_hosts: data.get("knownHosts").cloned().unwrap_or_default(),
        }
    } else if let Some(password) = data.get("password") {
        Credentials::Basic {
            username: data
                .get("username")
                .cloned()
                .unwrap_or_else(|| "git".into()),
            password: SecretString::new(password.clone()),
        }
    } else if let Some(token) = data.get("token") {
        Credentials::Token {
            username: data.get("username").cloned(),
            token: SecretString::new(token.clone()),
        }
    } else {
        Credentials::None
    };
    Ok((credentials, insecure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_ids_round_trip_through_stored_refs() {
        let id = EngineObjectId {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("x".into()),
            name: "d".into(),
        };
        assert_eq!(to_engine_id(&from_engine_id(&id, "v1")), id);
        let cluster = EngineObjectId {
            group: "".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "n".into(),
        };
        assert_eq!(to_engine_id(&from_engine_id(&cluster, "v1")), cluster);
    }
}
