//! `kedge run`: wires the rooms together and runs the controller, the repository poller and the HTTP endpoints
//! until shutdown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kedge_api::Application;
use kedge_engine::{Engine, EngineConfig};
use kedge_render::{KustomizeConfig, RenderConfig, Renderer};
use kedge_source::{Source, SourceConfig};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admission::Admission;
use crate::drift::DriftWatcher;
use crate::events::EventRecorder;
use crate::leader::{self, LeaderGuard, LeaseConfig};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::probes::{self, Readiness};
use crate::reconcile::{self, Context, ReconcileConfig, key_of};

/// Settings of `kedge run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Only Applications of this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How often each repository is asked whether its refs moved. Default 60 s (plus up to 10% jitter).
    pub poll_interval: Duration,
    /// How often every application is compared again without a trigger. Default 180 s.
    pub resync_interval: Duration,
    /// Where the probes and the UI, API and webhook routes listen; nothing is served when `None`.
    pub listen: Option<SocketAddr>,
    /// Where `/metrics` listens, apart from the UI so that the UI port does not expose it; not served when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Cache folder for Git mirrors and materialized trees.
    pub cache_dir: PathBuf,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Concurrent reconciles.
    pub concurrency: u16,
    /// How long the leader's Lease is valid after its last renewal: how long a crashed leader's replicas wait before
    /// one of them takes over.
    pub lease_duration: Duration,
    /// How often the leader renews its Lease and the others try to take it.
    pub lease_renew_interval: Duration,
    /// Let kustomizations name remote bases (see [`kedge_render::KustomizeConfig::allow_remote_bases`]). Default
    /// off.
    pub allow_remote_bases: bool,
    /// How long after its last renewal a leader that cannot renew stops writing; shorter than the lease duration,
    /// so that it has stopped before another replica may take over.
    pub lease_renew_deadline: Duration,
    /// On shutdown, how long passes already running may take to finish before they are abandoned (below
    /// Kubernetes' default 30 s termination grace period); the Lease is released after them.
    pub shutdown_grace: Duration,
    /// Most pack data one Git fetch may receive (default 1 GiB); a larger fetch is refused and nothing of it kept.
    pub max_fetch_bytes: u64,
    /// Git mirrors and checkouts unused for this long are removed (default a day); checked every hour.
    pub mirror_max_idle: Duration,
    /// How often the registered clusters (Cluster objects in `lease_namespace`) are reached for their status.
    /// Default 30 s.
    pub cluster_check_interval: Duration,
    /// How replicas divide the work. Default [`Sharing::Applications`].
    pub sharing: Sharing,
    /// The UI's external URL (e.g. `https://kedge.example.com`): notifications and commit statuses link to the
    /// application's page there. No links when `None`.
    pub ui_url: Option<String>,
    /// Namespaces (globs) besides `lease_namespace` whose Applications are reconciled; empty: those of `namespace`
    /// (all when it is `None`). Set, the controller watches every namespace and leaves the Applications of the others
    /// alone; each application's project must also list its namespace in `sourceNamespaces`.
    pub application_namespaces: Vec<String>,
}

/// How several replicas of the controller divide the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Every replica reconciles its share of the applications ([`crate::shard`]); the leader alone also checks the
    /// registered clusters. With one replica, it has every application.
    #[default]
    Applications,
    /// The leader reconciles every application; the other replicas stand by until it goes.
    Off,
}

impl std::str::FromStr for Sharing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "applications" => Ok(Self::Applications),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "unknown sharing {other:?}: `applications` (replicas share the applications) or `off` (the leader \
                 does all, the others stand by)"
            )),
        }
    }
}

impl RunConfig {
    /// Defaults for everything but the cache folder and identity.
    pub fn new(cache_dir: impl Into<PathBuf>, identity: impl Into<String>) -> Self {
        Self {
            namespace: None,
            poll_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(180),
            listen: None,
            metrics_listen: None,
            cache_dir: cache_dir.into(),
            lease_namespace: "kedge".into(),
            identity: identity.into(),
            concurrency: 8,
            lease_duration: Duration::from_secs(15),
            lease_renew_interval: Duration::from_secs(2),
            allow_remote_bases: false,
            lease_renew_deadline: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            max_fetch_bytes: kedge_source::DEFAULT_MAX_FETCH_BYTES,
            mirror_max_idle: Duration::from_secs(24 * 3600),
            cluster_check_interval: Duration::from_secs(30),
            sharing: Sharing::default(),
            ui_url: None,
            application_namespaces: Vec::new(),
        }
    }

    /// The election settings these flags make.
    pub fn lease_config(&self) -> LeaseConfig {
        LeaseConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.lease_renew_deadline,
            retry_period: self.lease_renew_interval,
            // Each attempt is bounded; a leader's attempt also never runs past its renew deadline.
            request_timeout: (self.lease_renew_deadline / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(4)),
            ..LeaseConfig::new(&self.lease_namespace, LEASE_NAME, &self.identity)
        }
    }

    /// The `application_namespaces` globs, compiled; `None` when there are none.
    pub fn application_namespace_globs(&self) -> Result<Option<globset::GlobSet>, RunError> {
        if self.application_namespaces.is_empty() {
            return Ok(None);
        }
        let mut set = globset::GlobSetBuilder::new();
        for pattern in &self.application_namespaces {
            let glob = globset::Glob::new(pattern).map_err(|e| {
                RunError::Config(format!("application namespace pattern {pattern:?}: {e}"))
            })?;
            set.add(glob);
        }
        set.build()
            .map(Some)
            .map_err(|e| RunError::Config(format!("application namespaces: {e}")))
    }

    /// Checks the settings that only make sense together.
    pub fn validate(&self) -> Result<(), RunError> {
        let invalid = |why: String| Err(RunError::Config(why));
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1".into());
        }
        if self.max_fetch_bytes == 0 {
            return invalid("the fetch size limit must be larger than zero".into());
        }
        if self.poll_interval.is_zero() || self.resync_interval.is_zero() {
            return invalid("the poll and resync intervals must be longer than zero".into());
        }
        if self.application_namespace_globs()?.is_some() && self.namespace.is_some() {
            return invalid(
                "application namespaces need a controller that watches every namespace (no single namespace)"
                    .into(),
            );
        }
        if let Some(url) = &self.ui_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(format!(
                "the UI URL {url:?} is not an http:// or https:// URL"
            ));
        }
        self.lease_config().validate().map_err(RunError::Config)
    }
}

