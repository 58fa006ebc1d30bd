//! The fault suite: faults injected into a live `kedge run` on an audited test cluster, and what each did to the
//! applications — whether they converged, how long that took, objects lost or duplicated, writes by a non-leader.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kedge_testkit::{AuditEvent, GitDaemon, GitFixture, RepoRoot, TestCluster};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::env::{APPS_NS, app_resource, synced_and_healthy};
use crate::web;

/// Flags of the fault suite.
#[derive(Clone, Debug)]
pub struct FaultArgs {
    /// Shorter outages and smaller applications (what the tests run).
    pub quick: bool,
    /// Only these faults (all when empty).
    pub only: Vec<String>,
}

/// One fault's outcome: a row of the table.
#[derive(Clone, Debug)]
pub struct FaultRow {
    /// Short name (`--only` takes it).
    pub name: &'static str,
    /// What was done.
    pub action: String,
    /// Whether the applications reached the state Git asks for (or, where a fault must be refused, reported it).
    pub converged: bool,
    /// From the end of the fault to converged.
    pub converge: Option<Duration>,
    /// Objects Git declares that were missing at the end.
    pub lost: usize,
    /// Objects found that Git does not declare (left over, or created twice).
    pub duplicated: usize,
    /// Writes by a replica after another replica had started writing (from the API server's audit log).
    pub non_leader_writes: usize,
    /// What else was seen.
    pub note: String,
}

/// Every fault, in the order they run.
pub const FAULTS: &[&str] = &[
    "kill-9",
    "sigterm-standby",
    "apiserver-restart",
    "etcd-stop",
    "git-down-slow",
    "force-push",
    "invalid-object",
    "crd-deleted",
    "big-app",
];

/// The faults of the short form (run by the tests).
pub const QUICK_FAULTS: &[&str] = &["kill-9", "git-down-slow", "force-push", "invalid-object"];

/// The test cluster the suite starts afresh: `KEDGE_FAULTS_CLUSTER`, or `faults`.
fn cluster_name() -> String {
    std::env::var("KEDGE_FAULTS_CLUSTER")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "faults".into())
}

/// Runs the selected faults one after the other in one world and returns their rows; a fault that could not be run
/// is a row that did not converge, with the error as its note.
pub async fn run(
    args: &FaultArgs,
    root: &Path,
    kedge: &Path,
    work: &Path,
) -> Result<Vec<FaultRow>> {
    let selected: Vec<&'static str> = FAULTS
        .iter()
        .copied()
        .filter(|f| {
            if args.only.is_empty() {
                !args.quick || QUICK_FAULTS.contains(f)
            } else {
                args.only.iter().any(|o| o == f)
            }
        })
        .collect();
    if let Some(unknown) = args.only.iter().find(|o| !FAULTS.contains(&o.as_str())) {
        bail!(
            "unknown fault {unknown:?}; the faults are {}",
            FAULTS.join(", ")
        );
    }
    let mut world = World::start(root, kedge, work, args.quick).await?;
    let mut rows = Vec::new();
    for name in selected {
        eprintln!("faults: {name}");
        let started = Instant::now();
        let row = match world.fault(name).await {
            Ok(row) => row,
            Err(e) => FaultRow {
                name,
                action: describe(name, args.quick),
                converged: false,
                converge: None,
                lost: 0,
                duplicated: 0,
                non_leader_writes: 0,
                note: format!("failed: {e:#}"),
            },
        };
        eprintln!(
            "faults: {name}: converged={} in {:?} (fault took {:.0?})",
            row.converged,
            row.converge,
            started.elapsed()
        );
        rows.push(row);
    }
    world.stop();
    Ok(rows)
}

/// The table of rows, as Markdown.
pub fn render(rows: &[FaultRow]) -> String {
    let mut out = String::from(
        "| fault | what was done | converged | time to converge | objects lost | objects duplicated | \
         writes by a non-leader | notes |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.action,
            if r.converged { "yes" } else { "**no**" },
            r.converge
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            r.lost,
            r.duplicated,
            r.non_leader_writes,
            r.note.replace('|', "\\|").replace('\n', " "),
        ));
    }
    out
}

