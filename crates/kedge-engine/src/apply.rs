//! Sync: hooks, ordered server-side apply by wave and kind, health gates, prune, and the inventory.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
    ValidationDirective,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::cluster::{Resolved, api_code, api_message};
use crate::engine::{Engine, PropagationPolicy, SyncOptions};
use crate::error::EngineError;
use crate::health::{Health, HealthChecker, HealthStatus};
use crate::object::{
    ObjectId, TRACKING_ANNOTATION, annotation, set_namespace, split_api_version, str_at,
};
use crate::order::{HookPhase, kind_rank};
use crate::plan::{
    CacheEntry, Plan, PlannedHook, PlannedObject, PruneAction, SyncStatus, Tracking,
    adopted_message, by_wave, cache_key, hash_value, live_hash,
};

/// What a sync did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Created.
    Created,
    /// Changed.
    Configured,
    /// An existing object that no application tracked, now tracked (and changed as desired) by this one.
    Adopted,
    /// Already in sync; not written.
    Unchanged,
    /// Deleted by prune.
    Pruned,
    /// Left in place by prune (`Prune=false`, pruning disabled, or refused).
    PruneSkipped,
    /// Failed; see the message.
    Failed,
    /// Not attempted because an earlier step failed.
    Skipped,
}

/// The outcome of one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectOutcome {
    /// Identity.
    pub id: ObjectId,
    /// What happened.
    pub action: Action,
    /// Details (API server message on failure).
    pub message: String,
}

/// The outcome of one hook run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookOutcome {
    /// Identity.
    pub id: ObjectId,
    /// Phase it ran in.
    pub phase: HookPhase,
    /// True if it completed successfully.
    pub succeeded: bool,
    /// Details.
    pub message: String,
}

/// Overall result of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncPhase {
    /// Everything was applied (and pruned) as planned.
    Succeeded,
    /// Something failed; see the outcomes.
    Failed,
}

/// Everything a sync did, and the inventory to store for the next plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncResult {
    /// Succeeded or Failed.
    pub phase: SyncPhase,
    /// Summary of the failure, empty on success.
    pub message: String,
    /// One outcome per desired object and prune candidate, in the order they were handled.
    pub outcomes: Vec<ObjectOutcome>,
    /// Hook runs in order.
    pub hooks: Vec<HookOutcome>,
    /// Objects that exist and are tracked by this application after the sync.
    pub inventory: Vec<ObjectId>,
    /// The newest version of each object the sync wrote or waited for, as the API server returned it (see
    /// [`Engine::plan_after_sync`]).
    #[serde(skip)]
    pub(crate) seen: HashMap<ObjectId, Value>,
}

/// Receives, as a sync runs, what it is doing or waiting for ("wave 0: waiting for HorizontalPodAutoscaler web:
/// autoscaler has no status yet"); called often (every poll), so it should only keep the newest message.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

struct Run<'a> {
    plan: &'a Plan,
    options: &'a SyncOptions,
    progress: Progress<'a>,
    health: HealthChecker,
    outcomes: HashMap<ObjectId, ObjectOutcome>,
    order: Vec<ObjectId>,
    hooks: Vec<HookOutcome>,
    failures: Vec<String>,
    /// Objects that exist and are owned after the sync.
    inventory: BTreeSet<ObjectId>,
    /// The newest version of each object applied or waited for.
    seen: HashMap<ObjectId, Value>,
}

impl Run<'_> {
    fn record(&mut self, id: &ObjectId, action: Action, message: impl Into<String>) {
        let message = message.into();
        if action == Action::Failed {
            self.failures.push(format!("{id}: {message}"));
        }
        if !self.outcomes.contains_key(id) {
            self.order.push(id.clone());
        }
        self.outcomes.insert(
            id.clone(),
            ObjectOutcome {
                id: id.clone(),
                action,
                message,
            },
        );
    }
}

