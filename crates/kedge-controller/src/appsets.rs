//! ApplicationSets: each set's Applications (what `kedge-appset` generates from it) created, updated and deleted as
//! its `syncPolicy.applicationsSync` allows.
//!
//! Safe by default: a generation that fails (a Git error, a template error) changes nothing and says why in the
//! set's `ErrorOccurred` condition; at most [`MAX_DELETIONS`] Applications are deleted per pass unless the set carries
//! [`CONFIRM_DELETIONS`]; an Application of the same name that the set did not make is never taken over. The
//! Applications a set made carry [`SET_LABEL`]; deleting the set leaves them (and what they deployed) in place. An
//! Application the set deletes takes what it deployed with it only when its template asks for that with the
//! `kedge.dev/resources-finalizer` finalizer, and not with `syncPolicy.preserveResourcesOnDeletion`.
//! A set runs again when it changes, when the registered Clusters change, and every `requeueAfterSeconds` (180 s by
//! default) for its Git generators.
//!
//! With `strategy: RollingSync`, the set's Applications carry [`ROLLOUT_ANNOTATION`]: their automated syncs wait
//! until the set releases them for the revision they are out of sync with ([`ROLLOUT_RELEASE_ANNOTATION`]), step by
//! step as [`kedge_appset::rollout`] decides. The rollout moves on as the Applications' states change (a watch of
//! the sets' Applications), and says where each stands in `status.applicationStatus` and the `RolloutProgressing`
//! condition. An Application without automated sync is asked to sync (as the CLI would) when released, as Argo CD
//! does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kedge_api::{
    Application, ApplicationSet, ApplicationSetApplicationStatus, Cluster, Condition, Operation,
    OperationPhase, ROLLOUT_ANNOTATION, ROLLOUT_RELEASE_ANNOTATION, ROLLOUT_SKIP_ANNOTATION,
    ROLLOUT_WAIT_ANNOTATION, RepositorySecrets, SyncCode, SyncOperation,
};
use kedge_appset::{GitFiles, Inputs};
use kedge_source::FileTree;
use kedge_source::source::Source;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use kedge_appset::owned::{CONFIRM_DELETIONS, SET_LABEL};
/// Most Applications one pass of a set deletes without [`CONFIRM_DELETIONS`].
pub const MAX_DELETIONS: usize = 5;
use kedge_appset::owned::FIELD_MANAGER;
/// The field manager of the rollout's annotations on the Applications.
const ROLLOUT_MANAGER: &str = "kedge-applicationset-rollout";
static EMPTY: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
/// How often due sets are looked for.
const TICK: Duration = Duration::from_secs(10);

/// Reconciles the ApplicationSets of `namespace` (reading with `read`, writing with `write`) until `shutdown`.
pub fn spawn(
    read: Client,
    write: Client,
    namespace: String,
    source: Source,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let sets: Api<ApplicationSet> = Api::namespaced(read.clone(), &namespace);
        let (store, writer) = reflector::store::<ApplicationSet>();
        let changes = watcher(sets, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects()
            .predicate_filter(set_facts, Default::default());
        let clusters = watcher(
            Api::<Cluster>::namespaced(read.clone(), &namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects();
        // The sets' Applications: a change of their state moves the rollouts on.
        let members = watcher(
            Api::<Application>::namespaced(read.clone(), &namespace),
            watcher::Config::default().labels(SET_LABEL),
        )
        .default_backoff()
        .applied_objects()
        .predicate_filter(rollout_facts, Default::default());
        let mut changes = std::pin::pin!(changes);
        let mut clusters = std::pin::pin!(clusters);
        let mut members = std::pin::pin!(members);
        let mut tick = tokio::time::interval(TICK);
        let mut last: HashMap<String, Instant> = HashMap::new();
        let cx = Cx {
            read,
            write,
            namespace,
            source,
        };
        loop {
            // Sets to generate again, and sets whose rollout may move on.
            let mut rolls: BTreeSet<String> = BTreeSet::new();
            let due: Vec<Arc<ApplicationSet>> = tokio::select! {
                () = shutdown.cancelled() => return,
                next = changes.next() => match next {
                    None => return,
                    Some(Ok(set)) => store
                        .get(&ObjectRef::from_obj(&set))
                        .into_iter()
                        .collect(),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "cannot watch the ApplicationSets");
                        Vec::new()
                    }
                },
                // A registered cluster came, went or changed its labels: every set may generate otherwise.
                Some(Ok(_)) = clusters.next() => store.state(),
                Some(Ok(app)) = members.next() => {
                    rolls.extend(app.labels().get(SET_LABEL).cloned());
                    // Several changes at once are taken together.
                    while let Some(Some(Ok(app))) = members.next().now_or_never() {
                        rolls.extend(app.labels().get(SET_LABEL).cloned());
                    }
                    Vec::new()
                }
                _ = tick.tick() => store
                    .state()
                    .into_iter()
                    .filter(|s| {
                        last.get(&s.name_any()).is_none_or(|at| at.elapsed() >= requeue_of(s))
                    })
                    .collect(),
            };
            for set in &due {
                last.insert(set.name_any(), Instant::now());
                cx.reconcile(set).await;
            }
            for set in store.state() {
                if rolls.contains(&set.name_any())
                    && !due.iter().any(|d| d.name_any() == set.name_any())
                    && rolling(&set).is_some()
                {
                    cx.roll_only(&set).await;
                }
            }
        }
    });
}

