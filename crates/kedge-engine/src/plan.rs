//! Planning: resolve, dry-run and compare each desired object, and select prune candidates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use futures::StreamExt;
use kube::api::{Patch, PatchParams, ValidationDirective};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::attribution::{Attribution, attribute};
use crate::cluster::{Resolved, api_code, api_message};
use crate::diff::{ObjectDiff, diff, normalize};
use crate::engine::{AppSpec, Engine};
use crate::error::EngineError;
use crate::health::{Health, HealthChecker, HealthStatus};
use crate::ignore::Ignored;
use crate::object::{
    CompareOptions, DesiredObject, ObjectId, ObjectSyncOptions, TRACKING_ANNOTATION, annotation,
    generate_name, remove_namespace, set_annotation, set_namespace, split_api_version, str_at,
    sync_wave,
};
use crate::order::{Hook, HookDeletePolicy, HookPhase, hook, hook_delete_policy, kind_rank};

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
    /// For an existing object that no application tracks ([`Tracking::Untracked`]), the field managers of the live
    /// object: syncing adopts it from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted_from: Vec<String>,
    #[serde(skip)]
    pub(crate) payload: Value,
    #[serde(skip)]
    pub(crate) resource: Option<Resolved>,
    #[serde(skip)]
    pub(crate) live_uid: Option<String>,
    /// Secret values of the desired object, redacted from messages.
    #[serde(skip)]
    pub(crate) secrets: Vec<String>,
    #[serde(skip)]
    pub(crate) payload_hash: Option<Digest>,
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
    /// The hook's `metadata.generateName` when it has no name: each run creates a new instance (its id names the
    /// prefix until then), and the previous instances this application created from it are found by that prefix
    /// and the hook's tracking id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
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
    /// Its kind is not served by the API server (a deleted CustomResourceDefinition, an unavailable aggregated
    /// API): it stays in the inventory, reported Missing, until its kind returns (it is then pruned or compared as
    /// usual) or the entry is removed from the inventory by hand.
    KindNotServed,
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
    /// Compare options of the live object (`IgnoreExtraneous`).
    #[serde(default)]
    pub compare: CompareOptions,
    #[serde(skip)]
    pub(crate) resource: Option<Resolved>,
    #[serde(skip)]
    pub(crate) uid: Option<String>,
}

impl PruneCandidate {
    /// Whether this candidate makes its application OutOfSync: it is to be deleted and not `IgnoreExtraneous`.
    pub fn makes_out_of_sync(&self) -> bool {
        self.action == PruneAction::Delete && !self.compare.ignore_extraneous
    }
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
    /// Number of objects in the inventory the plan was made against.
    #[serde(default)]
    pub inventory_size: usize,
    /// Application health: the worst health of its objects.
    pub health: HealthStatus,
}

impl Plan {
    /// True when every object is Synced and nothing is to be pruned (but objects marked `IgnoreExtraneous`).
    pub fn is_synced(&self) -> bool {
        self.invalid.is_empty()
            && self.objects.iter().all(|o| o.status == SyncStatus::Synced)
            && !self.prune.iter().any(PruneCandidate::makes_out_of_sync)
    }

    /// Objects that syncing will write.
    pub fn to_apply(&self) -> impl Iterator<Item = &PlannedObject> {
        self.objects.iter().filter(|o| o.needs_apply())
    }

    /// Objects that a pruning sync would delete.
    pub fn to_prune(&self) -> impl Iterator<Item = &PruneCandidate> {
        self.prune
            .iter()
            .filter(|p| p.action == PruneAction::Delete)
    }

    /// Why a pruning sync of this plan must be confirmed: it would delete more than half of the inventory and more
    /// than [`MASS_PRUNE_MIN`] objects (a render that lost most of its objects is more often a mistake, a wrong
    /// path or a broken overlay, than a wish). `None` when it may prune without confirmation.
    pub fn mass_prune(&self) -> Option<String> {
        let n = self.to_prune().count();
        let m = self.inventory_size.max(n);
        (n > MASS_PRUNE_MIN && 2 * n > m).then(|| {
            format!(
                "would prune {n} of {m} objects; confirm with `kedge app sync {} -n {} --prune --confirm`",
                self.spec.app.name, self.spec.app.namespace
            )
        })
    }
}

