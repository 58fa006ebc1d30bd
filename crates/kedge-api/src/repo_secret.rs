//! Repository credential Secrets: the label Kedge selects them by, and how one is chosen for a repository URL
//! (as Argo CD does: an exact `repository` match wins over the longest matching `repo-creds` URL prefix).

use std::collections::BTreeMap;
use std::future::Future;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// Label that marks a Secret as repository credentials; its value is `repository` (exact URL) or `repo-creds`
/// (URL prefix).
pub const SECRET_TYPE_LABEL: &str = "kedge.dev/secret-type";

/// Label selector that lists every repository credential Secret.
pub const REPOSITORY_SECRET_SELECTOR: &str = "kedge.dev/secret-type in (repository,repo-creds)";

/// The keys of a Secret as text (`stringData` over `data`); values that are not UTF-8 are left out.
pub fn decode_secret(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(s) = String::from_utf8(v.0.clone()) {
            out.insert(k.clone(), s);
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The decoded keys of the Secret that holds credentials for `url`, if any. Both the Secret's `url` key and `url`
/// go through `normalize` before they are compared.
pub fn select_repository_secret<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    url: &str,
    normalize: impl Fn(&str) -> String,
) -> Option<BTreeMap<String, String>> {
    let wanted = normalize(url);
    let mut best: Option<(usize, BTreeMap<String, String>)> = None;
    for s in secrets {
        let kind = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SECRET_TYPE_LABEL))
            .map(String::as_str);
        let data = decode_secret(s);
        let Some(secret_url) = data.get("url").map(|u| normalize(u)) else {
            continue;
        };
        let score = match kind {
            Some("repository") if secret_url == wanted => usize::MAX,
            Some("repo-creds") if wanted.starts_with(&secret_url) => secret_url.len(),
            _ => continue,
        };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, data));
        }
    }
    best.map(|(_, data)| data)
}

/// Where the repository Secrets of a namespace are read from.
#[derive(Clone)]
pub enum RepositorySecrets {
    /// One LIST (by [`REPOSITORY_SECRET_SELECTOR`]) per lookup.
    Read(kube::Client),
    /// A watch-backed cache of the labelled Secrets; lookups LIST until it has its first full list.
    Cached {
        /// For lookups before the cache is ready.
        client: kube::Client,
        /// The cache.
        store: Store<Secret>,
    },
}

impl RepositorySecrets {
    /// A cache of the repository Secrets of `namespace` (all namespaces when `None`), and the future that keeps it
    /// (run it on a task; it ends only if the watch stream does). `changed` is called with every Secret that is
    /// added, modified or deleted once the cache has its first full list (e.g. to retry what lacked credentials).
    pub fn watched(
        client: kube::Client,
        namespace: Option<&str>,
        changed: impl Fn(&Secret) + Send + Sync + 'static,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let api: Api<Secret> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().labels(REPOSITORY_SECRET_SELECTOR);
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        let changed = std::sync::Arc::new(changed);
        let keep = stream.for_each(move |event| {
            match event {
                Ok(watcher::Event::Apply(secret) | watcher::Event::Delete(secret)) => {
                    changed(&secret)
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(error = %err, "repository Secret watch failed; retrying")
                }
            }
            futures::future::ready(())
        });
        (Self::Cached { client, store }, keep)
    }

    /// The decoded keys of the Secret of `namespace` that holds credentials for `url`, if any (chosen by
    /// [`select_repository_secret`]).
    pub async fn find(
        &self,
        namespace: &str,
        url: &str,
        normalize: impl Fn(&str) -> String,
    ) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
        let client = match self {
            Self::Cached { store, .. }
                if matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) =>
            {
                let secrets = store.state();
                let here = secrets
                    .iter()
                    .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
                    .map(|s| s.as_ref());
                return Ok(select_repository_secret(here, url, normalize));
            }
            Self::Cached { client, .. } | Self::Read(client) => client,
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secrets = api
            .list(&ListParams::default().labels(REPOSITORY_SECRET_SELECTOR))
            .await?;
        Ok(select_repository_secret(&secrets.items, url, normalize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(kind: &str, url: &str, user: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                labels: Some([(SECRET_TYPE_LABEL.to_owned(), kind.to_owned())].into()),
                ..Default::default()
            },
            string_data: Some(
                [
                    ("url".to_owned(), url.to_owned()),
                    ("username".to_owned(), user.to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn exact_repository_wins_over_the_longest_prefix() {
        let lower = |s: &str| s.to_ascii_lowercase();
        let secrets = vec![
            secret("repo-creds", "https://git.test/", "org"),
            secret("repo-creds", "https://git.test/team/", "team"),
            secret("repository", "https://git.test/team/app", "app"),
        ];
        let pick = |url| {
            select_repository_secret(&secrets, url, lower).and_then(|d| d.get("username").cloned())
        };
        assert_eq!(pick("https://git.test/team/app").as_deref(), Some("app"));
        assert_eq!(pick("https://git.test/team/other").as_deref(), Some("team"));
        assert_eq!(pick("https://git.test/x").as_deref(), Some("org"));
        assert_eq!(pick("https://elsewhere.test/x"), None);
    }
}