impl Engine {
    /// Executes a plan: PreSync hooks, then each wave in kind order (waiting for health between
    /// waves), prune, PruneLast prune and PostSync hooks; SyncFail hooks when something failed.
    pub async fn sync(
        &self,
        plan: &Plan,
        options: &SyncOptions,
    ) -> Result<SyncResult, EngineError> {
        self.sync_with_progress(plan, options, &|_| {}).await
    }

    /// [`Engine::sync`], telling `progress` what each wave and hook waits for as it runs.
    pub async fn sync_with_progress(
        &self,
        plan: &Plan,
        options: &SyncOptions,
        progress: Progress<'_>,
    ) -> Result<SyncResult, EngineError> {
        let health = HealthChecker::new(&plan.spec.health_rules)?.layered(&self.health);
        let mut run = Run {
            plan,
            options,
            progress,
            health,
            outcomes: HashMap::new(),
            order: Vec::new(),
            hooks: Vec::new(),
            failures: plan.invalid.clone(),
            inventory: BTreeSet::new(),
            seen: HashMap::new(),
        };
        // Objects that exist and are ours stay in the inventory unless pruned.
        for o in &plan.objects {
            if o.tracking == Tracking::Owned {
                run.inventory.insert(o.id.clone());
            }
        }
        for p in &plan.prune {
            if matches!(
                p.action,
                PruneAction::Delete | PruneAction::Keep | PruneAction::KindNotServed
            ) {
                run.inventory.insert(p.id.clone());
            }
        }
        // A pruning sync that would delete most of the inventory changes nothing until confirmed.
        if options.prune
            && !options.confirm_prune
            && let Some(why) = plan.mass_prune()
        {
            let why = format!("sync refused, nothing was applied: {why}");
            for o in &plan.objects {
                run.record(&o.id, Action::Skipped, why.clone());
            }
            for p in plan.to_prune() {
                run.record(&p.id, Action::PruneSkipped, why.clone());
            }
            run.failures.push(why);
            let Run {
                mut outcomes,
                order,
                failures,
                inventory,
                ..
            } = run;
            return Ok(SyncResult {
                phase: SyncPhase::Failed,
                message: failures.join("; "),
                outcomes: order.iter().filter_map(|id| outcomes.remove(id)).collect(),
                hooks: Vec::new(),
                inventory: inventory.into_iter().collect(),
                seen: HashMap::new(),
            });
        }

        let ok = self.run_hooks(&mut run, HookPhase::PreSync, None).await;
        if !ok {
            for o in &plan.objects {
                run.record(&o.id, Action::Skipped, "PreSync hook failed");
            }
        } else {
            self.apply_waves(&mut run).await;
        }

        let applied_ok = run.failures.is_empty();
        if applied_ok {
            let deletes = plan
                .prune
                .iter()
                .filter(|p| p.action == PruneAction::Delete)
                .count();
            if deletes > 0 && options.prune {
                progress(&format!("pruning {deletes} object(s)"));
            }
            self.prune(&mut run).await;
        } else {
            for p in &plan.prune {
                if p.action == PruneAction::Delete {
                    run.record(&p.id, Action::PruneSkipped, "not pruned: the sync failed");
                }
            }
        }
        if run.failures.is_empty() {
            self.run_hooks(&mut run, HookPhase::PostSync, None).await;
        }
        if !run.failures.is_empty() {
            self.run_hooks(&mut run, HookPhase::SyncFail, None).await;
        }

        let Run {
            outcomes,
            order,
            hooks,
            failures,
            inventory,
            seen,
            ..
        } = run;
        let mut outcomes = outcomes;
        Ok(SyncResult {
            phase: if failures.is_empty() {
                SyncPhase::Succeeded
            } else {
                SyncPhase::Failed
            },
            message: failures.join("; "),
            outcomes: order.iter().filter_map(|id| outcomes.remove(id)).collect(),
            hooks,
            inventory: inventory.into_iter().collect(),
            seen,
        })
    }

