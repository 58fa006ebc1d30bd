//! The reconcile of one Application: compare with Git, sync when policy or an operation says so, report.
//!
//! A pass never touches the cluster when fetching, rendering or planning failed: the last good state keeps running,
//! the failure is reported as a condition and an event, and the next good commit recovers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kedge_api::{
    Application, ApplicationStatus, HealthCode, HealthStatus as ApiHealth, HistoryResult,
    NoticeKind, OPERATION_ANNOTATION, Operation, OperationPhase, OperationState, PromoteRequest,
    REFRESH_ANNOTATION, RESOURCES_FINALIZER, ResourceResult, ResourceStatus, SyncCode,
    SyncResult as ApiSyncResult, SyncStatus as ApiSyncStatus, TERMINATE_ANNOTATION, bound_results,
    join_bounded,
};
use kedge_engine::health::HealthStatus as EngineHealth;
use kedge_engine::plan::{Plan, SyncStatus as PlanStatus};
use kedge_engine::{Action as EngineAction, SyncOptions, SyncPhase};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef as CacheRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use crate::admission::Admission;
use crate::conditions::{self, READY, RECONCILING, SOURCE_VERIFIED, STALLED, SYNC_WINDOW};
use crate::decide::{self, Decision, Trigger};
use crate::drift::DriftWatcher;
use crate::events::{EventRecorder, Severity};
use crate::history;
use crate::intake;
use crate::leader::LeaderGuard;
use crate::metrics::{Metrics, ResultLabel};
use crate::pipeline::{
    Comparison, Pipeline, PipelineError, engine_spec, from_engine_id, inventory_of,
};
use crate::promotion;
use crate::trace::{self, phase_span};

/// Failure of a reconcile that kube-runtime should retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading the latest version of the Application failed.
    #[error("failed to read application {name}")]
    Read {
        /// namespace/name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the Application (status, annotations, finalizers) failed.
    #[error("failed to update application {name}")]
    Update {
        /// namespace/name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Pruning on deletion failed.
    #[error("failed to delete the resources of {name}: {message}")]
    Finalize {
        /// namespace/name.
        name: String,
        /// Why.
        message: String,
    },
    /// The patch that clears a request annotation (operation, refresh) could not be built.
    #[error("failed to clear a request annotation of {name}: {message}")]
    Clear {
        /// namespace/name.
        name: String,
        /// Why.
        message: String,
    },
    /// This replica stopped leading before it wrote the Application.
    #[error("did not update application {name}: this replica does not hold the leader lease")]
    NotLeader {
        /// namespace/name.
        name: String,
    },
}

/// Settings of the reconciler.
#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    /// How often each application is compared again without any trigger.
    pub resync_interval: Duration,
    /// How long the revision learned from Git stays fresh before a reconcile asks the remote again.
    pub poll_interval: Duration,
    /// First self-heal backoff when the same application keeps drifting.
    pub self_heal_backoff: Duration,
    /// Longest self-heal backoff.
    pub self_heal_backoff_max: Duration,
    /// How long a pass may skip the comparison of an application that nothing changed since a full pass found it
    /// Synced and Healthy (the watches report every change; this bounds how long Kedge trusts them alone).
    pub full_pass_interval: Duration,
    /// The namespace of the registered Clusters (Kedge's own).
    pub clusters_namespace: String,
    /// This replica's identity, written to `status.reconciledBy`.
    pub identity: String,
    /// Namespaces besides `clusters_namespace` whose Applications this controller reconciles (`kedge run
    /// --application-namespaces`); `None`: every namespace it watches.
    pub application_namespaces: Option<globset::GlobSet>,
}

impl ReconcileConfig {
    /// Whether Applications of `namespace` are this controller's to reconcile.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        match &self.application_namespaces {
            None => true,
            Some(globs) => namespace == self.clusters_namespace || globs.is_match(namespace),
        }
    }
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            clusters_namespace: "kedge".to_owned(),
            identity: "kedge".to_owned(),
            resync_interval: Duration::from_secs(180),
            poll_interval: Duration::from_secs(60),
            self_heal_backoff: Duration::from_secs(2),
            self_heal_backoff_max: Duration::from_secs(300),
            full_pass_interval: Duration::from_secs(1800),
            application_namespaces: None,
        }
    }
}

/// What the reconciler remembers between passes, per application (not persisted: a restart starts fresh).
#[derive(Debug, Default)]
struct AppMemory {
    /// Last revision resolved from the remote, and when.
    resolved: Option<(String, Instant)>,
    /// Self-heal attempts in a row without a clean comparison, and when the last one ran.
    heal_streak: u32,
    last_heal: Option<Instant>,
    /// Failed sync attempts of the current revision.
    retries: u32,
    last_retry: Option<Instant>,
    /// The newest resourceVersion of the Application itself this controller wrote or read.
    version: Option<String>,
    /// Set by a full pass that found everything Synced and Healthy and changed nothing.
    quiet: Option<QuietMark>,
    /// Every object with its state, when the status lists only some of them.
    resources: Option<Arc<Vec<ResourceStatus>>>,
    /// A HealthDegraded notice went out and no HealthRecovered since (the application may pass through
    /// Progressing on its way back to Healthy).
    degraded_notified: bool,
    /// When this controller last wrote the Application's status.
    status_written: Option<Instant>,
    /// A digest of the `warn` and `dryrun` policy violations last reported in a `PolicyWarning` event.
    policy_warnings: Option<u64>,
}

/// What a full pass that found nothing to do saw; a later pass that sees the same may skip the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QuietMark {
    inputs: u64,
    generation: Option<i64>,
    epoch: u64,
    at: Instant,
}

impl QuietMark {
    /// Whether `now` saw the same inputs as this mark (at this or another commit), and the mark is younger than
    /// `max_age`.
    fn still(&self, now: &QuietMark, max_age: Duration) -> bool {
        self.inputs == now.inputs
            && self.generation == now.generation
            && self.epoch == now.epoch
            && now.at.saturating_duration_since(self.at) < max_age
    }
}

/// When a progressing application is looked at again without a change of its objects, when one of its kinds is
/// not watched. (When every kind is watched, a change of any of its objects queues a pass at once, and so does a
/// watch listing its kind anew: see [`crate::admission::Admission::set_rolling`].)
const PROGRESS_FALLBACK: Duration = Duration::from_secs(10);

/// The message of the Ready condition of an application that is Synced and Healthy at `sha`.
fn synced_and_healthy(sha: &str) -> String {
    format!("synced to {} and healthy", short(sha))
}

fn inputs_digest(inputs: &[(String, String)], policies: Option<u64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    inputs.hash(&mut h);
    // The project's policies are inputs too: other policies must be checked again.
    policies.hash(&mut h);
    h.finish()
}

/// Everything a reconcile needs.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Fetch, render, plan.
    pub pipeline: Pipeline,
    /// Metrics.
    pub metrics: Metrics,
    /// Events on Applications.
    pub recorder: EventRecorder,
    /// Watches managed objects for drift.
    pub drift: DriftWatcher,
    /// Settings.
    pub config: ReconcileConfig,
    /// Whether this replica leads; followers do nothing.
    pub leader: LeaderGuard,
    /// Repositories whose refs moved since the applications using them were last reconciled.
    pub moved_repos: Arc<Mutex<HashMap<String, Instant>>>,
    /// The commit each (repository, revision) resolved to in some application's pass, and when: the applications
    /// of a monorepo resolve a branch once per poll interval between them, not each on its own.
    resolved_revisions: Mutex<HashMap<(String, String), (String, Instant)>>,
    memory: Mutex<HashMap<String, AppMemory>>,
    /// The controller's cache of Applications.
    apps: Store<Application>,
    /// The applications downstream of each (kept from the watch of Applications).
    pub dependents: Arc<crate::dependents::Dependents>,
    /// Admission of passes (see [`reconcile`]).
    pub admission: Arc<Admission>,
    /// The engines of the clusters applications deploy to.
    pub clusters: Arc<crate::clusters::ClusterPool>,
    /// This replica's share of the applications when replicas share them; `None` when one leader does all.
    pub shard: Option<crate::shard::Shard>,
    /// Where notices of what happened go (Alerts and Providers); `None`: nowhere.
    pub notifier: Option<kedge_notify::Notifier>,
    /// The Projects that bound what applications may deploy.
    pub projects: crate::projects::Projects,
    /// The compiled policies of the projects.
    pub policies: Arc<crate::policies::PolicyLoader>,
    /// Whether the controller counted as busy when last sampled, and when (see [`Context::busy`]).
    busy: Mutex<Option<(Instant, bool)>>,
}

impl Context {
    /// Assembles a context; the Kubernetes client is the pipeline's.
    pub fn new(
        pipeline: Pipeline,
        metrics: Metrics,
        recorder: EventRecorder,
        drift: DriftWatcher,
        config: ReconcileConfig,
        leader: LeaderGuard,
        apps: Store<Application>,
    ) -> Self {
        let clusters = Arc::new(crate::clusters::ClusterPool::new(
            pipeline.engine_arc(),
            pipeline.client().clone(),
            config.clusters_namespace.clone(),
            metrics.clone(),
            leader.clone(),
            drift.clone(),
        ));
        let projects = crate::projects::Projects::none(config.clusters_namespace.clone());
        let policies = Arc::new(crate::policies::PolicyLoader::new(
            pipeline.client().clone(),
            pipeline.source().clone(),
            pipeline.repository_secrets().clone(),
            config.poll_interval,
        ));
        // Charts see the capabilities of the cluster they deploy to.
        let pipeline = pipeline.with_clusters(clusters.clone());
        Self {
            clusters,
            admission: drift.admission(),
            client: pipeline.client().clone(),
            pipeline,
            metrics,
            recorder,
            drift,
            leader,
            moved_repos: Arc::default(),
            resolved_revisions: Mutex::default(),
            memory: Mutex::default(),
            apps,
            dependents: Arc::default(),
            config,
            shard: None,
            notifier: None,
            projects,
            policies,
            busy: Mutex::default(),
        }
    }

    /// Whether the controller is busy: at least [`BUSY`] passes wait for a slot, or as many of its applications are
    /// Progressing (a rollout of many at once). Sampled at most once a second (the second counts the cache).
    fn busy(&self) -> bool {
        let mut sample = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, busy)) = *sample
            && at.elapsed() < Duration::from_secs(1)
        {
            return busy;
        }
        let busy = self.admission.waiting() >= BUSY
            || self
                .apps
                .state()
                .iter()
                .filter(|a| {
                    a.status
                        .as_ref()
                        .is_some_and(|s| s.health.status == HealthCode::Progressing)
                })
                .take(BUSY)
                .count()
                >= BUSY;
        *sample = Some((Instant::now(), busy));
        busy
    }

    /// Enforces the Projects of `projects`.
    pub fn with_projects(mut self, projects: crate::projects::Projects) -> Self {
        self.projects = projects;
        self
    }

    /// Sends notices of what happens to applications to `notifier`.
    pub fn with_notifier(mut self, notifier: kedge_notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Tells the notifier that `kind` happened to `app` (at `revision`).
    fn notify(&self, kind: NoticeKind, app: &Application, revision: Option<&str>, message: &str) {
        if let Some(n) = &self.notifier {
            n.notify(kedge_notify::Notice::new(kind, app, revision, message));
        }
    }

    /// Shares the applications with other replicas: passes run only for this replica's share.
    pub fn with_shard(mut self, shard: crate::shard::Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Forgets what this controller remembers of applications that no longer exist (their memory, urgent marks)
    /// and of repositories that moved more than a day ago; how many applications were forgotten.
    pub fn forget_gone(&self) -> usize {
        let present: std::collections::HashSet<String> =
            self.apps.state().iter().map(|a| key_of(a)).collect();
        let forgotten = {
            let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|key, _| present.contains(key));
            before - map.len()
        };
        self.admission.retain(|key| present.contains(key));
        self.moved_repos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, at| at.elapsed() < std::time::Duration::from_secs(24 * 3600));
        let poll = self.config.poll_interval;
        self.resolved_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, at)| at.elapsed() < poll);
        forgotten
    }

    /// Every object of an application (`namespace/name`) with its state, as this controller last compared them,
    /// when there are more than the status lists ([`kedge_api::RESOURCES_LISTED`]); `None` otherwise (the status
    /// has them all) or when this replica has not compared the application.
    pub fn all_resources(&self, key: &str) -> Option<Arc<Vec<ResourceStatus>>> {
        let map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).and_then(|m| m.resources.clone())
    }

    fn with_memory<T>(&self, key: &str, f: impl FnOnce(&mut AppMemory) -> T) -> T {
        let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(key.to_owned()).or_default())
    }

    /// The commit the last pass of an application (`namespace/name`) resolved its spec's revision to, if a pass
    /// here has resolved one.
    pub(crate) fn resolved_commit(&self, key: &str) -> Option<String> {
        let map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)?.resolved.as_ref().map(|(sha, _)| sha.clone())
    }

    /// Remembers the version of an Application this controller just wrote or read.
    fn saw_version(&self, app: &Application) {
        let version = app.resource_version();
        self.with_memory(&key_of(app), |m| m.version = version);
    }

    /// The Application to act on. The cache can lag behind what this controller wrote a moment ago (a trigger
    /// queued during a pass runs right after it, before the watch delivers the write); deciding on that stale copy
    /// would sync a revision again, or drop history and inventory when the status is written back. So the cached
    /// copy is used only when its version is the newest this controller knows of; otherwise the Application is read.
    /// `None` when it is gone.
    async fn latest(
        &self,
        queued: Arc<Application>,
    ) -> Result<Option<Arc<Application>>, ReconcileError> {
        let key = key_of(&queued);
        // The copy handed over when the pass was queued may have aged while it waited for its turn.
        let cached = self
            .apps
            .get(&CacheRef::from_obj(queued.as_ref()))
            .unwrap_or(queued);
        let known = self.with_memory(&key, |m| m.version.clone());
        if known.is_none() || known == cached.resource_version() {
            self.saw_version(&cached);
            return Ok(Some(cached));
        }
        let api: Api<Application> =
            Api::namespaced(self.client.clone(), &cached.namespace().unwrap_or_default());
        match api.get_opt(&cached.name_any()).await {
            Ok(Some(read)) => {
                self.saw_version(&read);
                Ok(Some(Arc::new(read)))
            }
            Ok(None) => Ok(None),
            Err(source) => Err(ReconcileError::Read { name: key, source }),
        }
    }
}

