//! The measurements: time to production, steady state, drift, commit to applied, memory per object, sync throughput.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::cluster::{self, Counts};
use crate::env::{Env, Tools, read_field};
use crate::repo::{self, OBJECTS_PER_APP, SETTINGS};
use crate::{Args, procstat};

/// Kedge's own request counter (`kedge_api_requests_total`) by verb.
pub type OwnCounts = BTreeMap<String, f64>;

/// Time to production at one scale.
#[derive(Debug, Clone)]
pub struct Ttp {
    pub apps: usize,
    /// Applications Synced and Healthy at the end (all of them unless the phase timed out).
    pub reached: usize,
    pub timed_out: bool,
    pub total: Duration,
    pub create: Duration,
    pub peak_rss: u64,
    pub rss_after: u64,
    pub cpu: f64,
    pub reconciles: f64,
    /// Seconds the passes took in all, and waited for a free slot in all.
    pub pass_seconds: f64,
    pub wait_seconds: f64,
    /// CPU seconds of the test API server (with its in-server controllers), of etcd, and of the whole machine
    /// (busy, all cores).
    pub apiserver_cpu: f64,
    pub etcd_cpu: f64,
    pub machine_busy: f64,
    pub machine_all: f64,
    /// Server-side requests attributed to Kedge (bench driver and in-server controllers taken out).
    pub server: Counts,
    /// Server-side requests of the in-server controllers (simulator, GC, namespace controller).
    pub in_server: Counts,
    /// [`Self::server`] by verb and resource.
    pub by_resource: cluster::Resources,
    pub kedge_own: OwnCounts,
    /// The API server's ceiling at this scale, measured on a cluster of its own in the same run.
    pub ceiling: Option<crate::ceiling::Ceiling>,
}

/// Steady state at the largest scale.
#[derive(Debug, Clone)]
pub struct Steady {
    pub apps: usize,
    pub window: Duration,
    pub reconciles: f64,
    pub cpu: f64,
    pub server: Counts,
    pub kedge_own: OwnCounts,
}

/// Drift detection and revert.
#[derive(Debug, Clone, Default)]
pub struct Drift {
    pub apps: usize,
    pub detect: Vec<Duration>,
    pub revert: Vec<Duration>,
    pub missed: usize,
}

/// Commit to applied.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub apps: usize,
    pub webhook_served: bool,
    pub webhook: Vec<Duration>,
    pub polling: Vec<Duration>,
    pub poll_interval: Duration,
}

/// Memory per tracked object.
#[derive(Debug, Clone)]
pub struct Memory {
    pub apps1: usize,
    pub rss1: u64,
    pub apps2: usize,
    pub rss2: u64,
    pub grow_time: Duration,
}

/// Sync throughput of 1,000 objects, three ways.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub objects: usize,
    pub kedge: Option<f64>,
    pub kubectl: Option<f64>,
    pub raw: Option<f64>,
    pub raw_failed: Option<u64>,
    pub output: String,
}

/// Everything measured in one run.
#[derive(Debug, Default)]
pub struct Results {
    pub ttp: Vec<Ttp>,
    pub steady: Option<Steady>,
    pub drift: Option<Drift>,
    pub commit: Option<Commit>,
    pub memory: Option<Memory>,
    pub throughput: Option<Throughput>,
    pub errors: Vec<String>,
}

/// Kedge's own count of its requests by verb, summed over the clusters they went to.
fn own_counts(metrics: &std::collections::HashMap<String, f64>) -> OwnCounts {
    let mut out = OwnCounts::new();
    for (k, v) in metrics
        .iter()
        .filter(|(k, _)| k.starts_with("kedge_api_requests_total{"))
    {
        if let Some(verb) = crate::web::label(k, "verb") {
            *out.entry(verb.to_owned()).or_default() += *v;
        }
    }
    out
}