    async fn apply_waves(&self, run: &mut Run<'_>) {
        let plan = run.plan;
        let waves = by_wave(&plan.objects);
        let mut sync_hook_waves: BTreeSet<i64> = plan
            .hooks
            .iter()
            .filter(|h| h.phases.contains(&HookPhase::Sync))
            .map(|h| h.wave)
            .collect();
        sync_hook_waves.retain(|w| !waves.contains_key(w));
        let mut all_waves: BTreeSet<i64> = waves.keys().copied().collect();
        all_waves.extend(sync_hook_waves);
        let last_wave = all_waves.iter().next_back().copied();
        let needs_final_health = run.options.wait_healthy
            || plan
                .hooks
                .iter()
                .any(|h| h.phases.contains(&HookPhase::PostSync))
            || plan
                .prune
                .iter()
                .any(|p| p.action == PruneAction::Delete && p.options.prune_last);
        let mut failed = false;
        for wave in all_waves {
            let idxs = waves.get(&wave).cloned().unwrap_or_default();
            if failed {
                for i in idxs {
                    run.record(
                        &plan.objects[i].id,
                        Action::Skipped,
                        "an earlier wave failed",
                    );
                }
                continue;
            }
            let before = run.failures.len();
            (run.progress)(&format!("wave {wave}: applying {} object(s)", idxs.len()));
            // Kind groups in order; each group concurrently.
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for i in idxs.iter().copied() {
                let rank = plan.objects[i].rank();
                match groups.last_mut() {
                    Some((r, v)) if *r == rank => v.push(i),
                    _ => groups.push((rank, vec![i])),
                }
            }
            let mut applied: Vec<(ObjectId, Resolved)> = Vec::new();
            for (_, group) in groups {
                let options = run.options;
                let results: Vec<(usize, Result<ApplyOk, String>)> =
                    futures::stream::iter(group.iter().copied())
                        .map(|i| async move {
                            (i, self.apply_object(plan, &plan.objects[i], options).await)
                        })
                        .buffer_unordered(self.config.concurrency.max(1))
                        .collect()
                        .await;
                let mut crds = Vec::new();
                let mut sorted = results;
                sorted.sort_by_key(|(i, _)| *i);
                for (i, r) in sorted {
                    let o = &plan.objects[i];
                    match r {
                        Ok(ok) => {
                            run.record(&o.id, ok.action, ok.message);
                            run.inventory.insert(o.id.clone());
                            if let Some(live) = ok.live {
                                run.seen.insert(o.id.clone(), live);
                            }
                            if o.id.kind == "CustomResourceDefinition"
                                && o.id.group == "apiextensions.k8s.io"
                                && ok.action != Action::Unchanged
                            {
                                crds.push((o.id.clone(), ok.resource.clone()));
                            }
                            applied.push((o.id.clone(), ok.resource));
                        }
                        Err(msg) => {
                            let msg = crate::diff::redact(&msg, &o.secrets);
                            run.record(&o.id, Action::Failed, msg)
                        }
                    }
                }
                if !crds.is_empty() {
                    self.wait_crds(run, &crds).await;
                }
            }
            let hooks_ok = self.run_hooks(run, HookPhase::Sync, Some(wave)).await;
            if !hooks_ok || run.failures.len() > before {
                failed = true;
                continue;
            }
            let is_last = Some(wave) == last_wave;
            if !is_last || needs_final_health {
                match self
                    .wait_healthy(run, wave, &applied, run.options.wave_timeout)
                    .await
                {
                    Ok(reads) => run.seen.extend(reads),
                    Err(msg) => {
                        run.failures.push(format!("wave {wave}: {msg}"));
                        failed = true;
                    }
                }
            }
        }
    }