/// What the HTTP API, UI and webhook receivers get from the running controller.
#[derive(Clone)]
pub struct ServerHandles {
    /// The controller's Kubernetes client (requests are counted in the metrics).
    pub client: kube::Client,
    /// The controller's cache of Applications.
    pub store: Store<Application>,
    /// `namespace/name` of every Application that changed (status too, deletions too), sent once the change is in
    /// [`store`](Self::store): a reader told of a change finds it there.
    pub app_changes: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Queues a reconcile of an application.
    pub triggers: mpsc::UnboundedSender<ObjectRef<Application>>,
    /// The reconcile context; the server reaches it only through the methods below.
    pub(crate) context: Arc<Context>,
    /// Fetch, render, plan (for diffs and previews).
    pub pipeline: Pipeline,
    /// Metrics.
    pub metrics: Metrics,
    /// The namespace the controller watches, `None` for all.
    pub namespace: Option<String>,
    /// Cancelled at shutdown (e.g. to end server-sent event streams).
    pub shutdown: CancellationToken,
}

impl ServerHandles {
    /// Queues the applications a Git push concerns, those holding a changed file first (see [`queue_pushed`]).
    pub fn queue_pushed(&self, apps: &[&Application], changed: Option<&[String]>) {
        queue_pushed(
            &self.context.moved_repos,
            &self.context.admission,
            &self.triggers,
            apps,
            changed,
        );
    }

    /// Every object of an application with its state when its status lists only some of them
    /// ([`Context::all_resources`]).
    pub fn all_resources(&self, app: &Application) -> Option<Arc<Vec<kedge_api::ResourceStatus>>> {
        self.context.all_resources(&key_of(app))
    }

    /// The Project named `name` (in Kedge's namespace), if it exists.
    pub fn project(&self, name: &str) -> Option<Arc<kedge_api::Project>> {
        self.context.projects.get(name)
    }
}

/// Name of the leader-election Lease.
pub const LEASE_NAME: &str = "kedge-controller";

/// After the passes are over (at the latest when the shutdown grace period ends), how long the rest of the shutdown
/// (releasing the Lease, closing HTTP connections) may take in all before `run` returns regardless.
pub const SHUTDOWN_TAIL: Duration = Duration::from_secs(5);

