//! A client of the test cluster that records every request it sends, so that tests and benchmarks can count reads,
//! writes and dry-runs the way the API server's own metrics do.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use kube::Client;

use crate::error::{Error, Result};

/// One request sent through a recorded client.
#[derive(Clone, Debug)]
pub struct SentRequest {
    /// The HTTP method.
    pub method: http::Method,
    /// The path and query, e.g. `/api/v1/namespaces/a/configmaps/b?dryRun=All&fieldManager=kedge`.
    pub path_and_query: String,
    /// The `Content-Type` header (`application/apply-patch+yaml` tells a server-side apply), or empty.
    pub content_type: String,
}

impl SentRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The query, or empty.
    pub fn query(&self) -> &str {
        self.path_and_query.split_once('?').map_or("", |(_, q)| q)
    }

    /// Whether this went to the Kubernetes API (`/api`, `/apis`), not to `/metrics` or a health check.
    pub fn is_api(&self) -> bool {
        self.path().starts_with("/api")
    }

    /// Whether the request asked for a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.query()
            .split('&')
            .any(|kv| kv.starts_with("dryRun=") && kv != "dryRun=")
    }

    /// Whether the request changes something (a write that is not a dry run).
    pub fn is_write(&self) -> bool {
        matches!(
            self.method,
            http::Method::PATCH | http::Method::POST | http::Method::PUT | http::Method::DELETE
        ) && !self.is_dry_run()
    }

    /// The resource and subresource as `apiserver_request_total` labels them, joined by `/` (`configmaps`,
    /// `applications/status`, `namespaces`), or empty for a path outside a resource.
    pub fn resource(&self) -> String {
        let segs: Vec<&str> = self.path().trim_matches('/').split('/').collect();
        let rest = match segs.first() {
            Some(&"api") => segs.get(2..),
            Some(&"apis") => segs.get(3..),
            _ => None,
        }
        .unwrap_or(&[]);
        // `namespaces/NS/RESOURCE[/NAME[/SUB]]`; `namespaces[/NAME[/SUB]]` itself is cluster-scoped (its
        // subresources are `status` and `finalize`).
        let own_sub = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
        let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 && !own_sub {
            &rest[2..]
        } else {
            rest
        };
        match rest {
            [] => String::new(),
            [resource] | [resource, _] => (*resource).to_owned(),
            [resource, _, sub, ..] => format!("{resource}/{sub}"),
        }
    }

    /// The verb the API server's `apiserver_request_total` counts this request under (`GET`, `LIST`, `WATCH`,
    /// `APPLY`, `PATCH`, `CREATE`, `UPDATE`, `DELETE`, `DELETECOLLECTION`).
    pub fn verb(&self) -> &'static str {
        let query = self.query();
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let collection = {
            let segs: Vec<&str> = self.path().trim_matches('/').split('/').collect();
            let rest = match segs.first() {
                Some(&"api") => segs.get(2..),
                Some(&"apis") => segs.get(3..),
                _ => None,
            }
            .unwrap_or(&[]);
            let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
                &rest[2..]
            } else {
                rest
            };
            rest.len() == 1
        };
        match self.method {
            http::Method::GET if watch => "WATCH",
            http::Method::GET if collection => "LIST",
            http::Method::GET => "GET",
            http::Method::PATCH if self.content_type.contains("apply-patch") => "APPLY",
            http::Method::PATCH => "PATCH",
            http::Method::POST => "CREATE",
            http::Method::PUT => "UPDATE",
            http::Method::DELETE if collection => "DELETECOLLECTION",
            http::Method::DELETE => "DELETE",
            _ => "OTHER",
        }
    }
}

/// Every request sent through the clients it was layered onto, in order.
#[derive(Clone, Default, Debug)]
pub struct RequestLog(Arc<Mutex<Vec<SentRequest>>>);