    async fn resolve_late(&self, o: &PlannedObject) -> Result<Resolved, String> {
        if let Some(r) = &o.resource {
            return Ok(r.clone());
        }
        let (_, version) = split_api_version(&o.api_version);
        let lookup = self
            .resources
            .lookup(&o.id.group, version, &o.id.kind)
            .await
            .map_err(|e| e.to_string())?;
        match lookup {
            Some(r) => Ok(r),
            None => {
                self.resources.refresh().await.map_err(|e| e.to_string())?;
                self.resources
                    .lookup(&o.id.group, version, &o.id.kind)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("unknown kind {}/{}", o.api_version, o.id.kind))
            }
        }
    }

    async fn apply_object(
        &self,
        plan: &Plan,
        o: &PlannedObject,
        options: &SyncOptions,
    ) -> Result<ApplyOk, String> {
        if o.status == SyncStatus::Error {
            return Err(o.message.clone());
        }
        let resource = self.resolve_late(o).await?;
        if o.status == SyncStatus::Synced {
            return Ok(ApplyOk {
                action: Action::Unchanged,
                message: String::new(),
                resource,
                live: None,
            });
        }
        let mut payload = o.payload.clone();
        if resource.namespaced && o.id.namespace.is_none() {
            set_namespace(&mut payload, &plan.spec.destination_namespace);
        }
        if !resource.namespaced && o.id.namespace.is_some() && o.resource.is_none() {
            return Err(format!(
                "{} is cluster-scoped, but SkipDryRunOnMissingResource=true planned it as namespaced while its \
                 kind was not served; sync again now that it is",
                o.id.kind
            ));
        }
        let api = resource.api(&self.client, o.id.namespace.as_deref());
        let obj = if o.options.replace {
            self.replace_object(&resource, o, &payload, options).await?
        } else {
            match self.apply_payload(&api, o, &payload, options).await {
                // Force=true: what the API server refuses to change (an immutable field) is deleted and created.
                Err(e) if o.options.force && matches!(api_code(&e), Some(409 | 422)) => {
                    let deadline = Instant::now() + options.wave_timeout;
                    self.delete_and_wait(&resource, &o.id, deadline).await?;
                    self.apply_payload(&api, o, &payload, options)
                        .await
                        .map_err(|e| apply_error(&e))?
                }
                r => r.map_err(|e| apply_error(&e))?,
            }
        };
        let obj = serde_json::to_value(obj).map_err(|e| e.to_string())?;
        // The object as applied is exactly what a dry-run of the same payload would return.
        let payload_hash = o.payload_hash.unwrap_or_else(|| hash_value(&payload));
        self.live
            .remember(&resource, o.id.namespace.as_deref(), &o.id.name, &obj);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(
                cache_key(&o.id),
                CacheEntry::applied(
                    payload_hash,
                    live_hash(Some(&obj), &payload, &self.config.field_manager),
                ),
            );
        }
        // A created object needs no details: the plan's message ("will be created ...") is stale once it is.
        let (action, message) = if o.status == SyncStatus::Missing {
            (Action::Created, String::new())
        } else if o.tracking == Tracking::Untracked {
            (Action::Adopted, adopted_message(&o.adopted_from))
        } else {
            (Action::Configured, o.message.clone())
        };
        Ok(ApplyOk {
            action,
            message,
            resource,
            live: Some(obj),
        })
    }

    async fn apply_payload(
        &self,
        api: &Api<DynamicObject>,
        o: &PlannedObject,
        payload: &Value,
        options: &SyncOptions,
    ) -> Result<DynamicObject, kube::Error> {
        self.stats.applies.fetch_add(1, Ordering::Relaxed);
        let mut pp = PatchParams::apply(&self.config.field_manager);
        pp.force = options.force_conflicts;
        if o.options.skip_validation {
            pp.field_validation = Some(ValidationDirective::Ignore);
        }
        api.patch(&o.id.name, &pp, &Patch::Apply(payload)).await
    }

    /// `Replace=true`: a replace (PUT) of the live object, or a create when there is none; with `Force=true`,
    /// the live object is deleted first.
    async fn replace_object(
        &self,
        resource: &Resolved,
        o: &PlannedObject,
        payload: &Value,
        options: &SyncOptions,
    ) -> Result<DynamicObject, String> {
        let api = resource.api(&self.client, o.id.namespace.as_deref());
        let mut obj: DynamicObject =
            serde_json::from_value(payload.clone()).map_err(|e| e.to_string())?;
        let pp = PostParams {
            field_manager: Some(self.config.field_manager.clone()),
            dry_run: false,
        };
        if o.options.force {
            let deadline = Instant::now() + options.wave_timeout;
            self.delete_and_wait(resource, &o.id, deadline).await?;
        }
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let live = self
            .live
            .get_fresh(resource, o.id.namespace.as_deref(), &o.id.name)
            .await
            .map_err(|e| api_message(&e))?;
        self.stats.applies.fetch_add(1, Ordering::Relaxed);
        let written = match live
            .as_ref()
            .and_then(|l| str_at(l, &["metadata", "resourceVersion"]))
        {
            Some(rv) => {
                obj.metadata.resource_version = Some(rv.to_owned());
                api.replace(&o.id.name, &pp, &obj).await
            }
            None => api.create(&pp, &obj).await,
        };
        written.map_err(|e| apply_error(&e))
    }

    async fn wait_crds(&self, run: &mut Run<'_>, crds: &[(ObjectId, Resolved)]) {
        let deadline = Instant::now() + run.options.wave_timeout;
        for (id, resource) in crds {
            loop {
                let live = self.live.get(resource, None, &id.name).await;
                self.stats.gets.fetch_add(1, Ordering::Relaxed);
                let h = match &live {
                    Ok(l) => run.health.assess(l.as_ref()),
                    Err(e) => Health {
                        status: HealthStatus::Unknown,
                        message: api_message(e),
                    },
                };
                if h.status == HealthStatus::Healthy {
                    break;
                }
                if h.status == HealthStatus::Degraded || Instant::now() >= deadline {
                    run.record(
                        id,
                        Action::Failed,
                        format!("definition not established: {}", h.message),
                    );
                    break;
                }
                (run.progress)(&format!(
                    "waiting for CustomResourceDefinition {} to be established: {}",
                    id.name,
                    waiting_for(&h)
                ));
                tokio::time::sleep(self.config.poll_interval).await;
            }
        }
        if let Err(e) = self.resources.refresh().await {
            run.failures.push(e.to_string());
        }
    }

    /// Polls the objects until all are healthy (or suspended); fails on Degraded or timeout.
    async fn wait_healthy(
        &self,
        run: &Run<'_>,
        wave: i64,
        objects: &[(ObjectId, Resolved)],
        timeout: Duration,
    ) -> Result<Vec<(ObjectId, Value)>, String> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<&(ObjectId, Resolved)> = objects.iter().collect();
        let mut healthy = Vec::with_capacity(objects.len());
        loop {
            let mut still = Vec::new();
            for item in pending {
                let (id, r) = item;
                self.stats.gets.fetch_add(1, Ordering::Relaxed);
                let live = self
                    .live
                    .get(r, id.namespace.as_deref(), &id.name)
                    .await
                    .map_err(|e| api_message(&e))?;
                let h = run.health.assess(live.as_ref());
                match h.status {
                    HealthStatus::Healthy | HealthStatus::Suspended => {
                        if let Some(live) = live {
                            healthy.push((id.clone(), live));
                        }
                    }
                    HealthStatus::Degraded => {
                        return Err(format!("{id} is Degraded: {}", h.message));
                    }
                    _ => still.push((item, h)),
                }
            }
            if still.is_empty() {
                return Ok(healthy);
            }
            if Instant::now() >= deadline {
                let (item, h) = &still[0];
                return Err(format!(
                    "{} not healthy after {:?}: {} {}",
                    item.0, timeout, h.status, h.message
                ));
            }
            let ((first, _), h) = &still[0];
            let more = match still.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            (run.progress)(&format!(
                "wave {wave}: waiting for {} {}: {}{more}",
                first.kind,
                first.name,
                waiting_for(h)
            ));
            pending = still.into_iter().map(|(i, _)| i).collect();
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn prune(&self, run: &mut Run<'_>) {
        let plan = run.plan;
        let mut candidates: Vec<&crate::plan::PruneCandidate> = plan.prune.iter().collect();
        candidates.sort_by_key(|p| {
            (
                p.options.prune_last,
                std::cmp::Reverse(kind_rank(&p.id.kind)),
            )
        });
        for p in candidates {
            match &p.action {
                PruneAction::Gone => {}
                PruneAction::Keep => run.record(&p.id, Action::PruneSkipped, "Prune=false"),
                PruneAction::KindNotServed => run.record(
                    &p.id,
                    Action::PruneSkipped,
                    format!(
                        "kind {}/{} is not served by the API server; kept in the inventory until it is",
                        p.id.group, p.id.kind
                    ),
                ),
                PruneAction::Refuse(msg) => run.record(&p.id, Action::Failed, msg.clone()),
                PruneAction::Delete
                    if run.options.deleting_application && p.options.delete_disabled =>
                {
                    run.record(
                        &p.id,
                        Action::PruneSkipped,
                        "Delete=false: kept when the application is deleted",
                    )
                }
                PruneAction::Delete if !run.options.prune => {
                    run.record(&p.id, Action::PruneSkipped, "pruning is disabled")
                }
                PruneAction::Delete if plan.would_prune_all && !run.options.allow_empty => {
                    run.record(
                        &p.id,
                        Action::PruneSkipped,
                        "refusing to prune every object of an empty desired set (allow_empty is off)",
                    );
                }
                PruneAction::Delete => {
                    let Some(resource) = &p.resource else {
                        continue;
                    };
                    self.stats.deletes.fetch_add(1, Ordering::Relaxed);
                    let api = resource.api(&self.client, p.id.namespace.as_deref());
                    let dp = DeleteParams {
                        propagation_policy: Some(match run.options.propagation {
                            PropagationPolicy::Foreground => {
                                kube::api::PropagationPolicy::Foreground
                            }
                            PropagationPolicy::Background => {
                                kube::api::PropagationPolicy::Background
                            }
                            PropagationPolicy::Orphan => kube::api::PropagationPolicy::Orphan,
                        }),
                        preconditions: p.uid.clone().map(|uid| Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&p.id.name, &dp).await {
                        Ok(_) => {
                            run.inventory.remove(&p.id);
                            run.record(&p.id, Action::Pruned, "");
                        }
                        Err(e) if api_code(&e) == Some(404) => {
                            run.inventory.remove(&p.id);
                            run.record(&p.id, Action::Pruned, "already gone");
                        }
                        Err(e) => run.record(&p.id, Action::Failed, api_message(&e)),
                    }
                }
            }
        }
        if plan.would_prune_all && run.options.prune && !run.options.allow_empty {
            run.failures.push(
                "refusing to prune every object: the desired set is empty (allow_empty is off)"
                    .into(),
            );
        }
    }

    /// Runs the hooks of a phase (of one wave for Sync hooks); returns false if one failed.
    async fn run_hooks(&self, run: &mut Run<'_>, phase: HookPhase, wave: Option<i64>) -> bool {
        let hooks: Vec<&PlannedHook> = run
            .plan
            .hooks
            .iter()
            .filter(|h| h.phases.contains(&phase) && wave.is_none_or(|w| w == h.wave))
            .collect();
        let mut ok = true;
        for hook in hooks {
            (run.progress)(&format!(
                "{phase:?} hook {} {}: starting",
                hook.id.kind, hook.id.name
            ));
            let mut id = hook.id.clone();
            let result = self.run_hook(run, hook, phase, &mut id).await;
            let (succeeded, message) = match result {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            };
            if !succeeded {
                ok = false;
                if phase != HookPhase::SyncFail {
                    run.failures.push(format!("{phase:?} hook {id}: {message}"));
                }
            }
            run.hooks.push(HookOutcome {
                id,
                phase,
                succeeded,
                message,
            });
            if !ok && phase == HookPhase::PreSync {
                break;
            }
        }
        ok
    }

    /// Runs one hook; `id` is the hook's identity, given the generated name once a `generateName` hook is created.
    async fn run_hook(
        &self,
        run: &Run<'_>,
        hook: &PlannedHook,
        phase: HookPhase,
        id: &mut ObjectId,
    ) -> Result<String, String> {
        if let Some(e) = &hook.error {
            return Err(e.clone());
        }
        let resource = match &hook.resource {
            Some(r) => r.clone(),
            None => {
                let (group, kind) = (&hook.id.group, &hook.id.kind);
                let api_version = hook
                    .payload
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let (_, version) = split_api_version(api_version);
                self.resources.refresh().await.map_err(|e| e.to_string())?;
                self.resources
                    .lookup(group, version, kind)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("unknown kind {api_version}/{kind}"))?
            }
        };
        let mut payload = hook.payload.clone();
        if resource.namespaced && id.namespace.is_none() {
            id.namespace = Some(run.plan.spec.destination_namespace.clone());
            set_namespace(&mut payload, &run.plan.spec.destination_namespace);
        }
        let ns = id.namespace.clone();
        let api = resource.api(&self.client, ns.as_deref());
        let deadline = Instant::now() + run.options.hook_timeout;
        let ours = hook.id.tracking_id(&run.plan.spec.app);
        if let Some(prefix) = &hook.generate_name {
            if hook.delete_policy.before_hook_creation {
                for name in self.generated_instances(&api, prefix, &ours).await? {
                    let previous = ObjectId { name, ..id.clone() };
                    self.delete_and_wait(&resource, &previous, deadline).await?;
                }
            }
            let obj: DynamicObject = serde_json::from_value(payload).map_err(|e| e.to_string())?;
            let pp = PostParams {
                field_manager: Some(self.config.field_manager.clone()),
                dry_run: false,
            };
            self.stats.applies.fetch_add(1, Ordering::Relaxed);
            let created = api.create(&pp, &obj).await.map_err(|e| api_message(&e))?;
            id.name = created.metadata.name.unwrap_or_default();
        } else {
            self.start_named_hook(run, hook, &resource, &payload, id, deadline)
                .await?;
        }
        self.await_hook(run, hook, phase, &resource, id, deadline)
            .await
    }

    /// The names of the instances this application created from a `generateName` hook (by its prefix and the
    /// hook's tracking id), oldest first.
    async fn generated_instances(
        &self,
        api: &Api<DynamicObject>,
        prefix: &str,
        tracking: &str,
    ) -> Result<Vec<String>, String> {
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let list = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| {
                format!(
                    "failed to list previous hook instances: {}",
                    api_message(&e)
                )
            })?;
        let mut found: Vec<(Option<String>, String)> = list
            .items
            .into_iter()
            .filter(|m| {
                m.metadata.generate_name.as_deref() == Some(prefix)
                    && m.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(TRACKING_ANNOTATION))
                        .is_some_and(|t| t == tracking)
            })
            .filter_map(|m| {
                let created = m.metadata.creation_timestamp.map(|t| t.0.to_string());
                m.metadata.name.map(|n| (created, n))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    /// Replaces (BeforeHookCreation) and applies a hook that has a name.
    async fn start_named_hook(
        &self,
        run: &Run<'_>,
        hook: &PlannedHook,
        resource: &Resolved,
        payload: &Value,
        id: &ObjectId,
        deadline: Instant,
    ) -> Result<(), String> {
        let ns = id.namespace.clone();
        let api = resource.api(&self.client, ns.as_deref());
        if hook.delete_policy.before_hook_creation {
            self.stats.gets.fetch_add(1, Ordering::Relaxed);
            let existing = self
                .live
                .get(resource, ns.as_deref(), &id.name)
                .await
                .map_err(|e| api_message(&e))?;
            if let Some(existing) = existing {
                let ours = id.tracking_id(&run.plan.spec.app);
                match annotation(&existing, TRACKING_ANNOTATION) {
                    Some(t) if t == ours => {}
                    other => {
                        return Err(format!(
                            "refusing to replace {id}: tracked by {}",
                            other.unwrap_or("nobody")
                        ));
                    }
                }
                self.delete_and_wait(resource, id, deadline).await?;
            }
        }
        self.stats.applies.fetch_add(1, Ordering::Relaxed);
        let pp = PatchParams::apply(&self.config.field_manager).force();
        api.patch(&id.name, &pp, &Patch::Apply(payload))
            .await
            .map_err(|e| api_message(&e))?;
        Ok(())
    }

    /// Waits for a started hook to complete, then deletes it as its policy says.
    async fn await_hook(
        &self,
        run: &Run<'_>,
        hook: &PlannedHook,
        phase: HookPhase,
        resource: &Resolved,
        id: &ObjectId,
        deadline: Instant,
    ) -> Result<String, String> {
        let ns = id.namespace.clone();
        let api = resource.api(&self.client, ns.as_deref());
        let outcome = loop {
            self.stats.gets.fetch_add(1, Ordering::Relaxed);
            let live = self
                .live
                .get(resource, ns.as_deref(), &id.name)
                .await
                .map_err(|e| api_message(&e))?;
            let h = run.health.assess(live.as_ref());
            match h.status {
                HealthStatus::Healthy => break Ok(h.message),
                HealthStatus::Degraded => break Err(h.message),
                _ if Instant::now() >= deadline => {
                    break Err(format!(
                        "did not complete within {:?}: {}",
                        run.options.hook_timeout, h.message
                    ));
                }
                _ => {
                    (run.progress)(&format!(
                        "{phase:?} hook: waiting for {} {}: {}",
                        id.kind,
                        id.name,
                        waiting_for(&h)
                    ));
                    tokio::time::sleep(self.config.poll_interval).await
                }
            }
        };
        let delete = match &outcome {
            Ok(_) => hook.delete_policy.hook_succeeded,
            Err(_) => hook.delete_policy.hook_failed,
        };
        if delete {
            self.stats.deletes.fetch_add(1, Ordering::Relaxed);
            let dp = DeleteParams::background();
            if let Err(e) = api.delete(&id.name, &dp).await
                && api_code(&e) != Some(404)
            {
                return Err(format!("failed to delete hook: {}", api_message(&e)));
            }
        }
        outcome
    }

    async fn delete_and_wait(
        &self,
        resource: &Resolved,
        id: &ObjectId,
        deadline: Instant,
    ) -> Result<(), String> {
        let api = resource.api(&self.client, id.namespace.as_deref());
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        match api.delete(&id.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(404) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "failed to delete previous hook: {}",
                    api_message(&e)
                ));
            }
        }
        loop {
            self.stats.gets.fetch_add(1, Ordering::Relaxed);
            let live = self
                .live
                .get(resource, id.namespace.as_deref(), &id.name)
                .await
                .map_err(|e| api_message(&e))?;
            if live.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("previous hook instance is still being deleted".into());
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }
}

/// The message of a failed write.
fn apply_error(e: &kube::Error) -> String {
    if api_code(e) == Some(409) {
        format!("conflict: {}", api_message(e))
    } else {
        api_message(e)
    }
}

/// What an object that is not healthy yet waits for: its health message, else its health state.
fn waiting_for(h: &Health) -> String {
    if h.message.is_empty() {
        format!("{:?}", h.status)
    } else {
        h.message.clone()
    }
}

struct ApplyOk {
    action: Action,
    message: String,
    resource: Resolved,
    /// The object as the apply returned it (`None` when nothing was sent).
    live: Option<Value>,
}