/// The (repository, revision) an application's spec names, when what it resolves to is the same for every
/// application naming it: one Git source, not a chart repository.
fn shared_revision_key(app: &Application) -> Option<(String, String)> {
    if !app.spec.sources.is_empty() || kedge_helm::is_remote_chart(app) {
        return None;
    }
    let source = &app.spec.source;
    Some((source.repo_url.clone(), source.target_revision.clone()))
}

fn now_rfc3339() -> String {
    Timestamp::now().to_string()
}

/// `namespace/name` of an application: its key in the controller's memory, admission and live updates.
pub(crate) fn key_of(app: &Application) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// Reconciles one application.
///
/// Passes are admitted by [`Admission`]: in the order they were queued, urgent ones (drift, pushed changes, requested
/// operations) first, at most [`RunConfig::concurrency`](crate::runner::RunConfig::concurrency) at a time. A pass
/// that finds no slot leaves its application in the admission queue and ends; the admission asks for a pass again
/// when it keeps a slot for it. The controller runtime itself runs with no limit and only keeps one pass per
/// application: its own limit picks the next application from a hash set, so under a steady stream of triggers (drift
/// watches, health changes) the same applications won every free slot and others waited indefinitely.
pub async fn reconcile(app: Arc<Application>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let key = key_of(&app);
    // Another replica's application: nothing to do here (the shard queues it again if it becomes this replica's).
    if let Some(shard) = &ctx.shard
        && !shard.allows(&key)
    {
        ctx.admission.forget(&key);
        return Ok(Action::await_change());
    }
    // An application in a namespace this controller does not serve is not its own.
    if !ctx
        .config
        .serves_namespace(app.namespace().as_deref().unwrap_or_default())
    {
        ctx.admission.forget(&key);
        return Ok(Action::await_change());
    }
    if !ctx.leader.is_leading() {
        ctx.admission.forget(&key);
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // No free slot: the application waits in the admission queue, not here, and a pass is asked for again when a
    // slot is kept for it.
    let turn = ctx.admission.try_turn(&key);
    ctx.metrics
        .reconciles_waiting
        .set(i64::try_from(ctx.admission.waiting()).unwrap_or(i64::MAX));
    let Some(turn) = turn else {
        return Ok(Action::await_change());
    };
    ctx.metrics.queue_wait.observe(turn.waited.as_secs_f64());
    // The share may have moved while the application waited for its turn; from here on the claim holds until the
    // pass ends.
    let _held = match &ctx.shard {
        Some(shard) => match shard.start(&key) {
            Some(held) => Some(held),
            None => return Ok(Action::await_change()),
        },
        None => None,
    };
    // Leadership may have ended while the pass waited for its turn.
    if !ctx.leader.is_leading() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let started = Instant::now();
    let Some(app) = ctx.latest(app).await? else {
        return Ok(Action::await_change());
    };
    let span = tracing::info_span!("reconcile", app = %key);
    // The pass as a trace of its own (disabled, and free, without a trace exporter); the phases are its children.
    let pass = phase_span!(root "reconcile", &*app, kedge.decision = tracing::field::Empty);
    // Boxed: the pass is several kilobytes of state.
    let result = Box::pin(
        reconcile_inner(&app, &ctx, turn.urgent)
            .instrument(pass.clone())
            .instrument(span),
    )
    .await;
    if let Err(err) = &result {
        trace::fail(&pass, &error_chain(err));
    }
    drop(turn);
    let took = started.elapsed().as_secs_f64();
    ctx.metrics.reconcile_duration.observe(took);
    ctx.metrics
        .set_app_duration(&crate::metrics::AppLabels::of(&app), took);
    result
}

/// One pass over one Application, in phases: [`intake`](Pass::intake) (what was asked) -> [`target`](Pass::target)
/// (which revision and why) -> [`fetch`](Pass::fetch) (the revision rendered, verified and compared with the
/// cluster) -> [`decide`](Pass::decide) (a pure [`decide::decide`] of what the comparison calls for) ->
/// [`execute`](Pass::execute) (sync, dry-run, refuse or nothing) -> [`report`](Pass::report) (status, events,
/// requeue). Each phase hands the next a typed value; the status being built travels in the pass and is written
/// once at the end (and while a sync runs, as it progresses).
struct Pass<'a> {
    app: &'a Application,
    ctx: &'a Context,
    api: Api<Application>,
    /// `namespace/name`.
    key: String,
    generation: Option<i64>,
    /// When the pass started (RFC 3339).
    now: String,
    /// The status this pass writes.
    status: ApplicationStatus,
    /// With `spec.promotion` and nothing promoted yet: why automated syncs wait.
    promotion_hold: Option<String>,
    /// When to look again for the promotion (a candidate's soak ending).
    recheck: Option<Duration>,
}

/// What fetch hands on: the comparison, or the end of the pass (a failure reported, or nothing changed).
enum Fetched {
    /// The pass is over.
    Done(Action),
    /// The revision compared with the cluster.
    Compared(Box<Compared>),
}

/// A comparison and what the pass needs to remember about it.
struct Compared {
    comparison: Comparison,
    /// Marks the application quiet if the comparison finds nothing to do.
    quiet: QuietMark,
    /// Whether every kind it manages is watched for drift.
    all_watched: bool,
}

/// What execute hands on.
struct Executed {
    /// The plan after a sync, built from what the API server answered (the status shows it, not the one before).
    after: Option<Plan>,
    /// A failed sync's retry delay.
    retry_in: Option<Duration>,
    /// Whether the pass synced or dry-ran (it then does not mark the application quiet).
    acted: bool,
}

async fn reconcile_inner(
    app: &Application,
    ctx: &Context,
    urgent: bool,
) -> Result<Action, ReconcileError> {
    // Read first: a change marked after this point makes the next pass a full one.
    let epoch = ctx.admission.epoch();
    if app.meta().deletion_timestamp.is_some() {
        return finalize(app, ctx).await;
    }
    let mut pass = Pass {
        app,
        ctx,
        api: Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default()),
        key: key_of(app),
        generation: app.meta().generation,
        now: now_rfc3339(),
        status: app.status.clone().unwrap_or_default(),
        promotion_hold: None,
        recheck: None,
    };
    let (intake, operation) = pass.intake().await?;
    let target = pass.target(operation.as_ref()).await;
    let compared = match pass
        .fetch(&target, urgent || intake.requested(), epoch)
        .await?
    {
        Fetched::Done(action) => return Ok(action),
        Fetched::Compared(c) => c,
    };
    let decision = pass.decide(&compared.comparison, &target);
    let mut executed = pass
        .execute(decision, &compared.comparison, &target, &intake)
        .await?;
    if let Some(at) = pass.recheck {
        executed.retry_in = Some(executed.retry_in.map_or(at, |r| r.min(at)));
    }
    pass.report(*compared, executed, intake.requested()).await
}