/// A pruning sync deleting more objects than this, and more than half of the inventory, waits for confirmation
/// (see [`Plan::mass_prune`]).
pub const MASS_PRUNE_MIN: usize = 10;

/// Dry-run results keyed by object, valid while both payload and live content are unchanged.
#[derive(Clone)]
pub(crate) struct CacheEntry {
    pub(crate) payload_hash: Digest,
    pub(crate) live_hash: Digest,
    /// The normalized dry-run result as compact JSON text (one entry is kept per managed object for as long as the
    /// engine lives, and a parsed value takes several times the memory of its text); `None` when it was the live
    /// object itself, normalized, as it is after an apply and whenever the object is in sync. A live object with
    /// the same [`live_hash`] then gives the same result, so nothing needs keeping.
    result: Option<Box<str>>,
    /// When a plan last used it: entries nobody used for a while (objects of deleted applications, typically)
    /// are evicted.
    pub(crate) used: std::time::Instant,
}

impl CacheEntry {
    /// An entry for `result`, the normalized result of applying a payload with digest `payload_hash` to `live`
    /// (whose digest is `live_hash`).
    pub(crate) fn new(
        payload_hash: Digest,
        live_hash: Digest,
        result: &Value,
        live: Option<&Value>,
    ) -> Self {
        let same = live.is_some_and(|l| normalize(l) == *result);
        Self {
            result: (!same).then(|| result.to_string().into_boxed_str()),
            ..Self::applied(payload_hash, live_hash)
        }
    }

    /// An entry for an apply whose result is the live object it returned.
    pub(crate) fn applied(payload_hash: Digest, live_hash: Digest) -> Self {
        Self {
            payload_hash,
            live_hash,
            result: None,
            used: std::time::Instant::now(),
        }
    }

    /// The cached result, normalized, brought up to date with what others wrote into `live`'s annotations and
    /// labels since; `None` if there is none to give (a text that does not parse, which cannot happen as it was
    /// written from a value, or an entry of the live object itself with no live object).
    pub(crate) fn result(&self, live: Option<&Value>, payload: &Value) -> Option<Value> {
        match (&self.result, live) {
            (None, Some(live)) => Some(normalize(live)),
            (None, None) => None,
            (Some(text), live) => {
                let mut result: Value = serde_json::from_str(text).ok()?;
                if let Some(l) = live {
                    rebase_metadata(&mut result, l, payload);
                }
                Some(result)
            }
        }
    }

    /// Whether the result is kept as text (and not as "the live object"), for tests.
    #[cfg(test)]
    pub(crate) fn keeps_text(&self) -> bool {
        self.result.is_some()
    }
}

/// The key of an object's entry in the dry-run cache: its identity as one string (one allocation per managed object,
/// and a quarter of the room of an [`ObjectId`] in the table).
pub(crate) fn cache_key(id: &ObjectId) -> Box<str> {
    id.to_string().into_boxed_str()
}

/// A SHA-256 digest, kept as bytes (one per managed object is cached: hex text would take three times the memory).
pub(crate) type Digest = [u8; 32];

pub(crate) fn hash_value(v: &Value) -> Digest {
    Sha256::digest(v.to_string().as_bytes()).into()
}

/// The metadata maps whose keys other writers add beside the applier's own.
const SHARED_MAPS: [&str; 2] = ["annotations", "labels"];

/// The keys of `metadata.<map>` that `payload` sets.
fn payload_keys<'a>(payload: &'a Value, map: &str) -> impl Iterator<Item = &'a String> {
    payload
        .pointer(&format!("/metadata/{map}"))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
}

