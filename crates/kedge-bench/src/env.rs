//! One scenario's world: a fresh test cluster, a git daemon serving the monorepo, and `kedge run` as a child process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use kedge_testkit::{GitDaemon, GitFixture, RepoRoot};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::cluster::{self, OwnRequests};
use crate::procstat::{self, ProcSample};
use crate::{repo, web};

/// Namespace of the Applications and the controller's Lease.
pub const APPS_NS: &str = "kedge";

/// Paths and settings shared by every scenario.
#[derive(Clone, Debug)]
pub struct Tools {
    /// Repository root (for `testcluster/up`).
    pub root: PathBuf,
    /// The `kedge` binary under test.
    pub kedge: PathBuf,
    /// Where controller logs and caches go.
    pub work: PathBuf,
    /// Extra flags for `kedge run`.
    pub run_args: Vec<String>,
}

/// A running scenario.
pub struct Env {
    pub tools: Tools,
    pub name: String,
    /// The controller's identity (`NAME-0`).
    pub identity: String,
    kubeconfig: PathBuf,
    pub client: kube::Client,
    pub own: OwnRequests,
    _git_root: RepoRoot,
    _daemon: GitDaemon,
    pub work: GitFixture,
    pub repo_url: String,
    controller: Child,
    pub pid: u32,
    pub listen: SocketAddr,
    /// Where the controller serves `/metrics`.
    pub metrics_listen: SocketAddr,
    pub log: PathBuf,
    pub apps: Api<DynamicObject>,
    pub store: Store<DynamicObject>,
    pub webhook_secret: String,
    watch_task: tokio::task::JoinHandle<()>,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(l.local_addr()?.port())
}

fn random_hex() -> Result<String> {
    let mut buf = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("failed to read /dev/urandom")?;
    Ok(hex::encode(buf))
}

/// The Application resource.
pub fn app_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kedge.dev", "v1alpha1", "Application"),
        "applications",
    )
}

/// Whether an Application reports Synced and Healthy.
pub fn synced_and_healthy(app: &DynamicObject) -> bool {
    let s = &app.data["status"];
    s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
}

/// How many one-second RSS samples in a row must agree for [`Env::settled_rss`].
const RSS_SETTLED_SAMPLES: usize = 5;
/// How far they may spread: 1 MiB, under a tenth of the growth the memory figure measures.
const RSS_SETTLED_SPAN: u64 = 1 << 20;