impl Pass<'_> {
    /// Intake: what this pass is asked to do. A requested operation is recorded as Running before its annotation is
    /// cleared; one left Running by a controller that went away is resumed; a refresh drops what is remembered.
    async fn intake(&mut self) -> Result<(intake::Intake, Option<Operation>), ReconcileError> {
        let (app, ctx) = (self.app, self.ctx);
        let intake = intake::read(app);
        let operation =
            take_operation(app, ctx, &self.api, &mut self.status, &intake, &self.now).await?;
        if let Some(refresh) = intake.refresh {
            // Cleared only if it still asks for the same: a hard refresh asked for meanwhile stays for the next pass.
            let raw = app
                .annotations()
                .get(REFRESH_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            clear_annotation(&self.api, app, REFRESH_ANNOTATION, &raw, ctx).await?;
            ctx.with_memory(&self.key, |m| m.resolved = None);
            if refresh == intake::Refresh::Hard {
                ctx.pipeline.engine().clear_cache();
            }
        }
        Ok((intake, operation))
    }

    /// Target: which revision, and what was asked of it. Without an operation, a recent resolution of the spec's
    /// revision is reused, unless the poller or a webhook saw the repository move since.
    async fn target(&mut self, operation: Option<&Operation>) -> decide::Target {
        let ctx = self.ctx;
        let fresh = {
            let moved_at = {
                let moved = ctx.moved_repos.lock().unwrap_or_else(|p| p.into_inner());
                moved.get(&self.app.spec.git_source().repo_url).copied()
            };
            let usable = |at: &Instant| {
                at.elapsed() < ctx.config.poll_interval && moved_at.is_none_or(|moved| moved < *at)
            };
            let own = ctx.with_memory(&self.key, |m| {
                m.resolved
                    .as_ref()
                    .filter(|(_, at)| usable(at))
                    .map(|(sha, _)| sha.clone())
            });
            own.or_else(|| {
                let key = shared_revision_key(self.app)?;
                let shared = ctx
                    .resolved_revisions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                shared
                    .get(&key)
                    .filter(|(_, at)| usable(at))
                    .map(|(sha, _)| sha.clone())
            })
        };
        let mut target = decide::target(operation, &self.status.history, fresh);
        if let Err(e) = self.promote(operation, &mut target).await {
            tracing::debug!(error = %e, "cannot take the promotion request");
        }
        if let Some(msg) = &target.failed {
            ctx.recorder
                .publish(self.app, Severity::Warning, "RollbackFailed", msg)
                .await;
            finish_operation(
                &mut self.status,
                OperationPhase::Failed,
                msg.clone(),
                &self.now,
                None,
            );
        }
        target
    }

    /// Promotion (`spec.promotion`): a person's request taken, the upstream's candidate promoted as the approval
    /// allows, and the revision promoted here made the target, unless the operation names one.
    async fn promote(
        &mut self,
        operation: Option<&Operation>,
        target: &mut decide::Target,
    ) -> Result<(), ReconcileError> {
        let (app, ctx) = (self.app, self.ctx);
        let Some(spec) = app.spec.promotion.as_ref() else {
            self.status.promotion = None;
            return Ok(());
        };
        let key = promotion::upstream_key(app, spec);
        if spec.from.ready_expr.is_some() {
            self.promotion_hold = Some(
                "spec.promotion.from.readyExpr is not supported: the upstream's Ready condition and the soak decide \
                 (readyExpr belongs in spec.dependsOn)"
                    .into(),
            );
            return Ok(());
        }
        if key == self.key {
            self.promotion_hold = Some("spec.promotion.from names this application itself".into());
            return Ok(());
        }
        let soak = match promotion::soak(spec) {
            Ok(soak) => soak,
            Err(e) => {
                self.promotion_hold = Some(e);
                return Ok(());
            }
        };
        let upstream = key
            .split_once('/')
            .and_then(|(ns, name)| ctx.apps.get(&CacheRef::new(name).within(ns)));
        let candidate =
            promotion::candidate(upstream.as_deref(), &key, soak, jiff::Timestamp::now());
        let raw = app
            .annotations()
            .get(kedge_api::PROMOTE_ANNOTATION)
            .cloned();
        let (request, invalid) = match raw.as_deref().map(serde_json::from_str::<PromoteRequest>) {
            Some(Ok(r)) => (Some(r), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let old = self
            .status
            .promotion
            .as_deref()
            .cloned()
            .unwrap_or_default();
        let step = promotion::step(
            spec,
            old.clone(),
            &key,
            candidate,
            request.as_ref(),
            &self.now,
        );
        if let Some(invalid) = invalid {
            let message = format!(
                "ignored invalid {} annotation: {invalid}",
                kedge_api::PROMOTE_ANNOTATION
            );
            ctx.recorder
                .publish(app, Severity::Warning, "PromotionRefused", &message)
                .await;
        }
        if let Some(why) = &step.refused {
            ctx.recorder
                .publish(app, Severity::Warning, "PromotionRefused", why)
                .await;
        }
        if let Some(p) = &step.promoted {
            let message = format!(
                "revision {} promoted from {} (approved by {})",
                short(&p.revision),
                p.from,
                p.approved_by
            );
            ctx.recorder
                .publish(app, Severity::Normal, "Promoted", &message)
                .await;
        }
        if step.status.pending.is_some() && step.status.pending != old.pending {
            ctx.recorder
                .publish(
                    app,
                    Severity::Normal,
                    "PromotionPending",
                    &step.status.waiting,
                )
                .await;
        }
        self.recheck = step.recheck;
        let explicit = operation.is_some_and(|o| {
            o.rollback.is_some() || o.sync.as_ref().is_some_and(|s| s.revision.is_some())
        });
        match &step.status.revision {
            Some(rev) if !explicit => target.revision = Some(rev.clone()),
            Some(_) => {}
            None => {
                self.promotion_hold = Some(format!(
                    "nothing promoted from {key} yet: {}",
                    if step.status.waiting.is_empty() {
                        "no candidate"
                    } else {
                        &step.status.waiting
                    }
                ));
            }
        }
        self.status.promotion = Some(Box::new(step.status));
        // Taken (or refused) once: cleared only if it still asks for the same.
        if let Some(raw) = raw {
            clear_annotation(&self.api, app, kedge_api::PROMOTE_ANNOTATION, &raw, ctx).await?;
        }
        Ok(())
    }

    /// Fetch: the target revision fetched, verified, rendered and compared with the cluster, unless nothing changed
    /// since a full pass found everything Synced and Healthy (`full` forces the comparison: something was asked for
    /// or a change is known). A failure is reported and ends the pass.
    async fn fetch(
        &mut self,
        target: &decide::Target,
        full: bool,
        epoch: u64,
    ) -> Result<Fetched, ReconcileError> {
        let (app, ctx) = (self.app, self.ctx);
        let previous_sha = self.status.sync.revision.clone();
        // Only a fresh resolution of the spec's revision may be reused; an operation's explicit revision must not be.
        let resolving_spec = target.revision.is_none();
        // The project first: a repository or destination it does not allow is not even fetched.
        let project = match ctx.projects.admit_app(app) {
            Ok(p) => p,
            Err(denied) => {
                let status = std::mem::take(&mut self.status);
                return Ok(Fetched::Done(
                    report_failure(
                        app,
                        ctx,
                        &self.api,
                        status,
                        PipelineError::NotPermitted(denied.to_string()),
                    )
                    .await?,
                ));
            }
        };
        let started = Instant::now();
        let rendered = ctx
            .pipeline
            .render(app, target.revision.as_deref(), previous_sha.clone())
            .await;
        ctx.metrics
            .render_duration
            .get_or_create(&crate::metrics::RepoLabel::of(
                &app.spec.primary_source().repo_url,
            ))
            .observe(started.elapsed().as_secs_f64());
        let (revision, rendered) = match rendered {
            Ok(r) => {
                // The pass span (already recorded when the fetch resolved the commit; a chart's version is known
                // only now).
                trace::revision(&tracing::Span::current(), &r.revision.sha);
                set_source_verified(app, &mut self.status, &r, self.generation, &self.now);
                (r.revision, r.out)
            }
            Err(err) => {
                let status = std::mem::take(&mut self.status);
                return Ok(Fetched::Done(
                    report_failure(app, ctx, &self.api, status, err).await?,
                ));
            }
        };
        if resolving_spec {
            // As of when the fetch started, not when it ended: a fetch that began before a push and ended after the
            // poller (or a webhook) marked the repository moved must not pass for a resolution made after the move,
            // or the passes that push queued would reuse the old commit and stay behind until their resync.
            ctx.with_memory(&self.key, |m| {
                m.resolved = Some((revision.sha.clone(), started))
            });
            if let Some(key) = shared_revision_key(app) {
                ctx.resolved_revisions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (revision.sha.clone(), started));
            }
        }
        // The project's policies, compiled (cached per project and version of its sources); a source that cannot
        // be read refuses the sync, since skipping its policies would let through what they deny.
        let policies = match &project {
            Some(p) => match ctx.policies.load(p).await {
                Ok(policies) => policies,
                Err(err) => {
                    let status = std::mem::take(&mut self.status);
                    return Ok(Fetched::Done(
                        report_failure(app, ctx, &self.api, status, err).await?,
                    ));
                }
            },
            None => None,
        };
        let quiet = QuietMark {
            inputs: inputs_digest(
                &rendered.rendered.inputs,
                policies.as_ref().map(|p| p.digest),
            ),
            generation: self.generation,
            epoch,
            at: Instant::now(),
        };
        let unchanged = !full
            && !matches!(revision.history, kedge_source::HistoryChange::Rewritten)
            && ctx.with_memory(&self.key, |m| {
                m.quiet
                    .as_ref()
                    .is_some_and(|q| q.still(&quiet, ctx.config.full_pass_interval))
            });
        if unchanged {
            // Nothing changed since the last full pass found everything Synced and Healthy: same rendered inputs,
            // same spec, and no change to any of its objects (the drift watches would have marked the application
            // urgent). Comparing again would read every object to find the same. A new commit that leaves this
            // application's inputs as they were (another path of a monorepo) only moves the revision it is synced to.
            ctx.metrics.quiet_passes.inc();
            let status = &mut self.status;
            // What the promotion says (e.g. why the upstream offers nothing) changes without any change here.
            let promotion_changed =
                status.promotion.as_ref() != app.status.as_ref().and_then(|s| s.promotion.as_ref());
            let moved = status.sync.revision.as_deref() != Some(revision.sha.as_str());
            if moved {
                status.sync.revision = Some(revision.sha.clone());
                status.sync.short_revision = Some(short(&revision.sha).to_owned());
                status.reconciled_at = Some(self.now.clone());
                conditions::set(
                    &mut status.conditions,
                    READY,
                    true,
                    "Synced",
                    synced_and_healthy(&revision.sha),
                    self.generation,
                    &self.now,
                );
            }
            if moved || promotion_changed {
                patch_status(&self.api, app, status, false, ctx).await?;
            }
            // A soak that ends before the next resync is looked at when it ends.
            let next = self.recheck.map_or(ctx.config.resync_interval, |r| {
                r.min(ctx.config.resync_interval)
            });
            return Ok(Fetched::Done(Action::requeue(next)));
        }
        ctx.with_memory(&self.key, |m| m.quiet = None);
        let plan_span = phase_span!(
            "plan",
            app,
            kedge.objects = tracing::field::Empty,
            kedge.sync_status = tracing::field::Empty
        );
        trace::revision(&plan_span, &revision.sha);
        let mut reported = Vec::new();
        let planned = async {
            match engine_of(ctx, app).await {
                Ok((cluster, engine)) => {
                    // Every object within the project and its policies, before a single request about them.
                    if let Some(project) = &project {
                        reported = permitted(
                            project,
                            app,
                            &rendered.rendered,
                            &engine,
                            policies.as_ref().map(|p| &p.set),
                        )
                        .await?;
                    }
                    ctx.pipeline
                        .plan_on(engine, app, revision, rendered.rendered)
                        .await
                        .map_err(|e| match (cluster, e) {
                            // Another cluster that does not answer: say which, and that it is the cluster.
                            (Some(name), PipelineError::Engine(e)) => PipelineError::Cluster(
                                format!("cluster {name}: {}", error_chain(&e)),
                            ),
                            (_, e) => e,
                        })
                }
                Err(e) => Err(e),
            }
        }
        .instrument(plan_span.clone())
        .await;
        match &planned {
            Ok(c) => {
                plan_span.record("kedge.objects", c.plan.objects.len());
                plan_span.record(
                    "kedge.sync_status",
                    if c.plan.is_synced() && c.plan.prune.is_empty() {
                        "Synced"
                    } else {
                        "OutOfSync"
                    },
                );
            }
            Err(err) => trace::fail(&plan_span, &error_chain(err)),
        }
        drop(plan_span);
        if planned.is_ok() {
            self.report_policy_warnings(&reported).await;
        }
        let comparison = match planned {
            Ok(c) => c,
            Err(err) => {
                let status = std::mem::take(&mut self.status);
                return Ok(Fetched::Done(
                    report_failure(app, ctx, &self.api, status, err).await?,
                ));
            }
        };
        if matches!(
            comparison.revision.history,
            kedge_source::HistoryChange::Rewritten
        ) {
            let msg = format!(
                "the tracked ref was rewritten (force-push): {} is no longer an ancestor of {}",
                previous_sha.as_deref().unwrap_or("?"),
                comparison.revision.sha
            );
            ctx.recorder
                .publish(app, Severity::Warning, "HistoryRewritten", &msg)
                .await;
        }
        // Drift is watched on every cluster, with one set of watches per cluster shared by its applications.
        let all_watched = match ctx.clusters.drift_of(&comparison.engine) {
            Some(drift) => {
                drift
                    .ensure_kinds(
                        comparison
                            .plan
                            .objects
                            .iter()
                            .map(|o| (o.api_version.clone(), o.id.kind.clone())),
                    )
                    .await
            }
            // Its engine was replaced meanwhile (new credentials): the next pass watches with the new one.
            None => false,
        };
        Ok(Fetched::Compared(Box::new(Compared {
            comparison,
            quiet,
            all_watched,
        })))
    }

    /// Reports the `warn` and `dryrun` policy violations in a `PolicyWarning` event, once per set of messages
    /// (not at every pass); a set that clears is forgotten, so that its return is reported again.
    async fn report_policy_warnings(&self, reported: &[String]) {
        let (app, ctx) = (self.app, self.ctx);
        let digest = (!reported.is_empty()).then(|| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            reported.hash(&mut h);
            h.finish()
        });
        let changed = ctx.with_memory(&self.key, |m| {
            std::mem::replace(&mut m.policy_warnings, digest) != digest
        });
        if changed && digest.is_some() {
            // Only dryrun findings are no warning.
            let severity = if reported.iter().all(|r| r.starts_with("dryrun ")) {
                Severity::Normal
            } else {
                Severity::Warning
            };
            let message = format!(
                "reported by policy, the sync goes on: {}",
                crate::policies::bounded(reported)
            );
            tracing::info!(message, "policy violations reported");
            ctx.recorder
                .publish(app, severity, "PolicyWarning", &message)
                .await;
        }
    }

    /// Decide: gathers the facts of the comparison and what this controller remembers (backoffs), and counts the
    /// retry or self-heal the pure decision takes.
    fn decide(&self, comparison: &Comparison, target: &decide::Target) -> Decision {
        let (app, ctx, key, status) = (self.app, self.ctx, self.key.as_str(), &self.status);
        let plan = &comparison.plan;
        let synced = plan.is_synced() && plan.prune.is_empty();
        let automated = app
            .spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automation().cloned());
        let last_synced = status
            .operation_state
            .as_ref()
            .and_then(|o| o.sync_result.as_ref());
        // A new commit, or a new spec at the same commit (a sync recorded without its generation counts as made for
        // this one).
        let new_target = last_synced.is_none_or(|r| {
            r.revision != comparison.revision.sha
                || r.generation.is_some_and(|g| Some(g) != self.generation)
        });
        // The project's sync windows, read now; then the applications this one depends on.
        let window = ctx.projects.window_verdict(app, jiff::Timestamp::now());
        let dependencies = dependency_state(&ctx.apps, app);
        let waiting = match &dependencies {
            Dependencies::Waiting(reason) => Some(kedge_api::Hold {
                reason: reason.clone(),
                until: None,
                by: kedge_api::HoldBy::Dependencies,
            }),
            _ => None,
        };
        let rollout = rollout_hold(app, &comparison.revision.sha);
        let promotion = self.promotion_hold.clone().map(|reason| kedge_api::Hold {
            reason,
            until: None,
            by: kedge_api::HoldBy::Promotion,
        });
        let decision = decide::decide(decide::Facts {
            held_automated: window.automated.or(waiting).or(rollout).or(promotion),
            held_manual: window.manual,
            requested: target.requested.clone(),
            dry_run: target.dry_run,
            suspended: app.spec.suspend,
            synced,
            automated: automated.is_some(),
            self_heal: automated.as_ref().is_some_and(|a| a.self_heal),
            new_target,
            last_failed: status
                .operation_state
                .as_ref()
                .is_some_and(|o| o.phase == OperationPhase::Failed),
            retry_policy: retry_policy(app).is_some(),
            retry_due: retry_due(app, ctx, key),
            heals_something: automated
                .as_ref()
                .is_some_and(|a| heals_something(plan, a.prune)),
            heal_due: heal_due(ctx, key),
            // A plan with objects that cannot be applied (unknown kind, rejected by the dry run, invalid manifest)
            // is not synced at all: applying the rest would leave the cluster at half a commit.
            blocked: plan
                .objects
                .iter()
                .filter(|o| o.status == PlanStatus::Error)
                .map(|o| format!("{}: {}", o.id, o.message))
                .chain(plan.invalid.iter().cloned())
                .chain(match dependencies {
                    Dependencies::Cycle(cycle) => Some(format!("dependency cycle: {cycle}")),
                    Dependencies::Invalid(why) => Some(why.clone()),
                    _ => None,
                })
                .collect(),
        });
        if synced {
            ctx.with_memory(key, |m| m.heal_streak = 0);
        }
        tracing::Span::current().record(
            "kedge.decision",
            match &decision {
                Decision::Observe => "observe",
                Decision::Sync(_) => "sync",
                Decision::DryRun => "dry-run",
                Decision::Refuse { .. } => "refuse",
                Decision::Held { .. } => "held",
            },
        );
        if let Decision::Sync(t) | Decision::Refuse { trigger: t, .. } = &decision {
            match t {
                Trigger::Retry => record_retry(ctx, key),
                Trigger::SelfHeal => record_heal(ctx, key),
                _ => {}
            }
        }
        decision
    }

    /// Execute: the decision carried out.
    async fn execute(
        &mut self,
        decision: Decision,
        comparison: &Comparison,
        target: &decide::Target,
        intake: &intake::Intake,
    ) -> Result<Executed, ReconcileError> {
        let (app, ctx) = (self.app, self.ctx);
        let plan = &comparison.plan;
        let mut executed = Executed {
            after: None,
            retry_in: None,
            acted: matches!(decision, Decision::Sync(_) | Decision::DryRun),
        };
        let held_by = match &decision {
            Decision::Held { hold, .. } => Some(hold.by),
            _ => None,
        };
        if held_by != Some(kedge_api::HoldBy::Window) {
            conditions::remove(&mut self.status.conditions, SYNC_WINDOW);
        }
        if held_by != Some(kedge_api::HoldBy::Dependencies) {
            conditions::remove(
                &mut self.status.conditions,
                conditions::WAITING_FOR_DEPENDENCIES,
            );
        }
        if held_by != Some(kedge_api::HoldBy::Rollout) {
            conditions::remove(&mut self.status.conditions, conditions::WAITING_FOR_ROLLOUT);
        }
        if held_by != Some(kedge_api::HoldBy::Promotion) {
            conditions::remove(
                &mut self.status.conditions,
                conditions::WAITING_FOR_PROMOTION,
            );
        }
        match decision {
            Decision::Observe => {}
            Decision::Held { hold, .. }
                if matches!(
                    hold.by,
                    kedge_api::HoldBy::Dependencies
                        | kedge_api::HoldBy::Rollout
                        | kedge_api::HoldBy::Promotion
                ) =>
            {
                // Waiting is a state of its own, not an error: the dependencies queue this application when they
                // become ready, the set's rollout when it releases it (and the periodic pass checks again).
                let kind = match hold.by {
                    kedge_api::HoldBy::Rollout => conditions::WAITING_FOR_ROLLOUT,
                    kedge_api::HoldBy::Promotion => conditions::WAITING_FOR_PROMOTION,
                    _ => conditions::WAITING_FOR_DEPENDENCIES,
                };
                let changed = !self
                    .status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == kind && c.message == hold.reason);
                conditions::set(
                    &mut self.status.conditions,
                    kind,
                    true,
                    "Waiting",
                    hold.reason.clone(),
                    self.generation,
                    &self.now,
                );
                if changed {
                    ctx.recorder
                        .publish(app, Severity::Normal, kind, &hold.reason)
                        .await;
                }
                executed.retry_in = Some(Duration::from_secs(30).min(ctx.config.resync_interval));
            }
            Decision::Held { trigger, hold } => {
                let message = format!("sync held by a sync window: {}", hold.reason);
                let changed = !self
                    .status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == SYNC_WINDOW && c.message == message);
                conditions::set(
                    &mut self.status.conditions,
                    SYNC_WINDOW,
                    true,
                    "Held",
                    message.clone(),
                    self.generation,
                    &self.now,
                );
                if changed {
                    ctx.recorder
                        .publish(app, Severity::Normal, "SyncHeld", &message)
                        .await;
                }
                if matches!(trigger, Trigger::Operation(_) | Trigger::Rollback(_)) {
                    // A requested sync does not wait: it ends, saying why, and may be asked for again.
                    finish_operation(
                        &mut self.status,
                        OperationPhase::Failed,
                        message,
                        &now_rfc3339(),
                        None,
                    );
                }
                // Come back when the window allows (the periodic pass comes sooner if it is due first).
                if let Some(until) = hold.until {
                    let wait = until
                        .duration_since(jiff::Timestamp::now())
                        .unsigned_abs()
                        .max(Duration::from_secs(1));
                    executed.retry_in = Some(wait.min(ctx.config.resync_interval));
                }
            }
            Decision::Refuse {
                trigger: refused,
                blocked,
            } => {
                // The message leaves out what asked for the sync, so that an automated attempt and the self-heal or
                // retry attempts after it publish one event, not one each.
                tracing::warn!(trigger = %refused.initiated_by(), "sync refused: objects cannot be applied");
                let message = format!(
                    "sync of {} refused, nothing was applied: {} object(s) cannot be applied: {}",
                    short(&comparison.revision.sha),
                    blocked.len(),
                    join_bounded(&blocked, 20, "; ")
                );
                let repeated = self
                    .status
                    .operation_state
                    .as_ref()
                    .is_some_and(|o| o.phase == OperationPhase::Failed && o.message == message);
                if !repeated {
                    ctx.recorder
                        .publish(app, Severity::Warning, "SyncFailed", &message)
                        .await;
                    ctx.notify(
                        NoticeKind::SyncFailed,
                        app,
                        Some(&comparison.revision.sha),
                        &message,
                    );
                }
                finish_operation(
                    &mut self.status,
                    OperationPhase::Failed,
                    message,
                    &now_rfc3339(),
                    Some(ApiSyncResult {
                        revision: comparison.revision.sha.clone(),
                        generation: self.generation,
                        ..ApiSyncResult::default()
                    }),
                );
                // A rollback asks to stop following Git: refused or not, automated sync must not go back to what
                // the user rolled back from.
                if let Trigger::Rollback(id) = refused {
                    suspend(
                        &self.api,
                        app,
                        ctx,
                        &format!(
                            "rollback to history id {id} refused (see SyncFailed); automated sync is suspended \
                             until the application is resumed"
                        ),
                    )
                    .await?;
                }
            }
            Decision::Sync(trigger) => {
                let apply_span = phase_span!(
                    "apply",
                    app,
                    kedge.trigger = %trigger.initiated_by(),
                    kedge.sync_phase = tracing::field::Empty
                );
                trace::revision(&apply_span, &comparison.revision.sha);
                let outcome = run_sync(
                    app,
                    ctx,
                    &mut self.status,
                    comparison,
                    &trigger,
                    target,
                    intake.terminate.as_deref(),
                )
                .instrument(apply_span.clone())
                .await
                .inspect_err(|err| trace::fail(&apply_span, &error_chain(err)))?;
                if let Some(state) = &self.status.operation_state {
                    apply_span.record("kedge.sync_phase", tracing::field::debug(state.phase));
                    if outcome.is_err() {
                        trace::fail(&apply_span, &state.message);
                    }
                }
                drop(apply_span);
                if let Trigger::Rollback(id) = trigger {
                    suspend_after_rollback(&self.api, app, id, ctx).await?;
                }
                // Status shows the state after the sync, not before it: built from what the API server returned to
                // the sync, without reading every object again.
                match outcome {
                    Ok(result) => match comparison.engine.plan_after_sync(plan, &result) {
                        Ok(after) => executed.after = Some(after),
                        Err(err) => tracing::warn!(error = %err, "plan after sync failed"),
                    },
                    Err(()) => executed.retry_in = Some(retry_delay(app, ctx, &self.key)),
                }
            }
            Decision::DryRun => {
                let msg = format!(
                    "dry run: {} object(s) would change, {} would be pruned",
                    plan.to_apply().count(),
                    plan.prune.len()
                );
                ctx.recorder
                    .publish(app, Severity::Normal, "DryRun", &msg)
                    .await;
                finish_operation(
                    &mut self.status,
                    OperationPhase::Succeeded,
                    msg,
                    &now_rfc3339(),
                    None,
                );
            }
        }
        Ok(executed)
    }

    /// Report: the status written from the comparison (or the plan after the sync), a health change as an event,
    /// the quiet mark, and when to come back.
    async fn report(
        mut self,
        compared: Compared,
        executed: Executed,
        requested: bool,
    ) -> Result<Action, ReconcileError> {
        let (app, ctx) = (self.app, self.ctx);
        let Compared {
            comparison,
            quiet,
            all_watched,
        } = compared;
        let plan_for_status = executed.after.as_ref().unwrap_or(&comparison.plan);
        let mut requeue = executed.retry_in.unwrap_or(ctx.config.resync_interval);
        // Health as the engine assessed it (with the plan, or from what a sync applied), turned into the status.
        let health_span = phase_span!(
            "health",
            app,
            kedge.health = tracing::field::Empty,
            kedge.sync_status = tracing::field::Empty
        );
        trace::revision(&health_span, &comparison.revision.sha);
        let full = health_span.in_scope(|| {
            fill_status(
                &mut self.status,
                &comparison,
                plan_for_status,
                self.generation,
                &self.now,
                app,
            )
        });
        health_span.record(
            "kedge.health",
            tracing::field::debug(self.status.health.status),
        );
        health_span.record(
            "kedge.sync_status",
            tracing::field::debug(self.status.sync.status),
        );
        drop(health_span);
        ctx.with_memory(&self.key, |m| m.resources = full);
        let status = &self.status;
        let unsettled = plan_for_status.health != EngineHealth::Healthy
            && plan_for_status.health != EngineHealth::Suspended;
        // Status changes of the objects themselves queue a pass through the drift watches, and a watch that lists
        // its kind anew queues the applications marked rolling. A timer is only a fallback for a kind that is not
        // watched (yet). (With 10,000 applications waiting for their Deployments, a pass every 30 s for each kept
        // the workers busy finding what the watches would have reported: a third of the controller's CPU.)
        ctx.admission
            .set_rolling(&self.key, unsettled && all_watched);
        if unsettled && !all_watched {
            requeue = requeue.min(PROGRESS_FALLBACK);
        }
        let self_heal = app
            .spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automation())
            .is_some_and(|a| a.self_heal);
        if status.sync.status == SyncCode::OutOfSync && self_heal && !app.spec.suspend {
            requeue = requeue.min(heal_wait(ctx, &self.key));
        }
        let old_health = app.status.as_ref().map(|s| s.health.status);
        let new_health = status.health.status;
        if old_health.is_some_and(|h| h != new_health) {
            let msg = format!(
                "health changed to {:?}{}",
                status.health.status,
                status
                    .health
                    .message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            let sev = if status.health.status == HealthCode::Degraded {
                Severity::Warning
            } else {
                Severity::Normal
            };
            ctx.recorder.publish(app, sev, "HealthChanged", &msg).await;
            let revision = status.sync.revision.as_deref();
            if new_health == HealthCode::Degraded {
                ctx.with_memory(&self.key, |m| m.degraded_notified = true);
                ctx.notify(NoticeKind::HealthDegraded, app, revision, &msg);
            } else if new_health == HealthCode::Healthy
                && (old_health == Some(HealthCode::Degraded)
                    || ctx.with_memory(&self.key, |m| m.degraded_notified))
            {
                ctx.with_memory(&self.key, |m| m.degraded_notified = false);
                ctx.notify(NoticeKind::HealthRecovered, app, revision, &msg);
            }
        }
        // Drift that is not reverted: the application was Synced at this revision and a live change made it
        // OutOfSync. (With self-heal, the sync that reverts it tells.)
        let old_sync = app
            .status
            .as_ref()
            .map(|s| (s.sync.status, s.sync.revision.clone()));
        if !self_heal
            && status.sync.status == SyncCode::OutOfSync
            && old_sync.as_ref().is_some_and(|(code, rev)| {
                *code == SyncCode::Synced && rev.is_some() && *rev == status.sync.revision
            })
        {
            let drifted: Vec<String> = plan_for_status
                .objects
                .iter()
                .filter(|o| o.status == PlanStatus::OutOfSync)
                .map(|o| o.id.to_string())
                .collect();
            let msg = format!(
                "live state differs from Git: {}",
                join_bounded(&drifted, 20, "; ")
            );
            ctx.recorder
                .publish(app, Severity::Normal, "DriftDetected", &msg)
                .await;
            ctx.notify(
                NoticeKind::DriftDetected,
                app,
                status.sync.revision.as_deref(),
                &msg,
            );
        }
        // A rollout's progress (health messages while it stays Progressing) is written at most every few seconds,
        // and not while the controller is busy: each step of every Deployment's rollout would otherwise be a write.
        // The state itself (sync, health, operation) is written at once.
        let progress_only = !requested
            && app
                .status
                .as_ref()
                .is_some_and(|old| only_progress_moved(old, status));
        let since = if progress_only {
            ctx.with_memory(&self.key, |m| m.status_written.map(|at| at.elapsed()))
        } else {
            None
        };
        // Whether busy matters only for a progress-only status; asked only then, since it may look at every
        // application.
        match held_progress(progress_only, since, progress_only && ctx.busy()) {
            HeldProgress::Write => patch_status(&self.api, app, status, requested, ctx).await?,
            HeldProgress::PassIn(left) => requeue = requeue.min(left),
            HeldProgress::Kept => {}
        }
        // Applications waiting for this one go as soon as it is ready; the stages promoted from it learn at once
        // that it is not ready any more.
        if standing(Some(status)) != standing(app.status.as_ref()) {
            queue_dependents(ctx, app, standing(Some(status)));
        }
        // Later passes may skip the comparison only while the watches would report a change to any of its objects.
        if !executed.acted
            && all_watched
            && status.sync.status == SyncCode::Synced
            && status.health.status == HealthCode::Healthy
            && status
                .conditions
                .iter()
                .all(|c| c.type_ != READY || c.status == "True")
        {
            ctx.with_memory(&self.key, |m| m.quiet = Some(quiet));
        }
        Ok(Action::requeue(requeue))
    }
}