/// Builds extra HTTP routes (API, UI, webhooks) once the controller is wired; merged with the probe routes.
pub type RouteBuilder = Box<dyn FnOnce(ServerHandles) -> axum::Router + Send>;

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The settings contradict each other.
    #[error("invalid controller settings: {0}")]
    Config(String),
    /// The Kubernetes client could not be built.
    #[error("failed to create the Kubernetes client")]
    Client(#[source] kube::Error),
    /// The Git cache could not be set up.
    #[error("failed to set up the Git cache")]
    Source(#[source] kedge_source::SourceError),
    /// The engine could not be set up.
    #[error("failed to set up the sync engine")]
    Engine(#[source] kedge_engine::EngineError),
    /// The HTTP listener failed.
    #[error("failed to serve HTTP on {addr}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs until `shutdown` is cancelled.
pub async fn run(
    kube_config: kube::Config,
    config: RunConfig,
    shutdown: CancellationToken,
    routes: Option<RouteBuilder>,
) -> Result<(), RunError> {
    config.validate()?;
    let kube_config = with_user_agent(kube_config, &config.identity);
    let metrics = Metrics::new();
    // Reads, the election, and the HTTP API's requests made for its users go through `client`; everything the
    // controller itself writes goes through `writes`, which sends nothing while this replica does not lead.
    let client =
        crate::client::counting_client(kube_config.clone(), &metrics).map_err(RunError::Client)?;
    // The election outlives `shutdown`: the Lease is held (and renewed) until the passes still running are over.
    let stop_election = CancellationToken::new();
    let (leader, election) =
        leader::spawn(client.clone(), config.lease_config(), stop_election.clone());
    // The controller's writes are fenced by the leader's Lease, or, when replicas share the applications, by this
    // replica's own member Lease (and each pass by its claim on its application; see `shard`).
    let (store, writer) = reflector::store();
    let (app_triggers_tx, app_triggers_rx) = mpsc::unbounded_channel();
    let stop_shard = CancellationToken::new();
    let shard = match config.sharing {
        Sharing::Applications => Some(crate::shard::spawn(
            client.clone(),
            config.lease_config(),
            store.clone(),
            app_triggers_tx,
            metrics.clone(),
            stop_shard.clone(),
        )),
        Sharing::Off => {
            metrics.shard_members.set(1);
            None
        }
    };
    let write_guard = shard
        .as_ref()
        .map_or_else(|| leader.clone(), |(s, _)| s.writes());
    let local_config = kube_config.clone();
    let writes = crate::client::leader_client(kube_config, &metrics, write_guard.clone())
        .map_err(RunError::Client)?;
    let source = Source::new(SourceConfig {
        max_fetch_bytes: config.max_fetch_bytes,
        ..SourceConfig::new(config.cache_dir.join("git"))
    })
    .map_err(RunError::Source)?;
    let renderer = Arc::new(Renderer::new(RenderConfig {
        kustomize: KustomizeConfig {
            allow_remote_bases: config.allow_remote_bases,
            ..KustomizeConfig::default()
        },
        ..RenderConfig::default()
    }));
    let admission = Admission::new(usize::from(config.concurrency));
    let (drift, triggers) =
        DriftWatcher::new(client.clone(), "kedge", admission.clone(), shutdown.clone());
    // A slot kept for a waiting application asks the runtime for its pass; now and then, slots kept for passes that
    // never came go to the next ones.
    {
        let sender = drift.trigger_sender();
        admission.call(move |key| {
            if let Some((ns, name)) = key.split_once('/') {
                let _ = sender.send(ObjectRef::new(name).within(ns));
            }
        });
        let (admission, token) = (admission.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = every.tick() => admission.tick(),
                }
            }
        });
    }
    // Live reads are answered from what the engine last read or applied while the drift watches say it has not
    // changed since.
    let live = Arc::new(kedge_engine::VersionedLiveObjects::new(
        writes.clone(),
        drift.versions(),
    ));
    let engine = Arc::new(
        Engine::with_live_objects(writes.clone(), EngineConfig::default(), live)
            .map_err(RunError::Engine)?,
    );
    // Objects of namespaces that do not exist yet are planned without reading them (the watch reads as the drift
    // watches do).
    engine.watch_namespaces(client.clone());
    // A pass does not wait for its events (a first deployment publishes two or three).
    let recorder =
        EventRecorder::new(writes.clone(), "kedge-controller", &config.identity).in_background(64);
    let recorder_for_shutdown = recorder.clone();
    let reconcile_config = ReconcileConfig {
        identity: config.identity.clone(),
        resync_interval: config.resync_interval,
        poll_interval: config.poll_interval,
        clusters_namespace: config.lease_namespace.clone(),
        application_namespaces: config.application_namespace_globs()?,
        ..ReconcileConfig::default()
    };
    let apps: Api<Application> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let readiness = Arc::new(Readiness::default());

    // Changes to an Application queue a pass unless only its status changed: the status is this controller's own
    // report, and a pass after each of its writes would double the work of every sync (the store still sees them).
    let (app_changes, _) = tokio::sync::broadcast::channel::<Arc<str>>(4096);
    let dependents = Arc::new(crate::dependents::Dependents::default());
    let changes = watcher(apps, watcher::Config::default())
        .default_backoff()
        // Nothing reads an Application's managedFields, and each status write lists every field it owns there: as
        // parsed JSON, several KiB per application held for nothing.
        .modify(|app| app.managed_fields_mut().clear())
        .reflect(writer)
        .inspect({
            let app_changes = app_changes.clone();
            let shard = shard.as_ref().map(|(s, _)| s.clone());
            let metrics = metrics.clone();
            let admission = admission.clone();
            let (dependents, store) = (dependents.clone(), store.clone());
            move |event| {
                match event {
                    Ok(watcher::Event::Apply(app)) => dependents.saw(app),
                    Ok(watcher::Event::Delete(app)) => dependents.gone(app),
                    // The store holds the new listing by now.
                    Ok(watcher::Event::InitDone) => {
                        let apps = store.state();
                        dependents.rebuild(apps.iter().map(|a| a.as_ref()));
                    }
                    _ => {}
                }
                if let Ok(watcher::Event::Apply(app) | watcher::Event::Delete(app)) = event {
                    let _ = app_changes.send(key_of(app).into());
                }
                if let Ok(watcher::Event::Delete(app)) = event {
                    let key = key_of(app);
                    metrics.forget_app(&key);
                    admission.forget(&key);
                }
                // A new or removed application changes the shares.
                if let Some(shard) = &shard {
                    match event {
                        Ok(watcher::Event::Apply(app)) => shard.saw(&key_of(app)),
                        Ok(watcher::Event::Delete(_) | watcher::Event::InitDone) => shard.gone(),
                        _ => {}
                    }
                }
            }
        })
        .applied_objects()
        .predicate_filter(spec_or_metadata, Default::default())
        .map({
            // A requested operation or refresh (from the UI, the CLI or kubectl) goes ahead of routine passes.
            let admission = admission.clone();
            move |event| {
                if let Ok(app) = &event
                    && (app
                        .annotations()
                        .contains_key(kedge_api::OPERATION_ANNOTATION)
                        || app
                            .annotations()
                            .contains_key(kedge_api::REFRESH_ANNOTATION))
                {
                    admission.expedite(&key_of(app));
                }
                event
            }
        });
    // No limit here: the runtime keeps one pass per application, and `reconcile` admits them fairly (see there).
    let controller = Controller::for_stream(changes, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(0));
    // Repository credentials come from a watch-backed cache; a change to one of them retries the applications of
    // its namespace at once (e.g. those that failed for lack of credentials).
    let (secrets, keep_secrets) = {
        let store = store.clone();
        let triggers = drift.trigger_sender();
        kedge_api::RepositorySecrets::watched(
            client.clone(),
            config.namespace.as_deref(),
            move |secret| {
                let ns = secret.namespace();
                for app in store.state() {
                    if app.namespace() == ns {
                        let _ = triggers.send(ObjectRef::from_obj(app.as_ref()));
                    }
                }
            },
        )
    };
    let token = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = keep_secrets => {}
            _ = token.cancelled() => {}
        }
    });
    let (gc_source, gc_engine) = (source.clone(), engine.clone());
    let pipeline =
        Pipeline::new(writes.clone(), source, renderer, engine).with_repository_secrets(secrets);
    let mut ctx = Context::new(
        pipeline.clone(),
        metrics.clone(),
        recorder,
        drift.clone(),
        reconcile_config,
        write_guard.clone(),
        store.clone(),
    );
    ctx.dependents = dependents;
    if let Some((shard, _)) = &shard {
        ctx = ctx.with_shard(shard.clone());
    }
    // Syncs with impersonation make clients of their own from the controller's connection settings.
    ctx.clusters.set_local_config(local_config);
    // Projects (in Kedge's namespace) bound what each application may deploy; a changed one queues its applications.
    ctx = ctx.with_projects(crate::projects::Projects::spawn(
        client.clone(),
        writes.clone(),
        config.lease_namespace.clone(),
        store.clone(),
        drift.trigger_sender(),
        shutdown.clone(),
    ));
    // ApplicationSets (in Kedge's namespace) make, change and delete their Applications.
    crate::appsets::spawn(
        client.clone(),
        writes.clone(),
        config.lease_namespace.clone(),
        pipeline.source().clone(),
        shutdown.clone(),
    );
    // Notices go to the Providers of the Alerts (in the namespaces this controller watches) that select them.
    ctx = ctx.with_notifier(kedge_notify::Notifier::spawn(
        client.clone(),
        writes.clone(),
        kedge_notify::NotifierConfig {
            namespace: config.namespace.clone(),
            ui_url: config.ui_url.clone(),
            ..Default::default()
        },
        metrics.notify.clone(),
        shutdown.clone(),
    ));
    let ctx = Arc::new(ctx);
    let http = match config.listen {
        Some(addr) => {
            let mut router = probes::probe_routes(readiness.clone());
            if let Some(build) = routes {
                router = router.merge(build(ServerHandles {
                    client: client.clone(),
                    store: store.clone(),
                    app_changes: app_changes.clone(),
                    triggers: drift.trigger_sender(),
                    context: ctx.clone(),
                    pipeline: ctx.pipeline.clone(),
                    metrics: metrics.clone(),
                    namespace: config.namespace.clone(),
                    shutdown: shutdown.clone(),
                }));
            }
            // The peer address lets the login rate limit count attempts per client.
            let router = router.into_make_service_with_connect_info::<SocketAddr>();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Http { addr, source })?;
            let token = shutdown.clone();
            tracing::info!(%addr, "serving probes, API and UI");
            Some(tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
                {
                    tracing::warn!(error = %err, "the HTTP server failed");
                }
            }))
        }
        None => None,
    };
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Http { addr, source })?;
        let token = shutdown.clone();
        let router = probes::metrics_routes(metrics.clone());
        tracing::info!(%addr, "serving metrics");
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
            {
                tracing::warn!(error = %err, "the metrics server failed");
            }
        });
    }

    {
        let store = store.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            if store_ready(&store).await {
                readiness.set_caches_synced();
            }
        });
    }
    tokio::spawn(collect_garbage(
        gc_source,
        gc_engine,
        ctx.clone(),
        config.mirror_max_idle,
        shutdown.clone(),
    ));
    // The registered clusters' status: Connected, version, applications.
    tokio::spawn(crate::clusters::keep_checking(
        client.clone(),
        writes.clone(),
        leader.clone(),
        config.lease_namespace.clone(),
        store.clone(),
        config.cluster_check_interval,
        metrics.clone(),
        shutdown.clone(),
    ));
    // Leadership as a metric.
    {
        let mut changes = leader.changes();
        let metrics = metrics.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            loop {
                metrics.leader.set(i64::from(*changes.borrow_and_update()));
                tokio::select! {
                    _ = token.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
    }
    // A changed Cluster queues its applications.
    tokio::spawn(crate::clusters::trigger_on_change(
        client.clone(),
        config.lease_namespace.clone(),
        store.clone(),
        drift.trigger_sender(),
        shutdown.clone(),
    ));
    match &shard {
        // Applications that become this replica's are queued by the shard.
        Some(_) => {
            let triggers = drift.trigger_sender();
            tokio::spawn(async move {
                let mut gained = app_triggers_rx;
                while let Some(app) = gained.recv().await {
                    let _ = triggers.send(app);
                }
            });
        }
        None => {
            tokio::spawn(reconcile_all_on_leadership(
                leader.changes(),
                store.clone(),
                drift.trigger_sender(),
                shutdown.clone(),
            ));
        }
    }
    tokio::spawn(poll_repositories(
        store,
        pipeline,
        ctx.clone(),
        drift.trigger_sender(),
        config.poll_interval,
        readiness.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let passes = Passes::new(shutdown.clone(), write_guard, config.shutdown_grace);
    let token = shutdown.clone();
    let running = controller
        .reconcile_on(UnboundedReceiverStream::new(triggers))
        .graceful_shutdown_on(async move { token.cancelled().await })
        .run(
            {
                let passes = passes.clone();
                move |app, ctx| passes.clone().run(app, ctx)
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(err) = res {
                tracing::debug!(error = %err, "reconcile error");
            }
        });
    // The controller runtime ends its stream after a graceful shutdown only once its cache of Applications has been
    // filled: a shutdown that comes before the first list completes stops the watch that would fill it, and the
    // stream then waits forever. So the shutdown ends here as soon as no pass runs any more.
    tokio::select! {
        () = running => {}
        () = passes.drained() => {}
    }
    tracing::info!("no pass is running any more");
    if !recorder_for_shutdown.flush(Duration::from_secs(2)).await {
        tracing::warn!("some events were still being published at shutdown");
    }
    // Only now is the Lease given up (the guard turns false first), so that no pass of this replica overlaps with
    // the successor's.
    let tail = tokio::time::Instant::now() + SHUTDOWN_TAIL;
    stop_election.cancel();
    stop_shard.cancel();
    if tokio::time::timeout_at(tail, election).await.is_err() {
        tracing::warn!("the leader election did not stop in time");
    }
    if let Some((_, task)) = shard
        && tokio::time::timeout_at(tail, task).await.is_err()
    {
        tracing::warn!("the shard membership did not stop in time");
    }
    // The HTTP server stopped accepting at the signal and has let its requests finish since; a connection still
    // open now (a client that never finishes its request) does not hold the exit for long.
    let http_tail = tail.min(tokio::time::Instant::now() + Duration::from_secs(1));
    if let Some(mut h) = http
        && tokio::time::timeout_at(http_tail, &mut h).await.is_err()
    {
        tracing::warn!("HTTP connections still open; closing them");
        h.abort();
    }
    Ok(())
}

/// Sets the `User-Agent` of every request to `kedge/VERSION (IDENTITY)`, unless the configuration has one: the API
/// server's audit log then tells the replicas apart.
fn with_user_agent(mut config: kube::Config, identity: &str) -> kube::Config {
    let ua = http::header::USER_AGENT;
    if !config.headers.iter().any(|(name, _)| *name == ua)
        && let Ok(value) = http::HeaderValue::from_str(&format!(
            "kedge/{} ({identity})",
            env!("CARGO_PKG_VERSION")
        ))
    {
        config.headers.push((ua, value));
    }
    config
}

/// The passes the controller runtime starts, as seen by the shutdown: none is admitted once shutdown is asked, the
/// running ones have the grace period to finish and are abandoned after it, and every one stops the moment this
/// replica stops leading (its writes would be refused anyway).
#[derive(Clone)]
struct Passes {
    shutdown: CancellationToken,
    abandon: CancellationToken,
    leader: LeaderGuard,
    running: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Passes {
    fn new(shutdown: CancellationToken, leader: LeaderGuard, grace: Duration) -> Self {
        let abandon = CancellationToken::new();
        {
            let (shutdown, abandon) = (shutdown.clone(), abandon.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
                abandon.cancel();
            });
        }
        Self {
            shutdown,
            abandon,
            leader,
            running: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    async fn run(
        self,
        app: Arc<Application>,
        ctx: Arc<Context>,
    ) -> Result<kube::runtime::controller::Action, reconcile::ReconcileError> {
        use kube::runtime::controller::Action;
        if self.shutdown.is_cancelled() {
            return Ok(Action::await_change());
        }
        // The pass runs as a task of its own, and the runtime holds only its handle: the runtime polls every pass it
        // holds each time any of them wakes (and the watches of Applications wake it too), so with the passes
        // inline, each response a running pass awaited polled all the others. A handle wakes the runtime once, when
        // its pass ends. (Passes waiting for a slot are not held at all: see `Admission`.)
        let mut task = AbortOnDrop(tokio::spawn(
            self.pass(app, ctx).instrument(tracing::Span::current()),
        ));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Aborted: only by the guard, once nothing awaits the pass any more.
            Err(_) => Ok(Action::await_change()),
        }
    }

    async fn pass(
        self,
        app: Arc<Application>,
        ctx: Arc<Context>,
    ) -> Result<kube::runtime::controller::Action, reconcile::ReconcileError> {
        use kube::runtime::controller::Action;
        self.running.send_modify(|n| *n += 1);
        let _running = Running(self.running.clone());
        let key = key_of(&app);
        tokio::select! {
            biased;
            () = self.abandon.cancelled() => {
                tracing::warn!(app = %key, "pass abandoned: the shutdown grace period is over");
                Ok(Action::await_change())
            }
            () = self.leader.lost() => {
                tracing::debug!(app = %key, "pass stopped: this replica does not lead");
                Ok(Action::requeue(Duration::from_secs(5)))
            }
            res = reconcile::reconcile(app, ctx) => res,
        }
    }

    /// Resolves once shutdown is asked and no pass runs.
    async fn drained(&self) {
        self.shutdown.cancelled().await;
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }
}

/// A spawned pass, aborted when the runtime drops it (at shutdown, with the rest of the controller).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a running pass until it ends (or is dropped).
struct Running(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What of an Application calls for a pass when it changes: generation (the spec), labels, annotations (operations,
/// refreshes), finalizers and deletion; not the status.
fn spec_or_metadata(app: &Application) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &app.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .hash(&mut h);
    Some(h.finish())
}

/// Waits until the store has its first full list; false if its writer is gone.
///
/// `Store::wait_until_ready` wakes only the last of several concurrent waiters (the controller itself waits too),
/// so each wait is bounded and repeated: every new poll sees a readiness that happened in between.
async fn store_ready(store: &Store<Application>) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            Ok(res) => return res.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Queues every application each time this replica becomes the leader, so that passes a follower skipped run now
/// rather than at their next requeue (at startup, the first passes often start before the first election ends).
async fn reconcile_all_on_leadership(
    mut leading: tokio::sync::watch::Receiver<bool>,
    store: Store<Application>,
    triggers: mpsc::UnboundedSender<ObjectRef<Application>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = leading.changed() => if changed.is_err() { return },
        }
        if *leading.borrow_and_update() {
            for app in store.state() {
                let _ = triggers.send(ObjectRef::from_obj(app.as_ref()));
            }
        }
    }
}

/// Asks each repository in use whether its refs moved, once per interval for all applications that use it, and
/// triggers those applications when they did.
#[allow(clippy::too_many_arguments)]
async fn poll_repositories(
    store: Store<Application>,
    pipeline: Pipeline,
    ctx: Arc<Context>,
    triggers: mpsc::UnboundedSender<ObjectRef<Application>>,
    interval: Duration,
    readiness: Arc<Readiness>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    if !store_ready(&store).await {
        return;
    }
    let mut tips: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    // Repositories whose last check failed: their applications are compared again when a repository starts failing
    // (so that they report it, keeping what is applied) and when it answers again (so that they say so at once).
    let mut failing: HashSet<String> = HashSet::new();
    let mut round: u64 = 0;
    loop {
        let mut by_repo: BTreeMap<String, Vec<Arc<Application>>> = BTreeMap::new();
        // Charts from Helm repositories and OCI registries are not Git: their version constraint is resolved again
        // by every pass (the periodic resync included), against an index cached for a short while.
        for app in store
            .state()
            .into_iter()
            .filter(|a| !kedge_helm::is_remote_chart(a))
            // When replicas share the applications, each polls for its own share.
            .filter(|a| ctx.shard.as_ref().is_none_or(|s| s.allows(&key_of(a))))
        {
            by_repo
                .entry(app.spec.git_source().repo_url.clone())
                .or_default()
                .push(app);
        }
        for (url, apps) in by_repo {
            let Some(first) = apps.first() else { continue };
            let repo = match pipeline.repo_for(first).await {
                Ok(r) => r,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot poll repository");
                    continue;
                }
            };
            let source = pipeline.source().clone();
            let started = Instant::now();
            let probe = repo.clone();
            let refs = tokio::task::spawn_blocking(move || source.ls_remote(&probe)).await;
            metrics
                .git_fetch_duration
                .get_or_create(&crate::metrics::RepoLabel::of(&url))
                .observe(started.elapsed().as_secs_f64());
            let apps_ref: Vec<&Application> = apps.iter().map(Arc::as_ref).collect();
            let refs = match refs {
                Ok(Ok(refs)) => refs,
                Ok(Err(err)) => {
                    metrics
                        .git_fetch_errors
                        .get_or_create(&crate::metrics::RepoLabel::of(&url))
                        .inc();
                    tracing::warn!(error = %err, "repository check failed");
                    if failing.insert(url.clone()) {
                        queue_pushed(&ctx.moved_repos, &ctx.admission, &triggers, &apps_ref, None);
                    }
                    continue;
                }
                Err(_) => continue,
            };
            let recovered = failing.remove(&url);
            let now: BTreeMap<String, String> =
                refs.into_iter().map(|r| (r.name, r.commit)).collect();
            let before = tips.insert(url.clone(), now.clone());
            let moved = before.as_ref().is_some_and(|b| *b != now);
            if recovered && !moved {
                tracing::info!(repo = %kedge_source::repo::strip_userinfo(&url), "repository answers again");
                queue_pushed(&ctx.moved_repos, &ctx.admission, &triggers, &apps_ref, None);
                continue;
            }
            let Some(before) = before else {
                // The first look at this repository from here: there are no earlier tips to compare with, and a
                // push may have landed between an application's last pass and now (a replica that has just gained
                // its share, an application created a moment ago).
                let behind = behind_at_first_look(&ctx, &apps_ref, &now);
                if !behind.is_empty() {
                    tracing::info!(
                        repo = %kedge_source::repo::strip_userinfo(&url),
                        apps = behind.len(),
                        "first look at the repository: applications behind its refs"
                    );
                    queue_pushed(&ctx.moved_repos, &ctx.admission, &triggers, &behind, None);
                }
                continue;
            };
            if !moved {
                continue;
            }
            tracing::info!(repo = %kedge_source::repo::strip_userinfo(&url), apps = apps.len(), "repository moved");
            let targets: Vec<String> = apps
                .iter()
                .map(|a| a.spec.git_source().target_revision.clone())
                .collect();
            let source = pipeline.source().clone();
            let changed = tokio::task::spawn_blocking(move || {
                changed_files_since(&source, &repo, &targets, &before, &now)
            })
            .await
            .ok()
            .flatten();
            queue_pushed(
                &ctx.moved_repos,
                &ctx.admission,
                &triggers,
                &apps_ref,
                changed.as_deref(),
            );
        }
        if round == 0 {
            readiness.set_first_check_done();
        }
        round += 1;
        let jitter = Duration::from_millis(
            (round.wrapping_mul(2_654_435_761) % 1000) * interval.as_millis() as u64 / 10_000,
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval + jitter) => {}
        }
    }
}

/// Every hour: removes Git mirrors and checkouts unused for `max_idle` (a mirror in use is kept), forgets the
/// dry-run results no plan used for an hour (those of objects no application manages any more) and what the
/// controller remembered of applications that are gone.
async fn collect_garbage(
    source: Source,
    engine: Arc<Engine>,
    ctx: Arc<Context>,
    max_idle: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GC_INTERVAL) => {}
        }
        let forgotten = engine.evict_unused(GC_INTERVAL);
        let apps = ctx.forget_gone();
        if forgotten > 0 || apps > 0 {
            tracing::info!(
                dry_runs = forgotten,
                apps,
                "forgot dry-run results no plan used for an hour and applications that are gone"
            );
        }
        let source = source.clone();
        match tokio::task::spawn_blocking(move || source.collect_garbage(max_idle)).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "cleaning the Git cache failed"),
        }
    }
}