impl RequestLog {
    /// How many requests were sent so far (a mark for [`since`](Self::since)).
    pub fn len(&self) -> usize {
        self.0.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// Whether nothing was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests sent after the mark `start`.
    pub fn since(&self, start: usize) -> Vec<SentRequest> {
        self.0
            .lock()
            .map(|g| g.get(start..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Every request sent so far.
    pub fn all(&self) -> Vec<SentRequest> {
        self.since(0)
    }
}

impl<S> tower::Layer<S> for RequestLog {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            log: self.clone(),
        }
    }
}

/// The service of [`RequestLog`]: records the request, then sends it on.
#[derive(Clone, Debug)]
pub struct Recorded<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sent = SentRequest {
            method: req.method().clone(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            content_type: req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        };
        if let Ok(mut log) = self.log.0.lock() {
            log.push(sent);
        }
        self.inner.call(req)
    }
}

/// A client for the cluster of `kubeconfig` whose requests are recorded in the returned log.
pub async fn recorded_client(kubeconfig: &Path) -> Result<(Client, RequestLog)> {
    let config = crate::cluster::config_from_kubeconfig(kubeconfig).await?;
    let log = RequestLog::default();
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|source| Error::Kube {
            action: "build a client".into(),
            source,
        })?
        .with_layer(&log)
        .build();
    Ok((client, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(method: http::Method, path_and_query: &str, content_type: &str) -> SentRequest {
        SentRequest {
            method,
            path_and_query: path_and_query.into(),
            content_type: content_type.into(),
        }
    }

    #[test]
    fn resources_are_named_like_the_server_does() {
        use http::Method as M;
        let cases = [
            ("/api/v1/namespaces/a/configmaps/b", "configmaps"),
            ("/api/v1/namespaces/a/configmaps", "configmaps"),
            ("/api/v1/namespaces", "namespaces"),
            ("/api/v1/namespaces/a", "namespaces"),
            ("/api/v1/namespaces/a/status", "namespaces/status"),
            (
                "/apis/kedge.dev/v1alpha1/namespaces/k/applications/web/status?fieldManager=x",
                "applications/status",
            ),
            ("/apis/apps/v1/deployments?watch=true", "deployments"),
            ("/api/v1", ""),
        ];
        for (path, want) in cases {
            assert_eq!(sent(M::GET, path, "").resource(), want, "{path}");
        }
    }

    #[test]
    fn verbs_are_told_like_the_server_does() {
        use http::Method as M;
        let cases = [
            (sent(M::GET, "/api/v1/namespaces/a/configmaps/b", ""), "GET"),
            (sent(M::GET, "/api/v1/namespaces/a/configmaps", ""), "LIST"),
            (
                sent(
                    M::GET,
                    "/apis/apps/v1/deployments?watch=true&resourceVersion=1",
                    "",
                ),
                "WATCH",
            ),
            (sent(M::GET, "/api/v1/namespaces", ""), "LIST"),
            (sent(M::GET, "/api/v1/namespaces/a", ""), "GET"),
            (
                sent(
                    M::PATCH,
                    "/api/v1/namespaces/a/configmaps/b?fieldManager=k",
                    "application/apply-patch+yaml",
                ),
                "APPLY",
            ),
            (
                sent(
                    M::PATCH,
                    "/api/v1/namespaces/a/configmaps/b",
                    "application/merge-patch+json",
                ),
                "PATCH",
            ),
            (
                sent(M::POST, "/api/v1/namespaces/a/configmaps", ""),
                "CREATE",
            ),
            (
                sent(M::PUT, "/api/v1/namespaces/a/configmaps/b", ""),
                "UPDATE",
            ),
            (
                sent(M::DELETE, "/api/v1/namespaces/a/configmaps/b", ""),
                "DELETE",
            ),
            (
                sent(M::DELETE, "/api/v1/namespaces/a/configmaps", ""),
                "DELETECOLLECTION",
            ),
        ];
        for (req, want) in cases {
            assert_eq!(req.verb(), want, "{req:?}");
        }
    }

    #[test]
    fn dry_runs_are_not_writes() {
        let dry = sent(
            http::Method::PATCH,
            "/api/v1/namespaces/a/configmaps/b?dryRun=All&fieldManager=k",
            "application/apply-patch+yaml",
        );
        assert!(dry.is_dry_run() && !dry.is_write() && dry.is_api());
        let real = sent(
            http::Method::PATCH,
            "/api/v1/namespaces/a/configmaps/b?dryRun=",
            "",
        );
        assert!(!real.is_dry_run() && real.is_write());
        assert!(!sent(http::Method::GET, "/api/v1/pods", "").is_write());
        assert!(!sent(http::Method::GET, "/metrics", "").is_api());
    }
}