/// Where the applications an application depends on stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dependencies {
    /// None, or all Synced and Healthy with no operation running.
    Ready,
    /// Some are not ready: which, and how they stand.
    Waiting(String),
    /// The dependencies lead back to the application: the cycle, e.g. `ns/a -> ns/b -> ns/a`.
    Cycle(String),
    /// A `readyExpr` that cannot be evaluated: which and why.
    Invalid(String),
}

/// Whether an application is ready for those that depend on it: Synced and Healthy, no operation running.
pub(crate) fn is_ready(status: &ApplicationStatus) -> bool {
    status.sync.status == SyncCode::Synced
        && status.health.status == HealthCode::Healthy
        && status
            .operation_state
            .as_ref()
            .is_none_or(|o| o.phase.is_completed())
}

pub(crate) fn dependency_keys(app: &Application) -> Vec<String> {
    let own = app.namespace().unwrap_or_default();
    app.spec
        .depends_on
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d.namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&own),
                d.name
            )
        })
        .collect()
}

/// What holds the automated syncs of `app`, an Application of a `RollingSync` set, at `revision`: nothing once the
/// set's rollout released it for that revision.
fn rollout_hold(app: &Application, revision: &str) -> Option<kedge_api::Hold> {
    let annotations = app.annotations();
    let set = annotations.get(kedge_api::ROLLOUT_ANNOTATION)?;
    if annotations
        .get(kedge_api::ROLLOUT_RELEASE_ANNOTATION)
        .is_some_and(|r| r == revision)
    {
        return None;
    }
    let why = annotations
        .get(kedge_api::ROLLOUT_WAIT_ANNOTATION)
        .filter(|w| !w.is_empty())
        .map_or("its step has not started yet", String::as_str);
    Some(kedge_api::Hold {
        reason: format!(
            "the rollout of application set {set} has not reached revision {}: {why}",
            revision.get(..7).unwrap_or(revision)
        ),
        until: None,
        by: kedge_api::HoldBy::Rollout,
    })
}

/// Whether `readyExpr` `expr` holds for dependency `dep` of `app` (`dep` and `self` in the expression); an
/// expression that does not compile, fails, or gives anything but a bool is an error naming why.
pub(crate) fn ready_expr(expr: &str, dep: &Application, app: &Application) -> Result<bool, String> {
    use kube_cel::KubeCelExt;
    use kube_cel::cel;
    let program =
        cel::Program::compile(expr).map_err(|e| format!("{expr:?} does not compile: {e}"))?;
    let mut cx = cel::Context::default();
    cx.register_all();
    for (name, object) in [("dep", dep), ("self", app)] {
        let json = serde_json::to_value(object).map_err(|e| e.to_string())?;
        let value = cel::to_value(&json).map_err(|e| e.to_string())?;
        cx.add_variable_from_value(name, value);
    }
    match program.execute(&cx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("{expr:?} gives {other:?}, not a bool")),
        Err(e) => Err(format!("{expr:?} fails: {e}")),
    }
}

/// Where the dependencies of `app` stand, from the controller's cache of Applications.
pub(crate) fn dependency_state(apps: &Store<Application>, app: &Application) -> Dependencies {
    if app.spec.depends_on.is_empty() {
        return Dependencies::Ready;
    }
    let find = |key: &str| {
        let (ns, name) = key.split_once('/')?;
        apps.get(&CacheRef::new(name).within(ns))
    };
    // A cycle through this application: depth-first along dependsOn, bounded by the number of applications.
    let start = key_of(app);
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = std::collections::HashSet::new();
    while let Some((key, path)) = stack.pop() {
        let deps = if key == start {
            dependency_keys(app)
        } else {
            find(&key).map(|a| dependency_keys(&a)).unwrap_or_default()
        };
        for dep in deps {
            if dep == start {
                let mut cycle = path.clone();
                cycle.push(dep);
                return Dependencies::Cycle(cycle.join(" -> "));
            }
            if seen.insert(dep.clone()) {
                let mut next = path.clone();
                next.push(dep.clone());
                stack.push((dep, next));
            }
        }
    }
    let mut waiting: Vec<String> = Vec::new();
    for (i, (key, dependency)) in dependency_keys(app)
        .into_iter()
        .zip(&app.spec.depends_on)
        .enumerate()
    {
        let Some(expr) = dependency.ready_expr.as_deref() else {
            continue;
        };
        match find(&key) {
            None => waiting.push(format!("{key} (not found)")),
            Some(dep) => match ready_expr(expr, &dep, app) {
                Ok(true) => {}
                Ok(false) => waiting.push(format!("{key} (its readyExpr is false)")),
                Err(e) => {
                    return Dependencies::Invalid(format!("spec.dependsOn[{i}].readyExpr: {e}"));
                }
            },
        }
    }
    let builtin = dependency_keys(app)
        .into_iter()
        .zip(&app.spec.depends_on)
        .filter(|(_, d)| d.ready_expr.is_none())
        .map(|(key, _)| key);
    waiting.extend(builtin.filter_map(|key| match find(&key) {
        None => Some(format!("{key} (not found)")),
        Some(dep) => match dep.status.as_ref() {
            Some(s) if is_ready(s) => None,
            Some(s) => Some(format!(
                    "{key} ({:?}, {:?}{})",
                    s.sync.status,
                    s.health.status,
                    if s.operation_state
                        .as_ref()
                        .is_some_and(|o| !o.phase.is_completed())
                    {
                        ", syncing"
                    } else {
                        ""
                    }
                )),
            None => Some(format!("{key} (not reconciled yet)")),
        },
    }));
    if waiting.is_empty() {
        Dependencies::Ready
    } else {
        Dependencies::Waiting(format!("waiting for {}", join_bounded(&waiting, 20, ", ")))
    }
}

