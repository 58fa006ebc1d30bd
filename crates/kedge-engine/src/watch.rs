//! A watch-backed [`LiveObjects`]: one watch per (resource, namespace), started on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::cluster::{ApiLiveObjects, LiveObjects};
use crate::cluster::{Resolved, object_to_value};

type Key = (String, String, String, Option<String>);

struct Watch {
    store: Store<DynamicObject>,
    ready: tokio::sync::watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// Reads live objects from watch caches, so a replan of an unchanged application makes no request.
///
/// The first read of a kind in a namespace (or of a cluster-scoped kind) lists and watches it;
/// later reads come from memory. Reads of the exact current version (used when a dry-run saw a
/// newer object than the cache) go to the API server.
pub struct WatchLiveObjects {
    client: kube::Client,
    direct: ApiLiveObjects,
    watches: Mutex<HashMap<Key, Arc<Watch>>>,
}

impl WatchLiveObjects {
    /// Watches through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            direct: ApiLiveObjects::new(client.clone()),
            client,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Number of watches running.
    pub fn watch_count(&self) -> usize {
        self.watches.lock().map(|w| w.len()).unwrap_or(0)
    }

    fn watch(&self, resource: &Resolved, namespace: Option<&str>) -> Option<Arc<Watch>> {
        let ns = if resource.namespaced {
            namespace.map(str::to_string)
        } else {
            None
        };
        let ar = &resource.resource;
        let key = (
            ar.group.clone(),
            ar.version.clone(),
            ar.kind.clone(),
            ns.clone(),
        );
        let mut watches = self.watches.lock().ok()?;
        if let Some(w) = watches.get(&key) {
            return Some(w.clone());
        }
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        };
        let writer = reflector::store::Writer::new(ar.clone());
        let store = writer.as_reader();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        // The store's own readiness future wakes only one of several waiters; track it here.
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        let _ = ready_tx.send(true);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "watch failed; retrying"),
                }
            }
        });
        let w = Arc::new(Watch { store, ready, task });
        watches.insert(key, w.clone());
        Some(w)
    }
}

impl Drop for WatchLiveObjects {
    fn drop(&mut self) {
        if let Ok(watches) = self.watches.lock() {
            for w in watches.values() {
                w.task.abort();
            }
        }
    }
}

impl LiveObjects for WatchLiveObjects {
    fn get<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>> {
        Box::pin(async move {
            let Some(w) = self.watch(resource, namespace) else {
                return self.direct.get(resource, namespace, name).await;
            };
            let mut ready = w.ready.clone();
            if ready.wait_for(|r| *r).await.is_err() {
                return self.direct.get(resource, namespace, name).await;
            }
            let mut r = ObjectRef::new_with(name, resource.resource.clone());
            if resource.namespaced
                && let Some(ns) = namespace
            {
                r = r.within(ns);
            }
            match w.store.get(&r) {
                Some(obj) => object_to_value(&obj, &resource.resource).map(Some),
                None => Ok(None),
            }
        })
    }

    fn get_fresh<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>> {
        self.direct.get(resource, namespace, name)
    }
}