fn own_delta(after: &OwnCounts, before: &OwnCounts) -> OwnCounts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Counters read at the start and the end of a phase.
struct Marks {
    proc: procstat::ProcSample,
    server: cluster::ServerCounts,
    own: Counts,
    own_by_resource: cluster::Resources,
    kedge: OwnCounts,
    reconciles: f64,
    pass_seconds: f64,
    wait_seconds: f64,
    cluster_cpu: (f64, f64),
    machine: (f64, f64),
    at: Instant,
}

async fn marks(env: &Env) -> Result<Marks> {
    let metrics = env.metrics().await?;
    Ok(Marks {
        proc: env.proc()?,
        server: cluster::server_counts(&env.client).await?,
        own: env.own.snapshot(),
        own_by_resource: env.own.by_resource(),
        kedge: own_counts(&metrics),
        reconciles: metrics
            .get("kedge_reconcile_duration_seconds_count")
            .copied()
            .unwrap_or(0.0),
        pass_seconds: metrics
            .get("kedge_reconcile_duration_seconds_sum")
            .copied()
            .unwrap_or(0.0),
        wait_seconds: metrics
            .get("kedge_queue_wait_seconds_sum")
            .copied()
            .unwrap_or(0.0),
        cluster_cpu: env.cluster_cpu(),
        machine: procstat::machine().unwrap_or((0.0, 0.0)),
        at: Instant::now(),
    })
}

struct PhaseDelta {
    server: Counts,
    by_resource: cluster::Resources,
    in_server: Counts,
    kedge: OwnCounts,
    cpu: f64,
    reconciles: f64,
    pass_seconds: f64,
    wait_seconds: f64,
    apiserver_cpu: f64,
    etcd_cpu: f64,
    machine_busy: f64,
    machine_all: f64,
}

fn phase_delta(a: &Marks, b: &Marks) -> PhaseDelta {
    let rest = cluster::delta(&b.server.rest, &a.server.rest);
    let own = cluster::delta(&b.own, &a.own);
    let by_resource = cluster::delta(&b.server.rest_by_resource, &a.server.rest_by_resource);
    let own_by_resource = cluster::delta(&b.own_by_resource, &a.own_by_resource);
    PhaseDelta {
        server: cluster::minus(&rest, &own),
        by_resource: cluster::minus(&by_resource, &own_by_resource),
        in_server: cluster::delta(&b.server.in_server, &a.server.in_server),
        kedge: own_delta(&b.kedge, &a.kedge),
        cpu: b.proc.cpu - a.proc.cpu,
        reconciles: b.reconciles - a.reconciles,
        pass_seconds: b.pass_seconds - a.pass_seconds,
        wait_seconds: b.wait_seconds - a.wait_seconds,
        apiserver_cpu: b.cluster_cpu.0 - a.cluster_cpu.0,
        etcd_cpu: b.cluster_cpu.1 - a.cluster_cpu.1,
        machine_busy: b.machine.0 - a.machine.0,
        machine_all: b.machine.1 - a.machine.1,
    }
}

fn ready_timeout(apps: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(300 * apps as u64)
}

/// From one push adding `range` (and their Applications, created at once) to all of them Synced and Healthy.
async fn time_to_production(env: &mut Env, range: Range<usize>) -> Result<Ttp> {
    env.commit_apps(range.clone(), 0)?;
    env.reset_peak();
    let a = marks(env).await?;
    let t0 = Instant::now();
    env.push()?;
    env.create_apps(range.clone()).await?;
    let create = t0.elapsed();
    let all = env
        .wait_ready(range.end, ready_timeout(range.len()))
        .await?;
    let total = t0.elapsed();
    let b = marks(env).await?;
    let d = phase_delta(&a, &b);
    let reached = env.ready_count().saturating_sub(range.start);
    Ok(Ttp {
        apps: range.len(),
        reached,
        timed_out: !all,
        total,
        create,
        peak_rss: b.proc.peak_rss,
        rss_after: b.proc.rss,
        cpu: d.cpu,
        reconciles: d.reconciles,
        pass_seconds: d.pass_seconds,
        wait_seconds: d.wait_seconds,
        apiserver_cpu: d.apiserver_cpu,
        etcd_cpu: d.etcd_cpu,
        machine_busy: d.machine_busy,
        machine_all: d.machine_all,
        server: d.server,
        in_server: d.in_server,
        by_resource: d.by_resource,
        kedge_own: d.kedge,
        ceiling: None,
    })
}

