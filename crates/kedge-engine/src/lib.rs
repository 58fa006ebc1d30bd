//! Plans, applies, prunes and assesses the health of a desired object set against a live cluster.
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo(client: kube::Client, desired: Vec<kedge_engine::DesiredObject>) -> Result<(), Box<dyn std::error::Error>> {
//! use kedge_engine::{AppRef, AppSpec, Engine, EngineConfig, SyncOptions};
//!
//! let engine = Engine::new(client, EngineConfig::default())?;
//! let spec = AppSpec::new(AppRef::new("kedge", "shop"), "shop");
//! let previous_inventory = Vec::new(); // stored by the controller after the last sync
//! let plan = engine.plan(&spec, desired, &previous_inventory).await?;
//! for o in plan.objects.iter().filter(|o| o.needs_apply()) {
//!     println!("{} {:?} {}", o.id, o.status, o.message);
//! }
//! let result = engine.sync(&plan, &SyncOptions::default()).await?;
//! let inventory = result.inventory; // store for the next plan
//! # let _ = inventory;
//! # Ok(()) }
//! ```
//!
//! # Pipeline
//!
//! - [`Engine::plan`] resolves each [`DesiredObject`] through cached discovery (namespaced objects
//!   without a namespace get the destination namespace), reads the live object through
//!   [`LiveObjects`], and compares it with a server-side apply dry-run of the desired object
//!   (field manager `kedge`). Server-owned metadata, `status` and Kedge's tracking annotation are
//!   ignored, so server defaults never show as a diff. Each result is [`SyncStatus::Synced`],
//!   [`SyncStatus::OutOfSync`] (with a JSON-pointer diff, a YAML text diff with secret values
//!   masked, and the field managers that own the drifted fields), [`SyncStatus::Missing`] or
//!   [`SyncStatus::Error`]. Dry-run results are cached per object and reused while neither the
//!   desired object nor the live object changed, so a steady-state replan makes no dry-run and no
//!   write. `ignoreDifferences` ([`IgnoreRule`]) removes fields from the comparison and from the
//!   apply payload. Objects of the previous inventory that left the desired set become
//!   [`PruneCandidate`]s; one whose kind is not served stays in the inventory
//!   ([`PruneAction::KindNotServed`]) until its kind returns.
//! - [`Engine::sync`] runs PreSync hooks, applies OutOfSync and Missing objects wave by wave
//!   (`kedge.dev/sync-wave`) and, within a wave, kind group by kind group (Namespaces, CRDs — waiting
//!   until established —, cluster RBAC, ServiceAccounts, ConfigMaps/Secrets, Services, workloads,
//!   the rest), concurrently within a group; a wave starts once the previous one is healthy. It
//!   then prunes (only objects tracked by this application; `Prune=false`, `PruneLast`, the
//!   empty-set guard and the propagation policy are honoured), runs PostSync hooks, or SyncFail
//!   hooks on failure. It returns one [`ObjectOutcome`] per object and the new inventory. A pruning
//!   sync that would delete more than half of the inventory and more than [`MASS_PRUNE_MIN`]
//!   objects is refused, changing nothing, unless [`SyncOptions::confirm_prune`] is set.
//! - Adoption: an existing object that no application tracks is adopted by the apply
//!   ([`Action::Adopted`], naming its previous field managers); with
//!   [`AppSpec::fail_on_shared_resource`] it is a plan error instead.
//! - Secret values: the values of a `v1/Secret` and the fields an object's
//!   `kedge.dev/sensitive-fields` annotation names ([`object::SENSITIVE_ANNOTATION`], written by the
//!   renderer for decrypted SOPS documents and Helm values from Secrets) are masked in every diff
//!   with fixed-length masks ([`diff::MASK`], [`diff::MASK_CHANGED`]) and redacted from messages.
//! - [`HealthChecker`] assesses built-in kinds, generic `Ready`/`Available` conditions and custom
//!   CEL rules ([`HealthRule`]); [`health::worst`] gives an application's health.
//!
//! # Details worth knowing
//!
//! - Dry-run cache key: (SHA-256 of the apply payload, SHA-256 of the live object without
//!   `status`, `resourceVersion` and managedFields timestamps). This is stricter than keying on the
//!   resourceVersion: a controller writing only status does not invalidate the cache. A successful
//!   apply seeds the cache with its response, so the plan after a sync needs no dry-run either.
//! - If the live object changes between the read and the dry-run (the dry-run reports another
//!   resourceVersion), the object is read again and compared with the version the dry-run saw.
//! - ignoreDifferences on an existing object: an ignored field that Kedge still owns is sent with
//!   its live value (so Kedge never changes nor deletes it); one owned by others is left out of
//!   the payload. A Missing object is created with its full desired state.
//! - Sync order: PreSync hooks → for each wave: kind groups in order, then the wave's Sync hooks,
//!   then a health gate (Degraded fails at once, otherwise bounded by
//!   [`SyncOptions::wave_timeout`]) → prune (reverse kind order, `PruneLast` last) → PostSync hooks;
//!   SyncFail hooks if anything failed. Later waves and prune are skipped after a failure.
//! - [`Engine::sync`] executes the plan it is given; plan again right before syncing.
//! - [`WatchLiveObjects`] serves live reads from watches (one per kind and namespace, started on
//!   first use): with it a replan of an unchanged application makes no request at all.
//! - [`VersionedLiveObjects`] keeps what the engine read or applied and answers from memory while a watch's record
//!   of resource versions ([`ObjectVersions`]) says the object is unchanged (the controller's choice: its drift
//!   watches hold versions, not objects). [`Engine::watch_namespaces`] lets plans skip the objects of a namespace
//!   that does not exist yet (no read, no dry-run).
//!
//! - Per-object annotations are read once, in [`object`] and [`order`], each under Kedge's key and Argo CD's
//!   (`kedge.dev/sync-wave` or `argocd.argoproj.io/sync-wave`, likewise `hook`, `hook-delete-policy`,
//!   `sync-options`, `compare-options`); when both are set they must agree, else the object is an error naming
//!   both. `hook: Skip` leaves an object out (neither applied nor pruned); a hook named only by `generateName` is
//!   created anew (POST) each time it runs, its id naming the prefix, and its earlier instances are found by that
//!   prefix and the hook's tracking id ([`PlannedHook::generate_name`]). [`ObjectSyncOptions`] and
//!   [`object::CompareOptions`] say what each option does.
//!
//! Every applied object carries `kedge.dev/tracking-id: <app-ns>/<app>:<group>/<kind>:<ns>/<name>`;
//! an object tracked by another application is never applied over nor deleted. Argo CD's tracking annotations
//! are neither read nor removed.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod apply;
pub mod attribution;
mod cluster;
pub mod diff;
mod engine;
pub mod error;
pub mod fieldpath;
pub mod health;
pub mod ignore;
mod namespaces;
pub mod object;
pub mod order;
pub mod packed;
pub mod plan;
mod versioned;
mod watch;

pub use apply::{Action, HookOutcome, ObjectOutcome, SyncPhase, SyncResult};
pub use attribution::{Attribution, ManagerRef};
pub use cluster::{ApiLiveObjects, EngineStats, LiveObjects, Resolved, StatsSnapshot};
pub use diff::{DiffOp, DiffOpKind, ObjectDiff};
pub use engine::{AppHealth, AppSpec, Engine, EngineConfig, PropagationPolicy, SyncOptions};
pub use error::{EngineError, ObjectError};
pub use health::{Health, HealthChecker, HealthRule, HealthStatus};
pub use ignore::IgnoreRule;
pub use object::{AppRef, DesiredObject, ObjectId, ObjectSyncOptions};
pub use order::{HookDeletePolicy, HookPhase};
pub use packed::PackedText;
pub use plan::{
    MASS_PRUNE_MIN, Plan, PlannedHook, PlannedObject, PruneAction, PruneCandidate, SyncStatus,
    Tracking,
};
pub use versioned::{ObjectVersions, VersionedLiveObjects};
pub use watch::WatchLiveObjects;
