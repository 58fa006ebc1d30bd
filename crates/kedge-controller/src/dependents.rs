//! Which applications wait for (`dependsOn`) or are promoted from each application, kept up to date from the watch
//! of Applications, so that a change of an application's standing queues its dependents without looking at every
//! application (with 10,000 applications, that look, once per status change of each, was most of the controller's
//! CPU).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use kedge_api::Application;

use crate::promotion;
use crate::reconcile::{dependency_keys, key_of};

/// The applications downstream of each application.
#[derive(Default)]
pub struct Dependents {
    inner: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    /// Upstream key (`namespace/name`) -> the keys of the applications that wait for it or are promoted from it.
    downstream: HashMap<String, BTreeSet<String>>,
    /// Application key -> the upstream keys it names (to take its edges out when it changes or goes).
    upstream: HashMap<String, Vec<String>>,
}

impl Index {
    fn remove(&mut self, key: &str) {
        for up in self.upstream.remove(key).unwrap_or_default() {
            if let Some(down) = self.downstream.get_mut(&up) {
                down.remove(key);
                if down.is_empty() {
                    self.downstream.remove(&up);
                }
            }
        }
    }

    fn insert(&mut self, app: &Application) {
        let key = key_of(app);
        self.remove(&key);
        let ups = upstreams(app);
        if ups.is_empty() {
            return;
        }
        for up in &ups {
            self.downstream
                .entry(up.clone())
                .or_default()
                .insert(key.clone());
        }
        self.upstream.insert(key, ups);
    }
}

/// The applications `app` waits for or is promoted from, as `namespace/name` keys.
fn upstreams(app: &Application) -> Vec<String> {
    let mut ups = dependency_keys(app);
    if let Some(p) = &app.spec.promotion {
        ups.push(promotion::upstream_key(app, p));
    }
    ups.sort();
    ups.dedup();
    ups
}

impl Dependents {
    /// `app` was added or changed.
    pub fn saw(&self, app: &Application) {
        self.lock().insert(app);
    }

    /// `app` is gone.
    pub fn gone(&self, app: &Application) {
        self.lock().remove(&key_of(app));
    }

    /// Starts over from `apps` (a new listing: what it does not hold is gone).
    pub fn rebuild<'a>(&self, apps: impl IntoIterator<Item = &'a Application>) {
        let mut index = Index::default();
        for app in apps {
            index.insert(app);
        }
        *self.lock() = index;
    }

    /// The applications downstream of the application `key` (`namespace/name`).
    pub fn of(&self, key: &str) -> Vec<ObjectRef<Application>> {
        self.lock()
            .downstream
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|k| {
                let (ns, name) = k.split_once('/')?;
                Some(ObjectRef::new(name).within(ns))
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(ns: &str, name: &str, spec: serde_json::Value) -> Application {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .expect("application")
    }

    fn names(refs: Vec<ObjectRef<Application>>) -> Vec<String> {
        refs.into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    }

    #[test]
    fn edges_follow_changes_and_deletions() {
        let d = Dependents::default();
        let src = serde_json::json!({"repoURL": "https://example.invalid/r.git", "path": "."});
        let db = app("a", "db", serde_json::json!({"source": src}));
        let web = app(
            "a",
            "web",
            serde_json::json!({"source": src, "dependsOn": [{"name": "db"}, {"name": "cache", "namespace": "b"}]}),
        );
        d.saw(&db);
        d.saw(&web);
        assert_eq!(names(d.of("a/db")), ["a/web"]);
        assert_eq!(names(d.of("b/cache")), ["a/web"]);
        assert!(d.of("a/web").is_empty());

        // web no longer waits for db.
        let web2 = app(
            "a",
            "web",
            serde_json::json!({"source": src, "dependsOn": [{"name": "cache", "namespace": "b"}]}),
        );
        d.saw(&web2);
        assert!(d.of("a/db").is_empty());
        assert_eq!(names(d.of("b/cache")), ["a/web"]);

        d.gone(&web2);
        assert!(d.of("b/cache").is_empty());

        // A new listing replaces everything.
        d.saw(&web);
        d.rebuild([&db]);
        assert!(d.of("a/db").is_empty() && d.of("b/cache").is_empty());
    }
}
