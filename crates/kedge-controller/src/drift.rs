//! Watch-driven drift detection: metadata-only watches on the kinds that applications manage, turning any change to
//! a tracked object into a reconcile of the application that owns it, within a second.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kedge_api::{Application, TRACKING_ANNOTATION};
use kedge_engine::PackedText;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;

/// Starts watches on demand and sends the owning application of every changed object.
#[derive(Clone)]
pub struct DriftWatcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    admission: Arc<Admission>,
    kinds: Mutex<HashSet<(String, String)>>,
    tx: mpsc::UnboundedSender<ObjectRef<Application>>,
    shutdown: CancellationToken,
    field_manager: String,
    versions: Arc<Versions>,
}

/// The resource version of every object of the watched kinds, as the watches last saw them: what lets the engine
/// answer a read from the object it last read or applied (see [`kedge_engine::VersionedLiveObjects`]).
#[derive(Default)]
pub struct Versions {
    kinds: std::sync::RwLock<HashMap<(String, String), KindVersions>>,
}

#[derive(Default)]
struct KindVersions {
    /// Whether `objects` is a complete listing (from the watch's first listing on, until a watch error).
    complete: bool,
    /// The listing being made: objects not seen again by its end are gone.
    listing: u64,
    /// `namespace/name` (the namespace empty for a cluster-scoped object) -> what the watch last saw of it: one
    /// allocation per object, and less room in the table than two strings.
    objects: HashMap<Box<str>, Seen>,
}

/// An object as a watch last saw it.
struct Seen {
    version: Box<str>,
    /// The listing it was last seen in.
    listing: u64,
    /// The whole object as JSON text (packed), for the kinds watched whole and objects Kedge tracks.
    object: Option<Arc<PackedText>>,
    /// For those: the versions this watch reported before `version`, newest first (at most [`EARLIER_KEPT`]).
    earlier: Vec<Box<str>>,
}

/// The key of an object in [`KindVersions::objects`].
fn object_key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

/// How many earlier versions of an object kept whole are remembered: enough to tell that the watch has passed the
/// version of Kedge's own apply while a rollout moves the object's status on.
const EARLIER_KEPT: usize = 4;

impl Versions {
    fn with_kind(&self, key: &(String, String), f: impl FnOnce(&mut KindVersions)) {
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        f(kinds.entry(key.clone()).or_default());
    }

    fn record(
        &self,
        key: &(String, String),
        meta: &kube::api::ObjectMeta,
        deleted: bool,
        object: Option<Arc<PackedText>>,
    ) {
        let id = object_key(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        self.with_kind(key, |k| {
            if deleted {
                k.objects.remove(&id);
            } else if let Some(v) = &meta.resource_version {
                let listing = k.listing;
                let mut earlier = Vec::new();
                if object.is_some()
                    && let Some(before) = k.objects.get_mut(&id)
                {
                    // The same version again (a new listing) keeps what was reported before it.
                    earlier = std::mem::take(&mut before.earlier);
                    if *before.version != **v {
                        earlier.insert(0, before.version.clone());
                        earlier.truncate(EARLIER_KEPT);
                    }
                }
                k.objects.insert(
                    id,
                    Seen {
                        version: v.as_str().into(),
                        listing,
                        object,
                        earlier,
                    },
                );
            }
        });
    }
}

impl kedge_engine::ObjectVersions for Versions {
    fn version(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Option<String>> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        let k = kinds.get(&(group.to_owned(), kind.to_owned()))?;
        if !k.complete {
            return None;
        }
        Some(
            k.objects
                .get(&object_key(namespace.unwrap_or_default(), name))
                .map(|seen| seen.version.to_string()),
        )
    }

    fn object(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        since: &str,
    ) -> Option<Arc<PackedText>> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        let seen = kinds
            .get(&(group.to_owned(), kind.to_owned()))?
            .objects
            .get(&object_key(namespace.unwrap_or_default(), name))?;
        (*seen.version == *since || seen.earlier.iter().any(|e| **e == *since))
            .then(|| seen.object.clone())
            .flatten()
    }
}

