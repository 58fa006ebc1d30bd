//! Live reads that cost a request only when the object changed: [`VersionedLiveObjects`] keeps the objects it read or
//! applied, and asks a watch's record of resource versions ([`ObjectVersions`]) whether each is still current.
//!
//! The record comes from watches the controller keeps anyway (its drift watches are metadata-only, so they hold one
//! version string per object, not the objects); the objects kept here are only those the engine itself read or
//! applied. A read answers from memory when the record names the version held; it answers "absent" without a request
//! when the record has a complete listing of the kind, no such object, and the engine never held it; otherwise it
//! reads the object and keeps it. For the kinds a watch keeps whole ([`ObjectVersions::object`], e.g. Deployments,
//! whose status moves through a rollout), the watch's copy answers too, so a rollout's steps cost no reads; once the
//! watch holds the version kept here, the copy kept here is dropped, so such an object is in memory once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::cluster::{ApiLiveObjects, LiveObjects, Resolved};
use crate::packed::PackedText;

/// A record of the current resource version of objects, kept by a watch.
pub trait ObjectVersions: Send + Sync {
    /// `None`: not known (the kind is not watched, or its watch has no complete listing); `Some(None)`: no such
    /// object; `Some(Some(version))`: its current `resourceVersion`.
    fn version(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Option<String>>;

    /// The object as the watch holds it now, as JSON text (packed), when the watch keeps this kind whole and has reported
    /// version `since` of it, now or before (so its copy is not older than `since`); `None` otherwise (the default:
    /// watches of metadata only).
    fn object(
        &self,
        _group: &str,
        _kind: &str,
        _namespace: Option<&str>,
        _name: &str,
        _since: &str,
    ) -> Option<Arc<PackedText>> {
        None
    }
}

/// `group/kind/namespace/name` (none of them holds a `/`; the namespace is empty for a cluster-scoped object): one
/// allocation per object held, and a quarter of the room of four strings in the table.
type Key = Box<str>;

struct Held {
    version: Box<str>,
    /// The object as compact JSON text, packed (a parsed value takes several times the memory of its text, and the
    /// text several times that of it packed).
    text: PackedText,
    used: Instant,
    /// Whether the watch has reported this version. Until it has, a different version the watch reports may be older
    /// than this one (the watch lags behind an apply or a read), and its copy must not be served.
    seen_by_watch: bool,
}

/// Most objects held; past it the least recently used tenth goes.
const HELD_MAX: usize = 200_000;

/// Live reads served from the objects last read or applied while a watch says they have not changed since.
pub struct VersionedLiveObjects {
    direct: ApiLiveObjects,
    versions: Arc<dyn ObjectVersions>,
    held: Mutex<HashMap<Key, Held>>,
    served_by_watch: AtomicU64,
}

impl VersionedLiveObjects {
    /// Reads through `client` what `versions` cannot vouch for.
    pub fn new(client: kube::Client, versions: Arc<dyn ObjectVersions>) -> Self {
        Self {
            direct: ApiLiveObjects::new(client),
            versions,
            held: Mutex::new(HashMap::new()),
            served_by_watch: AtomicU64::new(0),
        }
    }

    /// How many objects are held.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// How many reads the watch's copy of a whole-kept object answered.
    pub fn served_by_watch(&self) -> u64 {
        self.served_by_watch.load(Ordering::Relaxed)
    }

    fn key(resource: &Resolved, namespace: Option<&str>, name: &str) -> Key {
        let ar = &resource.resource;
        let namespace = namespace
            .filter(|_| resource.namespaced)
            .unwrap_or_default();
        format!("{}/{}/{namespace}/{name}", ar.group, ar.kind).into_boxed_str()
    }

    fn keep(&self, key: Key, object: Option<&Value>) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        let version = object
            .and_then(|o| o.pointer("/metadata/resourceVersion"))
            .and_then(Value::as_str);
        match (object, version) {
            (Some(o), Some(v)) => {
                held.insert(
                    key,
                    Held {
                        version: v.into(),
                        text: PackedText::pack(&o.to_string()),
                        used: Instant::now(),
                        seen_by_watch: false,
                    },
                );
                if held.len() > HELD_MAX {
                    let mut used: Vec<Instant> = held.values().map(|h| h.used).collect();
                    used.sort_unstable();
                    let cut = used[held.len() - HELD_MAX * 9 / 10];
                    held.retain(|_, h| h.used >= cut);
                }
            }
            _ => {
                held.remove(&key);
            }
        }
    }

