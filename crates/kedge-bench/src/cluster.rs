//! The test cluster for one scenario: start, client that counts the bench's own requests, server request counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::web;

/// A request class as the API server's `apiserver_request_total` names it: verb (`GET`, `LIST`, `WATCH`, `APPLY`,
/// `PATCH`, `CREATE`, `UPDATE`, `DELETE`, ...) and whether it was a dry run.
pub type VerbKey = (String, bool);

/// Requests by class.
pub type Counts = BTreeMap<VerbKey, f64>;

/// Starts (fresh) the test cluster `name` and returns its kubeconfig path.
pub fn up(repo_root: &Path, name: &str) -> Result<PathBuf> {
    down(repo_root, name);
    let out = std::process::Command::new(repo_root.join("testcluster/up"))
        .args(["--name", name])
        .stdin(std::process::Stdio::null())
        .output()
        .context("failed to run testcluster/up")?;
    if !out.status.success() {
        bail!(
            "testcluster/up --name {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .context("testcluster/up printed no kubeconfig path")?;
    Ok(PathBuf::from(path))
}

/// Stops the test cluster `name` and deletes its data (errors are ignored: it may not be running).
pub fn down(repo_root: &Path, name: &str) {
    let _ = std::process::Command::new(repo_root.join("testcluster/down"))
        .args(["--name", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The server's class of one request, told the way the API server's metrics do.
fn classify(method: &http::Method, path: &str, query: &str, content_type: &str) -> VerbKey {
    let has = |k: &str| {
        query
            .split('&')
            .any(|kv| kv == k || kv.starts_with(&format!("{k}=")))
    };
    let dry = query
        .split('&')
        .any(|kv| kv.starts_with("dryRun=") && kv != "dryRun=");
    let collection = {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
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
    let verb = match *method {
        http::Method::GET if has("watch") && query.contains("watch=true") => "WATCH",
        http::Method::GET if collection => "LIST",
        http::Method::GET => "GET",
        http::Method::PATCH if content_type.contains("apply-patch") => "APPLY",
        http::Method::PATCH => "PATCH",
        http::Method::POST => "CREATE",
        http::Method::PUT => "UPDATE",
        http::Method::DELETE if collection => "DELETECOLLECTION",
        http::Method::DELETE => "DELETE",
        _ => "OTHER",
    };
    (verb.to_owned(), dry)
}

/// Counts the bench's own requests, so that they can be taken out of the server's counters.
#[derive(Clone, Default)]
pub struct OwnRequests(Arc<Mutex<Counts>>);

impl OwnRequests {
    /// The counts so far.
    pub fn snapshot(&self) -> Counts {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl<S> tower::Layer<S> for OwnRequests {
    type Service = CountingService<S>;
    fn layer(&self, inner: S) -> CountingService<S> {
        CountingService {
            inner,
            counts: self.clone(),
        }
    }
}

/// The service of [`OwnRequests`].
#[derive(Clone)]
pub struct CountingService<S> {
    inner: S,
    counts: OwnRequests,
}

impl<S, B> tower::Service<http::Request<B>> for CountingService<S>
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
        if !req.uri().path().starts_with("/api") {
            // /metrics and health checks: the server's counters leave them out too.
            return self.inner.call(req);
        }
        let ct = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = classify(
            req.method(),
            req.uri().path(),
            req.uri().query().unwrap_or(""),
            ct,
        );
        if let Ok(mut g) = self.counts.0.lock() {
            *g.entry(key).or_default() += 1.0;
        }
        self.inner.call(req)
    }
}

/// A client of the cluster whose requests are counted.
pub async fn client(kubeconfig: &Path) -> Result<(kube::Client, OwnRequests)> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("failed to read {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let own = OwnRequests::default();
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&own)
        .build();
    Ok((client, own))
}

/// Server-side request counters, split into what the in-server controllers (workload simulator, garbage collector,
/// namespace controller) did and everything else.
#[derive(Clone, Debug, Default)]
pub struct ServerCounts {
    /// Requests of the in-server controllers, recognised by what only they do: anything on ReplicaSets and Pods,
    /// every `UPDATE` (PUT) but of Leases (Kedge's leader election), `CREATE` of ServiceAccounts and ConfigMaps (the namespace
    /// controller's `default` and `kube-root-ca.crt`; Kedge creates objects with server-side apply).
    pub in_server: Counts,
    /// All other requests.
    pub rest: Counts,
}

/// Reads `apiserver_request_total` from the server's `/metrics` (requests made by `client` itself are counted too).
pub async fn server_counts(client: &kube::Client) -> Result<ServerCounts> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .context("failed to build the metrics request")?;
    let text = client
        .request_text(req)
        .await
        .context("failed to read the API server's metrics")?;
    let mut out = ServerCounts::default();
    for (sample, value) in web::parse_prometheus(&text) {
        if !sample.starts_with("apiserver_request_total{") {
            continue;
        }
        // The server names creates and updates by their HTTP methods; use the bench's names.
        let verb = match web::label(&sample, "verb").unwrap_or("") {
            "POST" => "CREATE",
            "PUT" => "UPDATE",
            v => v,
        }
        .to_owned();
        let dry = !web::label(&sample, "dry_run").unwrap_or("").is_empty();
        let resource = web::label(&sample, "resource").unwrap_or("");
        let sub = web::label(&sample, "subresource").unwrap_or("");
        if resource.is_empty() && sub.starts_with('/') {
            continue; // health checks
        }
        let in_server = matches!(resource, "replicasets" | "pods")
            || (verb == "UPDATE" && resource != "leases")
            || (verb == "CREATE" && matches!(resource, "serviceaccounts" | "configmaps"));
        let target = if in_server {
            &mut out.in_server
        } else {
            &mut out.rest
        };
        *target.entry((verb, dry)).or_default() += value;
    }
    Ok(out)
}

/// `after - before` per class, dropping zeros.
pub fn delta(after: &Counts, before: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| v.abs() > 0.0)
        .collect()
}

/// `a - b` per class, floored at zero, dropping zeros.
pub fn minus(a: &Counts, b: &Counts) -> Counts {
    a.iter()
        .map(|(k, v)| (k.clone(), (v - b.get(k).copied().unwrap_or(0.0)).max(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_the_server() {
        let get = http::Method::GET;
        assert_eq!(
            classify(&get, "/api/v1/namespaces/a/configmaps", "", "").0,
            "LIST"
        );
        assert_eq!(
            classify(
                &get,
                "/apis/kedge.dev/v1alpha1/applications",
                "watch=true&x=1",
                ""
            )
            .0,
            "WATCH"
        );
        assert_eq!(
            classify(&get, "/api/v1/namespaces/a/configmaps/b", "", "").0,
            "GET"
        );
        let patch = http::Method::PATCH;
        assert_eq!(
            classify(
                &patch,
                "/api/v1/namespaces/a/configmaps/b",
                "fieldManager=x&dryRun=All",
                "application/apply-patch+yaml"
            ),
            ("APPLY".to_owned(), true)
        );
        assert_eq!(
            classify(
                &patch,
                "/api/v1/namespaces/a/configmaps/b",
                "",
                "application/merge-patch+json"
            ),
            ("PATCH".to_owned(), false)
        );
    }
}