/// How often unused Git mirrors are looked for.
const GC_INTERVAL: Duration = Duration::from_secs(3600);

/// The most moved refs the poller compares, and the most changed files it lists, before it queues a repository's
/// applications without an order.
const MAX_MOVED_REFS: usize = 4;
const MAX_CHANGED_FILES: usize = 10_000;

/// The files a poll found changed in a repository: the refs the applications track (`targets`) that moved between
/// the `before` and `now` listings are fetched and their old and new trees compared. `None` when that cannot tell
/// (a tracked ref appeared or vanished, a version constraint met a new tag, the old commit was never fetched, too
/// many changes): the caller then queues every application at once, as before.
fn changed_files_since(
    source: &Source,
    repo: &kedge_source::RepoSpec,
    targets: &[String],
    before: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    let specs: Vec<kedge_source::RevisionSpec> = targets
        .iter()
        .filter_map(|t| kedge_source::RevisionSpec::parse(t).ok())
        .collect();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    let mut moves: Vec<(&str, &str, &str)> = Vec::new();
    for name in names {
        let (old, new) = (before.get(name), now.get(name));
        if old == new || !specs.iter().any(|spec| tracks(spec, name)) {
            continue;
        }
        let (Some(old), Some(new)) = (old, new) else {
            return None;
        };
        if !moves
            .iter()
            .any(|(_, o, n)| *o == old.as_str() && *n == new.as_str())
        {
            moves.push((name.as_str(), old.as_str(), new.as_str()));
        }
    }
    if moves.len() > MAX_MOVED_REFS {
        return None;
    }
    let mut files = Vec::new();
    for (name, old, new) in moves {
        // The pass that follows finds the commit already fetched.
        if let Err(err) = source.fetch(&kedge_source::FetchRequest::new(repo.clone(), name)) {
            tracing::debug!(error = %err, "cannot fetch the moved ref to see what changed");
            return None;
        }
        match source.changed_files(repo, old, new, MAX_CHANGED_FILES) {
            Ok(Some(changed)) => files.extend(changed),
            Ok(None) => return None,
            Err(err) => {
                tracing::debug!(error = %err, "cannot compare the moved ref's commits");
                return None;
            }
        }
    }
    files.sort();
    files.dedup();
    Some(files)
}