/// Hash of the parts of a live object that can influence the result of applying `payload` as `manager`: everything
/// but status, resourceVersion, managedFields timestamps, other writers' managedFields entries, and the annotations
/// and labels the payload does not set. What others write there (the deployment controller's revision annotation,
/// a status) is carried into the apply result unchanged, so it does not call for another dry-run:
/// [`rebase_metadata`] carries it into a cached result instead.
pub(crate) fn live_hash(live: Option<&Value>, payload: &Value, manager: &str) -> Digest {
    let Some(live) = live else {
        // No object: a digest no JSON text has (every text hashes to something else but by a SHA-256 collision).
        return [0; 32];
    };
    let mut v = live.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(mf) = meta.get_mut("managedFields").and_then(Value::as_array_mut) {
            mf.retain(|e| {
                e.get("subresource").and_then(Value::as_str) != Some("status")
                    && e.get("manager").and_then(Value::as_str) == Some(manager)
            });
            for e in mf.iter_mut() {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
        for map in SHARED_MAPS {
            let keep: HashSet<&String> = payload_keys(payload, map).collect();
            if let Some(m) = meta.get_mut(map).and_then(Value::as_object_mut) {
                m.retain(|k, _| keep.contains(k));
            }
        }
    }
    hash_value(&v)
}

/// A cached apply result brought up to date with what others wrote into the annotations and labels since: the keys
/// `payload` does not set take their live values (normalized, as the result is).
pub(crate) fn rebase_metadata(result: &mut Value, live: &Value, payload: &Value) {
    let live = normalize(live);
    let Some(meta) = result
        .as_object_mut()
        .map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for map in SHARED_MAPS {
        let own: HashSet<&String> = payload_keys(payload, map).collect();
        let mut merged: Map<String, Value> = meta
            .get(map)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| own.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(theirs) = live
            .pointer(&format!("/metadata/{map}"))
            .and_then(Value::as_object)
        {
            for (k, v) in theirs {
                if !own.contains(k) {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        if merged.is_empty() {
            meta.remove(map);
        } else {
            meta.insert(map.to_owned(), Value::Object(merged));
        }
    }
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
        let mut skipped: HashSet<ObjectId> = HashSet::new();

        for d in desired {
            let where_ = d
                .source
                .clone()
                .unwrap_or_else(|| "<unknown source>".into());
            let hook = hook(&d.object);
            // A hook may be named by `generateName` only: it is created anew each time it runs.
            let generated = match &hook {
                Ok(Some(Hook::Run(_))) if str_at(&d.object, &["metadata", "name"]).is_none() => {
                    generate_name(&d.object).map(str::to_string)
                }
                _ => None,
            };
            let identity = match &generated {
                Some(prefix) => ObjectId::named(&d.object, prefix),
                None => ObjectId::from_object(&d.object),
            };
            let mut id = match identity {
                Ok(id) => id,
                Err(e) => {
                    if !matches!(hook, Ok(Some(Hook::Skip))) {
                        invalid.push(format!("{where_}: {e}"));
                    }
                    continue;
                }
            };
            if matches!(hook, Ok(Some(Hook::Skip))) {
                // `Skip`: neither applied nor pruned.
                skipped.insert(id);
                continue;
            }
            let options =
                ObjectSyncOptions::read(&d.object).map(|o| o.with_defaults(&spec.object_defaults));
            let skip_dry_run = options
                .as_ref()
                .is_ok_and(|o| o.skip_dry_run_on_missing_resource);
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
                None if skip_dry_run => {
                    // As Argo CD does, a kind nobody serves yet is taken as namespaced.
                    if id.namespace.is_none() {
                        id.namespace = Some(spec.destination_namespace.clone());
                        set_namespace(&mut payload, &spec.destination_namespace);
                    }
                }
                None => error = Some(format!("unknown kind {}/{}", api_version, id.kind)),
            }
            let wave = match sync_wave(&d.object) {
                Ok(w) => w,
                Err(e) => {
                    error.get_or_insert(e.to_string());
                    0
                }
            };
            if generated.is_none() && !seen.insert(id.clone()) {
                error = Some(format!("duplicate object {id} in the desired set"));
            }
            set_annotation(
                &mut payload,
                TRACKING_ANNOTATION,
                &id.tracking_id(&spec.app),
            );

            let options = options.unwrap_or_else(|e| {
                error.get_or_insert(e.to_string());
                ObjectSyncOptions::default()
            });
            if let Err(e) = CompareOptions::read(&d.object) {
                error.get_or_insert(e.to_string());
            }
            match hook {
                Ok(Some(Hook::Run(phases))) => {
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
                        generate_name: generated,
                        payload,
                        resource,
                    });
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    error.get_or_insert(e.to_string());
                }
            }

            let secrets = crate::diff::secret_values(&payload);
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
                adopted_from: Vec::new(),
                payload,
                resource,
                live_uid: None,
                secrets,
                payload_hash: None,
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
            .chain(
                hooks
                    .iter()
                    .filter(|h| h.generate_name.is_none())
                    .map(|h| &h.id),
            )
            .chain(skipped.iter())
            .collect();
        let gone: Vec<ObjectId> = previous_inventory
            .iter()
            .filter(|id| !desired_ids.contains(id))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Discovery may be older than a kind's return: ask again once before calling a kind not served.
        if !refreshed {
            let mut unknown = false;
            for id in &gone {
                if self
                    .resources
                    .lookup_kind(&id.group, &id.kind)
                    .await?
                    .is_none()
                {
                    unknown = true;
                    break;
                }
            }
            if unknown {
                self.resources.refresh().await?;
                refreshed = true;
            }
        }
        let mut prune: Vec<PruneCandidate> = futures::stream::iter(gone)
            .map(|id| self.prune_candidate(spec, id))
            .buffered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        // A kind that stopped being served answers "not found" like a deleted object: before dropping an object
        // as gone, check with fresh discovery that its kind is still served.
        if prune.iter().any(|p| p.action == PruneAction::Gone) {
            if !refreshed {
                self.resources.refresh().await?;
            }
            for p in prune.iter_mut().filter(|p| p.action == PruneAction::Gone) {
                if self
                    .resources
                    .lookup_kind(&p.id.group, &p.id.kind)
                    .await?
                    .is_none()
                {
                    p.action = PruneAction::KindNotServed;
                    p.resource = None;
                }
            }
        }
        let would_prune_all =
            objects.is_empty() && prune.iter().any(|p| p.action == PruneAction::Delete);
        let app_health = objects
            .iter()
            .fold(HealthStatus::Healthy, |acc, o| acc.worst(o.health.status));
        let inventory_size = previous_inventory
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        Ok(Plan {
            spec: spec.clone(),
            objects,
            hooks,
            prune,
            invalid,
            would_prune_all,
            inventory_size,
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
            o.adopted_from.clear();
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
            let (mut planned, raced) = self
                .compare_once(spec, o.clone(), health, attempt >= 3)
                .await;
            if !raced || attempt >= 3 {
                if !planned.secrets.is_empty() {
                    planned.message = crate::diff::redact(&planned.message, &planned.secrets);
                }
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
                o.message = if o.options.skip_dry_run_on_missing_resource {
                    format!(
                        "kind {}/{} is not served yet: planned without a dry-run \
                         (SkipDryRunOnMissingResource=true), applied once it is served",
                        o.api_version, o.id.kind
                    )
                } else {
                    "kind is defined by a CustomResourceDefinition in this set".into()
                };
            }
            return (o, false);
        };
        if o.status == SyncStatus::Error {
            return (o, false);
        }
        if let Some(ns) = o.id.namespace.as_deref().filter(|_| resource.namespaced)
            && self.namespace_exists(ns).await == Some(false)
        {
            // Nothing can exist in a namespace that does not: no read, no dry-run (it would answer 404).
            o.tracking = Tracking::Absent;
            o.health = health.assess(None);
            o.status = SyncStatus::Missing;
            o.message = format!("will be created (namespace {ns} does not exist yet)");
            o.diff = Some(diff(None, &normalize(&o.payload)));
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
        if o.tracking == Tracking::Untracked
            && let Some(l) = &live
        {
            o.adopted_from = previous_managers(l, &self.config.field_manager);
            if spec.fail_on_shared_resource {
                o.status = SyncStatus::Error;
                o.message = format!(
                    "shared resource: {} exists and no application tracks it ({}); FailOnSharedResource=true \
                     refuses to adopt it",
                    o.id,
                    managed_by(&o.adopted_from)
                );
                return (o, false);
            }
        }
        let ignored = Ignored::for_object(&spec.ignore_differences, &o.id, live.as_ref());
        if let Some(l) = &live {
            ignored.prepare_payload(&mut o.payload, l, &self.config.field_manager);
        }
        let payload_hash = hash_value(&o.payload);
        o.payload_hash = Some(payload_hash);
        let mut lhash = live_hash(live.as_ref(), &o.payload, &self.config.field_manager);
        let cached = self.cache.lock().ok().and_then(|mut c| {
            c.get_mut(&*cache_key(&o.id))
                .filter(|e| e.payload_hash == payload_hash && e.live_hash == lhash)
                .and_then(|e| {
                    e.used = std::time::Instant::now();
                    e.result(live.as_ref(), &o.payload)
                })
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
                                lhash =
                                    live_hash(Some(&newer), &o.payload, &self.config.field_manager);
                                live = Some(newer);
                            }
                            _ if !last_attempt => return (o, true),
                            _ => {}
                        }
                    }
                    let result = normalize(&v);
                    if let Ok(mut c) = self.cache.lock() {
                        c.insert(
                            cache_key(&o.id),
                            CacheEntry::new(payload_hash, lhash, &result, live.as_ref()),
                        );
                        crate::engine::bound_cache(&mut c);
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
                Err(e) if o.options.force && matches!(api_code(&e), Some(409 | 422)) => {
                    // Force=true: what cannot be changed in place is deleted and created again.
                    o.status = SyncStatus::OutOfSync;
                    o.message = format!(
                        "the API server refuses the change ({}): Force=true deletes and creates it",
                        api_message(&e)
                    );
                    o.diff = Some(diff(
                        live.as_ref().map(normalize).as_ref(),
                        &normalize(&o.payload),
                    ));
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
                        o.message = adoption_note(&o.adopted_from);
                    } else {
                        o.status = SyncStatus::Synced;
                    }
                } else {
                    o.status = SyncStatus::OutOfSync;
                    o.drift = attribute(l, &d.ops, &self.config.field_manager);
                    let mut notes: Vec<String> = Vec::new();
                    if o.tracking == Tracking::Untracked {
                        notes.push(adoption_note(&o.adopted_from));
                    }
                    notes.extend(
                        o.drift
                            .iter()
                            .filter(|a| !a.managers.is_empty())
                            .map(Attribution::message),
                    );
                    o.message = notes.join("; ");
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
        if o.options.skip_validation {
            pp.field_validation = Some(ValidationDirective::Ignore);
        }
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
            compare: CompareOptions::default(),
            resource: None,
            uid: None,
        };
        let Some(resource) = self.resources.lookup_kind(&c.id.group, &c.id.kind).await? else {
            // The kind is not served now; the object may well exist (an aggregated API that is down, a definition
            // deleted and about to come back): keep it in the inventory until the kind answers again.
            c.action = PruneAction::KindNotServed;
            return Ok(c);
        };
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let live = match self
            .live
            .get(&resource, c.id.namespace.as_deref(), &c.id.name)
            .await
        {
            Ok(l) => l,
            // A resource that stopped being served answers 404 without a Status (plan() then checks discovery).
            Err(e) if api_code(&e) == Some(404) => None,
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
        c.compare = CompareOptions::read(&live).unwrap_or_default();
        let ours = c.id.tracking_id(&spec.app);
        c.options = match ObjectSyncOptions::read(&live) {
            Ok(o) => o.with_defaults(&spec.object_defaults),
            Err(e) => {
                c.action = PruneAction::Refuse(e.to_string());
                return Ok(c);
            }
        };
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

/// The field managers of a live object other than `ours` (whose writes have shaped it), in the order listed.
fn previous_managers(live: &Value, ours: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let entries = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for e in entries {
        if let Some(m) = e.get("manager").and_then(Value::as_str)
            && m != ours
            && !out.iter().any(|x| x == m)
        {
            out.push(m.to_owned());
        }
    }
    out
}

fn managed_by(managers: &[String]) -> String {
    if managers.is_empty() {
        "no field manager recorded".to_owned()
    } else {
        format!("managed by {}", managers.join(", "))
    }
}

/// The status message of an existing object that syncing adopts.
fn adoption_note(managers: &[String]) -> String {
    format!(
        "exists and no application tracks it ({}): syncing adopts it",
        managed_by(managers)
    )
}

/// The message of an adopted object after the sync.
pub(crate) fn adopted_message(managers: &[String]) -> String {
    if managers.is_empty() {
        "adopted existing object (no previous field manager recorded)".to_owned()
    } else {
        format!(
            "adopted existing object, previously managed by {}",
            managers.join(", ")
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::AppRef;
    use serde_json::json;

    fn deployment(annotations: Value, managers: Value, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "ns", "resourceVersion": "7",
                "annotations": annotations, "labels": { "app": "web" }, "managedFields": managers },
            "spec": { "replicas": replicas },
            "status": { "readyReplicas": 1 },
        })
    }

    #[test]
    fn what_others_write_beside_the_payload_keeps_the_cached_comparison() {
        let payload = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "annotations": { "team": "a", TRACKING_ANNOTATION: "t" },
                "labels": { "app": "web" } },
            "spec": { "replicas": 2 },
        });
        let ours = json!({ "manager": "kedge", "operation": "Apply", "time": "1", "fieldsV1": { "f:spec": {} } });
        let applied = deployment(
            json!({ "team": "a", TRACKING_ANNOTATION: "t" }),
            json!([ours]),
            2,
        );
        // The deployment controller adds its revision annotation (a non-status update) and the status changes.
        let mut annotated = deployment(
            json!({ "team": "a", TRACKING_ANNOTATION: "t", "deployment.kubernetes.io/revision": "1" }),
            json!([ours, { "manager": "kube-controller-manager", "operation": "Update", "time": "2",
                "fieldsV1": { "f:metadata": {} } }]),
            2,
        );
        annotated["status"] = json!({ "readyReplicas": 2 });
        let h = |v: &Value| live_hash(Some(v), &payload, "kedge");
        assert_eq!(h(&applied), h(&annotated));
        // A change to what the payload sets is not hidden: an annotation it sets, or the spec.
        let drifted = deployment(
            json!({ "team": "b", TRACKING_ANNOTATION: "t" }),
            json!([ours]),
            2,
        );
        assert_ne!(h(&applied), h(&drifted));
        assert_ne!(
            h(&applied),
            h(&deployment(
                json!({ "team": "a", TRACKING_ANNOTATION: "t" }),
                json!([ours]),
                3
            ))
        );
        // Another writer's labels count neither; our own managedFields entry does.
        let mut relabelled = applied.clone();
        relabelled["metadata"]["labels"]["owner"] = json!("ops");
        assert_eq!(h(&applied), h(&relabelled));
        let mut released = applied.clone();
        released["metadata"]["managedFields"][0]["fieldsV1"] = json!({ "f:metadata": {} });
        assert_ne!(h(&applied), h(&released));

        // The cached result takes the others' keys from the live object, keeps its own, and drops what is gone.
        let mut cached = normalize(&deployment(
            json!({ "team": "a", "gone": "x" }),
            json!([]),
            2,
        ));
        rebase_metadata(&mut cached, &annotated, &payload);
        assert_eq!(
            cached["metadata"]["annotations"],
            json!({ "team": "a", "deployment.kubernetes.io/revision": "1" })
        );
        assert_eq!(cached["metadata"]["labels"], json!({ "app": "web" }));
        assert!(diff(Some(&normalize(&annotated)), &cached).is_empty());
    }

    #[test]
    fn an_entry_of_an_object_in_sync_keeps_no_copy_and_gives_the_same_result() {
        let payload = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "annotations": { "team": "a" }, "labels": { "app": "web" } },
            "spec": { "replicas": 2 },
        });
        let ours = json!({ "manager": "kedge", "operation": "Apply", "time": "1", "fieldsV1": { "f:spec": {} } });
        let applied = deployment(json!({ "team": "a" }), json!([ours]), 2);
        let h = |v: &Value| live_hash(Some(v), &payload, "kedge");
        // Then the deployment controller annotates it and reports status: the same digest.
        let mut later = deployment(
            json!({ "team": "a", "deployment.kubernetes.io/revision": "1" }),
            json!([ours]),
            2,
        );
        later["status"] = json!({ "readyReplicas": 2 });
        assert_eq!(h(&applied), h(&later));

        let after_apply = CacheEntry::applied([1; 32], h(&applied));
        let in_sync = CacheEntry::new([1; 32], h(&applied), &normalize(&applied), Some(&applied));
        assert!(!after_apply.keeps_text() && !in_sync.keeps_text());
        // What a kept copy would have given: the result rebased on the live object.
        let mut kept = normalize(&applied);
        rebase_metadata(&mut kept, &later, &payload);
        for entry in [&after_apply, &in_sync] {
            let result = entry.result(Some(&later), &payload).expect("result");
            assert_eq!(result, kept);
            assert!(diff(Some(&normalize(&later)), &result).is_empty());
            // With no live object there is nothing to give (the digest of none never matches such an entry).
            assert_eq!(entry.result(None, &payload), None);
        }

        // A result that differs from the live object (the payload changes the spec) is kept, and rebased.
        let wanted = normalize(&deployment(json!({ "team": "a" }), json!([]), 3));
        let out_of_sync = CacheEntry::new([2; 32], h(&applied), &wanted, Some(&applied));
        assert!(out_of_sync.keeps_text());
        let result = out_of_sync.result(Some(&later), &payload).expect("result");
        assert_eq!(result["spec"]["replicas"], json!(3));
        assert_eq!(
            result["metadata"]["annotations"],
            json!({ "team": "a", "deployment.kubernetes.io/revision": "1" })
        );
        assert!(!diff(Some(&normalize(&later)), &result).is_empty());
    }

    fn plan_pruning(deleted: usize, kept: usize, inventory: usize) -> Plan {
        let candidate = |i: usize, action: PruneAction| PruneCandidate {
            id: ObjectId::new("", "ConfigMap", Some("ns"), format!("cm-{i}")),
            action,
            options: ObjectSyncOptions::default(),
            compare: CompareOptions::default(),
            resource: None,
            uid: None,
        };
        let mut prune: Vec<PruneCandidate> = (0..deleted)
            .map(|i| candidate(i, PruneAction::Delete))
            .collect();
        prune.extend((0..kept).map(|i| candidate(deleted + i, PruneAction::Keep)));
        Plan {
            spec: AppSpec::new(AppRef::new("kedge", "shop"), "ns"),
            objects: Vec::new(),
            hooks: Vec::new(),
            prune,
            invalid: Vec::new(),
            would_prune_all: false,
            inventory_size: inventory,
            health: HealthStatus::Healthy,
        }
    }

    #[test]
    fn pruning_most_of_a_large_inventory_needs_confirmation() {
        // 11 of 20: more than half and more than 10.
        let why = plan_pruning(11, 0, 20).mass_prune().unwrap();
        assert_eq!(
            why,
            "would prune 11 of 20 objects; confirm with `kedge app sync shop -n kedge --prune --confirm`"
        );
        // 10 of 10: every object, but not more than 10.
        assert_eq!(plan_pruning(10, 0, 10).mass_prune(), None);
        // 11 of 22: exactly half is not more than half.
        assert_eq!(plan_pruning(11, 0, 22).mass_prune(), None);
        // Objects kept (Prune=false) are not counted as pruned.
        assert_eq!(plan_pruning(5, 30, 35).mass_prune(), None);
        // 95 of 100.
        assert!(plan_pruning(95, 0, 100).mass_prune().is_some());
    }
}
