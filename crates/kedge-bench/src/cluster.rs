//! The test cluster for one scenario: start, client that counts the bench's own requests, server request counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use kedge_testkit::RequestLog;

use crate::web;

/// A request class as the API server's `apiserver_request_total` names it: verb (`GET`, `LIST`, `WATCH`, `APPLY`,
/// `PATCH`, `CREATE`, `UPDATE`, `DELETE`, ...) and whether it was a dry run.
pub type VerbKey = (String, bool);

/// Requests by class.
pub type Counts = BTreeMap<VerbKey, f64>;

/// Starts (fresh) the test cluster `name` and returns its kubeconfig path.
pub fn up(repo_root: &Path, name: &str) -> Result<PathBuf> {
    up_with(repo_root, name, &[])
}

/// Starts (fresh) the test cluster `name` with more flags of `testcluster/up` (`--audit`, `--sim-delay 3s`) and
/// returns its kubeconfig path.
pub fn up_with(repo_root: &Path, name: &str, extra: &[&str]) -> Result<PathBuf> {
    down(repo_root, name);
    let out = std::process::Command::new(repo_root.join("testcluster/up"))
        .args(["--name", name])
        .args(extra)
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

/// CPU seconds so far of the test API server (with its in-server controllers) and of etcd of the cluster whose
/// kubeconfig is `kubeconfig` (0 when unknown).
pub fn cluster_cpu(kubeconfig: &Path) -> (f64, f64) {
    let cpu = |file: &str| {
        kubeconfig
            .parent()
            .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|p| p.trim().parse::<u32>().ok())
            .and_then(|pid| crate::procstat::sample(pid).ok())
            .map_or(0.0, |s| s.cpu)
    };
    (cpu("server.pid"), cpu("etcd.pid"))
}

/// Counts the bench's own requests, so that they can be taken out of the server's counters.
#[derive(Clone, Default)]
pub struct OwnRequests(RequestLog);

impl OwnRequests {
    /// The counts so far, by the class the server counts them under (`/metrics` and health checks left out, as the
    /// server leaves them out).
    pub fn snapshot(&self) -> Counts {
        let mut counts = Counts::new();
        for sent in self.0.all().iter().filter(|s| s.is_api()) {
            *counts
                .entry((sent.verb().to_owned(), sent.is_dry_run()))
                .or_default() += 1.0;
        }
        counts
    }

    /// The counts so far by verb and resource ([`resource_key`]).
    pub fn by_resource(&self) -> Resources {
        let mut counts = Resources::new();
        for sent in self.0.all().iter().filter(|s| s.is_api()) {
            *counts
                .entry(resource_key(
                    sent.verb(),
                    sent.is_dry_run(),
                    &sent.resource(),
                ))
                .or_default() += 1.0;
        }
        counts
    }
}

/// Requests by verb and resource, e.g. `APPLY configmaps`, `APPLY (dry-run) deployments`, `CREATE events`.
pub type Resources = BTreeMap<String, f64>;

/// The key of [`Resources`].
pub fn resource_key(verb: &str, dry: bool, resource: &str) -> String {
    let dry = if dry { " (dry-run)" } else { "" };
    format!("{verb}{dry} {resource}")
}

/// A client of the cluster whose requests are counted.
pub async fn client(kubeconfig: &Path) -> Result<(kube::Client, OwnRequests)> {
    let (client, log) = kedge_testkit::recorded_client(kubeconfig).await?;
    Ok((client, OwnRequests(log)))
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
    /// All other requests by verb and resource.
    pub rest_by_resource: Resources,
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
        if !in_server {
            let resource = if sub.is_empty() || sub.starts_with('/') {
                resource.to_owned()
            } else {
                format!("{resource}/{sub}")
            };
            *out.rest_by_resource
                .entry(resource_key(&verb, dry, &resource))
                .or_default() += value;
        }
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
pub fn delta<K: Ord + Clone>(
    after: &BTreeMap<K, f64>,
    before: &BTreeMap<K, f64>,
) -> BTreeMap<K, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| v.abs() > 0.0)
        .collect()
}

/// `a - b` per class, floored at zero, dropping zeros.
pub fn minus<K: Ord + Clone>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> BTreeMap<K, f64> {
    a.iter()
        .map(|(k, v)| (k.clone(), (v - b.get(k).copied().unwrap_or(0.0)).max(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}
