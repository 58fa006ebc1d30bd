//! The engine: configuration, application spec and shared state (discovery, dry-run cache, stats).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::{ApiLiveObjects, EngineStats, LiveObjects, Resources, StatsSnapshot};
use crate::error::EngineError;
use crate::health::{HealthChecker, HealthRule};
use crate::ignore::IgnoreRule;
use crate::object::{AppRef, ObjectId};
use crate::plan::CacheEntry;
#[cfg(test)]
use crate::plan::cache_key;

/// What the engine needs to know about an application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    /// The application (its tracking ids name it).
    pub app: AppRef,
    /// Namespace given to namespaced objects that have none.
    pub destination_namespace: String,
    /// Fields left out of comparison and apply.
    #[serde(default)]
    pub ignore_differences: Vec<IgnoreRule>,
    /// Custom health rules of this application (before the engine's global ones).
    #[serde(default)]
    pub health_rules: Vec<HealthRule>,
    /// Refuse to adopt existing objects that no application tracks (`FailOnSharedResource=true`): such objects are
    /// planned as errors, so the sync is refused and nothing applied. Objects tracked by another application are
    /// refused either way.
    #[serde(default)]
    pub fail_on_shared_resource: bool,
    /// Sync options of the whole application, added to every object's own (an option either sets is on).
    #[serde(default)]
    pub object_defaults: crate::object::ObjectSyncOptions,
}

impl AppSpec {
    /// A spec with no ignore or health rules.
    pub fn new(app: AppRef, destination_namespace: impl Into<String>) -> Self {
        Self {
            app,
            destination_namespace: destination_namespace.into(),
            ignore_differences: Vec::new(),
            health_rules: Vec::new(),
            fail_on_shared_resource: false,
            object_defaults: Default::default(),
        }
    }
}

/// How deleted objects' dependents are removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropagationPolicy {
    /// Dependents are deleted before the owner disappears.
    #[default]
    Foreground,
    /// The owner disappears at once; dependents are deleted afterwards.
    Background,
    /// Dependents are left behind.
    Orphan,
}

/// Options of one sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// Delete objects that left the desired set.
    pub prune: bool,
    /// Allow pruning everything when the desired set is empty.
    pub allow_empty: bool,
    /// Take over fields owned by other managers on conflict (default true).
    pub force_conflicts: bool,
    /// Propagation policy for prune deletions.
    pub propagation: PropagationPolicy,
    /// How long a wave may take to become healthy before the sync fails.
    pub wave_timeout: Duration,
    /// How long a hook may run.
    pub hook_timeout: Duration,
    /// Wait for the last wave to be healthy even without PostSync hooks or PruneLast objects.
    pub wait_healthy: bool,
    /// Prune even when the plan would delete most of the inventory ([`crate::Plan::mass_prune`]); without it such
    /// a pruning sync is refused and changes nothing.
    #[serde(default)]
    pub confirm_prune: bool,
    /// This sync deletes the application (the controller's finalizer): objects marked `Delete=false` are kept.
    #[serde(default)]
    pub deleting_application: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            prune: true,
            allow_empty: false,
            force_conflicts: true,
            propagation: PropagationPolicy::Foreground,
            wave_timeout: Duration::from_secs(300),
            hook_timeout: Duration::from_secs(300),
            wait_healthy: false,
            confirm_prune: false,
            deleting_application: false,
        }
    }
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Field manager of every apply (default `kedge`).
    pub field_manager: String,
    /// Maximum concurrent requests of one plan or one apply group.
    pub concurrency: usize,
    /// Global custom health rules.
    pub health_rules: Vec<HealthRule>,
    /// Interval between health polls while waiting for waves and hooks.
    pub poll_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            field_manager: "kedge".into(),
            concurrency: 32,
            health_rules: Vec::new(),
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// Plans, syncs and assesses applications against one cluster.
pub struct Engine {
    pub(crate) client: kube::Client,
    pub(crate) live: Arc<dyn LiveObjects>,
    pub(crate) resources: Resources,
    pub(crate) cache: Mutex<HashMap<Box<str>, CacheEntry>>,
    pub(crate) stats: Arc<EngineStats>,
    pub(crate) config: EngineConfig,
    pub(crate) health: HealthChecker,
    /// Which namespaces exist, once [`Engine::watch_namespaces`] started the watch.
    pub(crate) namespaces: std::sync::OnceLock<crate::namespaces::Namespaces>,
}

impl Engine {
    /// The client of the cluster this engine plans and applies against.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// An engine reading live objects with GET requests.
    pub fn new(client: kube::Client, config: EngineConfig) -> Result<Self, EngineError> {
        let live = Arc::new(ApiLiveObjects::new(client.clone()));
        Self::with_live_objects(client, config, live)
    }

    /// An engine reading live objects through `live` (e.g. a watch-backed cache).
    pub fn with_live_objects(
        client: kube::Client,
        config: EngineConfig,
        live: Arc<dyn LiveObjects>,
    ) -> Result<Self, EngineError> {
        let stats = Arc::new(EngineStats::default());
        let health = HealthChecker::new(&config.health_rules)?;
        Ok(Self {
            resources: Resources::new(client.clone(), stats.clone()),
            client,
            live,
            cache: Mutex::new(HashMap::new()),
            stats,
            config,
            health,
            namespaces: std::sync::OnceLock::new(),
        })
    }

    /// Watches the cluster's namespaces through `client` (a client without a read timeout, allowed to list and watch
    /// them), so that plans know, without a request, that a namespace does not exist yet: its objects are then
    /// planned as missing without being read or dry-run. A second call does nothing. Engines whose client cannot
    /// list namespaces (impersonating a team's ServiceAccount) do not call it and read as before.
    pub fn watch_namespaces(&self, client: kube::Client) {
        let _ = self
            .namespaces
            .get_or_init(|| crate::namespaces::Namespaces::start(client));
    }