/// How often a set runs again for its Git generators: the shortest `requeueAfterSeconds` of its top-level Git
/// generators, 180 s by default.
fn requeue_of(set: &ApplicationSet) -> Duration {
    let secs = set
        .spec
        .generators
        .iter()
        .filter_map(|g| g.git.as_ref().and_then(|g| g.requeue_after_seconds))
        .min()
        .unwrap_or(180);
    Duration::from_secs(secs.max(1))
}

/// The steps of a set's `RollingSync` strategy, if it has one.
fn rolling(set: &ApplicationSet) -> Option<&kedge_api::RollingSync> {
    set.spec
        .strategy
        .as_ref()
        .filter(|s| s.type_ == "RollingSync")
        .and_then(|s| s.rolling_sync.as_ref())
}

/// What a set's pass depends on: its spec (generation) and the Applications a person let its rollout pass.
fn set_facts(set: &ApplicationSet) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    set.metadata.generation.hash(&mut h);
    set.annotations().get(ROLLOUT_SKIP_ANNOTATION).hash(&mut h);
    Some(h.finish())
}

/// What a rollout looks at in an Application: a change of it may move the rollout on.
fn rollout_facts(app: &Application) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let status = app.status.as_ref();
    status.map(|s| s.sync.status as u8).hash(&mut h);
    status.and_then(|s| s.sync.revision.clone()).hash(&mut h);
    status.map(|s| s.health.status as u8).hash(&mut h);
    status
        .and_then(|s| s.operation_state.as_ref())
        .map(|o| o.phase.as_str())
        .hash(&mut h);
    app.labels().hash(&mut h);
    app.annotations()
        .get(ROLLOUT_RELEASE_ANNOTATION)
        .hash(&mut h);
    Some(h.finish())
}

/// What a generation pass did, for the set's status.
struct Generated<'a> {
    /// Why it failed, if it did.
    error: Option<&'a str>,
    /// What it did, or that it kept everything.
    message: &'a str,
    /// The Applications it generated (`None`: unknown, keep what status says).
    applications: Option<Vec<String>>,
}

/// A rollout's verdicts, for the set's status.
struct RolloutReport {
    entries: Vec<ApplicationSetApplicationStatus>,
    /// `RolloutProgressing`: whether it is, why, and what it says.
    progressing: bool,
    reason: &'static str,
    message: String,
}

struct Cx {
    read: Client,
    write: Client,
    namespace: String,
    source: Source,
}

/// Git as the controller reads it: the repository Secrets of the set's namespace.
struct ControllerGit {
    source: Source,
    secrets: RepositorySecrets,
    namespace: String,
    handle: tokio::runtime::Handle,
}

