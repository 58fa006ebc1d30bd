//! A Kubernetes client that counts its requests by verb into the controller's metrics.

use kube::client::ClientBuilder;

use crate::metrics::{Metrics, VerbLabel};

/// Builds a client from `config` whose every request is counted in [`Metrics::api_requests`].
pub fn counting_client(
    config: kube::Config,
    metrics: &Metrics,
) -> Result<kube::Client, kube::Error> {
    let family = metrics.api_requests.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let verb = verb_of(
            req.method(),
            req.uri().path(),
            req.uri().query().unwrap_or(""),
        );
        family.get_or_create(&VerbLabel { verb }).inc();
        req
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
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