    /// Whether namespace `name` exists, as the namespace watch last saw it; `None` without a watch, or when it has
    /// no complete listing within two seconds.
    pub async fn namespace_exists(&self, name: &str) -> Option<bool> {
        match self.namespaces.get() {
            Some(n) => n.exists(name).await,
            None => None,
        }
    }

    /// Counters of the requests made so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Forgets all cached dry-run results.
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// Forgets the cached dry-run results (and the live objects held, with a caching [`LiveObjects`]) that no plan
    /// used for `age` (those of objects no application manages any more, typically); how many were forgotten.
    pub fn evict_unused(&self, age: std::time::Duration) -> usize {
        let Ok(mut c) = self.cache.lock() else {
            return 0;
        };
        let before = c.len();
        c.retain(|_, e| e.used.elapsed() < age);
        before - c.len() + self.live.evict_unused(age)
    }

    /// Whether `kind` of `api_version` is namespaced on the cluster (discovery, refreshed once when the kind is not
    /// known yet); `None` when the cluster does not serve it.
    pub async fn is_namespaced(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<bool>, EngineError> {
        Ok(self
            .resource(api_version, kind)
            .await?
            .map(|r| r.namespaced))
    }

    /// Where `kind` of `api_version` is served on the cluster and whether it is namespaced (discovery, refreshed
    /// once when the kind is not known yet); `None` when the cluster does not serve it.
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<crate::cluster::Resolved>, EngineError> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if let Some(r) = self.resources.lookup(group, version, kind).await? {
            return Ok(Some(r));
        }
        self.resources.refresh().await?;
        self.resources.lookup(group, version, kind).await
    }

    /// Cached dry-run results held now.
    pub fn cached_dry_runs(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}

/// Most dry-run results the cache holds: beyond it, the least recently used tenth is forgotten. Far above what the
/// largest measured installation keeps (one per managed object: 50,000 for 10,000 applications of five objects).
pub const DRY_RUN_CACHE_MAX: usize = 200_000;

/// Keeps `cache` within [`DRY_RUN_CACHE_MAX`] entries.
pub(crate) fn bound_cache(cache: &mut HashMap<Box<str>, CacheEntry>) {
    bound_cache_to(cache, DRY_RUN_CACHE_MAX);
}

fn bound_cache_to(cache: &mut HashMap<Box<str>, CacheEntry>, max: usize) {
    if cache.len() <= max {
        return;
    }
    let mut used: Vec<std::time::Instant> = cache.values().map(|e| e.used).collect();
    used.sort_unstable();
    // Forget down to nine tenths of the bound, so that this runs once per tenth of it, not on every insert.
    let keep = (max * 9 / 10).max(1);
    let cut = used[cache.len() - keep];
    cache.retain(|_, e| e.used >= cut);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn id(n: usize) -> ObjectId {
        ObjectId {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: format!("cm-{n}"),
        }
    }

    #[test]
    fn the_dry_run_cache_keeps_the_most_recently_used_within_its_bound() {
        let mut cache = HashMap::new();
        let start = Instant::now();
        for n in 0..30 {
            let mut e = CacheEntry::new([1; 32], [2; 32], &json!({}), None);
            e.used = start + Duration::from_millis(n as u64);
            cache.insert(cache_key(&id(n)), e);
        }
        bound_cache_to(&mut cache, 40);
        assert_eq!(cache.len(), 30, "within the bound nothing goes");
        bound_cache_to(&mut cache, 20);
        assert_eq!(cache.len(), 18, "nine tenths of the bound are kept");
        assert!(
            !cache.contains_key(&cache_key(&id(11))),
            "the least recently used go"
        );
        assert!(cache.contains_key(&cache_key(&id(12))) && cache.contains_key(&cache_key(&id(29))));
        bound_cache_to(&mut cache, 1);
        assert_eq!(cache.len(), 1);
        assert!(cache.contains_key(&cache_key(&id(29))));
    }
}

/// Health of an application's objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppHealth {
    /// The worst health of all objects.
    pub status: crate::health::HealthStatus,
    /// Health per object.
    pub objects: Vec<(ObjectId, crate::health::Health)>,
}

impl Engine {
    /// Assesses the live objects of an inventory (one read each through [`LiveObjects`]).
    pub async fn health(
        &self,
        spec: &AppSpec,
        inventory: &[ObjectId],
    ) -> Result<AppHealth, EngineError> {
        use futures::StreamExt;
        let checker = HealthChecker::new(&spec.health_rules)?.layered(&self.health);
        let results: Vec<Result<(ObjectId, crate::health::Health), EngineError>> =
            futures::stream::iter(inventory.iter().cloned())
                .map(|id| {
                    let checker = &checker;
                    async move {
                        let Some(resource) =
                            self.resources.lookup_kind(&id.group, &id.kind).await?
                        else {
                            return Ok((id, checker.assess(None)));
                        };
                        self.stats
                            .gets
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let h = match self
                            .live
                            .get(&resource, id.namespace.as_deref(), &id.name)
                            .await
                        {
                            Ok(live) => checker.assess(live.as_ref()),
                            Err(e) => crate::health::Health {
                                status: crate::health::HealthStatus::Unknown,
                                message: crate::cluster::api_message(&e),
                            },
                        };
                        Ok((id, h))
                    }
                })
                .buffered(self.config.concurrency.max(1))
                .collect()
                .await;
        let objects = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let status = crate::health::worst(objects.iter().map(|(_, h)| h));
        Ok(AppHealth { status, objects })
    }
}