    /// The watch's own copy of an object it keeps whole, not older than version `since`, counted as served by it.
    fn watch_copy(
        &self,
        resource: &Resolved,
        namespace: Option<&str>,
        name: &str,
        since: &str,
    ) -> Option<Value> {
        let ar = &resource.resource;
        let text = self
            .versions
            .object(&ar.group, &ar.kind, namespace, name, since)?;
        let value = text.json()?;
        self.served_by_watch.fetch_add(1, Ordering::Relaxed);
        Some(value)
    }

    async fn read(
        &self,
        resource: &Resolved,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, kube::Error> {
        let got = self.direct.get(resource, namespace, name).await?;
        self.keep(Self::key(resource, namespace, name), got.as_ref());
        Ok(got)
    }
}

impl LiveObjects for VersionedLiveObjects {
    fn get<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>> {
        Box::pin(async move {
            let ns = namespace.filter(|_| resource.namespaced);
            let ar = &resource.resource;
            let known = self.versions.version(&ar.group, &ar.kind, ns, name);
            let key = Self::key(resource, namespace, name);
            if let Some(current) = known {
                // The version the watch's copy must not be older than: the one held, until the watch has been seen
                // to report it (after an apply or a read the watch may still be behind).
                let mut since: Option<String> = None;
                // The version held, when the watch's current version differs: once the watch's copy answers, the
                // copy held here is older than it and goes.
                let mut superseded: Option<String> = None;
                if let Ok(mut held) = self.held.lock() {
                    match (&current, held.get_mut(&key)) {
                        (Some(v), Some(h)) if *h.version == **v => {
                            // A watch that keeps the object whole holds this very version: its copy answers from
                            // now on, and the one held here goes (the object would otherwise be in memory twice).
                            if let Some(value) = self.watch_copy(resource, ns, name, v) {
                                held.remove(&key);
                                return Ok(Some(value));
                            }
                            h.used = Instant::now();
                            h.seen_by_watch = true;
                            if let Some(value) = h.text.json() {
                                return Ok(Some(value));
                            }
                        }
                        // Absent from a complete listing, and never held: nothing to read. (One held and now absent
                        // was deleted, or the watch lags behind an apply: read it.)
                        (None, None) => return Ok(None),
                        (Some(_), Some(h)) => {
                            superseded = Some(h.version.to_string());
                            if !h.seen_by_watch {
                                since = Some(h.version.to_string());
                            }
                        }
                        _ => {}
                    }
                }
                // A newer version than the one held: the watch's own copy, when it keeps the kind whole.
                if let Some(v) = &current
                    && let Some(value) =
                        self.watch_copy(resource, ns, name, since.as_deref().unwrap_or(v))
                {
                    // Unless an apply has put a newer version there meanwhile.
                    if let Some(old) = superseded
                        && let Ok(mut held) = self.held.lock()
                        && held.get(&key).is_some_and(|h| *h.version == *old)
                    {
                        held.remove(&key);
                    }
                    return Ok(Some(value));
                }
                tracing::debug!(kind = %ar.kind, ?ns, name, ?current, "live read: the version held is not current");
            } else {
                tracing::debug!(kind = %ar.kind, ?ns, name, "live read: the kind's watch has no complete listing");
            }
            self.read(resource, namespace, name).await
        })
    }

    fn get_fresh<'a>(
        &'a self,
        resource: &'a Resolved,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, kube::Error>> {
        Box::pin(self.read(resource, namespace, name))
    }

    fn remember(&self, resource: &Resolved, namespace: Option<&str>, name: &str, object: &Value) {
        self.keep(Self::key(resource, namespace, name), Some(object));
    }

    fn evict_unused(&self, age: Duration) -> usize {
        let Ok(mut held) = self.held.lock() else {
            return 0;
        };
        let before = held.len();
        held.retain(|_, h| h.used.elapsed() < age);
        before - held.len()
    }
}