async fn steady_state(env: &mut Env, apps: usize, window: Duration) -> Result<Steady> {
    env.settle(Duration::from_secs(5), Duration::from_secs(10))
        .await?;
    let a = marks(env).await?;
    let end = Instant::now() + window;
    while Instant::now() < end {
        env.check_alive()?;
        tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
    }
    let b = marks(env).await?;
    let d = phase_delta(&a, &b);
    Ok(Steady {
        apps,
        window: b.at - a.at,
        reconciles: d.reconciles,
        cpu: d.cpu,
        server: d.server,
        kedge_own: d.kedge,
    })
}

async fn drift(env: &mut Env, apps: usize, edits: usize) -> Result<Drift> {
    let mut out = Drift {
        apps,
        ..Drift::default()
    };
    for e in 0..edits {
        env.settle(Duration::from_secs(1), Duration::from_secs(5))
            .await?;
        let Some(i) = pick_ready(env, e * apps / edits + apps / (2 * edits).max(1), apps) else {
            bail!("no application is Synced and Healthy");
        };
        let (api, name, pointer, original, patch) = if e % 2 == 0 {
            (
                env.object_api(i, "", "ConfigMap"),
                "features",
                "/data/checkout",
                json!("off"),
                json!({"data": {"checkout": "on"}}),
            )
        } else {
            (
                env.object_api(i, "apps", "Deployment"),
                "web",
                "/spec/replicas",
                json!(2),
                json!({"spec": {"replicas": 3}}),
            )
        };
        let current = read_field(&api, name, pointer).await?;
        if current != original {
            bail!(
                "{}/{name} {pointer} is {current}, not {original}",
                repo::app_name(i)
            );
        }
        let baseline = drift_events(env).await?;
        let t0 = Instant::now();
        api.patch(
            name,
            &PatchParams {
                field_manager: Some("bench-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .context("failed to edit a managed object")?;
        let mut detected = None;
        let mut reverted = None;
        while t0.elapsed() < Duration::from_secs(30) {
            if detected.is_none() && drift_events(env).await? > baseline {
                detected = Some(t0.elapsed());
            }
            if read_field(&api, name, pointer).await? == original {
                reverted = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if detected.is_none() && drift_events(env).await? > baseline {
            detected = reverted;
        }
        match (detected, reverted) {
            (Some(d), Some(r)) => {
                out.detect.push(d);
                out.revert.push(r);
            }
            _ => out.missed += 1,
        }
    }
    Ok(out)
}

/// The first application from `start` on (wrapping) that is Synced and Healthy.
fn pick_ready(env: &Env, start: usize, apps: usize) -> Option<usize> {
    (0..apps)
        .map(|k| (start + k) % apps)
        .find(|i| env.is_ready(&repo::app_name(*i)))
}

async fn drift_events(env: &Env) -> Result<f64> {
    Ok(env
        .metrics()
        .await?
        .get("kedge_drift_events_total")
        .copied()
        .unwrap_or(0.0))
}

async fn commit_to_applied(env: &mut Env, apps: usize, args: &Args) -> Result<Commit> {
    let mut out = Commit {
        apps,
        webhook_served: env.webhook_served().await,
        poll_interval: Duration::from_secs(60),
        ..Commit::default()
    };
    let mut revision = 0u64;
    let runs = [
        (
            true,
            if out.webhook_served {
                args.webhook_commits
            } else {
                0
            },
        ),
        (false, args.poll_commits),
    ];
    let mut n = 0usize;
    for (webhook, count) in runs {
        for _ in 0..count {
            // The applications a push does not change are still compared after it (their revision moves); the
            // changed one goes first, so a backlog of those does not delay the next measurement.
            env.settle(Duration::from_secs(3), Duration::from_secs(5))
                .await?;
            n += 1;
            revision += 1;
            let Some(i) = pick_ready(env, n * 7919, apps) else {
                bail!("no application is Synced and Healthy");
            };
            for (path, text) in repo::app_files(i, revision) {
                env.work.write(&path, text)?;
            }
            let sha = env
                .work
                .commit(&format!("{}: revision {revision}", repo::app_name(i)))?;
            let api = env.object_api(i, "", "ConfigMap");
            let want = Value::String(revision.to_string());
            let t0 = Instant::now();
            env.push()?;
            if webhook {
                let status = env.webhook_push(&sha).await?;
                if !(200..300).contains(&status) {
                    bail!("the webhook answered {status}");
                }
            }
            let timeout = if webhook {
                Duration::from_secs(120)
            } else {
                out.poll_interval * 3 + Duration::from_secs(60)
            };
            loop {
                if read_field(&api, SETTINGS, "/data/revision").await? == want {
                    break;
                }
                if t0.elapsed() > timeout {
                    bail!("the commit was not applied within {timeout:?}");
                }
                env.check_alive()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let took = t0.elapsed();
            eprintln!(
                "  commit to applied ({}): {:.2}s",
                if webhook { "webhook" } else { "polling" },
                took.as_secs_f64()
            );
            if webhook {
                out.webhook.push(took);
            } else {
                out.polling.push(took);
            }
        }
    }
    Ok(out)
}

/// Runs the engine's benchmark example against its own fresh cluster and reads its figures.
async fn throughput(args: &Args, tools: &Tools) -> Result<Throughput> {
    let Some(bin) = &args.engine_bench else {
        bail!("no --engine-bench binary given");
    };
    let kubeconfig = cluster::up(&tools.root, "bench-sync")?;
    let out = tokio::process::Command::new(bin)
        .arg(args.throughput_objects.to_string())
        .env("KEDGE_TEST_KUBECONFIG", &kubeconfig)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("failed to run the engine benchmark")?;
    cluster::down(&tools.root, "bench-sync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "the engine benchmark failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secs_after = |prefix: &str| -> Option<f64> {
        let line = stdout.lines().find(|l| l.starts_with(prefix))?;
        let rest = line.split_once(": ")?.1;
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        num.parse().ok()
    };
    let raw_failed = stdout
        .lines()
        .find(|l| l.starts_with("raw parallel SSA"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok());
    Ok(Throughput {
        objects: args.throughput_objects,
        kedge: secs_after("kedge first sync"),
        kubectl: secs_after("kubectl apply --server-side"),
        raw: secs_after("raw parallel SSA"),
        raw_failed,
        output: stdout,
    })
}

/// When the run started (for the progress lines).
fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Runs every scenario; failures are recorded and the rest goes on.
pub async fn run_all(args: &Args, tools: &Tools) -> Results {
    let mut results = Results::default();
    started();
    if args.throughput_objects > 0 {
        eprintln!("sync throughput: {} objects", args.throughput_objects);
        match throughput(args, tools).await {
            Ok(t) => results.throughput = Some(t),
            Err(e) => results.errors.push(format!("sync throughput: {e:#}")),
        }
    }
    let largest = args.scales.iter().copied().max().unwrap_or(0);
    for &n in &args.scales {
        let ceiling = if args.no_ceiling {
            None
        } else {
            eprintln!(
                "[{:>4}s] scale {n}: the API server's ceiling (the same objects written directly)",
                started().elapsed().as_secs()
            );
            match crate::ceiling::measure(&args.root, n).await {
                Ok(c) => {
                    eprintln!(
                        "  SSA: all available after {:.1}s; creates: {:.1}s",
                        c.apply.available.as_secs_f64(),
                        c.create.available.as_secs_f64()
                    );
                    Some(c)
                }
                Err(e) => {
                    results.errors.push(format!("scale {n}: ceiling: {e:#}"));
                    None
                }
            }
        };
        eprintln!(
            "[{:>4}s] scale {n}: starting a fresh cluster and controller",
            started().elapsed().as_secs()
        );
        let mut env = match Env::start(tools, &format!("bench-{n}")).await {
            Ok(e) => e,
            Err(e) => {
                results.errors.push(format!("scale {n}: setup: {e:#}"));
                continue;
            }
        };
        let result = scale(&mut env, n, n == largest, args, &mut results).await;
        if let Some(t) = results.ttp.iter_mut().rev().find(|t| t.apps == n) {
            t.ceiling = ceiling;
        }
        if let Err(e) = result {
            results.errors.push(format!(
                "scale {n}: {e:#} (controller log: {})",
                env.log.display()
            ));
            if args.keep_on_failure {
                eprintln!(
                    "keeping cluster bench-{n} and kedge run (pid {}) for inspection",
                    env.pid
                );
                std::mem::forget(env);
                continue;
            }
        }
        env.stop();
    }
    results
}

async fn scale(
    env: &mut Env,
    n: usize,
    largest: bool,
    args: &Args,
    results: &mut Results,
) -> Result<()> {
    eprintln!(
        "[{:>4}s] scale {n}: time to production",
        started().elapsed().as_secs()
    );
    let ttp = time_to_production(env, 0..n).await?;
    eprintln!(
        "  {} of {n} apps Synced and Healthy after {:.1}s{}, peak RSS {:.0} MiB, CPU {:.1}s",
        ttp.reached,
        ttp.total.as_secs_f64(),
        if ttp.timed_out { " (timed out)" } else { "" },
        procstat::mib(ttp.peak_rss),
        ttp.cpu
    );
    let complete = !ttp.timed_out;
    results.ttp.push(ttp);
    if !largest {
        return Ok(());
    }
    eprintln!(
        "[{:>4}s] scale {n}: steady state for {:?}",
        started().elapsed().as_secs(),
        args.steady
    );
    let steady = steady_state(env, n, args.steady).await?;
    let rss1 = env.settled_rss(Duration::from_secs(60)).await?;
    results.steady = Some(steady);
    if args.drift_edits > 0 {
        eprintln!(
            "[{:>4}s] scale {n}: drift, {} edits",
            started().elapsed().as_secs(),
            args.drift_edits
        );
        results.drift = Some(drift(env, n, args.drift_edits).await?);
    }
    if args.webhook_commits + args.poll_commits > 0 {
        eprintln!(
            "[{:>4}s] scale {n}: commit to applied",
            started().elapsed().as_secs()
        );
        results.commit = Some(commit_to_applied(env, n, args).await?);
    }
    if args.memory_factor > 1 && !complete {
        results.errors.push(format!(
            "memory per object: skipped, not all {n} applications became Synced and Healthy"
        ));
    } else if args.memory_factor > 1 {
        let n2 = n * args.memory_factor;
        eprintln!(
            "[{:>4}s] scale {n}: growing to {n2} applications for memory per object",
            started().elapsed().as_secs()
        );
        env.settle(Duration::from_secs(3), Duration::from_secs(10))
            .await?;
        let t0 = Instant::now();
        let grown = time_to_production(env, n..n2).await?;
        let grow_time = t0.elapsed();
        if grown.timed_out {
            bail!(
                "growing to {n2} applications: only {} of {} more became Synced and Healthy in {}s",
                grown.reached,
                n2 - n,
                grow_time.as_secs()
            );
        }
        env.settle(Duration::from_secs(5), Duration::from_secs(20))
            .await?;
        let rss2 = env.settled_rss(Duration::from_secs(60)).await?;
        results.memory = Some(Memory {
            apps1: n,
            rss1,
            apps2: n2,
            rss2,
            grow_time,
        });
    }
    Ok(())
}

/// Objects managed at `apps` applications.
pub fn objects(apps: usize) -> usize {
    apps * OBJECTS_PER_APP
}
