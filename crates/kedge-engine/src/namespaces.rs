//! Which namespaces of a cluster exist, from one metadata-only watch of its Namespaces: objects of a namespace that
//! does not exist yet are planned as missing without reading them or dry-running them (first deployments into new
//! namespaces cost no request before the apply).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

/// The namespaces of one cluster, as a watch last saw them.
pub(crate) struct Namespaces {
    store: Store<PartialObjectMeta<Namespace>>,
    /// Whether the store holds a complete listing (false until the first one, and from a watch error until the
    /// listing after it).
    ready: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Namespaces {
    /// Starts watching the namespaces through `client` (which must be allowed to list and watch them).
    pub(crate) fn start(client: kube::Client) -> Self {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let (store, writer) = reflector::store();
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Release),
                    Ok(watcher::Event::Init) => flag.store(false, Ordering::Release),
                    Ok(_) => {}
                    Err(e) => {
                        // Until the next complete listing, the store may miss a namespace created meanwhile.
                        flag.store(false, Ordering::Release);
                        tracing::debug!(error = %e, "namespace watch failed; retrying");
                    }
                }
            }
        });
        Self { store, ready, task }
    }

    /// Whether the namespace exists: `None` while the watch has no complete listing.
    pub(crate) fn exists(&self, name: &str) -> Option<bool> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        Some(self.store.get(&ObjectRef::new(name)).is_some())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.task.abort();
    }
}