/// Queues the applications that depend on `app`, and the stages promoted from it.
/// How an application stands for those that wait for it or are promoted from it (and say so in their status): its
/// sync and health codes and whether an operation runs.
type Standing = Option<(SyncCode, HealthCode, bool)>;

fn standing(status: Option<&ApplicationStatus>) -> Standing {
    status.map(|s| {
        (
            s.sync.status,
            s.health.status,
            s.operation_state
                .as_ref()
                .is_some_and(|o| !o.phase.is_completed()),
        )
    })
}

/// Queues the applications that depend on `app` or are promoted from it, once the cache they read `app` from shows
/// it `standing` as the status just written says (they would otherwise see the state before; bounded wait).
fn queue_dependents(ctx: &Context, app: &Application, now: Standing) {
    let key = key_of(app);
    if ctx.dependents.of(&key).is_empty() {
        return;
    }
    let (apps, triggers, dependents) = (
        ctx.apps.clone(),
        ctx.drift.trigger_sender(),
        ctx.dependents.clone(),
    );
    let own = CacheRef::from_obj(app);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + DEPENDENTS_CACHE_WAIT;
        while tokio::time::Instant::now() < deadline {
            let cached = apps.get(&own);
            if cached
                .as_ref()
                .is_none_or(|a| standing(a.status.as_ref()) == now)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for downstream in dependents.of(&key) {
            let _ = triggers.send(downstream);
        }
    });
}

/// How long [`queue_dependents`] waits for the cache to show the status written.
const DEPENDENTS_CACHE_WAIT: Duration = Duration::from_secs(10);

/// Whether a self-heal sync would change anything: an object to apply, or (with prune) one to delete that makes
/// the application OutOfSync (an `IgnoreExtraneous` one waits for the next sync, as in Argo CD).
fn heals_something(plan: &Plan, prune: bool) -> bool {
    plan.to_apply().next().is_some()
        || (prune
            && plan
                .prune
                .iter()
                .any(kedge_engine::PruneCandidate::makes_out_of_sync))
}

fn heal_wait(ctx: &Context, key: &str) -> Duration {
    ctx.with_memory(key, |m| {
        let backoff = backoff_for(
            ctx.config.self_heal_backoff,
            m.heal_streak,
            ctx.config.self_heal_backoff_max,
        );
        m.last_heal
            .map(|t| backoff.saturating_sub(t.elapsed()))
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(200))
    })
}

/// Whether a self-heal is allowed now: the first of a streak at once, later ones after a growing backoff.
fn heal_due(ctx: &Context, key: &str) -> bool {
    ctx.with_memory(key, |m| {
        let backoff = backoff_for(
            ctx.config.self_heal_backoff,
            m.heal_streak.saturating_sub(1),
            ctx.config.self_heal_backoff_max,
        );
        m.heal_streak == 0 || m.last_heal.is_none_or(|t| t.elapsed() >= backoff)
    })
}

/// Counts a self-heal the pass decided on.
fn record_heal(ctx: &Context, key: &str) {
    ctx.with_memory(key, |m| {
        m.heal_streak = m.heal_streak.saturating_add(1);
        m.last_heal = Some(Instant::now());
    });
}

/// `base * 2^n`, capped.
pub fn backoff_for(base: Duration, n: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.min(20));
    base.saturating_mul(factor).min(max)
}

fn retry_policy(app: &Application) -> Option<(i64, Duration, u32, Duration)> {
    let retry = app.spec.sync_policy.as_ref()?.retry.as_ref()?;
    let base = kedge_api::parse_duration(&retry.backoff.duration).unwrap_or(Duration::from_secs(5));
    let max =
        kedge_api::parse_duration(&retry.backoff.max_duration).unwrap_or(Duration::from_secs(180));
    let factor = u32::try_from(retry.backoff.factor.max(1)).unwrap_or(2);
    Some((retry.limit, base, factor, max))
}

fn retry_delay(app: &Application, ctx: &Context, key: &str) -> Duration {
    let Some((_, base, factor, max)) = retry_policy(app) else {
        return ctx.config.resync_interval;
    };
    ctx.with_memory(key, |m| {
        base.saturating_mul(factor.saturating_pow(m.retries.saturating_sub(1).min(20)))
            .min(max)
    })
}

/// Whether a retry of the failed sync is allowed now: under the policy's limit, its backoff over.
fn retry_due(app: &Application, ctx: &Context, key: &str) -> bool {
    let Some((limit, _, _, _)) = retry_policy(app) else {
        return false;
    };
    let delay = retry_delay(app, ctx, key);
    ctx.with_memory(key, |m| {
        let under_limit = limit < 0 || i64::from(m.retries) < limit;
        under_limit && m.last_retry.is_none_or(|t| t.elapsed() >= delay)
    })
}

/// Counts a retry the pass decided on.
fn record_retry(ctx: &Context, key: &str) {
    ctx.with_memory(key, |m| {
        m.retries += 1;
        m.last_retry = Some(Instant::now());
    });
}

/// Runs a sync and records it: Running in `status.operationState` (written before anything is applied, and
/// updated with what each wave and hook waits for while it runs), then its outcome, the history and the events.
/// The inner result says whether the sync succeeded; the outer one fails only when the status could not be written.
async fn run_sync(
    app: &Application,
    ctx: &Context,
    status: &mut ApplicationStatus,
    comparison: &Comparison,
    trigger: &Trigger,
    target: &decide::Target,
    cleared_terminate: Option<&str>,
) -> Result<Result<kedge_engine::SyncResult, ()>, ReconcileError> {
    let key = key_of(app);
    let policy = app.spec.sync_policy.clone().unwrap_or_default();
    let automated = policy.automation().cloned().unwrap_or_default();
    let started_at = now_rfc3339();
    let drifted: Vec<String> = comparison
        .plan
        .objects
        .iter()
        .filter(|o| o.status == PlanStatus::OutOfSync)
        .flat_map(|o| {
            o.drift
                .iter()
                .map(move |d| format!("{}: {}", o.id, d.message()))
        })
        .collect();
    if *trigger == Trigger::SelfHeal {
        ctx.metrics.drift_events.inc();
        let msg = if drifted.is_empty() {
            "live state differs from Git; reverting".to_owned()
        } else {
            join_bounded(&drifted, 20, "; ")
        };
        ctx.recorder
            .publish(app, Severity::Normal, "DriftDetected", &msg)
            .await;
        ctx.notify(
            NoticeKind::DriftDetected,
            app,
            Some(&comparison.revision.sha),
            &msg,
        );
    }
    ctx.notify(
        NoticeKind::SyncStarted,
        app,
        Some(&comparison.revision.sha),
        &format!(
            "syncing {} ({}){}",
            short(&comparison.revision.sha),
            trigger.initiated_by(),
            on_cluster(app)
        ),
    );
    ctx.recorder
        .publish(
            app,
            Severity::Normal,
            "SyncStarted",
            &format!(
                "syncing {} ({}){}",
                short(&comparison.revision.sha),
                trigger.initiated_by(),
                on_cluster(app)
            ),
        )
        .await;
    let options = SyncOptions {
        prune: automated.prune || target.prune,
        confirm_prune: target.confirm_prune,
        allow_empty: automated.allow_empty,
        force_conflicts: !policy
            .option("Force")
            .is_some_and(|v| v.eq_ignore_ascii_case("false")),
        ..crate::spec_check::sync_defaults(app)
    };
    // Running is written by the progress reporter once the sync has lasted a second (five while busy): one that ends sooner has its
    // result written at once (an operation a user asked for was recorded as Running when it was taken).
    record_running(status, comparison, trigger, options.prune, &started_at);
    let api: &Api<Application> =
        &Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let result = match ensure_namespace(app, &comparison.engine, &policy).await {
        Ok(()) => {
            let (progress, updates) = watch::channel(String::new());
            let sync = async move {
                let report = |step: &str| {
                    progress.send_if_modified(|last| {
                        let changed = last != step;
                        if changed {
                            step.clone_into(last);
                        }
                        changed
                    });
                };
                comparison
                    .engine
                    .sync_with_progress(&comparison.plan, &options, &report)
                    .await
                // `progress` drops here, which ends the reporter below.
            };
            let work =
                async { tokio::join!(sync, report_progress(updates, api, app, status, ctx)) };
            let stop = terminate_requested(ctx, app, cleared_terminate);
            let stopped = tokio::select! {
                (result, ()) = work => Ok(result),
                raw = stop => Err(raw),
            };
            match stopped {
                Ok(result) => result.map_err(|e| error_chain(&e)),
                Err(raw) => {
                    // Dropping the sync stopped it where it was; say so before it is reported Failed.
                    if let Some(state) = status.operation_state.as_mut() {
                        state.phase = OperationPhase::Terminating;
                        state.message = "terminating on request".to_owned();
                    }
                    patch_status(api, app, status, true, ctx).await?;
                    clear_annotation(api, app, TERMINATE_ANNOTATION, &raw, ctx).await?;
                    let message = format!(
                        "terminated on request ({TERMINATE_ANNOTATION}): the sync of {} stopped where it was; \
                         objects applied before it stay, nothing more was applied or pruned",
                        short(&comparison.revision.sha)
                    );
                    ctx.recorder
                        .publish(app, Severity::Warning, "OperationTerminated", &message)
                        .await;
                    Err(message)
                }
            }
        }
        Err(message) => Err(message),
    };
    let finished_at = now_rfc3339();
    let (phase, message, resources, inventory) = match &result {
        Ok(r) => {
            let resources = r
                .outcomes
                .iter()
                .map(|o| ResourceResult {
                    object: from_engine_id(&o.id, &version_of(&comparison.plan, &o.id)),
                    status: format!("{:?}", o.action).into(),
                    message: o.message.clone(),
                    hook_phase: String::new(),
                })
                .chain(r.hooks.iter().map(|h| ResourceResult {
                    object: from_engine_id(&h.id, ""),
                    status: if h.succeeded {
                        "Succeeded".into()
                    } else {
                        "Failed".into()
                    },
                    message: h.message.clone(),
                    hook_phase: format!("{:?}", h.phase),
                }))
                .collect::<Vec<_>>();
            let pruned = r
                .outcomes
                .iter()
                .filter(|o| o.action == EngineAction::Pruned)
                .count();
            if pruned > 0 {
                let names: Vec<String> = r
                    .outcomes
                    .iter()
                    .filter(|o| o.action == EngineAction::Pruned)
                    .map(|o| o.id.to_string())
                    .collect();
                ctx.recorder
                    .publish(
                        app,
                        Severity::Normal,
                        "Pruned",
                        &format!("pruned {pruned}: {}", join_bounded(&names, 20, ", ")),
                    )
                    .await;
            }
            let adopted: Vec<String> = r
                .outcomes
                .iter()
                .filter(|o| o.action == EngineAction::Adopted)
                .map(|o| format!("{}: {}", o.id, o.message))
                .collect();
            if !adopted.is_empty() {
                ctx.recorder
                    .publish(
                        app,
                        Severity::Normal,
                        "Adopted",
                        &join_bounded(&adopted, 20, "; "),
                    )
                    .await;
            }
            let phase = match r.phase {
                SyncPhase::Succeeded => OperationPhase::Succeeded,
                SyncPhase::Failed => OperationPhase::Failed,
            };
            let msg = if r.message.is_empty() {
                let changed = r
                    .outcomes
                    .iter()
                    .filter(|o| {
                        matches!(
                            o.action,
                            EngineAction::Created
                                | EngineAction::Configured
                                | EngineAction::Adopted
                        )
                    })
                    .count();
                format!(
                    "synced {} to {}{}: {changed} changed, {pruned} pruned",
                    app.name_any(),
                    short(&comparison.revision.sha),
                    on_cluster(app)
                )
            } else {
                r.message.clone()
            };
            (phase, msg, resources, Some(r.inventory.clone()))
        }
        Err(e) => (
            OperationPhase::Failed,
            format!("sync failed: {e}"),
            Vec::new(),
            None,
        ),
    };
    if let Some(inv) = inventory {
        status.set_inventory(
            inv.iter()
                .map(|id| from_engine_id(id, &version_of(&comparison.plan, id)))
                .collect(),
        );
    }
    let ok = phase == OperationPhase::Succeeded;
    finish_operation(
        status,
        phase,
        message.clone(),
        &finished_at,
        Some(ApiSyncResult {
            revision: comparison.revision.sha.clone(),
            resources,
            resources_omitted: 0,
            generation: app.meta().generation,
        }),
    );
    history::record(
        &mut status.history,
        history::Attempt {
            revision: comparison.revision.sha.clone(),
            finished_at,
            initiated_by: trigger.initiated_by(),
            result: if ok {
                HistoryResult::Succeeded
            } else {
                HistoryResult::Failed
            },
            error: (!ok).then(|| message.clone()),
        },
        app.spec
            .revision_history_limit
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(history::HISTORY_LIMIT),
    );
    ctx.metrics
        .syncs
        .get_or_create(&ResultLabel {
            result: if ok { "success" } else { "failure" },
            cluster: app.spec.cluster().to_owned(),
        })
        .inc();
    ctx.metrics
        .app_syncs
        .get_or_create(&crate::metrics::AppSyncLabels::of(
            app,
            if ok { "Succeeded" } else { "Failed" },
        ))
        .inc();
    if ok {
        ctx.with_memory(&key, |m| {
            m.retries = 0;
            m.last_retry = None;
        });
        let reason = if *trigger == Trigger::SelfHeal {
            ctx.metrics
                .app_drift_reverted
                .get_or_create(&crate::metrics::AppSyncLabels::of(app, "Succeeded"))
                .inc();
            "DriftReverted"
        } else {
            "SyncSucceeded"
        };
        ctx.recorder
            .publish(app, Severity::Normal, reason, &message)
            .await;
        let sha = comparison.revision.sha.as_str();
        ctx.notify(
            if *trigger == Trigger::SelfHeal {
                NoticeKind::DriftReverted
            } else {
                NoticeKind::SyncSucceeded
            },
            app,
            Some(sha),
            &message,
        );
        // The revision deployed before: the newest history entry whose last sync succeeded.
        let before = app.status.as_ref().and_then(|s| {
            s.history
                .iter()
                .rev()
                .find(|h| h.result == HistoryResult::Succeeded)
                .map(|h| h.revision.clone())
        });
        if before.as_deref() != Some(sha) {
            let message = match before {
                Some(b) => format!(
                    "deployed {} (was {}){}",
                    short(sha),
                    short(&b),
                    on_cluster(app)
                ),
                None => format!("deployed {}{}", short(sha), on_cluster(app)),
            };
            ctx.notify(NoticeKind::RevisionDeployed, app, Some(sha), &message);
        }
        Ok(result.map_err(|_| ()))
    } else {
        ctx.recorder
            .publish(app, Severity::Warning, "SyncFailed", &message)
            .await;
        ctx.notify(
            NoticeKind::SyncFailed,
            app,
            Some(&comparison.revision.sha),
            &message,
        );
        Ok(Err(()))
    }
}