impl Env {
    /// Starts a fresh cluster `name`, the git daemon with an initial commit, installs the CRD and the webhook
    /// secret, and starts `kedge run` with default intervals.
    pub async fn start(tools: &Tools, name: &str) -> Result<Env> {
        let kubeconfig = cluster::up(&tools.root, name)?;
        let (client, own) = cluster::client(&kubeconfig).await?;

        let git_root = RepoRoot::new()?;
        git_root.create_bare_repo("mono.git")?;
        let daemon = GitDaemon::start(&git_root)?;
        let repo_url = daemon.url("mono.git");
        let work = GitFixture::new()?;
        work.write(
            "README.md",
            "Benchmark monorepo: one folder per application.\n",
        )?;
        work.commit("init")?;
        work.push(&repo_url, "main")?;

        install_crd(&tools.kedge, &kubeconfig, &client).await?;
        let webhook_secret = random_hex()?;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(client.clone(), APPS_NS);
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kedge-webhook"}, "stringData": {"github": webhook_secret}});
        secrets
            .patch(
                "kedge-webhook",
                &PatchParams::apply("kedge-bench"),
                &Patch::Apply(&secret),
            )
            .await
            .context("failed to create the webhook secret")?;

        let apps: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), APPS_NS, &app_resource());
        // The CRD may take a moment to be served.
        let deadline = Instant::now() + Duration::from_secs(30);
        while apps.list(&Default::default()).await.is_err() {
            if Instant::now() > deadline {
                bail!("the Application resource is not served after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let dir = tools.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("kedge.log");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let metrics_listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let identity = format!("{name}-0");
        let controller = std::process::Command::new(&tools.kedge)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", APPS_NS, "run", "--identity", &identity, "--listen"])
            .arg(listen.to_string())
            .arg("--metrics-listen")
            .arg(metrics_listen.to_string())
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(&tools.run_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("failed to start kedge run")?;
        let pid = controller.id();

        let writer = reflector::store::Writer::new(app_resource());
        let store = writer.as_reader();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(apps.clone(), watcher::Config::default()),
        )
        .default_backoff()
        .touched_objects();
        let watch_task = tokio::spawn(async move {
            let _ = stream.into_stream().for_each(|_| async {}).await;
        });

        let mut env = Env {
            tools: tools.clone(),
            name: name.to_owned(),
            identity,
            kubeconfig: kubeconfig.clone(),
            client,
            own,
            _git_root: git_root,
            _daemon: daemon,
            work,
            repo_url,
            controller,
            pid,
            listen,
            metrics_listen,
            log,
            apps,
            store,
            webhook_secret,
            watch_task,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = env.controller.try_wait() {
                bail!("kedge run exited ({status}); log: {}", env.log.display());
            }
            if let Ok(r) = web::request(listen, "GET", "/readyz", &[], b"").await
                && r.status == 200
            {
                break;
            }
            if Instant::now() > deadline {
                let log = env.log.clone();
                env.stop();
                bail!("kedge run not ready after 60 s; log: {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        env.store
            .wait_until_ready()
            .await
            .context("the Application watch did not start")?;
        Ok(env)
    }

    /// Writes the files of applications `range` at `revision` and commits them (not pushed).
    pub fn commit_apps(&self, range: std::ops::Range<usize>, revision: u64) -> Result<String> {
        for i in range.clone() {
            for (path, text) in repo::app_files(i, revision) {
                self.work.write(&path, text)?;
            }
        }
        Ok(self
            .work
            .commit(&format!("apps {}..{}", range.start, range.end))?)
    }

    /// Pushes `main`.
    pub fn push(&self) -> Result<()> {
        Ok(self.work.push(&self.repo_url, "main")?)
    }

    /// Creates the Applications of `range` at once (64 requests in flight).
    pub async fn create_apps(&self, range: std::ops::Range<usize>) -> Result<()> {
        self.create_apps_with(range, |_, _| {}).await
    }

    /// Like [`create_apps`](Self::create_apps), with `edit` changing each Application before it is created.
    pub async fn create_apps_with(
        &self,
        range: std::ops::Range<usize>,
        edit: impl Fn(usize, &mut Value),
    ) -> Result<()> {
        let url = self.repo_url.clone();
        futures::stream::iter(range)
            .map(|i| {
                let apps = self.apps.clone();
                let mut obj = repo::application(i, APPS_NS, &url);
                edit(i, &mut obj);
                async move {
                    let name = repo::app_name(i);
                    let obj: DynamicObject = serde_json::from_value(obj)?;
                    apps.create(&PostParams::default(), &obj)
                        .await
                        .with_context(|| format!("failed to create application {name}"))?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// The cluster's admin kubeconfig.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Applications that are Synced and Healthy now.
    pub fn ready_count(&self) -> usize {
        self.store
            .state()
            .iter()
            .filter(|a| synced_and_healthy(a))
            .count()
    }

    /// Whether application `name` is Synced and Healthy now.
    pub fn is_ready(&self, name: &str) -> bool {
        self.store
            .state()
            .iter()
            .any(|a| a.metadata.name.as_deref() == Some(name) && synced_and_healthy(a))
    }

    /// Waits until at least `n` applications are Synced and Healthy: `Ok(true)` when they are, `Ok(false)` at
    /// `timeout`.
    pub async fn wait_ready(&mut self, n: usize, timeout: Duration) -> Result<bool> {
        let started = Instant::now();
        loop {
            if self.ready_count() >= n {
                return Ok(true);
            }
            self.check_alive()?;
            if started.elapsed() > timeout {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails when the controller has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.controller.try_wait() {
            bail!("kedge run exited ({status}); log: {}", self.log.display());
        }
        Ok(())
    }

    /// The controller's metrics.
    pub async fn metrics(&self) -> Result<HashMap<String, f64>> {
        let r = web::request(self.metrics_listen, "GET", "/metrics", &[], b"").await?;
        if r.status != 200 {
            bail!("GET /metrics answered {}", r.status);
        }
        Ok(web::parse_prometheus(&r.body))
    }

    /// Waits until no pass has been waiting for a turn for `quiet` (at most `timeout`), so that one measurement does
    /// not run into the backlog of the previous one. (Passes keep finishing at a steady trickle from the periodic
    /// resync, so "no pass finished" is never reached at a large scale; an empty queue is.)
    pub async fn settle(&mut self, quiet: Duration, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut since = Instant::now();
        loop {
            let waiting = self
                .metrics()
                .await?
                .get("kedge_reconciles_waiting")
                .copied()
                .unwrap_or(0.0);
            if waiting > 0.0 {
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
            if started.elapsed() > timeout {
                eprintln!("  (controller still busy after {timeout:?}; going on)");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.check_alive()?;
        }
    }

    /// The controller's RSS once it has stopped falling: sampled every second until the last
    /// [`RSS_SETTLED_SAMPLES`] samples lie within [`RSS_SETTLED_SPAN`] of each other (at most `timeout`), the newest
    /// returned. Right after a burst of work the allocator still holds pages freed moments ago and returns them over
    /// the next seconds; both samples of the memory figure are taken this way, so that neither counts them.
    pub async fn settled_rss(&mut self, timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        let mut samples: Vec<u64> = Vec::new();
        loop {
            self.check_alive()?;
            samples.push(self.proc()?.rss);
            let recent = &samples[samples.len().saturating_sub(RSS_SETTLED_SAMPLES)..];
            let span = recent.iter().max().copied().unwrap_or(0)
                - recent.iter().min().copied().unwrap_or(0);
            if (recent.len() == RSS_SETTLED_SAMPLES && span <= RSS_SETTLED_SPAN)
                || started.elapsed() > timeout
            {
                let first = samples.first().copied().unwrap_or(0);
                let last = samples.last().copied().unwrap_or(0);
                eprintln!(
                    "  RSS {:.1} -> {:.1} MiB over {} s{}",
                    first as f64 / 1048576.0,
                    last as f64 / 1048576.0,
                    samples.len() - 1,
                    if span > RSS_SETTLED_SPAN {
                        " (still moving; going on)"
                    } else {
                        ""
                    }
                );
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Memory and CPU of the controller.
    pub fn proc(&self) -> Result<ProcSample> {
        procstat::sample(self.pid)
    }

    /// CPU seconds of the test API server (with its in-server controllers) and of its etcd so far, from the pid
    /// files `testcluster/up` writes beside the kubeconfig; 0 for one that cannot be read.
    pub fn cluster_cpu(&self) -> (f64, f64) {
        cluster::cluster_cpu(&self.kubeconfig)
    }

    /// Resets the controller's peak RSS (VmHWM) so that the next phase's peak can be read.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    /// Whether `POST /api/webhook` is served by this controller.
    pub async fn webhook_served(&self) -> bool {
        let body = br#"{"zen":"bench"}"#;
        let sig = format!(
            "sha256={}",
            web::hmac_sha256_hex(self.webhook_secret.as_bytes(), body)
        );
        match web::request(
            self.listen,
            "POST",
            "/api/webhook",
            &[
                ("Content-Type", "application/json".into()),
                ("X-GitHub-Event", "ping".into()),
                ("X-Hub-Signature-256", sig),
            ],
            body,
        )
        .await
        {
            Ok(r) => r.status != 404 && r.status != 405,
            Err(_) => false,
        }
    }

    /// Sends a signed GitHub-style push event for `main` at `sha`, listing the files the commit modified as GitHub
    /// does; the HTTP status.
    pub async fn webhook_push(&self, sha: &str) -> Result<u16> {
        let out = std::process::Command::new("git")
            .args(["diff", "--name-only", &format!("{sha}~1"), sha])
            .current_dir(self.work.path())
            .output()?;
        if !out.status.success() {
            bail!("git diff failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let modified: Vec<&str> = std::str::from_utf8(&out.stdout)?.lines().collect();
        let body = serde_json::to_vec(&json!({
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": self.repo_url, "default_branch": "main"},
            "commits": [{"id": sha, "added": [], "removed": [], "modified": modified}],
        }))?;
        let sig = format!(
            "sha256={}",
            web::hmac_sha256_hex(self.webhook_secret.as_bytes(), &body)
        );
        let r = web::request(
            self.listen,
            "POST",
            "/api/webhook",
            &[
                ("Content-Type", "application/json".into()),
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", sig),
            ],
            &body,
        )
        .await?;
        Ok(r.status)
    }

    /// A namespaced API for a managed kind in app `i`'s namespace.
    pub fn object_api(&self, i: usize, group: &str, kind: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
        Api::namespaced_with(self.client.clone(), &repo::app_name(i), &ar)
    }

    /// Stops the controller (SIGTERM, then SIGKILL after 5 s) and the cluster.
    pub fn stop(mut self) {
        self.watch_task.abort();
        terminate(&mut self.controller, Duration::from_secs(5));
        cluster::down(&self.tools.root, &self.name);
    }

    /// Waits until all of the first `apps` applications are Synced and Healthy, within the usual time for that
    /// many; an error saying how many were when they are not.
    pub async fn require_ready(&mut self, apps: usize) -> Result<()> {
        let timeout = Duration::from_secs(60) + Duration::from_millis(300 * apps as u64);
        if !self.wait_ready(apps, timeout).await? {
            bail!(
                "only {} of {apps} applications Synced and Healthy after {timeout:?}",
                self.ready_count()
            );
        }
        Ok(())
    }
}

/// Sends SIGTERM to `child` and waits for it to exit, then SIGKILL after `within`.
pub fn terminate(child: &mut Child, within: Duration) {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Installs the Application CRD with `kedge install --crd-only` and creates the namespace [`APPS_NS`].
pub async fn install_crd(
    kedge: &std::path::Path,
    kubeconfig: &std::path::Path,
    client: &kube::Client,
) -> Result<()> {
    let out = std::process::Command::new(kedge)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["install", "--crd-only"])
        .stdin(Stdio::null())
        .output()
        .context("failed to run kedge install")?;
    if !out.status.success() {
        bail!(
            "kedge install --crd-only failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APPS_NS}});
    ns_api
        .patch(
            APPS_NS,
            &PatchParams::apply("kedge-bench"),
            &Patch::Apply(&ns),
        )
        .await
        .context("failed to create the kedge namespace")?;
    Ok(())
}

/// Reads `pointer` of an object, as a string.
pub async fn read_field(api: &Api<DynamicObject>, name: &str, pointer: &str) -> Result<Value> {
    let obj = api.get(name).await?;
    let v = serde_json::to_value(&obj)?;
    Ok(v.pointer(pointer).cloned().unwrap_or(Value::Null))
}
