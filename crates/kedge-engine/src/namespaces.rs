//! Which namespaces of a cluster exist, from one metadata-only watch of its Namespaces: objects of a namespace that
//! does not exist yet are planned as missing without reading them or dry-running them (first deployments into new
//! namespaces cost no request before the apply).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

/// How long a question waits for a complete listing before the caller reads the namespace itself.
const LISTING_WAIT: Duration = Duration::from_secs(2);

/// The namespaces of one cluster, as a watch last saw them.
pub(crate) struct Namespaces {
    store: Store<PartialObjectMeta<Namespace>>,
    /// Whether the store holds a complete listing (false until the first one, and from a watch error until the
    /// listing after it).
    ready: tokio::sync::watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Namespaces {
    /// Starts watching the namespaces through `client` (which must be allowed to list and watch them).
    pub(crate) fn start(client: kube::Client) -> Self {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let (store, writer) = reflector::store();
        let (flag, ready) = tokio::sync::watch::channel(false);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            // Only the name is read: the rest (managedFields above all) would be held for every namespace.
            .modify(|ns| {
                ns.metadata = ObjectMeta {
                    name: ns.metadata.name.take(),
                    resource_version: ns.metadata.resource_version.take(),
                    ..ObjectMeta::default()
                };
            })
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        let _ = flag.send(true);
                    }
                    Ok(watcher::Event::Init) => {
                        let _ = flag.send(false);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Until the next complete listing, the store may miss a namespace created meanwhile.
                        let _ = flag.send(false);
                        tracing::debug!(error = %e, "namespace watch failed; retrying");
                    }
                }
            }
        });
        Self { store, ready, task }
    }

    /// Whether the namespace exists: `None` when the watch has no complete listing within [`LISTING_WAIT`] (the
    /// first one, typically, right after the start).
    pub(crate) async fn exists(&self, name: &str) -> Option<bool> {
        let mut ready = self.ready.clone();
        match tokio::time::timeout(LISTING_WAIT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Some(self.store.get(&ObjectRef::new(name)).is_some()),
            _ => None,
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.task.abort();
    }
}