/// The applications that may be behind their repository's refs `now` when this replica looks at the repository for
/// the first time: those whose last resolved commit is not what a ref they follow points at. Those no pass here has
/// resolved yet are left to that pass, which resolves the revision afresh (at startup that is every application, and
/// each is queued already). Queuing one that was up to date (an annotated tag advertises the tag, not its commit)
/// costs a pass that finds nothing to do; missing one would leave it behind until its next resync.
fn behind_at_first_look<'a>(
    ctx: &Context,
    apps: &[&'a Application],
    now: &BTreeMap<String, String>,
) -> Vec<&'a Application> {
    apps.iter()
        .copied()
        .filter(|app| {
            let Some(resolved) = ctx.resolved_commit(&key_of(app)) else {
                return false;
            };
            match kedge_source::RevisionSpec::parse(&app.spec.git_source().target_revision) {
                Ok(kedge_source::RevisionSpec::Sha(_)) => false,
                Ok(spec) => !now
                    .iter()
                    .any(|(name, commit)| *commit == resolved && tracks(&spec, name)),
                Err(_) => true,
            }
        })
        .collect()
}

/// Whether an application asking for `spec` follows the advertised ref `name`.
fn tracks(spec: &kedge_source::RevisionSpec, name: &str) -> bool {
    use kedge_source::RevisionSpec;
    match spec {
        RevisionSpec::Head => name == "HEAD",
        RevisionSpec::Ref(r) => name == r,
        RevisionSpec::Name(n) => {
            name.strip_prefix("refs/heads/") == Some(n.as_str())
                || name.strip_prefix("refs/tags/") == Some(n.as_str())
        }
        RevisionSpec::Semver(_) => name.starts_with("refs/tags/"),
        RevisionSpec::Sha(_) => false,
    }
}

