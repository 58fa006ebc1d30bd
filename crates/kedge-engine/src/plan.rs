//! Planning: resolve, dry-run and compare each desired object, and select prune candidates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attribution::{Attribution, attribute};
use crate::cluster::{Resolved, api_code, api_message};
use crate::diff::{ObjectDiff, diff, normalize};
use crate::engine::{AppSpec, Engine};
use crate::error::EngineError;
use crate::health::{Health, HealthChecker, HealthStatus};
use crate::ignore::Ignored;
use crate::object::{
    DesiredObject, ObjectId, ObjectSyncOptions, TRACKING_ANNOTATION, annotation, remove_namespace,
    set_annotation, set_namespace, split_api_version, str_at, sync_wave,
};
use crate::order::{HookDeletePolicy, HookPhase, hook_delete_policy, hook_phases, kind_rank};

/// The comparison result of one desired object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStatus {
    /// Applying would change nothing.
    Synced,
    /// Applying would change the live object.
    OutOfSync,
    /// The object does not exist and will be created.
    Missing,
    /// The object cannot be planned; see the message.
    Error,
}

/// Who tracks a live object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tracking {
    /// The object does not exist.
    Absent,
    /// The object carries this application's tracking id.
    Owned,
    /// The object exists without a Kedge tracking id; applying adopts it.
    Untracked,
    /// The object is tracked by another application (shared resource).
    Foreign(String),
}

/// The plan for one desired object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedObject {
    /// Identity (namespace filled in from the destination when absent).
    pub id: ObjectId,
    /// apiVersion of the desired object.
    pub api_version: String,
    /// File the object came from.
    pub source: Option<String>,
    /// Sync wave.
    pub wave: i64,
    /// Comparison result.
    pub status: SyncStatus,
    /// Who tracks the live object.
    pub tracking: Tracking,
    /// Why the status is what it is (error message for [`SyncStatus::Error`]).
    pub message: String,
    /// Differences for OutOfSync and Missing objects.
    pub diff: Option<ObjectDiff>,
    /// Field managers owning the differing live fields.
    pub drift: Vec<Attribution>,
    /// Health of the live object.
    pub health: Health,
    /// Per-object sync options.
    pub options: ObjectSyncOptions,
    #[serde(skip)]
    pub(crate) payload: Value,
    #[serde(skip)]
    pub(crate) resource: Option<Resolved>,
    #[serde(skip)]
    pub(crate) live_uid: Option<String>,
    #[serde(skip)]
    pub(crate) payload_hash: String,
}

impl PlannedObject {
    /// True if syncing will write this object.
    pub fn needs_apply(&self) -> bool {
        matches!(self.status, SyncStatus::OutOfSync | SyncStatus::Missing)
    }

    pub(crate) fn rank(&self) -> usize {
        kind_rank(&self.id.kind)
    }
}

/// A hook object to run during sync.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedHook {
    /// Identity.
    pub id: ObjectId,
    /// Phases the hook runs in.
    pub phases: Vec<HookPhase>,
    /// Delete policy.
    pub delete_policy: HookDeletePolicy,
    /// Sync wave (orders hooks within a phase; Sync hooks run with their wave).
    pub wave: i64,
    /// Source file.
    pub source: Option<String>,
    /// Set when the hook cannot run.
    pub error: Option<String>,
    #[serde(skip)]
    pub(crate) payload: Value,
    #[serde(skip)]
    pub(crate) resource: Option<Resolved>,
}

/// What happens to an object that left the desired set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PruneAction {
    /// Delete it.
    Delete,
    /// Keep it: `Prune=false`.
    Keep,
    /// Refuse: it is tracked by another application or by nobody.
    Refuse(String),
    /// Already gone.
    Gone,
}

/// An object of the previous inventory that is no longer desired.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruneCandidate {
    /// Identity.
    pub id: ObjectId,
    /// Decision.
    pub action: PruneAction,
    /// Per-object options of the live object.
    pub options: ObjectSyncOptions,
    #[serde(skip)]
    pub(crate) resource: Option<Resolved>,
    #[serde(skip)]
    pub(crate) uid: Option<String>,
}

/// The full plan of an application: what differs, what will be applied and what pruned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The application.
    pub spec: AppSpec,
    /// Desired objects in apply order (wave, kind, name).
    pub objects: Vec<PlannedObject>,
    /// Hooks.
    pub hooks: Vec<PlannedHook>,
    /// Previously applied objects that are no longer desired.
    pub prune: Vec<PruneCandidate>,
    /// Desired objects that could not even be identified (missing kind, name...).
    pub invalid: Vec<String>,
    /// True when the desired set is empty and pruning would delete everything.
    pub would_prune_all: bool,
    /// Application health: the worst health of its objects.
    pub health: HealthStatus,
}