impl DriftWatcher {
    /// A watcher whose triggers arrive on the returned receiver; the passes they cause are marked urgent in
    /// `admission`. Watches stop on `shutdown`.
    pub fn new(
        client: kube::Client,
        field_manager: impl Into<String>,
        admission: Arc<Admission>,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<ObjectRef<Application>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Inner {
            client,
            admission,
            kinds: Mutex::default(),
            tx,
            shutdown,
            field_manager: field_manager.into(),
            versions: Arc::default(),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// A watcher of another cluster's objects through `client`, feeding the same queue as this one; its watches
    /// stop on `stop` (or at this one's shutdown).
    pub fn for_cluster(&self, client: kube::Client, stop: CancellationToken) -> Self {
        let inner = Inner {
            client,
            admission: self.inner.admission.clone(),
            kinds: Mutex::default(),
            tx: self.inner.tx.clone(),
            shutdown: stop,
            field_manager: self.inner.field_manager.clone(),
            versions: Arc::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A token cancelled at this watcher's shutdown, for the watchers of other clusters to derive theirs from.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The admission of reconcile passes these triggers feed.
    pub fn admission(&self) -> Arc<Admission> {
        self.inner.admission.clone()
    }

    /// The resource versions the watches of this cluster saw, for the cluster's engine to read through.
    pub fn versions(&self) -> Arc<Versions> {
        self.inner.versions.clone()
    }

    /// A sender for other triggers (repository poller, webhooks) that feed the same queue.
    pub fn trigger_sender(&self) -> mpsc::UnboundedSender<ObjectRef<Application>> {
        self.inner.tx.clone()
    }

    /// Makes sure every `(apiVersion, kind)` is watched; `false` when some kind could not be watched (yet), so that
    /// a change to its objects could go unseen.
    pub async fn ensure_kinds(&self, kinds: impl Iterator<Item = (String, String)>) -> bool {
        let mut all = true;
        let mut known = self.inner.kinds.lock().await;
        for (api_version, kind) in kinds {
            if api_version.is_empty()
                || kind.is_empty()
                || known.contains(&(api_version.clone(), kind.clone()))
            {
                continue;
            }
            let (group, version) = match api_version.split_once('/') {
                Some((g, v)) => (g.to_owned(), v.to_owned()),
                None => (String::new(), api_version.clone()),
            };
            let gvk = GroupVersionKind::gvk(&group, &version, &kind);
            match kube::discovery::pinned_kind(&self.inner.client, &gvk).await {
                Ok((resource, _caps)) => {
                    known.insert((api_version.clone(), kind.clone()));
                    let label = format!("{api_version}/{kind}");
                    let key = (group.clone(), kind.clone());
                    if kedge_engine::health::follows_rollout(&group, &kind) {
                        // Kept whole (the objects Kedge tracks): each step of a rollout is read from here.
                        let api: Api<DynamicObject> =
                            Api::all_with(self.inner.client.clone(), &resource);
                        let types = kube::api::TypeMeta {
                            api_version: api_version.clone(),
                            kind: kind.clone(),
                        };
                        let stream = watcher::watcher(api, watcher::Config::default())
                            .default_backoff()
                            .map(move |e| e.map(|e| map_event(e, |o| whole(o, &types))));
                        tokio::spawn(watch_kind(stream, self.inner.clone(), label, key));
                    } else {
                        let api: Api<PartialObjectMeta<DynamicObject>> =
                            Api::all_with(self.inner.client.clone(), &resource);
                        let stream = watcher::watcher(api, watcher::Config::default())
                            .default_backoff()
                            .map(|e| e.map(|e| map_event(e, |o| (o.metadata, None))));
                        tokio::spawn(watch_kind(stream, self.inner.clone(), label, key));
                    }
                }
                Err(err) => {
                    all = false;
                    tracing::debug!(%api_version, %kind, error = %err, "cannot watch kind yet")
                }
            }
        }
        all
    }
}

/// What a watch event carries here: the object's metadata, and the whole object for the kinds kept whole.
type Observed = (kube::api::ObjectMeta, Option<Arc<PackedText>>);

fn map_event<K>(event: Event<K>, f: impl FnOnce(K) -> Observed) -> Event<Observed> {
    match event {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// The metadata of an object watched whole, and its JSON text when Kedge tracks it (others are not kept). Listed
/// items carry no kind, so it is set from the watch's.
fn whole(mut object: DynamicObject, types: &kube::api::TypeMeta) -> Observed {
    let tracked = object
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(TRACKING_ANNOTATION));
    let text = tracked
        .then(|| {
            object.types = Some(types.clone());
            serde_json::to_string(&object).ok()
        })
        .flatten()
        .map(|text| Arc::new(PackedText::pack(&text)));
    (object.metadata, text)
}

async fn watch_kind(
    stream: impl futures::Stream<Item = Result<Event<Observed>, watcher::Error>>,
    inner: Arc<Inner>,
    label: String,
    kind: (String, String),
) {
    tracing::debug!(kind = %label, "watching for drift");
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        let Some(event) = next else { return };
        let (meta, object, deleted) = match event {
            Ok(Event::Apply((meta, object))) => (meta, object, false),
            Ok(Event::Delete((meta, _))) => (meta, None, true),
            Ok(Event::Init) => {
                inner.admission.watches_restarted();
                inner.versions.with_kind(&kind, |k| k.listing += 1);
                continue;
            }
            Ok(Event::InitApply((meta, object))) => {
                inner.versions.record(&kind, &meta, false, object);
                continue;
            }
            Ok(Event::InitDone) => {
                inner.versions.with_kind(&kind, |k| {
                    let listing = k.listing;
                    k.objects.retain(|_, seen| seen.listing == listing);
                    k.complete = true;
                });
                // A change made before this listing (while the watch was down, or before it first listed) was not
                // reported: the applications waiting for their objects' health look again.
                for key in inner.admission.rolling() {
                    if let Some((namespace, name)) = key.split_once('/') {
                        inner.admission.expedite(&key);
                        let _ = inner.tx.send(ObjectRef::new(name).within(namespace));
                    }
                }
                continue;
            }
            Err(err) => {
                // Changes may go unseen until the watch is back: passes that skip the comparison because no change
                // was reported must not trust this stretch, nor the versions recorded.
                inner.versions.with_kind(&kind, |k| k.complete = false);
                inner.admission.watches_restarted();
                tracing::debug!(kind = %label, error = %err, "drift watch error; retrying");
                continue;
            }
        };
        inner.versions.record(&kind, &meta, deleted, object);
        let Some(tracking) = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRACKING_ANNOTATION))
        else {
            continue;
        };
        let Some((app, _id)) = kedge_engine::object::ObjectId::parse_tracking_id(tracking) else {
            continue;
        };
        // Our own applies echo back; a deletion is always news (its last writer is whoever wrote it before).
        if !deleted && last_writer_is(&meta, &inner.field_manager) {
            continue;
        }
        // Someone else changed it: a drift to revert (or a health change to report) goes ahead of routine passes.
        inner
            .admission
            .expedite(&format!("{}/{}", app.namespace, app.name));
        let _ = inner
            .tx
            .send(ObjectRef::new(&app.name).within(&app.namespace));
    }
}

/// Whether the newest managedFields entry of an object was written by `manager` (our own apply echoing back).
/// Times have a resolution of one second, so a tie with another manager's entry counts as someone else's change.
fn last_writer_is(meta: &kube::api::ObjectMeta, manager: &str) -> bool {
    let Some(fields) = meta.managed_fields.as_ref() else {
        return false;
    };
    let Some(newest) = fields
        .iter()
        .filter_map(|f| f.time.as_ref().map(|t| t.0))
        .max()
    else {
        return false;
    };
    let at_newest: Vec<_> = fields
        .iter()
        .filter(|f| f.time.as_ref().map(|t| t.0) == Some(newest))
        .collect();
    at_newest
        .iter()
        .all(|f| f.manager.as_deref() == Some(manager) && f.subresource.is_none())
}

#[cfg(test)]
mod tests {
    use kedge_engine::ObjectVersions;

    use super::*;

    fn meta(version: &str) -> kube::api::ObjectMeta {
        kube::api::ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("web".into()),
            resource_version: Some(version.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_whole_kept_object_is_served_once_the_watch_passed_the_version_asked() {
        let versions = Versions::default();
        let kind = ("apps".to_owned(), "Deployment".to_owned());
        let record = |v: &str| {
            let text = PackedText::pack(&format!("{{\"v\":{v}}}"));
            versions.record(&kind, &meta(v), false, Some(Arc::new(text)));
        };
        let copy = |since: &str| {
            versions
                .object("apps", "Deployment", Some("ns"), "web", since)
                .and_then(|t| t.unpack())
        };
        for v in ["10", "11", "12"] {
            record(v);
        }
        // The newest copy, for any version the watch has reported.
        for since in ["10", "11", "12"] {
            assert_eq!(copy(since).as_deref(), Some("{\"v\":12}"), "{since}");
        }
        assert_eq!(
            copy("13"),
            None,
            "not reported yet: the watch may be behind"
        );
        for v in ["13", "14", "15", "16"] {
            record(v);
        }
        assert_eq!(
            copy("11"),
            None,
            "only the last {EARLIER_KEPT} earlier versions are kept"
        );
        assert_eq!(copy("12").as_deref(), Some("{\"v\":16}"));
        // A new listing reports the current version again: what came before is still known.
        record("16");
        assert_eq!(copy("13").as_deref(), Some("{\"v\":16}"));

        // Gone: nothing to serve.
        versions.record(&kind, &meta("17"), true, None);
        assert_eq!(copy("16"), None);
    }
}