/// Marks the repositories of `apps` as moved and queues the applications, for a push reported by a webhook.
///
/// When the push lists the files it changed (`changed`), the applications whose source path holds one of them are
/// queued first and the others a moment later: in a monorepo of a thousand applications the one that changed must
/// not wait for all the others to be compared. The others are still compared (their revision moves, and a render
/// can read files outside its path, e.g. a Kustomize base); only their turn comes later.
pub fn queue_pushed(
    moved_repos: &std::sync::Mutex<HashMap<String, Instant>>,
    admission: &Admission,
    triggers: &mpsc::UnboundedSender<ObjectRef<Application>>,
    apps: &[&Application],
    changed: Option<&[String]>,
) {
    let now = Instant::now();
    {
        let mut moved = moved_repos.lock().unwrap_or_else(|p| p.into_inner());
        for app in apps {
            moved.insert(app.spec.git_source().repo_url.clone(), now);
        }
    }
    let (first, later): (Vec<&Application>, Vec<&Application>) = apps.iter().partition(|app| {
        changed.is_none_or(|files| {
            files
                .iter()
                .any(|f| app.spec.source_paths().any(|p| path_holds(p, f)))
        })
    });
    for app in &first {
        if changed.is_some() {
            admission.expedite(&key_of(app));
        }
        let _ = triggers.send(ObjectRef::from_obj(*app));
    }
    if later.is_empty() {
        return;
    }
    let later: Vec<ObjectRef<Application>> =
        later.iter().map(|app| ObjectRef::from_obj(*app)).collect();
    let triggers = triggers.clone();
    tokio::spawn(async move {
        // Queued passes run in the order they were queued, but requests queued within the same moment leave the
        // controller runtime's timer in no set order: a short pause puts these behind the first ones.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for r in later {
            let _ = triggers.send(r);
        }
    });
}