impl Plan {
    /// True when every object is Synced and nothing is to be pruned.
    pub fn is_synced(&self) -> bool {
        self.invalid.is_empty()
            && self.objects.iter().all(|o| o.status == SyncStatus::Synced)
            && self.prune.iter().all(|p| p.action != PruneAction::Delete)
    }

    /// Objects that syncing will write.
    pub fn to_apply(&self) -> impl Iterator<Item = &PlannedObject> {
        self.objects.iter().filter(|o| o.needs_apply())
    }
}

/// Dry-run results keyed by object, valid while both payload and live content are unchanged.
#[derive(Clone)]
pub(crate) struct CacheEntry {
    pub(crate) payload_hash: String,
    pub(crate) live_hash: String,
    /// The normalized dry-run result as compact JSON text: one entry is kept per managed object for as long as the
    /// engine lives, and a parsed value takes several times the memory of its text.
    result: Box<str>,
}

impl CacheEntry {
    pub(crate) fn new(payload_hash: String, live_hash: String, result: &Value) -> Self {
        Self {
            payload_hash,
            live_hash,
            result: result.to_string().into_boxed_str(),
        }
    }

    /// The cached result; `None` if the text does not parse (it always does: it was written from a value).
    pub(crate) fn result(&self) -> Option<Value> {
        serde_json::from_str(&self.result).ok()
    }
}