impl GitFiles for ControllerGit {
    fn tree(&self, repo_url: &str, revision: &str) -> Result<Arc<dyn FileTree>, String> {
        let repo = kedge_source::RepoSpec::new(repo_url).map_err(|e| e.to_string())?;
        let (credentials, insecure) = self
            .handle
            .block_on(crate::pipeline::credentials_for(
                &self.secrets,
                &self.namespace,
                repo_url,
            ))
            .map_err(|e| e.to_string())?;
        kedge_appset::fetch_tree(
            &self.source,
            repo.with_credentials(credentials).insecure(insecure),
            revision,
        )
    }
}

/// What one pass of a set did.
#[derive(Default, Debug)]
struct Outcome {
    created: Vec<String>,
    updated: usize,
    deleted: Vec<String>,
    /// Deletions left for later passes (the bound).
    deferred: usize,
    /// Names taken by Applications the set did not make.
    foreign: Vec<String>,
}

impl Cx {
    async fn reconcile(&self, set: &ApplicationSet) {
        let name = set.name_any();
        match self.generate_and_apply(set).await {
            Ok((names, outcome)) => {
                let mut message = format!(
                    "{} application(s): {} created, {} updated, {} deleted",
                    names.len(),
                    outcome.created.len(),
                    outcome.updated,
                    outcome.deleted.len()
                );
                if outcome.deferred > 0 {
                    message.push_str(&format!(
                        "; {} more to delete in later passes ({MAX_DELETIONS} per pass unless annotated \
                         {CONFIRM_DELETIONS}: \"true\")",
                        outcome.deferred
                    ));
                }
                let error = (!outcome.foreign.is_empty()).then(|| {
                    format!(
                        "Applications not made by this set have the names it generates, left alone: {}",
                        outcome.foreign.join(", ")
                    )
                });
                let rollout = self.roll(set).await;
                self.write_status(
                    set,
                    Some(Generated {
                        error: error.as_deref(),
                        message: &message,
                        applications: Some(names),
                    }),
                    rollout,
                )
                .await;
            }
            Err(error) => {
                tracing::info!(set = %name, %error, "application set not generated");
                // The rollout of what exists goes on.
                let rollout = self.roll(set).await;
                self.write_status(
                    set,
                    Some(Generated {
                        error: Some(&error),
                        message: "nothing was changed: the Applications made before stay",
                        applications: None,
                    }),
                    rollout,
                )
                .await;
            }
        }
    }