/// The engine an application's passes use: its destination's, impersonating the ServiceAccount its project maps
/// that destination to (so that the cluster's RBAC decides), with the registered cluster's name.
async fn engine_of(
    ctx: &Context,
    app: &Application,
) -> Result<(Option<String>, Arc<kedge_engine::Engine>), PipelineError> {
    let (cluster, engine) = ctx.clusters.engine_for(app).await?;
    match ctx
        .projects
        .service_account(app)
        .map_err(|e| PipelineError::NotPermitted(e.to_string()))?
    {
        Some((ns, name)) => {
            let engine = ctx.clusters.engine_as(cluster.as_deref(), &ns, &name)?;
            Ok((cluster, engine))
        }
        None => Ok((cluster, engine)),
    }
}

/// Checks every rendered object against the application's project: its kind (namespaced or cluster-scoped, as the
/// destination's discovery says) and its namespace, then its policies (see [`check_policies`]). Returns the
/// policy violations that are only reported (`warn`, `dryrun`).
async fn permitted(
    project: &kedge_api::Project,
    app: &Application,
    rendered: &kedge_render::RenderedSet,
    engine: &kedge_engine::Engine,
    policies: Option<&Arc<kedge_policy::PolicySet>>,
) -> Result<Vec<String>, PipelineError> {
    use crate::projects::{ObjectFacts, check_objects, describe};
    let mut scopes: HashMap<(String, String), Option<bool>> = HashMap::new();
    for o in &rendered.objects {
        let f = ObjectFacts::of(&o.object);
        let key = (f.api_version.to_owned(), f.kind.to_owned());
        if let std::collections::hash_map::Entry::Vacant(slot) = scopes.entry(key) {
            slot.insert(engine.is_namespaced(f.api_version, f.kind).await?);
        }
    }
    // A kind the cluster does not serve yet may come with its CRD in the same set: its scope is the CRD's.
    for o in &rendered.objects {
        let crd = &o.object;
        if crd["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        let namespaced = crd["spec"]["scope"].as_str() != Some("Cluster");
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let version = v["name"].as_str().unwrap_or_default();
            scopes
                .entry((format!("{group}/{version}"), kind.to_owned()))
                .and_modify(|s| {
                    s.get_or_insert(namespaced);
                })
                .or_insert(Some(namespaced));
        }
    }
    let scope = |f: &ObjectFacts<'_>| {
        scopes
            .get(&(f.api_version.to_owned(), f.kind.to_owned()))
            .copied()
            .flatten()
    };
    check_objects(
        project,
        app,
        rendered.objects.iter().map(|o| ObjectFacts::of(&o.object)),
        scope,
    )
    .map_err(|denied| {
        PipelineError::NotPermitted(format!("nothing was applied: {}", describe(&denied)))
    })?;
    let Some(policies) = policies else {
        return Ok(Vec::new());
    };
    // Objects are reviewed as they will be applied: a namespaced object without a namespace goes to the
    // destination's.
    let destination = app
        .spec
        .destination
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty());
    let objects: Vec<serde_json::Value> = rendered
        .objects
        .iter()
        .map(|o| {
            let mut object = o.object.clone();
            let f = ObjectFacts::of(&o.object);
            if f.namespace.is_none()
                && scope(&f) == Some(true)
                && let Some(ns) = destination
                && let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut())
            {
                meta.insert("namespace".into(), ns.into());
            }
            object
        })
        .collect();
    check_policies(&project.name_any(), policies.clone(), objects, engine).await
}

/// Evaluates the project's policies against the objects, with `data.inventory` holding the objects and the
/// destination's live objects of the kinds referential templates need (at most
/// [`LIVE_OBJECTS_PER_KIND`](crate::policies::LIVE_OBJECTS_PER_KIND) each). A `deny` violation, or a `deny`
/// constraint that could not be evaluated, refuses the sync naming each; the others are returned.
async fn check_policies(
    project: &str,
    policies: Arc<kedge_policy::PolicySet>,
    objects: Vec<serde_json::Value>,
    engine: &kedge_engine::Engine,
) -> Result<Vec<String>, PipelineError> {
    let mut inventory = kedge_policy::Inventory::new();
    for live in live_inventory(project, &policies.inventory_kinds(), engine).await? {
        inventory.add(&live);
    }
    // The application's own objects as they will be, over what is live.
    for o in &objects {
        inventory.add(o);
    }
    let evaluation = tokio::task::spawn_blocking(move || policies.evaluate(&objects, &inventory))
        .await
        .map_err(|e| PipelineError::Task(e.to_string()))?;
    let (denied, reported) = crate::policies::split(&evaluation);
    if !denied.is_empty() {
        return Err(PipelineError::PolicyDenied(format!(
            "nothing was applied: {}",
            crate::policies::bounded(&denied)
        )));
    }
    Ok(reported)
}