/// Whether the application source path `path` holds the repository file `file` (the root holds every file).
fn path_holds(path: &str, file: &str) -> bool {
    let path = path.trim_start_matches("./").trim_matches('/');
    let file = file.trim_start_matches("./").trim_start_matches('/');
    path.is_empty()
        || path == "."
        || file
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, path: &str) -> Application {
        let mut app = Application::new(
            name,
            serde_json::from_value(serde_json::json!({
                "source": {"repoURL": "git://example.test/mono.git", "path": path},
                "destination": {},
            }))
            .expect("spec"),
        );
        app.metadata.namespace = Some("kedge".into());
        app
    }

    #[tokio::test]
    async fn applications_with_changed_files_are_queued_first() {
        let apps = [app("a", "apps/a"), app("b", "apps/b"), app("c", "apps/c")];
        let refs: Vec<&Application> = apps.iter().collect();
        let moved = std::sync::Mutex::default();
        let admission = Admission::new(1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        queue_pushed(
            &moved,
            &admission,
            &tx,
            &refs,
            Some(&["apps/c/cm.yaml".to_owned()]),
        );
        let mut order = Vec::new();
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("queued in time")
                .expect("sender alive");
            order.push(r.name);
        }
        assert_eq!(order[0], "c", "the changed application first: {order:?}");
        assert_eq!(order[1..], ["a", "b"], "then the others: {order:?}");
        assert!(
            moved
                .lock()
                .expect("lock")
                .contains_key("git://example.test/mono.git")
        );

        // Without a file list every application is queued at once.
        queue_pushed(&moved, &admission, &tx, &refs, None);
        for want in ["a", "b", "c"] {
            assert_eq!(rx.try_recv().expect("queued at once").name, want);
        }
    }

    #[test]
    fn a_poll_finds_the_files_the_tracked_refs_changed() {
        let fx = kedge_testkit::GitFixture::new().expect("fixture");
        fx.write("apps/a/cm.yaml", "a: 1\n").expect("write");
        fx.write("apps/b/cm.yaml", "b: 1\n").expect("write");
        fx.commit("one").expect("commit");
        fx.create_branch("feature").expect("branch");
        let dir = tempfile::tempdir().expect("tempdir");
        let source = Source::new(SourceConfig::new(dir.path().join("cache"))).expect("source");
        let repo =
            kedge_source::RepoSpec::new(&format!("file://{}", fx.path().display())).expect("url");
        let listing = |source: &Source| -> BTreeMap<String, String> {
            source
                .ls_remote(&repo)
                .expect("ls-remote")
                .into_iter()
                .map(|r| (r.name, r.commit))
                .collect()
        };
        // What the applications' passes fetched before.
        source
            .fetch(&kedge_source::FetchRequest::new(repo.clone(), "main"))
            .expect("fetch");
        let before = listing(&source);

        fx.write("apps/b/cm.yaml", "b: 2\n").expect("write");
        fx.commit("two").expect("commit");
        fx.switch("feature").expect("switch");
        fx.write("apps/a/cm.yaml", "a: 2\n").expect("write");
        fx.commit("feature work").expect("commit");
        fx.switch("main").expect("switch");
        let now = listing(&source);

        let targets = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Applications on the default branch: only main's change counts, not the feature branch's.
        assert_eq!(
            changed_files_since(&source, &repo, &targets(&["HEAD", "main"]), &before, &now),
            Some(vec!["apps/b/cm.yaml".to_owned()])
        );
        // No application tracks a moved ref: nothing to order by.
        assert_eq!(
            changed_files_since(&source, &repo, &targets(&["v1"]), &before, &now),
            Some(vec![])
        );
        // Applications on the feature branch (it started at the commit main's passes fetched).
        assert_eq!(
            changed_files_since(&source, &repo, &targets(&["feature"]), &before, &now),
            Some(vec!["apps/a/cm.yaml".to_owned()])
        );
        // A version constraint meeting a new tag cannot be compared.
        fx.tag("v1.0.0").expect("tag");
        let tagged = listing(&source);
        assert_eq!(
            changed_files_since(&source, &repo, &targets(&[">=1.0.0"]), &now, &tagged),
            None
        );
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused() {
        let ok = RunConfig::new("/tmp/kedge-test-cache", "me");
        assert!(ok.validate().is_ok());
        let mut slow_renewal = RunConfig::new("/tmp/kedge-test-cache", "me");
        slow_renewal.lease_renew_interval = Duration::from_secs(6);
        let err = slow_renewal.validate().expect_err("renewal too slow");
        assert!(
            err.to_string().contains("at most half the renew deadline"),
            "{err}"
        );
        // A leader must stop writing before another replica may take the Lease.
        let mut no_margin = RunConfig::new("/tmp/kedge-test-cache", "me");
        no_margin.lease_renew_deadline = no_margin.lease_duration;
        let err = no_margin
            .validate()
            .expect_err("deadline as long as the lease");
        assert!(
            err.to_string().contains("shorter than the lease duration"),
            "{err}"
        );
        let mut none = RunConfig::new("/tmp/kedge-test-cache", "me");
        none.concurrency = 0;
        assert!(none.validate().is_err());
    }

    #[test]
    fn a_path_holds_the_files_below_it() {
        assert!(path_holds("apps/web", "apps/web/deploy.yaml"));
        assert!(path_holds("./apps/web/", "apps/web/sub/x.yaml"));
        assert!(path_holds("", "anything.yaml"));
        assert!(path_holds(".", "a/b.yaml"));
        assert!(!path_holds("apps/web", "apps/web2/deploy.yaml"));
        assert!(!path_holds("apps/web", "apps/other/deploy.yaml"));
        assert!(!path_holds("apps/web", "apps/web"));
    }
}
