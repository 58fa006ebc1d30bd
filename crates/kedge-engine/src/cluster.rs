//! Cluster access: cached API discovery, live object reads and request statistics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::discovery::{Discovery, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::error::EngineError;

/// A resolved API resource: where to send requests for a kind and whether it is namespaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The resource (group, version, kind, plural).
    pub resource: ApiResource,
    /// True for namespaced kinds.
    pub namespaced: bool,
}

impl Resolved {
    /// A dynamic API handle for an object of this resource.
    pub fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &self.resource),
            _ => Api::all_with(client.clone(), &self.resource),
        }
    }
}

#[derive(Default)]
struct ResourceIndex {
    /// (group, version, kind) -> resource.
    exact: HashMap<(String, String, String), Resolved>,
    /// (group, kind) -> preferred resource.
    preferred: HashMap<(String, String), Resolved>,
}

/// Cached discovery of the cluster's resources, refreshed on demand.
pub(crate) struct Resources {
    client: kube::Client,
    index: RwLock<Option<Arc<ResourceIndex>>>,
    stats: Arc<EngineStats>,
}

impl Resources {
    pub(crate) fn new(client: kube::Client, stats: Arc<EngineStats>) -> Self {
        Self {
            client,
            index: RwLock::new(None),
            stats,
        }
    }

    async fn current(&self) -> Result<Arc<ResourceIndex>, EngineError> {
        if let Some(idx) = self.index.read().await.clone() {
            return Ok(idx);
        }
        self.refresh_index().await
    }

    /// Runs discovery again and replaces the cache.
    pub(crate) async fn refresh(&self) -> Result<(), EngineError> {
        self.refresh_index().await.map(|_| ())
    }

    async fn refresh_index(&self) -> Result<Arc<ResourceIndex>, EngineError> {
        self.stats.discoveries.fetch_add(1, Ordering::Relaxed);
        let discovery = match Discovery::new(self.client.clone()).run_aggregated().await {
            Ok(d) => d,
            Err(_) => Discovery::new(self.client.clone())
                .run()
                .await
                .map_err(|source| EngineError::Discovery { source })?,
        };
        let mut idx = ResourceIndex::default();
        for group in discovery.groups() {
            for version in group.versions() {
                for (ar, caps) in group.versioned_resources(version) {
                    let r = Resolved {
                        namespaced: caps.scope == Scope::Namespaced,
                        resource: ar.clone(),
                    };
                    idx.exact
                        .insert((ar.group.clone(), ar.version.clone(), ar.kind.clone()), r);
                }
            }
            for (ar, caps) in group.recommended_resources() {
                idx.preferred.insert(
                    (ar.group.clone(), ar.kind.clone()),
                    Resolved {
                        namespaced: caps.scope == Scope::Namespaced,
                        resource: ar,
                    },
                );
            }
        }
        let idx = Arc::new(idx);
        *self.index.write().await = Some(idx.clone());
        Ok(idx)
    }

    /// Resolves (group, version, kind) from the cache only.
    pub(crate) async fn lookup(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Option<Resolved>, EngineError> {
        let idx = self.current().await?;
        Ok(idx
            .exact
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .cloned())
    }

    /// Resolves the preferred version of (group, kind) from the cache only.
    pub(crate) async fn lookup_kind(
        &self,
        group: &str,
        kind: &str,
    ) -> Result<Option<Resolved>, EngineError> {
        let idx = self.current().await?;
        Ok(idx
            .preferred
            .get(&(group.to_string(), kind.to_string()))
            .cloned())
    }
}

/// Reads live objects. The default reads with GET; a controller can plug in a watch-backed cache
/// so that a replan makes no request at all.
pub trait LiveObjects: Send + Sync {
    /// Returns the live object, or `None` if it does not exist.
    fn get<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>>;

    /// Returns the object as the API server has it now (a cache must not answer). Used when a
    /// dry-run saw a newer version than [`get`](Self::get) returned.
    fn get_fresh<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>> {
        self.get(resource, namespace, name)
    }

    /// Told the object as an apply returned it (a cache may keep it; the default keeps nothing).
    fn remember(
        &self,
        _resource: &Resolved,
        _namespace: Option<&str>,
        _name: &str,
        _object: &Value,
    ) {
    }

    /// Forgets what was not used for `age`; returns how many objects went (the default keeps nothing).
    fn evict_unused(&self, _age: std::time::Duration) -> usize {
        0
    }
}

/// Serializes a dynamic object, making sure `apiVersion` and `kind` are set (list items lack them).
pub(crate) fn object_to_value(
    obj: &DynamicObject,
    resource: &ApiResource,
) -> Result<Value, kube::Error> {
    let mut v = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    if let Some(m) = v.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(resource.api_version.clone()));
        m.entry("kind")
            .or_insert_with(|| Value::String(resource.kind.clone()));
    }
    Ok(v)
}

/// Reads live objects with one GET request each.
#[derive(Clone)]
pub struct ApiLiveObjects {
    client: kube::Client,
}

impl ApiLiveObjects {
    /// Reads through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl LiveObjects for ApiLiveObjects {
    fn get<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>> {
        Box::pin(async move {
            let api = resource.api(&self.client, namespace);
            match api.get_opt(name).await? {
                Some(obj) => object_to_value(&obj, &resource.resource).map(Some),
                None => Ok(None),
            }
        })
    }
}

/// Counters of the requests the engine made.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub(crate) gets: AtomicU64,
    pub(crate) dry_runs: AtomicU64,
    pub(crate) applies: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) discoveries: AtomicU64,
    pub(crate) dry_run_cache_hits: AtomicU64,
}

/// A snapshot of [`EngineStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Live object reads through [`LiveObjects`].
    pub gets: u64,
    /// Server-side apply dry-runs.
    pub dry_runs: u64,
    /// Server-side applies (writes).
    pub applies: u64,
    /// Deletions.
    pub deletes: u64,
    /// Discovery runs.
    pub discoveries: u64,
    /// Dry-runs answered from the cache.
    pub dry_run_cache_hits: u64,
}

impl StatsSnapshot {
    /// Requests made between `earlier` and `self`.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            gets: self.gets - earlier.gets,
            dry_runs: self.dry_runs - earlier.dry_runs,
            applies: self.applies - earlier.applies,
            deletes: self.deletes - earlier.deletes,
            discoveries: self.discoveries - earlier.discoveries,
            dry_run_cache_hits: self.dry_run_cache_hits - earlier.dry_run_cache_hits,
        }
    }
}

impl EngineStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            gets: l(&self.gets),
            dry_runs: l(&self.dry_runs),
            applies: l(&self.applies),
            deletes: l(&self.deletes),
            discoveries: l(&self.discoveries),
            dry_run_cache_hits: l(&self.dry_run_cache_hits),
        }
    }
}

/// The API server's message for a failed request, without credentials.
pub(crate) fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            if status.message.is_empty() {
                format!("{} ({})", status.reason, status.code)
            } else {
                status.message.clone()
            }
        }
        other => other.to_string(),
    }
}

/// The HTTP status code of a failed request, if it came from the API server.
pub(crate) fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