pub(crate) fn hash_value(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Hash of the parts of a live object that can influence an apply result: everything but
/// status, resourceVersion and managedFields timestamps.
pub(crate) fn live_hash(live: Option<&Value>) -> String {
    let Some(live) = live else {
        return "absent".into();
    };
    let mut v = live.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(mf) = meta.get_mut("managedFields").and_then(Value::as_array_mut) {
            mf.retain(|e| e.get("subresource").and_then(Value::as_str) != Some("status"));
            for e in mf.iter_mut() {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    hash_value(&v)
}

impl Engine {
    /// Compares the desired objects with the cluster and selects prune candidates.
    ///
    /// Each object is read once (through [`crate::LiveObjects`]); a server-side apply dry-run is made only
    /// when the desired object or the live object changed since the last plan or sync.
    pub async fn plan(
        &self,
        spec: &AppSpec,
        desired: Vec<DesiredObject>,
        previous_inventory: &[ObjectId],
    ) -> Result<Plan, EngineError> {
        for rule in &spec.ignore_differences {
            rule.validate()?;
        }
        let health = HealthChecker::new(&spec.health_rules)?.layered(&self.health);
        let mut invalid = Vec::new();
        let mut objects: Vec<PlannedObject> = Vec::new();
        let mut hooks: Vec<PlannedHook> = Vec::new();
        let crd_kinds = crd_kinds(&desired);
        let mut refreshed = false;
        let mut seen: HashSet<ObjectId> = HashSet::new();

        for d in desired {
            let where_ = d
                .source
                .clone()
                .unwrap_or_else(|| "<unknown source>".into());
            let mut id = match ObjectId::from_object(&d.object) {
                Ok(id) => id,
                Err(e) => {
                    invalid.push(format!("{where_}: {e}"));
                    continue;
                }
            };
            let api_version = str_at(&d.object, &["apiVersion"])
                .unwrap_or_default()
                .to_string();
            let (_, version) = split_api_version(&api_version);
            let version = version.to_string();
            let mut resource = self.resources.lookup(&id.group, &version, &id.kind).await?;
            if resource.is_none() && !refreshed {
                refreshed = true;
                self.resources.refresh().await?;
                resource = self.resources.lookup(&id.group, &version, &id.kind).await?;
            }
            let mut error = None;
            let namespaced = match &resource {
                Some(r) => Some(r.namespaced),
                None => crd_kinds.get(&(id.group.clone(), id.kind.clone())).copied(),
            };
            let mut payload = d.object.clone();
            match namespaced {
                Some(true) if id.namespace.is_none() => {
                    id.namespace = Some(spec.destination_namespace.clone());
                    set_namespace(&mut payload, &spec.destination_namespace);
                }
                Some(false) if id.namespace.is_some() => {
                    error = Some(format!(
                        "{} is cluster-scoped but has namespace {:?}",
                        id.kind,
                        id.namespace.as_deref().unwrap_or("")
                    ));
                    remove_namespace(&mut payload);
                }
                Some(_) => {}
                None => error = Some(format!("unknown kind {}/{}", api_version, id.kind)),
            }
            let wave = match sync_wave(&d.object) {
                Ok(w) => w,
                Err(e) => {
                    error.get_or_insert(e.to_string());
                    0
                }
            };
            if !seen.insert(id.clone()) {
                error = Some(format!("duplicate object {id} in the desired set"));
            }
            set_annotation(
                &mut payload,
                TRACKING_ANNOTATION,
                &id.tracking_id(&spec.app),
            );

            match hook_phases(&d.object) {
                Ok(Some(phases)) => {
                    let delete_policy = hook_delete_policy(&d.object).unwrap_or_else(|e| {
                        error.get_or_insert(e.to_string());
                        HookDeletePolicy::default()
                    });
                    hooks.push(PlannedHook {
                        id,
                        phases,
                        delete_policy,
                        wave,
                        source: d.source,
                        error,
                        payload,
                        resource,
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    error.get_or_insert(e.to_string());
                }
            }

            let options = ObjectSyncOptions::of(&d.object);
            objects.push(PlannedObject {
                id,
                api_version,
                source: d.source,
                wave,
                status: if error.is_some() {
                    SyncStatus::Error
                } else {
                    SyncStatus::Missing
                },
                tracking: Tracking::Absent,
                message: error.unwrap_or_default(),
                diff: None,
                drift: Vec::new(),
                health: Health {
                    status: HealthStatus::Missing,
                    message: String::new(),
                },
                options,
                payload,
                resource,
                live_uid: None,
                payload_hash: String::new(),
            });
        }

        // Compare every resolvable object with the cluster, concurrently.
        let concurrency = self.config.concurrency.max(1);
        let mut objects: Vec<PlannedObject> = futures::stream::iter(objects)
            .map(|o| self.compare(spec, o, &health))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        objects.sort_by(|a, b| {
            (a.wave, a.rank(), &a.id.namespace, &a.id.name, &a.id.kind).cmp(&(
                b.wave,
                b.rank(),
                &b.id.namespace,
                &b.id.name,
                &b.id.kind,
            ))
        });
        hooks.sort_by(|a, b| {
            (a.wave, kind_rank(&a.id.kind), &a.id.name).cmp(&(
                b.wave,
                kind_rank(&b.id.kind),
                &b.id.name,
            ))
        });

        // Prune candidates: previously applied, no longer desired.
        let desired_ids: HashSet<&ObjectId> = objects
            .iter()
            .map(|o| &o.id)
            .chain(hooks.iter().map(|h| &h.id))
            .collect();
        let gone: Vec<ObjectId> = previous_inventory
            .iter()
            .filter(|id| !desired_ids.contains(id))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let prune: Vec<PruneCandidate> = futures::stream::iter(gone)
            .map(|id| self.prune_candidate(spec, id))
            .buffered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let would_prune_all =
            objects.is_empty() && prune.iter().any(|p| p.action == PruneAction::Delete);
        let app_health = objects
            .iter()
            .fold(HealthStatus::Healthy, |acc, o| acc.worst(o.health.status));
        Ok(Plan {
            spec: spec.clone(),
            objects,
            hooks,
            prune,
            invalid,
            would_prune_all,
            health: app_health,
        })
    }

    /// The plan as it stands right after `result` was synced from `plan`, without reading the cluster again: each
    /// object the sync applied or waited for is Synced and owned, its health assessed on the version the API server
    /// returned; pruned objects leave the plan. A server-side apply leaves the applied fields exactly as desired,
    /// so a fresh comparison would find the same (a change someone makes afterwards arrives as drift, as always).
    pub fn plan_after_sync(
        &self,
        plan: &Plan,
        result: &crate::apply::SyncResult,
    ) -> Result<Plan, EngineError> {
        let health = HealthChecker::new(&plan.spec.health_rules)?.layered(&self.health);
        let mut after = plan.clone();
        for o in &mut after.objects {
            let Some(live) = result.seen.get(&o.id) else {
                continue;
            };
            o.status = SyncStatus::Synced;
            o.tracking = Tracking::Owned;
            o.message.clear();
            o.diff = None;
            o.drift.clear();
            o.health = health.assess(Some(live));
            o.live_uid = str_at(live, &["metadata", "uid"]).map(str::to_string);
        }
        let pruned: HashSet<&ObjectId> = result
            .outcomes
            .iter()
            .filter(|o| o.action == crate::apply::Action::Pruned)
            .map(|o| &o.id)
            .collect();
        after.prune.retain(|p| !pruned.contains(&p.id));
        after.would_prune_all =
            after.objects.is_empty() && after.prune.iter().any(|p| p.action == PruneAction::Delete);
        after.health = after
            .objects
            .iter()
            .fold(HealthStatus::Healthy, |acc, o| acc.worst(o.health.status));
        Ok(after)
    }

    async fn compare(
        &self,
        spec: &AppSpec,
        o: PlannedObject,
        health: &HealthChecker,
    ) -> PlannedObject {
        // The live object may change between the read and the dry-run; then read again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (planned, raced) = self
                .compare_once(spec, o.clone(), health, attempt >= 3)
                .await;
            if !raced || attempt >= 3 {
                return planned;
            }
        }
    }

    async fn compare_once(
        &self,
        spec: &AppSpec,
        mut o: PlannedObject,
        health: &HealthChecker,
        last_attempt: bool,
    ) -> (PlannedObject, bool) {
        let Some(resource) = o.resource.clone() else {
            if o.status != SyncStatus::Error {
                o.message = "kind is defined by a CustomResourceDefinition in this set".into();
            }
            return (o, false);
        };
        if o.status == SyncStatus::Error {
            return (o, false);
        }
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let mut live = match self
            .live
            .get(&resource, o.id.namespace.as_deref(), &o.id.name)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                o.status = SyncStatus::Error;
                o.message = format!("failed to read live object: {}", api_message(&e));
                o.health = Health {
                    status: HealthStatus::Unknown,
                    message: o.message.clone(),
                };
                return (o, false);
            }
        };
        o.health = health.assess(live.as_ref());
        o.live_uid = live
            .as_ref()
            .and_then(|l| str_at(l, &["metadata", "uid"]))
            .map(str::to_string);
        o.tracking = match live.as_ref() {
            None => Tracking::Absent,
            Some(l) => match annotation(l, TRACKING_ANNOTATION) {
                None => Tracking::Untracked,
                Some(t) if t == o.id.tracking_id(&spec.app) => Tracking::Owned,
                Some(t) => match ObjectId::parse_tracking_id(t) {
                    Some((app, _)) if app == spec.app => Tracking::Owned,
                    _ => Tracking::Foreign(t.to_string()),
                },
            },
        };
        if let Tracking::Foreign(t) = &o.tracking {
            o.status = SyncStatus::Error;
            o.message = format!("shared resource: already tracked by {t}");
            return (o, false);
        }
        let ignored = Ignored::for_object(&spec.ignore_differences, &o.id, live.as_ref());
        if let Some(l) = &live {
            ignored.prepare_payload(&mut o.payload, l, &self.config.field_manager);
        }
        o.payload_hash = hash_value(&o.payload);
        let mut lhash = live_hash(live.as_ref());
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(&o.id)
                .filter(|e| e.payload_hash == o.payload_hash && e.live_hash == lhash)
                .and_then(CacheEntry::result)
        });
        let dry = match cached {
            Some(result) => {
                self.stats
                    .dry_run_cache_hits
                    .fetch_add(1, Ordering::Relaxed);
                result
            }
            None => match self.dry_run(&resource, &o).await {
                Ok(v) => {
                    let rv = |x: &Value| x.pointer("/metadata/resourceVersion").cloned();
                    if let Some(l) = &live
                        && rv(l) != rv(&v)
                    {
                        // The object changed between the read and the dry-run (a controller
                        // writing status, typically): compare with the version the dry-run saw.
                        self.stats.gets.fetch_add(1, Ordering::Relaxed);
                        match self
                            .live
                            .get_fresh(&resource, o.id.namespace.as_deref(), &o.id.name)
                            .await
                        {
                            Ok(Some(newer)) if rv(&newer) == rv(&v) => {
                                o.health = health.assess(Some(&newer));
                                lhash = live_hash(Some(&newer));
                                live = Some(newer);
                            }
                            _ if !last_attempt => return (o, true),
                            _ => {}
                        }
                    }
                    let result = normalize(&v);
                    if let Ok(mut c) = self.cache.lock() {
                        c.insert(
                            o.id.clone(),
                            CacheEntry::new(o.payload_hash.clone(), lhash, &result),
                        );
                    }
                    result
                }
                Err(e) if live.is_none() && api_code(&e) == Some(404) => {
                    // Typically the namespace is created by the same sync.
                    o.status = SyncStatus::Missing;
                    o.message = format!("will be created ({})", api_message(&e));
                    o.diff = Some(diff(None, &normalize(&o.payload)));
                    return (o, false);
                }
                Err(e) => {
                    o.status = SyncStatus::Error;
                    o.message = api_message(&e);
                    return (o, false);
                }
            },
        };
        let mut desired_cmp = dry;
        ignored.strip(&mut desired_cmp);
        match &live {
            None => {
                o.status = SyncStatus::Missing;
                o.diff = Some(diff(None, &desired_cmp));
            }
            Some(l) => {
                let mut live_cmp = normalize(l);
                ignored.strip(&mut live_cmp);
                let d = diff(Some(&live_cmp), &desired_cmp);
                if d.is_empty() {
                    if o.tracking == Tracking::Untracked {
                        o.status = SyncStatus::OutOfSync;
                        o.message = "not tracked yet: applying adopts it".into();
                    } else {
                        o.status = SyncStatus::Synced;
                    }
                } else {
                    o.status = SyncStatus::OutOfSync;
                    o.drift = attribute(l, &d.ops, &self.config.field_manager);
                    o.message = o
                        .drift
                        .iter()
                        .filter(|a| !a.managers.is_empty())
                        .map(Attribution::message)
                        .collect::<Vec<_>>()
                        .join("; ");
                    o.diff = Some(d);
                }
            }
        }
        (o, false)
    }

    async fn dry_run(&self, resource: &Resolved, o: &PlannedObject) -> Result<Value, kube::Error> {
        self.stats.dry_runs.fetch_add(1, Ordering::Relaxed);
        let api = resource.api(&self.client, o.id.namespace.as_deref());
        let mut pp = PatchParams::apply(&self.config.field_manager).force();
        pp.dry_run = true;
        let obj = api
            .patch(&o.id.name, &pp, &Patch::Apply(&o.payload))
            .await?;
        serde_json::to_value(obj).map_err(kube::Error::SerdeError)
    }

    async fn prune_candidate(
        &self,
        spec: &AppSpec,
        id: ObjectId,
    ) -> Result<PruneCandidate, EngineError> {
        let mut c = PruneCandidate {
            id,
            action: PruneAction::Gone,
            options: ObjectSyncOptions::default(),
            resource: None,
            uid: None,
        };
        let Some(resource) = self.resources.lookup_kind(&c.id.group, &c.id.kind).await? else {
            // The kind no longer exists, so neither does the object.
            return Ok(c);
        };
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let live = match self
            .live
            .get(&resource, c.id.namespace.as_deref(), &c.id.name)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                c.action =
                    PruneAction::Refuse(format!("failed to read live object: {}", api_message(&e)));
                c.resource = Some(resource);
                return Ok(c);
            }
        };
        c.resource = Some(resource);
        let Some(live) = live else {
            return Ok(c);
        };
        c.uid = str_at(&live, &["metadata", "uid"]).map(str::to_string);
        c.options = ObjectSyncOptions::of(&live);
        let ours = c.id.tracking_id(&spec.app);
        c.action = match annotation(&live, TRACKING_ANNOTATION) {
            Some(t) if t == ours => {
                if c.options.prune_disabled {
                    PruneAction::Keep
                } else {
                    PruneAction::Delete
                }
            }
            Some(t) => PruneAction::Refuse(format!("shared resource: tracked by {t}")),
            None => PruneAction::Refuse("not tracked by this application".into()),
        };
        Ok(c)
    }
}

/// Kinds defined by CRDs in the desired set: (group, kind) -> namespaced.
fn crd_kinds(desired: &[DesiredObject]) -> HashMap<(String, String), bool> {
    let mut out = HashMap::new();
    for d in desired {
        let o = &d.object;
        if str_at(o, &["kind"]) != Some("CustomResourceDefinition") {
            continue;
        }
        if let (Some(g), Some(k)) = (
            str_at(o, &["spec", "group"]),
            str_at(o, &["spec", "names", "kind"]),
        ) {
            let namespaced = str_at(o, &["spec", "scope"]) != Some("Cluster");
            out.insert((g.to_string(), k.to_string()), namespaced);
        }
    }
    out
}

/// Groups planned objects by wave, keeping apply order.
pub(crate) fn by_wave(objects: &[PlannedObject]) -> BTreeMap<i64, Vec<usize>> {
    let mut out: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, o) in objects.iter().enumerate() {
        out.entry(o.wave).or_default().push(i);
    }
    out
}