fn describe(name: &str, quick: bool) -> String {
    let (down, slow) = if quick { (10, 0) } else { (120, 70) };
    match name {
        "kill-9" => {
            "kill -9 of the controller in the middle of a waved sync, then a restart".into()
        }
        "sigterm-standby" => {
            "SIGTERM of the leader in the middle of a waved sync, a standby running".into()
        }
        "apiserver-restart" => {
            "API server killed in the middle of a waved sync and started again".into()
        }
        "etcd-stop" => "etcd stopped (SIGSTOP) for 30 s during a sync, then continued".into(),
        "git-down-slow" => format!(
            "git server refusing connections for {down} s, then answering 1 byte/s for {slow} s, then back"
        ),
        "force-push" => "history rewritten by a force-push that drops the applied commit".into(),
        "invalid-object" => "one invalid object among 100 in a wave".into(),
        "crd-deleted" => {
            "CRD deleted while its custom resources are managed, then created again".into()
        }
        "big-app" => "one application of 5,000 ConfigMaps".into(),
        _ => name.into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The git proxy: the controller reaches the git daemon through it, so that a fault can refuse or slow connections.

const PASS: u8 = 0;
const REFUSE: u8 = 1;
const SLOW: u8 = 2;

struct GitProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl GitProxy {
    async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(AtomicU8::new(PASS));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let mode = m.load(Ordering::Relaxed);
                if mode == REFUSE {
                    drop(conn);
                    continue;
                }
                tokio::spawn(async move {
                    let _ = forward(conn, upstream, mode == SLOW).await;
                });
            }
        });
        Ok(GitProxy { addr, mode, task })
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }
}

