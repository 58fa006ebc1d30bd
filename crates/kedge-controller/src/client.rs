//! Kubernetes clients of the controller: every request counted by verb into the metrics, and for the controller's
//! own writes a gate that lets none through unless this replica holds the leader Lease.

use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use kube::client::{Body, ClientBuilder};
use tower::{BoxError, Layer, Service};

use crate::leader::LeaderGuard;
use crate::metrics::{Metrics, VerbLabel};

/// Builds a client from `config` whose every request is counted in [`Metrics::api_requests`] (as requests to the
/// cluster Kedge runs in).
pub fn counting_client(
    config: kube::Config,
    metrics: &Metrics,
) -> Result<kube::Client, kube::Error> {
    counting_client_for(config, metrics, kedge_api::IN_CLUSTER_NAME)
}

/// Like [`counting_client`], counting the requests as made to the registered cluster `cluster`.
pub fn counting_client_for(
    config: kube::Config,
    metrics: &Metrics,
    cluster: &str,
) -> Result<kube::Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&counting_layer(metrics, cluster))
        .build())
}

/// Builds the client the controller writes with (sync, prune, hooks, status, events): counted as
/// [`counting_client`]'s, and refusing to send any request that changes something (dry runs do not) while `guard`
/// says this replica does not lead. The reconcile checks leadership before each phase; this gate checks it before
/// each single write, so a replica whose lease ran out in the middle of a phase (a wave waiting for health, a hook
/// running) sends nothing more.
pub fn leader_client(
    config: kube::Config,
    metrics: &Metrics,
    guard: LeaderGuard,
) -> Result<kube::Client, kube::Error> {
    leader_client_for(config, metrics, guard, kedge_api::IN_CLUSTER_NAME)
}

/// Like [`leader_client`], counting the requests as made to the registered cluster `cluster`.
pub fn leader_client_for(
    config: kube::Config,
    metrics: &Metrics,
    guard: LeaderGuard,
    cluster: &str,
) -> Result<kube::Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&counting_layer(metrics, cluster))
        .with_layer(&LeaderGateLayer { guard })
        .build())
}

fn counting_layer(
    metrics: &Metrics,
    cluster: &str,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<Body>) -> http::Request<Body> + Clone + use<>>
{
    let family = metrics.api_requests.clone();
    let cluster = cluster.to_owned();
    tower::util::MapRequestLayer::new(move |req: http::Request<Body>| {
        let verb = verb_of(
            req.method(),
            req.uri().path(),
            req.uri().query().unwrap_or(""),
        );
        // Every request, for measuring what a pass costs (`RUST_LOG=kedge_controller::client=trace`).
        tracing::trace!(verb, cluster = %cluster, path = req.uri().path(), "request");
        family
            .get_or_create(&VerbLabel {
                verb,
                cluster: cluster.clone(),
            })
            .inc();
        req
    })
}

/// A write refused because this replica does not hold the leader Lease.
#[derive(Debug, thiserror::Error)]
#[error("refused to send {method} {path}: this replica does not hold the leader lease")]
pub struct NotLeader {
    method: http::Method,
    path: String,
}

/// Whether a request changes something: any method but reads, unless it is a dry run.
pub fn changes_something(method: &http::Method, query: &str) -> bool {
    let dry_run = query
        .split('&')
        .any(|kv| kv.starts_with("dryRun=") && kv != "dryRun=");
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) && !dry_run
}

#[derive(Clone)]
struct LeaderGateLayer {
    guard: LeaderGuard,
}

impl<S> Layer<S> for LeaderGateLayer {
    type Service = LeaderGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LeaderGate {
            inner,
            guard: self.guard.clone(),
        }
    }
}

struct LeaderGate<S> {
    inner: S,
    guard: LeaderGuard,
}

impl<S, B> Service<http::Request<Body>> for LeaderGate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = BoxError>,
{
    type Response = http::Response<B>;
    type Error = BoxError;
    type Future = Either<S::Future, Ready<Result<http::Response<B>, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if changes_something(req.method(), req.uri().query().unwrap_or(""))
            && !self.guard.is_leading()
        {
            let refused = NotLeader {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
            };
            tracing::debug!(error = %refused, "write refused");
            return Either::Right(futures::future::ready(Err(Box::new(refused))));
        }
        Either::Left(self.inner.call(req))
    }
}

/// The Kubernetes verb of a request, told from its method, path and query.
pub fn verb_of(method: &http::Method, path: &str, query: &str) -> &'static str {
    let has = |key: &str| {
        query
            .split('&')
            .any(|kv| kv == key || kv.starts_with(&format!("{key}=")))
    };
    let dry_run = query
        .split('&')
        .any(|kv| kv.starts_with("dryRun=") && kv != "dryRun=");
    match *method {
        http::Method::GET if has("watch") && query.contains("watch=true") => "watch",
        http::Method::GET => {
            if is_collection(path) {
                "list"
            } else {
                "get"
            }
        }
        http::Method::PATCH if dry_run => "patch_dry_run",
        http::Method::PATCH => "patch",
        http::Method::POST if dry_run => "create_dry_run",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// Whether a resource path names a collection (`/api/v1/namespaces/x/configmaps`) rather than one object.
fn is_collection(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.first() {
        Some(&"api") => segs.get(2..),
        Some(&"apis") => segs.get(3..),
        _ => return false,
    };
    let Some(rest) = rest else { return false };
    let resource = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        &rest[2..]
    } else {
        rest
    };
    resource.len() == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn tells_writes_from_reads_and_dry_runs() {
        assert!(!changes_something(&Method::GET, "watch=true"));
        assert!(!changes_something(&Method::HEAD, ""));
        assert!(changes_something(&Method::PATCH, "fieldManager=kedge"));
        assert!(changes_something(&Method::POST, ""));
        assert!(changes_something(&Method::PUT, ""));
        assert!(changes_something(&Method::DELETE, ""));
        assert!(!changes_something(
            &Method::PATCH,
            "dryRun=All&fieldManager=kedge"
        ));
        assert!(changes_something(
            &Method::PATCH,
            "dryRun=&fieldManager=kedge"
        ));
    }

    #[test]
    fn tells_verbs_apart() {
        assert_eq!(
            verb_of(&Method::GET, "/api/v1/namespaces/a/configmaps", ""),
            "list"
        );
        assert_eq!(
            verb_of(&Method::GET, "/api/v1/namespaces/a/configmaps/b", ""),
            "get"
        );
        assert_eq!(verb_of(&Method::GET, "/api/v1/namespaces/a", ""), "get");
        assert_eq!(verb_of(&Method::GET, "/api/v1/namespaces", ""), "list");
        assert_eq!(
            verb_of(
                &Method::GET,
                "/apis/apps/v1/deployments",
                "watch=true&resourceVersion=1"
            ),
            "watch"
        );
        assert_eq!(
            verb_of(&Method::GET, "/apis/apps/v1/namespaces/a/deployments/d", ""),
            "get"
        );
        assert_eq!(
            verb_of(
                &Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/d",
                "dryRun=All&fieldManager=kedge"
            ),
            "patch_dry_run"
        );
        assert_eq!(
            verb_of(
                &Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/d",
                "fieldManager=kedge"
            ),
            "patch"
        );
        assert_eq!(
            verb_of(&Method::DELETE, "/api/v1/namespaces/a/configmaps/b", ""),
            "delete"
        );
    }
}