    async fn generate_and_apply(
        &self,
        set: &ApplicationSet,
    ) -> Result<(Vec<String>, Outcome), String> {
        let set_name = set.name_any();
        let ns = set.namespace().unwrap_or_else(|| self.namespace.clone());
        let clusters = Api::<Cluster>::namespaced(self.read.clone(), &self.namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list the registered Clusters: {e}"))?
            .items;
        let git = ControllerGit {
            source: self.source.clone(),
            secrets: RepositorySecrets::Read(self.read.clone()),
            namespace: ns.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let owned = set.clone();
        let generated = tokio::task::spawn_blocking(move || {
            kedge_appset::generate(&owned, &Inputs::new(&clusters, &git))
        })
        .await
        .map_err(|e| format!("generation stopped: {e}"))?
        .map_err(|e| e.to_string())?;
        let kedge_appset::owned::Allowed {
            create,
            update,
            delete,
            ..
        } = kedge_appset::owned::Allowed::of(set);
        let apps: Api<Application> = Api::namespaced(self.read.clone(), &ns);
        let writes: Api<Application> = Api::namespaced(self.write.clone(), &ns);
        let existing: HashMap<String, Arc<Application>> = apps
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list the Applications of namespace {ns}: {e}"))?
            .items
            .into_iter()
            .map(|a| (a.name_any(), Arc::new(a)))
            .collect();
        let mine = |a: &Application| kedge_appset::owned::made_by(a, &set_name);
        let confirmed = kedge_appset::owned::deletions_confirmed(set);
        // Nothing generated at all: the Applications made before stay until a person confirms.
        let made = existing.values().filter(|a| mine(a)).count();
        if kedge_appset::owned::held_when_nothing_generated(set, delete, generated.is_empty(), made)
        {
            return Err(format!(
                "the generators returned no Applications; the {made} made before stay (annotate the set {CONFIRM_DELETIONS}: \"true\" to delete them)"
            ));
        }
        let mut outcome = Outcome::default();
        let mut names = BTreeSet::new();
        for g in generated {
            let app_name = g.application.name_any();
            // What the set writes: the same body `kedge appset diff` previews.
            let body = kedge_appset::owned::desired(set, &g.application, &ns)
                .map_err(|e| e.to_string())?;
            names.insert(app_name.clone());
            let found = existing.get(&app_name);
            match found {
                Some(a) if !mine(a) => {
                    outcome.foreign.push(app_name);
                    continue;
                }
                Some(_) if !update => continue,
                None if !create => continue,
                _ => {}
            }
            writes
                .patch(
                    &app_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .map_err(|e| format!("cannot write application {app_name}: {e}"))?;
            if found.is_some() {
                outcome.updated += 1;
            } else {
                outcome.created.push(app_name);
            }
        }
        if delete {
            let gone: Vec<&String> = existing
                .iter()
                .filter(|(n, a)| mine(a) && !names.contains(*n))
                .map(|(n, _)| n)
                .collect();
            let bound = if confirmed { usize::MAX } else { MAX_DELETIONS };
            let mut gone: Vec<&String> = gone;
            gone.sort();
            outcome.deferred = gone.len().saturating_sub(bound);
            let preserve = set
                .spec
                .sync_policy
                .as_ref()
                .is_some_and(|p| p.preserve_resources_on_deletion);
            for n in gone.into_iter().take(bound) {
                let finalizers = existing
                    .get(n)
                    .map(|a| a.finalizers().to_vec())
                    .unwrap_or_default();
                if preserve
                    && finalizers
                        .iter()
                        .any(|f| f == kedge_api::RESOURCES_FINALIZER)
                {
                    // What the Application deployed stays: without the finalizer, deleting it deletes nothing else.
                    let kept: Vec<&String> = finalizers
                        .iter()
                        .filter(|f| *f != kedge_api::RESOURCES_FINALIZER)
                        .collect();
                    let patch = json!({ "metadata": { "finalizers": kept } });
                    writes
                        .patch(n, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| format!("cannot release application {n}: {e}"))?;
                }
                match writes.delete(n, &DeleteParams::default()).await {
                    Ok(_) => outcome.deleted.push(n.clone()),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(format!("cannot delete application {n}: {e}")),
                }
            }
        }
        Ok((names.into_iter().collect(), outcome))
    }

    /// A pass of the rollout alone (an Application of the set changed): the set as it is now, its rollout moved on.
    async fn roll_only(&self, set: &ApplicationSet) {
        let api: Api<ApplicationSet> = Api::namespaced(
            self.read.clone(),
            &set.namespace().unwrap_or_else(|| self.namespace.clone()),
        );
        let set = match api.get(&set.name_any()).await {
            Ok(set) => set,
            Err(e) => {
                tracing::debug!(set = %set.name_any(), error = %e, "cannot read the set");
                return;
            }
        };
        let rollout = self.roll(&set).await;
        self.write_status(&set, None, rollout).await;
    }

    /// Moves the rollout of `set` on: releases what its steps allow, holds the rest, asks Applications without
    /// automated sync to sync when released. Without a `RollingSync` strategy, removes what a rollout left. `None`
    /// when the set has no rollout (or its Applications cannot be read: the next pass tries again).
    async fn roll(&self, set: &ApplicationSet) -> Option<RolloutReport> {
        let set_name = set.name_any();
        let ns = set.namespace().unwrap_or_else(|| self.namespace.clone());
        let apps: Api<Application> = Api::namespaced(self.read.clone(), &ns);
        let writes: Api<Application> = Api::namespaced(self.write.clone(), &ns);
        let members = match apps
            .list(&ListParams::default().labels(&format!("{SET_LABEL}={set_name}")))
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                tracing::debug!(set = %set_name, error = %e, "cannot list the set's Applications");
                return None;
            }
        };
        let annotated = |a: &Application, key: &str| a.annotations().get(key).cloned();
        let Some(steps) = rolling(set) else {
            // No rollout (any more): nothing of one stays on the Applications.
            for app in &members {
                if annotated(app, ROLLOUT_RELEASE_ANNOTATION).is_some()
                    || annotated(app, ROLLOUT_WAIT_ANNOTATION).is_some()
                {
                    self.annotate(&writes, app, None, None).await;
                }
            }
            return None;
        };
        let skipped: BTreeSet<String> = set
            .annotations()
            .get(ROLLOUT_SKIP_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let sources: Vec<String> = members
            .iter()
            .map(|a| {
                let source = a.spec.primary_source();
                format!(
                    "{}#{}",
                    kedge_source::url::normalize(&source.repo_url),
                    source.target_revision
                )
            })
            .collect();
        let view: Vec<kedge_appset::rollout::Member<'_>> = members
            .iter()
            .zip(&sources)
            .map(|(a, source)| {
                let status = a.status.as_ref();
                let op = status.and_then(|s| s.operation_state.as_ref());
                kedge_appset::rollout::Member {
                    name: a.metadata.name.as_deref().unwrap_or_default(),
                    labels: a.metadata.labels.as_ref().unwrap_or(&EMPTY),
                    revision: status.and_then(|s| s.sync.revision.as_deref()),
                    synced: status.is_some_and(|s| s.sync.status == SyncCode::Synced),
                    health: status.map(|s| s.health.status).unwrap_or_default(),
                    operating: op.is_some_and(|o| !o.phase.is_completed()),
                    failed: op.is_some_and(|o| {
                        matches!(o.phase, OperationPhase::Failed | OperationPhase::Error)
                    }),
                    released: a
                        .annotations()
                        .get(ROLLOUT_RELEASE_ANNOTATION)
                        .map(String::as_str),
                    source: Some(source.as_str()),
                }
            })
            .collect();
        let plan = match kedge_appset::rollout::plan(&steps.steps, &view, &skipped) {
            Ok(plan) => plan,
            Err(e) => {
                return Some(RolloutReport {
                    entries: Vec::new(),
                    progressing: false,
                    reason: "InvalidStrategy",
                    message: e.to_string(),
                });
            }
        };
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let old: HashMap<&str, &ApplicationSetApplicationStatus> = set
            .status
            .iter()
            .flat_map(|s| &s.application_status)
            .map(|e| (e.application.as_str(), e))
            .collect();
        let mut entries = Vec::new();
        for (app, verdict) in members.iter().zip(&plan.members) {
            let wait = (verdict.state == kedge_appset::rollout::MemberState::Waiting)
                .then(|| verdict.message.clone());
            let newly_released = verdict.release.is_some()
                && verdict.release != annotated(app, ROLLOUT_RELEASE_ANNOTATION);
            if verdict.release != annotated(app, ROLLOUT_RELEASE_ANNOTATION)
                || wait != annotated(app, ROLLOUT_WAIT_ANNOTATION)
                || annotated(app, ROLLOUT_ANNOTATION).as_ref() != Some(&set_name)
            {
                self.annotate(&writes, app, verdict.release.as_deref(), wait.as_deref())
                    .await;
            }
            let automated = app
                .spec
                .sync_policy
                .as_ref()
                .and_then(|p| p.automation())
                .is_some();
            if newly_released
                && !automated
                && verdict.state == kedge_appset::rollout::MemberState::Progressing
            {
                // Argo CD syncs the Applications of a step whatever their policy: ask, as the CLI would.
                let op = Operation {
                    sync: Some(SyncOperation {
                        revision: verdict.release.clone(),
                        ..SyncOperation::default()
                    }),
                    rollback: None,
                    initiated_by: format!("applicationset/{set_name}"),
                    requested_at: now.clone(),
                };
                let patch = json!({ "metadata": { "annotations": {
                    kedge_api::OPERATION_ANNOTATION: op.to_annotation() } } });
                if let Err(e) = writes
                    .patch(
                        &verdict.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    tracing::debug!(app = %verdict.name, error = %e, "cannot ask for a sync");
                }
            }
            let status = verdict.state.as_str().to_owned();
            let since = old
                .get(verdict.name.as_str())
                .filter(|e| e.status == status)
                .and_then(|e| e.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            entries.push(ApplicationSetApplicationStatus {
                application: verdict.name.clone(),
                status,
                message: verdict.message.clone(),
                step: verdict.step.map(|s| s.to_string()).unwrap_or_default(),
                target_revisions: verdict.release.iter().cloned().collect(),
                last_transition_time: Some(since),
            });
        }
        entries.sort_by(|a, b| a.application.cmp(&b.application));
        let total = steps.steps.len();
        let (progressing, reason, message) = match (&plan.stopped, plan.step) {
            (Some(why), _) => (true, "Stopped", format!("the rollout stopped at {why}")),
            (None, Some(step)) => (
                true,
                "Progressing",
                format!("step {step} of {total} in progress"),
            ),
            (None, None) => (
                false,
                "Complete",
                format!("every step of {total} is Synced and Healthy"),
            ),
        };
        Some(RolloutReport {
            entries,
            progressing,
            reason,
            message,
        })
    }

    /// Sets (or removes) the rollout's annotations of `app`.
    async fn annotate(
        &self,
        writes: &Api<Application>,
        app: &Application,
        release: Option<&str>,
        wait: Option<&str>,
    ) {
        let mut annotations = serde_json::Map::new();
        if let Some(r) = release {
            annotations.insert(ROLLOUT_RELEASE_ANNOTATION.into(), r.into());
        }
        if let Some(w) = wait {
            annotations.insert(ROLLOUT_WAIT_ANNOTATION.into(), w.into());
        }
        let name = app.name_any();
        let body = json!({
            "apiVersion": "kedge.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": name, "annotations": annotations },
        });
        if let Err(e) = writes
            .patch(
                &name,
                &PatchParams::apply(ROLLOUT_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            tracing::debug!(app = %name, error = %e, "cannot write the rollout's annotations");
        }
    }

    /// Writes the set's status: the generation's outcome (error, message, the Applications) when there was one,
    /// and the rollout's.
    async fn write_status(
        &self,
        set: &ApplicationSet,
        generated: Option<Generated<'_>>,
        rollout: Option<RolloutReport>,
    ) {
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let generation = set.metadata.generation;
        let old = set.status.clone().unwrap_or_default();
        let condition = |type_: &str, on: bool, reason: &str, message: &str| {
            let status = if on { "True" } else { "False" };
            let since = old
                .conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation: generation,
                last_transition_time: Some(since),
            }
        };
        let mut conditions: Vec<Condition> = match &generated {
            Some(Generated { error, message, .. }) => vec![
                match error {
                    Some(e) => condition("ErrorOccurred", true, "GenerationFailed", e),
                    None => condition("ErrorOccurred", false, "Generated", "no error"),
                },
                condition(
                    "ResourcesUpToDate",
                    error.is_none(),
                    if error.is_none() { "Applied" } else { "Kept" },
                    message,
                ),
            ],
            None => old
                .conditions
                .iter()
                .filter(|c| c.type_ != "RolloutProgressing")
                .cloned()
                .collect(),
        };
        if let Some(r) = &rollout {
            conditions.push(condition(
                "RolloutProgressing",
                r.progressing,
                r.reason,
                &r.message,
            ));
        }
        let applications = generated
            .and_then(|g| g.applications)
            .unwrap_or(old.applications.clone());
        let application_status = rollout.map(|r| r.entries).unwrap_or_default();
        if old.applications == applications
            && old.application_status == application_status
            && old.conditions.len() == conditions.len()
            && old.conditions.iter().zip(&conditions).all(|(a, b)| {
                a.type_ == b.type_
                    && a.status == b.status
                    && a.message == b.message
                    && a.observed_generation == b.observed_generation
            })
        {
            return;
        }
        let patch = json!({ "status": {
            "conditions": conditions,
            "applications": applications,
            "applicationStatus": application_status,
        } });
        let api: Api<ApplicationSet> = Api::namespaced(
            self.write.clone(),
            &set.namespace().unwrap_or_else(|| self.namespace.clone()),
        );
        if let Err(e) = api
            .patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(set = %set.name_any(), error = %e, "cannot write the set's status");
        }
    }
}
