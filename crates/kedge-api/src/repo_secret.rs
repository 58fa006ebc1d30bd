//! Repository credential Secrets: the label Kedge selects them by, and how one is chosen for a repository URL
//! (as Argo CD does: an exact `repository` match wins over the longest matching `repo-creds` URL prefix).

use std::collections::BTreeMap;
use std::future::Future;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kedge_source::RepoUrl;
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

/// The decoded keys of the Secret that holds credentials for `url`, if any: a `repository` Secret whose `url` is the
/// same repository ([`RepoUrl::same_as`]) wins over the `repo-creds` Secret whose `url` covers it with the most path
/// segments ([`RepoUrl::covers`]: same scheme, host and port, a prefix of whole segments). URLs that cannot be read
/// safely match nothing.
pub fn select_repository_secret<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    url: &str,
) -> Option<BTreeMap<String, String>> {
    let wanted = RepoUrl::parse(url).ok()?;
    let mut best: Option<(usize, BTreeMap<String, String>)> = None;
    for s in secrets {
        let kind = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SECRET_TYPE_LABEL))
            .map(String::as_str);
        let data = decode_secret(s);
        let Some(secret_url) = data.get("url").and_then(|u| RepoUrl::parse(u).ok()) else {
            continue;
        };
        let score = match kind {
            Some("repository") if secret_url.same_as(&wanted) => usize::MAX,
            Some("repo-creds") => match secret_url.covers(&wanted) {
                Some(n) => n,
                None => continue,
            },
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
                return Ok(select_repository_secret(here, url));
            }
            Self::Cached { client, .. } | Self::Read(client) => client,
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secrets = api
            .list(&ListParams::default().labels(REPOSITORY_SECRET_SELECTOR))
            .await?;
        Ok(select_repository_secret(&secrets.items, url))
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

    fn pick(secrets: &[Secret], url: &str) -> Option<String> {
        select_repository_secret(secrets, url).and_then(|d| d.get("username").cloned())
    }

    #[test]
    fn exact_repository_wins_over_the_longest_prefix() {
        let secrets = vec![
            secret("repo-creds", "https://git.test/", "org"),
            secret("repo-creds", "https://git.test/team/", "team"),
            secret("repository", "https://git.test/team/app", "app"),
        ];
        assert_eq!(
            pick(&secrets, "https://git.test/team/app").as_deref(),
            Some("app")
        );
        assert_eq!(
            pick(&secrets, "https://Git.test/team/app.git").as_deref(),
            Some("app")
        );
        assert_eq!(
            pick(&secrets, "https://git.test/team/other").as_deref(),
            Some("team")
        );
        assert_eq!(pick(&secrets, "https://git.test/x").as_deref(), Some("org"));
        assert_eq!(pick(&secrets, "https://elsewhere.test/x"), None);
    }

    #[test]
    fn prefixes_match_only_whole_segments_of_the_same_origin() {
        let secrets = vec![
            secret("repo-creds", "https://git.example.org/team", "team"),
            secret("repo-creds", "https://git.example.org", "host"),
        ];
        assert_eq!(
            pick(&secrets, "https://git.example.org/team/app").as_deref(),
            Some("team")
        );
        // A sibling path gets the host-wide Secret, never the team's.
        assert_eq!(
            pick(&secrets, "https://git.example.org/team-other/x").as_deref(),
            Some("host")
        );
        let team_only = vec![secret("repo-creds", "https://git.example.org/team", "team")];
        for url in [
            "https://git.example.org/team-other/x",
            "https://git.example.org/teamx",
            "https://git.example.org/team/../other/x",
            "http://git.example.org/team/app",
            "https://git.example.org:8443/team/app",
            "ssh://git@git.example.org/team/app",
            "https://evil.test\\@git.example.org/team/app",
        ] {
            assert_eq!(pick(&team_only, url), None, "{url}");
        }
        let host_only = vec![secret("repo-creds", "https://git.example.org", "host")];
        for url in [
            "https://git.example.org.evil/team/app",
            "https://git.example.org.evil",
            "https://evilgit.example.org/x",
            "https://git.example.org@evil.test/x",
        ] {
            assert_eq!(pick(&host_only, url), None, "{url}");
        }
        // An exact Secret is exact: it covers nothing below it.
        let exact = vec![secret(
            "repository",
            "https://git.example.org/team",
            "exact",
        )];
        assert_eq!(pick(&exact, "https://git.example.org/team/app"), None);
    }
}