/// The destination's live objects of the kinds `kinds` lists (each group, version and kind the cluster serves),
/// with their `apiVersion` and `kind` set, without `managedFields`.
async fn live_inventory(
    project: &str,
    kinds: &[kedge_policy::SyncRequirement],
    engine: &kedge_engine::Engine,
) -> Result<Vec<serde_json::Value>, PipelineError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for req in kinds {
        for group in &req.groups {
            for version in &req.versions {
                for kind in &req.kinds {
                    let api_version = if group.is_empty() {
                        version.clone()
                    } else {
                        format!("{group}/{version}")
                    };
                    if !seen.insert((api_version.clone(), kind.clone())) {
                        continue;
                    }
                    let Some(resolved) = engine.resource(&api_version, kind).await? else {
                        tracing::debug!(%api_version, %kind, "not served: no live objects of it in data.inventory");
                        continue;
                    };
                    let api = resolved.api(engine.client(), None);
                    let params = kube::api::ListParams::default()
                        .limit(crate::policies::LIVE_OBJECTS_PER_KIND);
                    let list = api.list(&params).await.map_err(|e| PipelineError::Policies {
                        project: project.to_owned(),
                        message: format!(
                            "cannot list the live {kind} objects ({api_version}) for data.inventory: {e}"
                        ),
                        retryable: true,
                    })?;
                    if list
                        .metadata
                        .continue_
                        .as_deref()
                        .is_some_and(|c| !c.is_empty())
                    {
                        tracing::warn!(
                            %api_version,
                            %kind,
                            limit = crate::policies::LIVE_OBJECTS_PER_KIND,
                            "data.inventory holds only the first live objects of this kind"
                        );
                    }
                    for item in list.items {
                        let Ok(mut value) = serde_json::to_value(&item) else {
                            continue;
                        };
                        value["apiVersion"] = api_version.clone().into();
                        value["kind"] = kind.clone().into();
                        if let Some(meta) =
                            value.get_mut("metadata").and_then(|m| m.as_object_mut())
                        {
                            meta.remove("managedFields");
                        }
                        out.push(value);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Records the sync about to run as Running, unless a requested operation already is (then only its message
/// changes): an automated, self-heal or retry sync is recorded as a sync of the spec's revision, so that the next
/// controller can resume it if this one goes away (with the revision Git has then: resuming one that Git has moved
/// past would only undo it).
fn record_running(
    status: &mut ApplicationStatus,
    comparison: &Comparison,
    trigger: &Trigger,
    prune: bool,
    now: &str,
) {
    let sha = &comparison.revision.sha;
    let state = status
        .operation_state
        .take()
        .filter(|o| !o.phase.is_completed())
        .unwrap_or_else(|| OperationState {
            operation: Some(Operation {
                sync: Some(kedge_api::SyncOperation {
                    prune,
                    dry_run: false,
                    revision: None,
                    confirm: false,
                }),
                rollback: None,
                initiated_by: trigger.initiated_by(),
                requested_at: now.to_owned(),
            }),
            phase: OperationPhase::Running,
            started_at: Some(now.to_owned()),
            ..OperationState::default()
        });
    status.operation_state = Some(OperationState {
        message: format!("syncing {} ({})", short(sha), trigger.initiated_by()),
        ..state
    });
}

/// ` on cluster NAME` for an application deploying to a registered cluster, for its event messages; empty for the
/// cluster Kedge runs in.
fn on_cluster(app: &Application) -> String {
    match app.spec.cluster() {
        kedge_api::IN_CLUSTER_NAME => String::new(),
        name => format!(" on cluster {name}"),
    }
}

/// Writes the Running operation state once the sync has lasted a second, then what it waits for into
/// `status.operationState.message` as it changes: at most once a second, and only when the message changed. A sync
/// that ends within the second writes nothing here (its result follows at once), which saves a status write per
/// application on a first deployment. Returns when the sync drops its end of the channel; a write in flight is
/// finished first, so that it cannot land after the sync's final status.
async fn report_progress(
    mut updates: watch::Receiver<String>,
    api: &Api<Application>,
    app: &Application,
    status: &ApplicationStatus,
    ctx: &Context,
) {
    // Busy, the API server's time goes to the syncs themselves first (see `held_progress`).
    let every = if ctx.busy() {
        SYNC_PROGRESS_EVERY_BUSY
    } else {
        SYNC_PROGRESS_EVERY
    };
    let mut status = status.clone();
    let start = tokio::time::Instant::now();
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        if last_write.is_some() && updates.changed().await.is_err() {
            return;
        }
        let due = last_write.unwrap_or(start) + every;
        while tokio::time::Instant::now() < due {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                changed = updates.changed() => if changed.is_err() { return },
            }
        }
        let step = updates.borrow_and_update().clone();
        let Some(state) = status.operation_state.as_mut() else {
            return;
        };
        if last_write.is_some() && (state.message == step || step.is_empty()) {
            continue;
        }
        if !step.is_empty() {
            state.message = step;
        }
        last_write = Some(tokio::time::Instant::now());
        if let Err(e) = patch_status(api, app, &status, true, ctx).await {
            tracing::warn!(error = %error_chain(&e), "could not report the sync's progress");
        }
    }
}

/// Resolves with the terminate annotation's value once the controller's cache shows one other than `cleared` (the
/// value this pass cleared at intake, which the cache may still show for a moment).
async fn terminate_requested(ctx: &Context, app: &Application, cleared: Option<&str>) -> String {
    const EVERY: Duration = Duration::from_millis(250);
    let at = CacheRef::from_obj(app);
    loop {
        if let Some(raw) = ctx
            .apps
            .get(&at)
            .and_then(|a| a.annotations().get(TERMINATE_ANNOTATION).cloned())
            .filter(|raw| Some(raw.as_str()) != cleared)
        {
            return raw;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// With `CreateNamespace=true`, creates the destination namespace when it does not exist (it is not tracked, so it
/// is never pruned).
async fn ensure_namespace(
    app: &Application,
    engine: &kedge_engine::Engine,
    policy: &kedge_api::SyncPolicy,
) -> Result<(), String> {
    let client = engine.client();
    if !policy.flag("CreateNamespace") {
        return Ok(());
    }
    let Some(ns) = app
        .spec
        .destination
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
    else {
        return Ok(());
    };
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    // The engine's namespace watch answers without a request when it has a complete listing.
    let exists = match engine.namespace_exists(&ns).await {
        Some(known) => Ok(known),
        None => api.get_opt(&ns).await.map(|n| n.is_some()),
    };
    match exists {
        Ok(true) => Ok(()),
        Ok(false) => {
            let body =
                json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
            api.patch(&ns, &PatchParams::apply("kedge"), &Patch::Apply(&body))
                .await
                .map(|_| ())
                .map_err(|e| format!("failed to create namespace {ns}: {e}"))
        }
        Err(e) => Err(format!("failed to read namespace {ns}: {e}")),
    }
}

fn version_of(plan: &Plan, id: &kedge_engine::object::ObjectId) -> String {
    plan.objects
        .iter()
        .find(|o| &o.id == id)
        .map(|o| {
            kedge_engine::object::split_api_version(&o.api_version)
                .1
                .to_owned()
        })
        .unwrap_or_default()
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn map_health(h: EngineHealth) -> HealthCode {
    match h {
        EngineHealth::Healthy => HealthCode::Healthy,
        EngineHealth::Suspended => HealthCode::Suspended,
        EngineHealth::Progressing => HealthCode::Progressing,
        EngineHealth::Missing => HealthCode::Missing,
        EngineHealth::Degraded => HealthCode::Degraded,
        EngineHealth::Unknown => HealthCode::Unknown,
    }
}

fn fill_status(
    status: &mut ApplicationStatus,
    comparison: &Comparison,
    plan: &Plan,
    generation: Option<i64>,
    now: &str,
    app: &Application,
) -> Option<Arc<Vec<ResourceStatus>>> {
    let synced = plan.is_synced() && plan.prune.iter().all(|p| !p.makes_out_of_sync());
    status.observed_generation = generation;
    status.reconciled_at = Some(now.to_owned());
    status.sync = ApiSyncStatus {
        status: if synced {
            SyncCode::Synced
        } else {
            SyncCode::OutOfSync
        },
        revision: Some(comparison.revision.sha.clone()),
        short_revision: Some(short(&comparison.revision.sha).to_owned()),
    };
    let mut resources: Vec<ResourceStatus> = plan
        .objects
        .iter()
        .map(|o| {
            let version = kedge_engine::object::split_api_version(&o.api_version)
                .1
                .to_owned();
            let message = match o.status {
                PlanStatus::OutOfSync if !o.drift.is_empty() => Some(
                    o.drift
                        .iter()
                        .map(|d| d.message())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                _ if !o.message.is_empty() => Some(o.message.clone()),
                _ => None,
            };
            ResourceStatus {
                object: from_engine_id(&o.id, &version),
                status: match o.status {
                    PlanStatus::Synced => SyncCode::Synced,
                    PlanStatus::OutOfSync | PlanStatus::Missing => SyncCode::OutOfSync,
                    PlanStatus::Error => SyncCode::Unknown,
                },
                health: Some(ApiHealth {
                    status: map_health(o.health.status),
                    message: (!o.health.message.is_empty()).then(|| o.health.message.clone()),
                }),
                message,
            }
        })
        .collect();
    let auto_prune = app
        .spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.automation())
        .is_some_and(|a| a.prune);
    for p in &plan.prune {
        resources.push(ResourceStatus {
            object: from_engine_id(&p.id, ""),
            status: SyncCode::OutOfSync,
            health: None,
            message: Some(match &p.action {
                kedge_engine::plan::PruneAction::Delete if auto_prune => {
                    "removed from Git; will be pruned".to_owned()
                }
                kedge_engine::plan::PruneAction::Delete => {
                    "removed from Git; requires pruning (automated prune is off: sync with prune to delete it)"
                        .to_owned()
                }
                kedge_engine::plan::PruneAction::Keep => {
                    "removed from Git; kept (Prune=false)".to_owned()
                }
                kedge_engine::plan::PruneAction::Refuse(why) => {
                    format!("removed from Git; not pruned: {why}")
                }
                kedge_engine::plan::PruneAction::Gone => {
                    "removed from Git; already gone".to_owned()
                }
                kedge_engine::plan::PruneAction::KindNotServed => format!(
                    "Missing: kind {}/{} is not served by the API server; kept in the inventory until it is \
                     (then pruned) or the entry is removed by hand",
                    p.id.group, p.id.kind
                ),
            }),
        });
    }
    let out_of_sync = resources
        .iter()
        .filter(|r| r.status != SyncCode::Synced)
        .count();
    let full = (resources.len() > kedge_api::RESOURCES_LISTED).then(|| Arc::new(resources.clone()));
    status.set_resources(resources);
    let worst = plan
        .objects
        .iter()
        .filter(|o| o.status != PlanStatus::Error)
        .max_by_key(|o| map_health(o.health.status).severity());
    status.health = ApiHealth {
        status: map_health(plan.health),
        message: worst
            .filter(|_| plan.health != EngineHealth::Healthy)
            .map(|o| format!("{}: {}", o.id, o.health.message)),
    };
    if app.spec.suspend {
        conditions::set(
            &mut status.conditions,
            "Suspended",
            true,
            "Suspended",
            "automated sync and self-heal are suspended",
            generation,
            now,
        );
    } else {
        conditions::remove(&mut status.conditions, "Suspended");
    }
    let errors: Vec<String> = plan
        .objects
        .iter()
        .filter(|o| o.status == PlanStatus::Error)
        .map(|o| format!("{}: {}", o.id, o.message))
        .chain(plan.invalid.iter().cloned())
        .collect();
    let healthy = plan.health == EngineHealth::Healthy;
    let (ready, reason, message) = if !errors.is_empty() {
        (false, "ComparisonFailed", join_bounded(&errors, 20, "; "))
    } else if !synced {
        (
            false,
            "OutOfSync",
            format!("{out_of_sync} object(s) differ from Git"),
        )
    } else if !healthy {
        (
            false,
            "Progressing",
            status
                .health
                .message
                .clone()
                .unwrap_or_else(|| format!("health is {:?}", plan.health)),
        )
    } else {
        (true, "Synced", synced_and_healthy(&comparison.revision.sha))
    };
    conditions::set(
        &mut status.conditions,
        READY,
        ready,
        reason,
        message,
        generation,
        now,
    );
    let progressing = plan.health == EngineHealth::Progressing;
    if progressing {
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            true,
            "Progressing",
            "waiting for objects to become healthy",
            generation,
            now,
        );
    } else {
        conditions::remove(&mut status.conditions, RECONCILING);
    }
    if errors.is_empty() {
        conditions::remove(&mut status.conditions, STALLED);
    } else {
        conditions::set(
            &mut status.conditions,
            STALLED,
            true,
            "ComparisonFailed",
            join_bounded(&errors, 20, "; "),
            generation,
            now,
        );
    }
    for t in ["SourceFailed", "RenderFailed", "InvalidSpec"] {
        conditions::remove(&mut status.conditions, t);
    }
    full
}

/// The `SourceVerified` condition after a render: who signed the commit, or no condition when commits are not
/// verified.
fn set_source_verified(
    app: &Application,
    status: &mut ApplicationStatus,
    rendered: &crate::pipeline::Rendered,
    generation: Option<i64>,
    now: &str,
) {
    match (&rendered.verified, &app.spec.source.verify) {
        (Some(verified), Some(verify)) => conditions::set(
            &mut status.conditions,
            SOURCE_VERIFIED,
            true,
            "Verified",
            format!(
                "{} signed with {} key {} ({}/{})",
                verified.subject,
                verified.signer.kind,
                verified.signer.fingerprint,
                verify.secret_ref.name,
                verified.signer.file
            ),
            generation,
            now,
        ),
        _ => conditions::remove(&mut status.conditions, SOURCE_VERIFIED),
    }
}

async fn report_failure(
    app: &Application,
    ctx: &Context,
    api: &Api<Application>,
    mut status: ApplicationStatus,
    err: PipelineError,
) -> Result<Action, ReconcileError> {
    let now = now_rfc3339();
    let generation = app.meta().generation;
    let reason = err.reason();
    let mut message = error_chain(&err);
    if let PipelineError::Source(e) = &err
        && e.kind() == kedge_source::ErrorKind::AuthFailed
    {
        message.push_str(&format!(
            " (credentials for this repository come from a Secret in namespace {} labelled {}=repository \
             whose url is {}, with username and password, token, or sshPrivateKey)",
            app.namespace().unwrap_or_default(),
            crate::pipeline::SECRET_TYPE_LABEL,
            e.repo
        ));
    }
    tracing::warn!(reason, error = %message, "comparison failed; cluster left as it is");
    if matches!(
        err,
        PipelineError::Source(_) | PipelineError::Credentials(_)
    ) {
        ctx.metrics
            .git_fetch_errors
            .get_or_create(&crate::metrics::RepoLabel::of(
                &app.spec.primary_source().repo_url,
            ))
            .inc();
    }
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.message.clone());
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason,
        message.clone(),
        generation,
        &now,
    );
    if matches!(
        err,
        PipelineError::Unverified(_) | PipelineError::VerifyKeys(_)
    ) {
        conditions::set(
            &mut status.conditions,
            SOURCE_VERIFIED,
            false,
            reason,
            message.clone(),
            generation,
            &now,
        );
    }
    if err.is_retryable() {
        conditions::remove(&mut status.conditions, STALLED);
    } else {
        conditions::set(
            &mut status.conditions,
            STALLED,
            true,
            reason,
            message.clone(),
            generation,
            &now,
        );
    }
    if status
        .operation_state
        .as_ref()
        .is_some_and(|o| !o.phase.is_completed())
    {
        // The operation this pass recorded cannot run: it ends here, saying why.
        finish_operation(
            &mut status,
            OperationPhase::Error,
            format!("{reason}: {message}"),
            &now,
            None,
        );
    }
    status.sync.status = SyncCode::Unknown;
    if matches!(err, PipelineError::Cluster(_)) {
        // Its objects cannot be seen: their health is not known, whatever it was.
        status.health = ApiHealth {
            status: HealthCode::Unknown,
            message: Some(message.clone()),
        };
    }
    status.observed_generation = generation;
    status.reconciled_at = Some(now);
    if previous.as_deref() != Some(message.as_str()) {
        ctx.recorder
            .publish(app, Severity::Warning, reason, &message)
            .await;
    }
    patch_status(api, app, &status, false, ctx).await?;
    let delay = if err.is_retryable() {
        Duration::from_secs(10)
    } else {
        ctx.config.poll_interval
    };
    Ok(Action::requeue(delay))
}

/// An error and its causes, one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// How often a rollout's progress alone (new health messages, the health still Progressing) is written, while the
/// controller is not busy ([`Context::busy`]).
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a sync runs before it is recorded as Running, and how often its steps are written while it runs.
const SYNC_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// ... while the controller is busy.
const SYNC_PROGRESS_EVERY_BUSY: Duration = Duration::from_secs(5);
/// Passes waiting for a slot, or applications Progressing, from which the controller counts as busy.
const BUSY: usize = 64;

/// What becomes of a status that differs from the written one only in a rollout's messages.
#[derive(Debug, PartialEq, Eq)]
enum HeldProgress {
    /// Written now.
    Write,
    /// Written by a pass of its own once [`PROGRESS_WRITE_INTERVAL`] is over.
    PassIn(Duration),
    /// Not written: the controller is busy. A later pass writes the messages with the state the rollout reaches, or
    /// once the controller is not busy any more.
    Kept,
}

/// `progress_only`: the status differs from the written one only in a rollout's messages; `since`: how long ago this
/// controller last wrote the application's status. While the controller is busy the API server's time goes to the
/// state of applications (synced, healthy, failed): with 10,000 rollouts under way, writing their messages cost
/// about one status write per application (each as much API server time as six object applies) that the state
/// written soon after replaced.
fn held_progress(progress_only: bool, since: Option<Duration>, busy: bool) -> HeldProgress {
    if !progress_only {
        return HeldProgress::Write;
    }
    if busy {
        return HeldProgress::Kept;
    }
    match since.and_then(|since| PROGRESS_WRITE_INTERVAL.checked_sub(since)) {
        Some(left) if !left.is_zero() => HeldProgress::PassIn(left),
        _ => HeldProgress::Write,
    }
}

/// Whether `new` differs from `old` only in what a rollout in progress says: both Progressing, the same but for
/// messages and the time of the pass.
fn only_progress_moved(old: &ApplicationStatus, new: &ApplicationStatus) -> bool {
    if old.health.status != HealthCode::Progressing || new.health.status != HealthCode::Progressing
    {
        return false;
    }
    let quiet = |s: &ApplicationStatus| {
        let mut s = s.clone();
        s.reconciled_at = None;
        s.reconciled_by = None;
        s.health.message = None;
        for r in &mut s.resources {
            if let Some(h) = r.health.as_mut() {
                h.message = None;
            }
        }
        for c in &mut s.conditions {
            c.message.clear();
        }
        s
    };
    quiet(old) == quiet(new)
}

/// Whether two statuses differ only in `reconciledAt`.
fn same_but_time(a: &ApplicationStatus, b: &ApplicationStatus) -> bool {
    let mut a = a.clone();
    a.reconciled_at.clone_from(&b.reconciled_at);
    a == *b
}

async fn patch_status(
    api: &Api<Application>,
    app: &Application,
    status: &ApplicationStatus,
    requested: bool,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    // A pass that someone asked for (refresh, operation) always records when it ran. Any other pass that changed
    // nothing but the time it ran writes nothing: every write is a watch event that queues the
    // application again, so writing the timestamp alone would keep every application reconciling in a loop.
    ctx.metrics.set_app_info(crate::metrics::AppInfoLabels {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
        project: app.spec.project.clone(),
        cluster: app.spec.cluster().to_owned(),
        sync_status: format!("{:?}", status.sync.status),
        health_status: format!("{:?}", status.health.status),
        revision: status.sync.short_revision.clone().unwrap_or_default(),
    });
    let mine;
    let status = if status.reconciled_by.as_deref() == Some(ctx.config.identity.as_str()) {
        status
    } else {
        mine = ApplicationStatus {
            reconciled_by: Some(ctx.config.identity.clone()),
            ..status.clone()
        };
        &mine
    };
    if !requested
        && app
            .status
            .as_ref()
            .is_some_and(|old| same_but_time(old, status))
    {
        return Ok(());
    }
    if !ctx.leader.is_leading() {
        return Err(ReconcileError::NotLeader { name: key_of(app) });
    }
    // Server-side apply of the whole status: fields this pass leaves out (a cleared message) are removed, which a
    // merge patch would keep.
    let patch = json!({
        "apiVersion": Application::api_version(&()),
        "kind": Application::kind(&()),
        "status": status,
    });
    api.patch_status(
        &app.name_any(),
        &PatchParams::apply("kedge").force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|written| {
        ctx.saw_version(&written);
        ctx.with_memory(&key_of(app), |m| m.status_written = Some(Instant::now()));
    })
    .map_err(|source| ReconcileError::Update {
        name: key_of(app),
        source,
    })
}

/// A JSON merge patch of the Application itself (annotations, spec, finalizers).
async fn merge_patch(
    api: &Api<Application>,
    app: &Application,
    patch: &serde_json::Value,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    if !ctx.leader.is_leading() {
        return Err(ReconcileError::NotLeader { name: key_of(app) });
    }
    api.patch(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map(|written| ctx.saw_version(&written))
    .map_err(|source| ReconcileError::Update {
        name: key_of(app),
        source,
    })
}

/// Intake's writes: reports an invalid request or an operation given up, records the operation to run as Running
/// (the write that lets it survive a crash or a change of leader), and only then clears the operation annotation,
/// if it still holds the same request. Returns the operation to run.
async fn take_operation(
    app: &Application,
    ctx: &Context,
    api: &Api<Application>,
    status: &mut ApplicationStatus,
    intake: &intake::Intake,
    now: &str,
) -> Result<Option<Operation>, ReconcileError> {
    if let Some(message) = &intake.invalid {
        ctx.recorder
            .publish(app, Severity::Warning, "InvalidOperation", message)
            .await;
        status.operation_state = Some(OperationState {
            phase: OperationPhase::Error,
            message: message.clone(),
            started_at: Some(now.to_owned()),
            finished_at: Some(now.to_owned()),
            ..OperationState::default()
        });
    }
    if let Some((state, why)) = &intake.abandoned {
        let message = format!(
            "operation {}: {why}",
            describe_operation(state.operation.as_ref())
        );
        tracing::warn!(%message, "operation not carried on");
        let (reason, phase) = if intake.terminated {
            ("OperationTerminated", OperationPhase::Failed)
        } else {
            ("OperationInterrupted", OperationPhase::Error)
        };
        ctx.recorder
            .publish(app, Severity::Warning, reason, &message)
            .await;
        let mut state = state.clone();
        state.phase = phase;
        state.message = message;
        state.finished_at = Some(now.to_owned());
        status.operation_state = Some(state);
    }
    if let Some(raw) = &intake.terminate {
        clear_annotation(api, app, TERMINATE_ANNOTATION, raw, ctx).await?;
    }
    let Some(pending) = &intake.operation else {
        if let Some(raw) = &intake.clear_operation {
            clear_annotation(api, app, OPERATION_ANNOTATION, raw, ctx).await?;
        }
        return Ok(None);
    };
    let running = pending.running(now);
    if pending.resumed > 0 {
        tracing::info!(
            resume = pending.resumed,
            "resuming an interrupted operation"
        );
        ctx.recorder
            .publish(
                app,
                Severity::Normal,
                "OperationResumed",
                &format!(
                    "operation {}: {}",
                    describe_operation(Some(&pending.operation)),
                    running.message
                ),
            )
            .await;
    }
    status.operation_state = Some(running);
    patch_status(api, app, status, true, ctx).await?;
    if let Some(raw) = &intake.clear_operation {
        clear_annotation(api, app, OPERATION_ANNOTATION, raw, ctx).await?;
    }
    Ok(Some(pending.operation.clone()))
}

/// `sync to abc1234 (requested by cli)`, for messages.
fn describe_operation(op: Option<&Operation>) -> String {
    let Some(op) = op else {
        return "sync".to_owned();
    };
    let what = match (&op.rollback, &op.sync) {
        (Some(rb), _) => format!("rollback to history id {}", rb.id),
        (None, Some(sync)) => match &sync.revision {
            Some(rev) => format!("sync to {}", short(rev)),
            None => "sync".to_owned(),
        },
        (None, None) => "operation".to_owned(),
    };
    if op.initiated_by.is_empty() {
        what
    } else {
        format!("{what} ({})", op.initiated_by)
    }
}

/// Removes the operation annotation only while it still holds `raw` (a JSON patch `test`): a request written
/// since this pass read the Application stays for the next pass.
/// Removes annotation `key` if it still holds `raw`, the value this pass read (a JSON patch that tests it first): a
/// newer request written meanwhile stays for the next pass.
async fn clear_annotation(
    api: &Api<Application>,
    app: &Application,
    key: &str,
    raw: &str,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let patch: json_patch::Patch =
        serde_json::from_value(intake::clear_patch(key, raw)).map_err(|e| {
            ReconcileError::Clear {
                name: key_of(app),
                message: e.to_string(),
            }
        })?;
    match api
        .patch(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(written) => {
            ctx.saw_version(&written);
            Ok(())
        }
        // The test failed: the annotation changed (or went) since it was read.
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 => {
            tracing::info!(
                annotation = key,
                "the annotation changed since it was read; the newer request stays for the next pass"
            );
            Ok(())
        }
        Err(source) => Err(ReconcileError::Update {
            name: key_of(app),
            source,
        }),
    }
}

/// Ends the operation recorded in `status` (the Running one of this pass, or a new record when the pass acted
/// without one) with `phase` and `message`.
fn finish_operation(
    status: &mut ApplicationStatus,
    phase: OperationPhase,
    message: String,
    now: &str,
    sync_result: Option<ApiSyncResult>,
) {
    let state = status
        .operation_state
        .get_or_insert_with(OperationState::default);
    if state.phase.is_completed() {
        *state = OperationState {
            started_at: Some(now.to_owned()),
            ..OperationState::default()
        };
    }
    state.phase = phase;
    state.message = message;
    state.finished_at = Some(now.to_owned());
    state.sync_result = sync_result.map(|mut r| {
        let omitted = bound_results(&mut r.resources);
        r.resources_omitted = u32::try_from(omitted).unwrap_or(u32::MAX);
        r
    });
}

async fn suspend_after_rollback(
    api: &Api<Application>,
    app: &Application,
    id: i64,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    suspend(
        api,
        app,
        ctx,
        &format!(
            "rolled back to history id {id}; automated sync is suspended until the application is resumed"
        ),
    )
    .await
}

/// Suspends automated sync after a rollback, saying why in a `RolledBack` Event.
async fn suspend(
    api: &Api<Application>,
    app: &Application,
    ctx: &Context,
    message: &str,
) -> Result<(), ReconcileError> {
    merge_patch(api, app, &json!({ "spec": { "suspend": true } }), ctx).await?;
    ctx.recorder
        .publish(app, Severity::Normal, "RolledBack", message)
        .await;
    Ok(())
}

/// Deletion: with the resources finalizer, delete what the application owns, then let it go.
///
/// The deletion is one sync of an empty desired set with prune, plus the Helm delete hooks of the deployed
/// revision ([`Pipeline::delete_hooks`]): `pre-delete` hooks run first, in hook-weight order, each waited for
/// (Jobs until they complete) like sync hooks; then the application's objects are pruned; then `post-delete`
/// hooks run. Hook objects are deleted per their delete policy (by default once they succeeded); nothing Kedge
/// does not own is deleted.
///
/// - A failing delete hook blocks the deletion, as it fails `helm uninstall`: a Warning Event `DeleteHookFailed`
///   with the hook's message, the finalizer stays, and the deletion is retried with backoff (a failed
///   `pre-delete` hook leaves every object in place).
/// - When the source cannot be rendered any more (repository or chart gone), the deletion does not get stuck: a
///   Warning Event `DeleteHooksSkipped` names the cause and the objects are deleted without hooks.
/// - An application without delete hooks is deleted exactly as without this step; one that never rendered is not
///   rendered at all.
async fn finalize(cached: &Application, ctx: &Context) -> Result<Action, ReconcileError> {
    if !cached.finalizers().iter().any(|f| f == RESOURCES_FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = key_of(cached);
    // The cache may still show the finalizer after a previous pass removed it (and the application is gone):
    // running the deletion again would run its hooks again (a post-delete hook with BeforeHookCreation would be
    // deleted and made anew after the application was gone). One read decides.
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let fresh = api
        .get_opt(&cached.name_any())
        .await
        .map_err(|e| ReconcileError::Finalize {
            name: name.clone(),
            message: format!("cannot read the application: {e}; nothing deleted"),
        })?;
    let app = match fresh {
        Some(a)
            if a.uid() == cached.uid()
                && a.finalizers().iter().any(|f| f == RESOURCES_FINALIZER) =>
        {
            a
        }
        _ => return Ok(Action::await_change()),
    };
    let app = &app;
    let inventory = inventory_of(app).map_err(|e| ReconcileError::Finalize {
        name: name.clone(),
        message: format!("{e}; nothing deleted"),
    })?;
    let hooks = match ctx.pipeline.delete_hooks(app).await {
        Ok(hooks) => hooks,
        Err(e) => {
            let message = format!(
                "delete hooks skipped: {}; deleting the application's objects without them",
                error_chain(&e)
            );
            tracing::warn!(error = %message, "cannot render the application at deletion");
            ctx.recorder
                .publish(app, Severity::Warning, "DeleteHooksSkipped", &message)
                .await;
            Vec::new()
        }
    };
    if !inventory.is_empty() || !hooks.is_empty() {
        let failed = |message: String| ReconcileError::Finalize {
            name: name.clone(),
            message,
        };
        let spec = engine_spec(app).map_err(|e| failed(e.to_string()))?;
        let (_, engine) = engine_of(ctx, app)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let plan = engine
            .plan(&spec, hooks, &inventory)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let options = SyncOptions {
            prune: true,
            allow_empty: true,
            deleting_application: true,
            ..SyncOptions::default()
        };
        let result = engine
            .sync(&plan, &options)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let failed_hooks: Vec<String> = result
            .hooks
            .iter()
            .filter(|h| !h.succeeded)
            .map(|h| format!("{} hook {}: {}", delete_event(h.phase), h.id, h.message))
            .collect();
        if !failed_hooks.is_empty() {
            let message = format!(
                "deletion blocked: {}; the application and its remaining objects are kept",
                failed_hooks.join("; ")
            );
            ctx.recorder
                .publish(app, Severity::Warning, "DeleteHookFailed", &message)
                .await;
            let delay = delete_retry_delay(ctx, &name);
            tracing::warn!(error = %message, retry_in = ?delay, "delete hook failed");
            return Ok(Action::requeue(delay));
        }
        if result.phase != SyncPhase::Succeeded {
            ctx.recorder
                .publish(app, Severity::Warning, "DeleteFailed", &result.message)
                .await;
            return Err(failed(result.message));
        }
        let pruned: Vec<String> = result
            .outcomes
            .iter()
            .filter(|o| o.action == EngineAction::Pruned)
            .map(|o| o.id.to_string())
            .collect();
        let mut message = format!(
            "deleted {} object(s): {}",
            pruned.len(),
            join_bounded(&pruned, 20, ", ")
        );
        if !result.hooks.is_empty() {
            let ran: Vec<String> = result
                .hooks
                .iter()
                .map(|h| format!("{} {}", delete_event(h.phase), h.id))
                .collect();
            message.push_str(&format!("; ran delete hooks: {}", ran.join(", ")));
        }
        ctx.recorder
            .publish(app, Severity::Normal, "ResourcesDeleted", &message)
            .await;
    }
    let remaining: Vec<String> = app
        .finalizers()
        .iter()
        .filter(|f| *f != RESOURCES_FINALIZER)
        .cloned()
        .collect();
    let patch = json!({ "metadata": { "finalizers": remaining, "resourceVersion": app.resource_version() } });
    merge_patch(&api, app, &patch, ctx).await?;
    Ok(Action::await_change())
}

/// The Helm event a hook of the deletion's sync runs for.
fn delete_event(phase: kedge_engine::HookPhase) -> &'static str {
    match phase {
        kedge_engine::HookPhase::PreSync => "pre-delete",
        kedge_engine::HookPhase::PostSync => "post-delete",
        _ => "delete",
    }
}

/// The delay before a deletion blocked by a failing hook is tried again: 5 s, doubling up to 5 minutes.
fn delete_retry_delay(ctx: &Context, key: &str) -> Duration {
    let attempts = ctx.with_memory(key, |m| {
        m.retries = m.retries.saturating_add(1);
        m.last_retry = Some(Instant::now());
        m.retries
    });
    backoff_for(
        Duration::from_secs(5),
        attempts.saturating_sub(1),
        Duration::from_secs(300),
    )
}

/// What kube-runtime does when a reconcile fails: log, and retry with a delay.
pub fn error_policy(app: Arc<Application>, err: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(app = %key_of(&app), error = %error_chain(err), "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rollouts_messages_may_wait_to_be_written() {
        let status = |health: &str, message: &str, sync: &str| -> ApplicationStatus {
            serde_json::from_value(serde_json::json!({
                "sync": { "status": sync },
                "health": { "status": health, "message": message },
                "resources": [{ "kind": "Deployment", "name": "web", "status": sync,
                                "health": { "status": health, "message": message } }],
                "conditions": [{ "type": "Ready", "status": "False", "reason": health, "message": message }],
                "reconciledAt": message,
            }))
            .expect("status")
        };
        let step = |m: &str| status("Progressing", m, "Synced");
        assert!(only_progress_moved(
            &step("0 of 1 updated"),
            &step("1 of 1 updated")
        ));
        assert!(only_progress_moved(&step("same"), &step("same")));
        // Any change of state is written at once.
        assert!(!only_progress_moved(
            &step("1 of 1"),
            &status("Healthy", "", "Synced")
        ));
        assert!(!only_progress_moved(
            &status("Degraded", "a", "Synced"),
            &status("Degraded", "b", "Synced")
        ));
        assert!(!only_progress_moved(
            &step("a"),
            &status("Progressing", "b", "OutOfSync")
        ));
        let mut moved = step("a");
        moved.sync.revision = Some("0123456".into());
        assert!(!only_progress_moved(&step("a"), &moved));
    }

    #[test]
    fn a_rollouts_messages_wait_and_are_not_written_while_the_controller_is_busy() {
        let second = Duration::from_secs(1);
        // A change of state is written at once, busy or not.
        assert_eq!(
            held_progress(false, Some(second), false),
            HeldProgress::Write
        );
        assert_eq!(
            held_progress(false, Some(second), true),
            HeldProgress::Write
        );
        // Messages alone: written once the interval since the last write is over, by a pass of their own if need be.
        assert_eq!(
            held_progress(true, Some(second), false),
            HeldProgress::PassIn(PROGRESS_WRITE_INTERVAL - second)
        );
        assert_eq!(
            held_progress(true, Some(PROGRESS_WRITE_INTERVAL), false),
            HeldProgress::Write
        );
        assert_eq!(held_progress(true, None, false), HeldProgress::Write);
        // ... and not at all while busy, however long ago the last write was.
        assert_eq!(
            held_progress(true, Some(Duration::from_secs(600)), true),
            HeldProgress::Kept
        );
    }

    #[test]
    fn ready_expressions_see_the_dependency_and_the_application() {
        let app = |name: &str, health: &str| -> Application {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
                "metadata": { "name": name, "namespace": "ns", "labels": { "tier": "data" } },
                "spec": { "source": { "repoURL": "r", "path": "p" }, "destination": {} },
                "status": { "health": { "status": health } },
            }))
            .expect("application")
        };
        let (db, web) = (app("db", "Healthy"), app("web", "Progressing"));
        let eval = |e: &str| ready_expr(e, &db, &web);
        assert_eq!(eval("dep.status.health.status == 'Healthy'"), Ok(true));
        assert_eq!(eval("self.status.health.status == 'Healthy'"), Ok(false));
        assert_eq!(
            eval("dep.metadata.labels.tier == 'data' && self.metadata.name == 'web'"),
            Ok(true)
        );
        let not_bool = eval("dep.metadata.name").expect_err("a string");
        assert!(not_bool.contains("not a bool"), "{not_bool}");
        let broken = eval("dep.status ==").expect_err("does not compile");
        assert!(broken.contains("does not compile"), "{broken}");
        let missing = eval("dep.status.nothing.here == 1").expect_err("no such field");
        assert!(missing.contains("fails"), "{missing}");
    }

    #[test]
    fn statuses_that_differ_only_in_time_are_the_same() {
        let a = ApplicationStatus {
            reconciled_at: Some("t1".into()),
            ..Default::default()
        };
        let mut b = ApplicationStatus {
            reconciled_at: Some("t2".into()),
            ..Default::default()
        };
        assert!(same_but_time(&a, &b));
        b.sync.status = SyncCode::Synced;
        assert!(!same_but_time(&a, &b));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(300);
        assert_eq!(backoff_for(base, 0, max), Duration::from_secs(2));
        assert_eq!(backoff_for(base, 3, max), Duration::from_secs(16));
        assert_eq!(backoff_for(base, 30, max), max);
    }
}