impl Drop for GitProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; with `slow`, the answers trickle at one byte a second (for at most ten minutes).
async fn forward(mut client: TcpStream, upstream: SocketAddr, slow: bool) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    if !slow {
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        return Ok(());
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
    let mut byte = [0u8; 1];
    for _ in 0..600 {
        match sr.read(&mut byte).await {
            Ok(1) => cw.write_all(&byte).await?,
            _ => break,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    up.abort();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The world: an audited cluster, a git daemon behind the proxy, and one or two `kedge run` processes.

struct Controller {
    identity: String,
    child: Child,
}

struct World {
    root: PathBuf,
    kedge: PathBuf,
    dir: PathBuf,
    quick: bool,
    kubeconfig: PathBuf,
    cluster_dir: PathBuf,
    audited: TestCluster,
    client: kube::Client,
    _git_root: RepoRoot,
    _daemon: GitDaemon,
    proxy: GitProxy,
    work: GitFixture,
    push_url: String,
    repo_url: String,
    apps: Api<DynamicObject>,
    controllers: Vec<Controller>,
    started: usize,
}

fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(l.local_addr()?)
}

impl World {
    async fn start(root: &Path, kedge: &Path, work_dir: &Path, quick: bool) -> Result<Self> {
        let kubeconfig = cluster_up(root)?;
        let cluster_dir = kubeconfig
            .parent()
            .context("kubeconfig has no folder")?
            .to_owned();
        // Reuses the cluster just started (with its audit log) for reading that log.
        let audited = TestCluster::get_audited(&cluster_name()).await?;
        let client = audited.client();

        let git_root = RepoRoot::new()?;
        git_root.create_bare_repo("faults.git")?;
        let daemon = GitDaemon::start(&git_root)?;
        let upstream: SocketAddr = format!("127.0.0.1:{}", daemon.port()).parse()?;
        let proxy = GitProxy::start(upstream).await?;
        let push_url = daemon.url("faults.git");
        let repo_url = push_url.replace(
            &format!("127.0.0.1:{}", daemon.port()),
            &proxy.addr.to_string(),
        );
        let work = GitFixture::new()?;
        work.write(
            "README.md",
            "Fault suite repository: one folder per fault.\n",
        )?;
        work.commit("init")?;
        work.push(&push_url, "main")?;

        crate::env::install_crd(kedge, &kubeconfig, &client).await?;
        let apps: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), APPS_NS, &app_resource());
        poll(
            Duration::from_secs(30),
            "the Application resource to be served",
            || {
                let apps = apps.clone();
                async move { Ok(apps.list(&ListParams::default()).await.is_ok()) }
            },
        )
        .await?;
        let dir = work_dir.join("faults");
        std::fs::create_dir_all(&dir)?;
        let mut world = World {
            root: root.to_owned(),
            kedge: kedge.to_owned(),
            dir,
            quick,
            kubeconfig,
            cluster_dir,
            audited,
            client,
            _git_root: git_root,
            _daemon: daemon,
            proxy,
            work,
            push_url,
            repo_url,
            apps,
            controllers: Vec::new(),
            started: 0,
        };
        world.start_controller().await?;
        Ok(world)
    }

    /// Starts one more `kedge run` (identity `faults-N`, its own listener and cache) and waits until it answers.
    async fn start_controller(&mut self) -> Result<()> {
        self.started += 1;
        let identity = format!("faults-{}", self.started);
        let listen = free_addr()?;
        let log = self.dir.join(format!("{identity}.log"));
        let child = std::process::Command::new(&self.kedge)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", APPS_NS, "run", "--listen"])
            .arg(listen.to_string())
            .args(["--identity", &identity, "--poll-interval", "3s", "--no-ui"])
            // These faults are about one writer at a time: the leader and its standby.
            .args(["--sharing", "off"])
            .arg("--cache-dir")
            .arg(self.dir.join(format!("cache-{identity}")))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("failed to start kedge run")?;
        self.controllers.push(Controller { identity, child });
        poll(
            Duration::from_secs(60),
            "kedge run to answer /healthz",
            || async move {
                Ok(web::request(listen, "GET", "/healthz", &[], b"")
                    .await
                    .is_ok_and(|r| r.status == 200))
            },
        )
        .await
    }

    /// Sends `signal` to controller `i` and, for SIGKILL and SIGTERM, waits until it exited (at most 60 s).
    fn signal(&mut self, i: usize, signal: &str) -> Result<Duration> {
        let c = self.controllers.get_mut(i).context("no such controller")?;
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), c.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} failed");
        }
        while started.elapsed() < Duration::from_secs(60) {
            if c.child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not exit within 60 s of SIG{signal}", c.identity)
    }

    fn stop(mut self) {
        for c in &mut self.controllers {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
        self.controllers.clear();
        crate::cluster::down(&self.root, &cluster_name());
    }

    fn audit(&self) -> Result<Vec<AuditEvent>> {
        Ok(self.audited.audit_events()?)
    }

    /// Writes `files` under `faults/<fault>/` (replacing what was there) and pushes; the commit.
    fn commit(&self, fault: &str, files: &[(String, String)]) -> Result<String> {
        let dir = format!("faults/{fault}");
        let _ = self.work.remove(&dir);
        for (name, text) in files {
            self.work.write(&format!("{dir}/{name}"), text)?;
        }
        let sha = self
            .work
            .commit(&format!("{fault}: {} files", files.len()))?;
        self.work.push(&self.push_url, "main")?;
        Ok(sha)
    }

    /// Creates the Application of a fault (automated, prune, self-heal, its own namespace).
    async fn create_app(&self, fault: &str) -> Result<()> {
        let app = json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": fault, "namespace": APPS_NS},
            "spec": {
                "source": {"repoURL": self.repo_url, "targetRevision": "main", "path": format!("faults/{fault}")},
                "destination": {"namespace": fault},
                "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                               "syncOptions": ["CreateNamespace=true"]},
            },
        });
        self.apps
            .patch(
                fault,
                &PatchParams::apply("kedge-faults").force(),
                &Patch::Apply(&app),
            )
            .await
            .with_context(|| format!("failed to create application {fault}"))?;
        Ok(())
    }

    async fn app(&self, fault: &str) -> Option<DynamicObject> {
        self.apps.get_opt(fault).await.ok().flatten()
    }

    /// Waits until the application is Synced and Healthy at `sha`; how long that took, `None` at `timeout`.
    async fn converge(&self, fault: &str, sha: &str, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(app) = self.app(fault).await
                && synced_and_healthy(&app)
                && app.data["status"]["sync"]["revision"] == sha
                && app.data["status"]["operationState"]["phase"] != "Running"
            {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Waits (at most `secs`) for the application to converge at `sha` before a fault is injected; an error if it
    /// does not.
    async fn converged_before(&self, fault: &str, sha: &str, secs: u64) -> Result<()> {
        if self
            .converge(fault, sha, Duration::from_secs(secs))
            .await
            .is_none()
        {
            bail!("the application did not converge before the fault");
        }
        Ok(())
    }

    /// ConfigMap names in a namespace (the one Kubernetes adds left out).
    async fn config_maps(&self, ns: &str) -> Result<BTreeSet<String>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let mut names = BTreeSet::new();
        let mut params = ListParams::default().limit(1000);
        loop {
            let page = api.list_metadata(&params).await?;
            names.extend(
                page.items
                    .into_iter()
                    .filter_map(|c| c.metadata.name)
                    .filter(|n| n != "kube-root-ca.crt"),
            );
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Objects lost and objects duplicated (or left over) in namespace `ns`, against the ConfigMaps `want`.
    async fn count(&self, ns: &str, want: &BTreeSet<String>) -> Result<(usize, usize)> {
        let have = self.config_maps(ns).await?;
        Ok((
            want.difference(&have).count(),
            have.difference(want).count(),
        ))
    }

    /// Writes by a Kedge replica after a replica started later had begun writing, from the audit log.
    fn non_leader_writes(&self) -> Result<usize> {
        Ok(late_writes(&self.audit()?))
    }

    async fn fault(&mut self, name: &'static str) -> Result<FaultRow> {
        let action = describe(name, self.quick);
        let mut row = FaultRow {
            name,
            action,
            converged: false,
            converge: None,
            lost: 0,
            duplicated: 0,
            non_leader_writes: 0,
            note: String::new(),
        };
        match name {
            "kill-9" => self.interrupted_sync(&mut row, Interruption::Kill).await?,
            "sigterm-standby" => self.interrupted_sync(&mut row, Interruption::Term).await?,
            "apiserver-restart" => {
                self.interrupted_sync(&mut row, Interruption::ApiServer)
                    .await?
            }
            "etcd-stop" => self.interrupted_sync(&mut row, Interruption::Etcd).await?,
            "git-down-slow" => self.git_down_slow(&mut row).await?,
            "force-push" => self.force_push(&mut row).await?,
            "invalid-object" => self.invalid_object(&mut row).await?,
            "crd-deleted" => self.crd_deleted(&mut row).await?,
            "big-app" => self.big_app(&mut row).await?,
            _ => bail!("unknown fault {name}"),
        }
        row.non_leader_writes = self.non_leader_writes()?;
        Ok(row)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Interruption {
    Kill,
    Term,
    ApiServer,
    Etcd,
}

/// A waved application: ConfigMaps in waves 0, 2 and 4 with a Deployment in waves 1 and 3 (each healthy only after
/// the test cluster's simulator delay), so that a sync takes seconds and can be caught in the middle.
fn waved_files(
    fault: &str,
    generation: u32,
    per_wave: usize,
) -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut files = Vec::new();
    let mut names = BTreeSet::new();
    for wave in [0, 2, 4] {
        let mut text = String::new();
        for i in 0..per_wave {
            let name = format!("w{wave}-{i:03}");
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    \
                 kedge.dev/sync-wave: \"{wave}\"\ndata:\n  generation: \"{generation}\"\n  fault: {fault}\n"
            ));
            names.insert(name);
        }
        files.push((format!("wave-{wave}.yaml"), text));
    }
    for wave in [1, 3] {
        files.push((
            format!("deploy-{wave}.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{wave}\n  annotations:\n    \
                 kedge.dev/sync-wave: \"{wave}\"\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web-{wave}}}\n  \
                 template:\n    metadata:\n      labels: {{app: web-{wave}}}\n      annotations: {{generation: \"{generation}\"}}\n    \
                 spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n"
            ),
        ));
    }
    (files, names)
}

impl World {
    /// Syncs a waved application, changes every object in a new commit, and interrupts the sync of that commit
    /// while wave 0 is applied and wave 4 is not.
    async fn interrupted_sync(&mut self, row: &mut FaultRow, how: Interruption) -> Result<()> {
        let fault = row.name;
        let per_wave = if self.quick { 10 } else { 30 };
        let (files, want) = waved_files(fault, 1, per_wave);
        let first = self.commit(fault, &files)?;
        if how == Interruption::Term && self.controllers.len() < 2 {
            // The standby: started first so that it is following when the leader goes.
            self.start_controller().await?;
        }
        self.create_app(fault).await?;
        self.converged_before(fault, &first, 180).await?;
        let (files, _) = waved_files(fault, 2, per_wave);
        let second = self.commit(fault, &files)?;
        // Mid-sync: generation 2 in wave 0, not yet in wave 4.
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), fault);
        let caught = poll_for(Duration::from_secs(120), || {
            let api = api.clone();
            async move {
                let w0 = api
                    .get_opt("w0-000")
                    .await?
                    .and_then(|c| c.data)
                    .unwrap_or_default();
                let w4 = api
                    .get_opt("w4-000")
                    .await?
                    .and_then(|c| c.data)
                    .unwrap_or_default();
                Ok(w0.get("generation").map(String::as_str) == Some("2")
                    && w4.get("generation").map(String::as_str) == Some("1"))
            }
        })
        .await?;
        if !caught {
            row.note.push_str("the sync was not caught in the middle; ");
        }
        let fault_started = Instant::now();
        match how {
            Interruption::Kill => {
                let leader = self.controllers.len() - 1;
                self.signal(leader, "KILL")?;
                self.controllers.remove(leader);
                self.start_controller().await?;
            }
            Interruption::Term => {
                let leader = self.leader_index().await?;
                let took = self.signal(leader, "TERM")?;
                row.note.push_str(&format!(
                    "the leader exited {:.1} s after SIGTERM; ",
                    took.as_secs_f64()
                ));
                self.controllers.remove(leader);
            }
            Interruption::ApiServer => {
                let took = self.restart_api_server().await?;
                row.note.push_str(&format!(
                    "API server back after {:.1} s; ",
                    took.as_secs_f64()
                ));
            }
            Interruption::Etcd => {
                let pid = read_pid(&self.cluster_dir.join("etcd.pid"))?;
                kill(pid, "STOP")?;
                tokio::time::sleep(Duration::from_secs(if self.quick { 5 } else { 30 })).await;
                kill(pid, "CONT")?;
            }
        }
        let waited = fault_started.elapsed();
        row.converge = self
            .converge(fault, &second, Duration::from_secs(240))
            .await
            .map(|d| {
                d + if how == Interruption::Etcd {
                    Duration::ZERO
                } else {
                    waited
                }
            });
        row.converged = row.converge.is_some();
        let (lost, duplicated) = self.count(fault, &want).await?;
        row.lost = lost;
        row.duplicated = duplicated;
        // Every object at generation 2: nothing half-applied.
        let stale = self.stale(fault, "2").await?;
        if stale > 0 {
            row.converged = false;
            row.note
                .push_str(&format!("{stale} objects still at the old generation; "));
        }
        Ok(())
    }

    /// Objects of a fault's namespace whose `data.generation` is not `generation`.
    async fn stale(&self, ns: &str, generation: &str) -> Result<usize> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|c| c.metadata.name.as_deref() != Some("kube-root-ca.crt"))
            .filter(|c| {
                c.data
                    .as_ref()
                    .and_then(|d| d.get("generation"))
                    .map(String::as_str)
                    != Some(generation)
            })
            .count())
    }

    /// The controller that holds the Lease now.
    async fn leader_index(&self) -> Result<usize> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), APPS_NS);
        let list = leases.list(&ListParams::default()).await?;
        let holders: Vec<String> = list
            .items
            .iter()
            .filter_map(|l| l.spec.as_ref()?.holder_identity.clone())
            .collect();
        self.controllers
            .iter()
            .position(|c| holders.contains(&c.identity))
            .with_context(|| format!("no running controller holds the lease (holders {holders:?})"))
    }

    /// Kills the API server and starts it again on the same port with the same arguments; how long it was away.
    async fn restart_api_server(&self) -> Result<Duration> {
        let pid = read_pid(&self.cluster_dir.join("server.pid"))?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .context("failed to read the API server's command line")?;
        let mut args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let port = std::fs::read_to_string(self.cluster_dir.join("port"))?
            .trim()
            .to_owned();
        let started = Instant::now();
        kill(pid, "KILL")?;
        poll(
            Duration::from_secs(10),
            "the API server to exit",
            || async move { Ok(!Path::new(&format!("/proc/{pid}")).exists()) },
        )
        .await?;
        if args.is_empty() {
            bail!("empty API server command line");
        }
        let program = args.remove(0);
        let child = std::process::Command::new("setsid")
            .arg(program)
            .args(&args)
            .args(["--port", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(self.cluster_dir.join("server.log"))?,
            )
            .spawn()
            .context("failed to start the API server again")?;
        std::fs::write(
            self.cluster_dir.join("server.pid"),
            format!("{}\n", child.id()),
        )?;
        let client = self.client.clone();
        poll(
            Duration::from_secs(60),
            "the API server to answer again",
            || {
                let client = client.clone();
                async move { Ok(client.apiserver_version().await.is_ok()) }
            },
        )
        .await?;
        Ok(started.elapsed())
    }

    async fn git_down_slow(&mut self, row: &mut FaultRow) -> Result<()> {
        let fault = row.name;
        let (files, want) = waved_files(fault, 1, 5);
        let first = self.commit(fault, &files)?;
        self.create_app(fault).await?;
        self.converged_before(fault, &first, 120).await?;
        let (down, slow) = if self.quick { (10, 0) } else { (120, 70) };
        self.proxy.set(REFUSE);
        let (files, _) = waved_files(fault, 2, 5);
        let second = self.commit(fault, &files)?;
        let mut reported = String::new();
        let until = Instant::now() + Duration::from_secs(down);
        while Instant::now() < until {
            if let Some(app) = self.app(fault).await
                && let Some(m) = error_message(&app)
            {
                reported = m;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if slow > 0 {
            self.proxy.set(SLOW);
            tokio::time::sleep(Duration::from_secs(slow)).await;
        }
        // The last good state is still applied while the server is away.
        let stale = self.stale(fault, "1").await?;
        if stale > 0 {
            row.note
                .push_str(&format!("{stale} objects changed while git was away; "));
        }
        if reported.is_empty() {
            row.note.push_str("no error reported while git was away; ");
        } else {
            row.note
                .push_str(&format!("reported: {}; ", shorten(&reported, 120)));
        }
        self.proxy.set(PASS);
        let back = Instant::now();
        row.converge = self
            .converge(fault, &second, Duration::from_secs(240))
            .await;
        row.converged = row.converge.is_some() && stale == 0 && !reported.is_empty();
        if row.converge.is_some() {
            row.converge = Some(back.elapsed());
        }
        let (lost, duplicated) = self.count(fault, &want).await?;
        row.lost = lost;
        row.duplicated = duplicated;
        Ok(())
    }

    async fn force_push(&mut self, row: &mut FaultRow) -> Result<()> {
        let fault = row.name;
        let (files, _) = waved_files(fault, 1, 5);
        let base = self.commit(fault, &files)?;
        // A commit that adds objects, applied, then dropped from history.
        let (mut extra, _) = waved_files(fault, 1, 5);
        extra.push((
            "dropped.yaml".into(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dropped\ndata:\n  generation: \"1\"\n".into(),
        ));
        self.create_app(fault).await?;
        let applied = self.commit(fault, &extra)?;
        self.converged_before(fault, &applied, 120).await?;
        self.work.git(["reset", "--hard", &base])?;
        let (files, want) = waved_files(fault, 2, 5);
        let dir = format!("faults/{fault}");
        for (name, text) in &files {
            self.work.write(&format!("{dir}/{name}"), text)?;
        }
        let rewritten = self.work.commit("rewritten history")?;
        let pushed = Instant::now();
        self.work.force_push(&self.push_url, "main")?;
        row.converge = self
            .converge(fault, &rewritten, Duration::from_secs(120))
            .await;
        if row.converge.is_some() {
            row.converge = Some(pushed.elapsed());
        }
        row.converged = row.converge.is_some();
        let (lost, duplicated) = self.count(fault, &want).await?;
        row.lost = lost;
        row.duplicated = duplicated;
        if let Some(app) = self.app(fault).await {
            let history = app.data["status"]["history"].as_array().map_or(0, Vec::len);
            row.note.push_str(&format!(
                "{history} history entries; the dropped object pruned: {}; ",
                duplicated == 0
            ));
        }
        Ok(())
    }

    async fn invalid_object(&mut self, row: &mut FaultRow) -> Result<()> {
        let fault = row.name;
        let (files, want) = waved_files(fault, 1, 5);
        let first = self.commit(fault, &files)?;
        self.create_app(fault).await?;
        self.converged_before(fault, &first, 120).await?;
        // 100 ConfigMaps in wave 0, one of them invalid (a number where a map is required), and a change to all.
        let (mut files, _) = waved_files(fault, 2, 5);
        let mut text = String::new();
        for i in 0..100 {
            let data = if i == 57 {
                "data: 42".to_owned()
            } else {
                "data:\n  generation: \"2\"".to_owned()
            };
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bulk-{i:03}\n{data}\n"
            ));
        }
        files.push(("bulk.yaml".into(), text));
        let bad = self.commit(fault, &files)?;
        let started = Instant::now();
        // Refused: the application says which object, and nothing of the commit is applied.
        let mut message = String::new();
        let mut reported = false;
        while started.elapsed() < Duration::from_secs(120) && !reported {
            if let Some(app) = self.app(fault).await {
                message = error_message(&app).unwrap_or_default();
                reported = message.contains("bulk-057");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        row.converge = reported.then(|| started.elapsed());
        // Every object the bad commit would create or change carries generation 2: none may be found.
        let applied = self.stale(fault, "1").await?;
        row.converged = reported && applied == 0;
        row.note.push_str(&format!(
            "commit {} refused: {}; objects of it applied: {applied}; ",
            bad.get(..8).unwrap_or(&bad),
            shorten(&message, 140),
        ));
        let (lost, duplicated) = self.count(fault, &want).await?;
        row.lost = lost;
        row.duplicated = duplicated;
        // Fixed in Git: converges.
        let (files, want2) = waved_files(fault, 3, 5);
        let fixed = self.commit(fault, &files)?;
        if self
            .converge(fault, &fixed, Duration::from_secs(120))
            .await
            .is_none()
        {
            row.converged = false;
            row.note.push_str("did not converge after the fix; ");
        }
        let (lost, _) = self.count(fault, &want2).await?;
        row.lost += lost;
        Ok(())
    }

    async fn crd_deleted(&mut self, row: &mut FaultRow) -> Result<()> {
        let fault = row.name;
        let crd_name = "widgets.faults.kedge.dev";
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {"group": "faults.kedge.dev", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
        });
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.patch(
            crd_name,
            &PatchParams::apply("kedge-faults").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let mut files = vec![(
            "config.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\ndata:\n  generation: \"1\"\n".to_owned(),
        )];
        let mut widgets = String::new();
        for i in 0..3 {
            widgets.push_str(&format!(
                "---\napiVersion: faults.kedge.dev/v1\nkind: Widget\nmetadata:\n  name: w{i}\nspec:\n  size: {i}\n"
            ));
        }
        files.push(("widgets.yaml".into(), widgets));
        let first = self.commit(fault, &files)?;
        let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "faults.kedge.dev",
            "v1",
            "Widget",
        ));
        let widgets_api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), fault, &ar);
        poll(
            Duration::from_secs(30),
            "the Widget kind to be served",
            || {
                let api = widgets_api.clone();
                async move { Ok(api.list(&ListParams::default()).await.is_ok()) }
            },
        )
        .await?;
        self.create_app(fault).await?;
        self.converged_before(fault, &first, 120).await?;
        crds.delete(crd_name, &DeleteParams::default()).await?;
        poll(Duration::from_secs(60), "the CRD to be gone", || {
            let crds = crds.clone();
            async move { Ok(crds.get_opt(crd_name).await?.is_none()) }
        })
        .await?;
        // What the application says while the kind is gone.
        let mut seen = String::new();
        let mut said = false;
        let gone = Instant::now();
        while gone.elapsed() < Duration::from_secs(60) && !said {
            if let Some(app) = self.app(fault).await {
                let sync = app.data["status"]["sync"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let msg = error_message(&app).unwrap_or_default();
                said = sync == "OutOfSync" || !msg.is_empty();
                seen = format!("sync {sync}: {msg}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        row.note.push_str(&format!(
            "while the CRD was gone: {}; ",
            if said {
                shorten(&seen, 140)
            } else {
                "nothing reported".into()
            }
        ));
        let inventory = self
            .app(fault)
            .await
            .map(|a| serde_json::to_string(&a.data["status"]).unwrap_or_default())
            .unwrap_or_default();
        let kept = inventory.contains("\"Widget\"");
        row.note
            .push_str(&format!("widgets kept in the inventory: {kept}; "));
        // The CRD comes back: the widgets are applied again.
        crds.patch(
            crd_name,
            &PatchParams::apply("kedge-faults").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let back = Instant::now();
        let (files2, _) = (files.clone(), ());
        let second = self.commit(fault, &{
            let mut f = files2;
            f[0].1 = f[0].1.replace("\"1\"", "\"2\"");
            f
        })?;
        row.converge = self
            .converge(fault, &second, Duration::from_secs(120))
            .await;
        let widgets_back = widgets_api
            .list(&ListParams::default())
            .await
            .map_or(0, |l| l.items.len());
        row.converged = row.converge.is_some() && widgets_back == 3 && said;
        if row.converge.is_some() {
            row.converge = Some(back.elapsed());
        }
        row.lost = 3usize.saturating_sub(widgets_back);
        row.duplicated = widgets_back.saturating_sub(3);
        Ok(())
    }

    async fn big_app(&mut self, row: &mut FaultRow) -> Result<()> {
        let fault = row.name;
        let n = 5000;
        let mut files = Vec::new();
        let mut want = BTreeSet::new();
        for chunk in 0..(n / 500) {
            let mut text = String::new();
            for i in chunk * 500..(chunk + 1) * 500 {
                let name = format!("cm-{i:05}");
                text.push_str(&format!(
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  generation: \"1\"\n"
                ));
                want.insert(name);
            }
            files.push((format!("part-{chunk:02}.yaml"), text));
        }
        let sha = self.commit(fault, &files)?;
        let started = Instant::now();
        self.create_app(fault).await?;
        row.converge = self.converge(fault, &sha, Duration::from_secs(600)).await;
        row.converged = row.converge.is_some();
        if row.converge.is_none() {
            row.converge = None;
            if let Some(app) = self.app(fault).await {
                row.note.push_str(&format!(
                    "after {:.0} s: sync {}, {}; ",
                    started.elapsed().as_secs_f64(),
                    app.data["status"]["sync"]["status"],
                    shorten(&error_message(&app).unwrap_or_default(), 160)
                ));
            }
        }
        let (lost, duplicated) = self.count(fault, &want).await?;
        row.lost = lost;
        row.duplicated = duplicated;
        if let Some(app) = self.app(fault).await {
            let size = serde_json::to_vec(&app).map_or(0, |v| v.len());
            row.note
                .push_str(&format!("Application object {} KiB; ", size / 1024));
        }
        Ok(())
    }
}

/// The message of the first condition that is not fine, or of a failed operation.
fn error_message(app: &DynamicObject) -> Option<String> {
    let status = &app.data["status"];
    if let Some(conds) = status["conditions"].as_array() {
        for c in conds {
            let t = c["type"].as_str().unwrap_or("");
            let s = c["status"].as_str().unwrap_or("");
            let bad = (t == "Ready" && s == "False") || (t.ends_with("Error") && s == "True");
            if bad && let Some(m) = c["message"].as_str().filter(|m| !m.is_empty()) {
                return Some(m.to_owned());
            }
        }
    }
    let op = &status["operationState"];
    if op["phase"] == "Failed" || op["phase"] == "Error" {
        return op["message"].as_str().map(str::to_owned);
    }
    None
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// Writes by a Kedge replica (user agent `kedge/VERSION (IDENTITY)`) made after the first write of a replica that
/// started writing later: what two writers at once look like in the audit log.
pub fn late_writes(events: &[AuditEvent]) -> usize {
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    let writes: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| !e.is_dry_run() && !matches!(e.verb.as_str(), "get" | "list" | "watch"))
        .filter_map(|e| {
            let id = e
                .user_agent
                .strip_prefix("kedge/")?
                .split_once(" (")?
                .1
                .strip_suffix(')')?;
            Some((id, e.received.as_str()))
        })
        .collect();
    for (id, at) in &writes {
        first
            .entry((*id).to_owned())
            .or_insert_with(|| (*at).to_owned());
    }
    writes
        .iter()
        .filter(|(id, at)| {
            let mine = &first[*id];
            first
                .iter()
                .any(|(other, started)| other != id && started > mine && *at > started.as_str())
        })
        .count()
}

fn read_pid(path: &Path) -> Result<u32> {
    std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("bad pid in {}", path.display()))
}

fn kill(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// Starts the fault suite's cluster afresh, with the audit log and a 3 s simulator delay (so that a waved sync
/// lasts long enough to be interrupted).
fn cluster_up(root: &Path) -> Result<PathBuf> {
    crate::cluster::up_with(root, &cluster_name(), &["--audit", "--sim-delay", "3s"])
}

/// Polls `check` every 100 ms until it is true; an error naming `what` at `timeout`.
async fn poll<F, Fut>(timeout: Duration, what: &str, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    if poll_for(timeout, check).await? {
        Ok(())
    } else {
        bail!("timed out after {timeout:?} waiting for {what}")
    }
}

/// Polls `check` every 100 ms until it is true (`true`) or `timeout` passes (`false`); errors of `check` count as
/// not yet.
async fn poll_for<F, Fut>(timeout: Duration, mut check: F) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await.unwrap_or(false) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(ua: &str, at: &str) -> AuditEvent {
        AuditEvent {
            user: "admin".into(),
            user_agent: ua.into(),
            verb: "patch".into(),
            request_uri: "/api/v1/namespaces/x/configmaps/a".into(),
            api_group: String::new(),
            resource: "configmaps".into(),
            namespace: "x".into(),
            name: "a".into(),
            code: Some(200),
            received: at.into(),
            completed: at.into(),
        }
    }

    #[test]
    fn a_write_of_the_old_replica_after_the_new_one_began_is_counted() {
        let a = "kedge/0.1.0 (faults-1)";
        let b = "kedge/0.1.0 (faults-2)";
        let clean = [
            write(a, "2026-01-01T00:00:01.000000Z"),
            write(a, "2026-01-01T00:00:02.000000Z"),
            write(b, "2026-01-01T00:00:03.000000Z"),
            write(b, "2026-01-01T00:00:04.000000Z"),
        ];
        assert_eq!(late_writes(&clean), 0);
        let mut overlapping = clean.to_vec();
        overlapping.push(write(a, "2026-01-01T00:00:05.000000Z"));
        overlapping.push(write("kubectl/v1.36", "2026-01-01T00:00:06.000000Z"));
        assert_eq!(late_writes(&overlapping), 1);
        let mut dry = write(a, "2026-01-01T00:00:07.000000Z");
        dry.request_uri.push_str("?dryRun=All");
        overlapping.push(dry);
        assert_eq!(late_writes(&overlapping), 1, "dry runs change nothing");
    }

    #[test]
    fn waved_files_declare_three_waves_of_config_maps() {
        let (files, names) = waved_files("x", 1, 4);
        assert_eq!(files.len(), 5);
        assert_eq!(names.len(), 12);
        assert!(files[0].1.contains("kedge.dev/sync-wave: \"0\""));
    }
}
