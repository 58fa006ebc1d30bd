//! Replicas sharing the applications: N `kedge run` processes against one cluster, time to production with all of
//! them, each one's share, and how many applications move (and how long the move takes) when one more replica
//! joins and when one leaves.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::env::{APPS_NS, Env};
use crate::{procstat, web};

/// What one run measured.
#[derive(Debug)]
pub struct Figures {
    pub apps: usize,
    pub replicas: usize,
    /// From the push (and the Applications created at once) to every application Synced and Healthy.
    pub ttp: Duration,
    /// Applications held by each replica once all were synced (from `status.reconciledBy`).
    pub shares: BTreeMap<String, usize>,
    /// Peak RSS of each replica during the time to production, MiB.
    pub peak_rss_mib: Vec<f64>,
    /// One more replica joined: applications that changed hands, and how long until the shares were settled.
    pub join_moved: usize,
    pub join_to_newcomer: usize,
    pub join_took: Duration,
    /// One replica stopped (SIGTERM): applications that changed hands, and how long until all were taken over.
    pub leave_moved: usize,
    pub leave_orphaned: usize,
    pub leave_took: Duration,
}

/// Another `kedge run` of the scenario.
struct Replica {
    identity: String,
    child: Child,
    metrics: SocketAddr,
}

fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(l.local_addr()?)
}

fn start_replica(env: &Env, identity: &str) -> Result<Replica> {
    let dir = env.tools.work.join(&env.name);
    std::fs::create_dir_all(&dir)?;
    let metrics = free_addr()?;
    let child = std::process::Command::new(&env.tools.kedge)
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .args(["-n", APPS_NS, "run", "--no-ui", "--identity", identity])
        .arg("--listen")
        .arg(free_addr()?.to_string())
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--cache-dir")
        .arg(dir.join(format!("cache-{identity}")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{identity}.log")))?)
        .spawn()
        .context("failed to start another kedge run")?;
    Ok(Replica {
        identity: identity.to_owned(),
        child,
        metrics,
    })
}

async fn gauge(addr: SocketAddr, name: &str) -> Option<f64> {
    let r = web::request(addr, "GET", "/metrics", &[], b"").await.ok()?;
    web::parse_prometheus(&r.body).get(name).copied()
}

/// Each application's replica, from `status.reconciledBy`.
fn owners(env: &Env) -> HashMap<String, String> {
    env.store
        .state()
        .iter()
        .filter_map(|a| {
            let by = a.data["status"]["reconciledBy"].as_str()?;
            Some((a.metadata.name.clone()?, by.to_owned()))
        })
        .collect()
}

/// Waits until the metrics endpoints in `addrs` all count `members` replicas and their shares add up to `apps`, and
/// every application's status names one of `identities`; the owners then.
async fn settled(
    env: &Env,
    addrs: &[SocketAddr],
    identities: &[String],
    members: usize,
    apps: usize,
    timeout: Duration,
) -> Result<HashMap<String, String>> {
    let started = Instant::now();
    loop {
        let mut total = 0.0;
        let mut agree = true;
        for addr in addrs {
            agree &= gauge(*addr, "kedge_shard_members").await == Some(members as f64);
            total += gauge(*addr, "kedge_shard_applications")
                .await
                .unwrap_or(0.0);
        }
        let owners = owners(env);
        if agree
            && total as usize == apps
            && owners.len() == apps
            && owners.values().all(|o| identities.contains(o))
        {
            // Each replica's status writes match its share.
            let mut by: HashMap<&str, usize> = HashMap::new();
            for o in owners.values() {
                *by.entry(o.as_str()).or_default() += 1;
            }
            let mut consistent = true;
            for (addr, id) in addrs.iter().zip(identities) {
                consistent &= gauge(*addr, "kedge_shard_applications").await
                    == Some(by.get(id.as_str()).copied().unwrap_or(0) as f64);
            }
            if consistent {
                return Ok(owners);
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "the replicas did not settle within {timeout:?} ({} applications name a live replica)",
                owners.values().filter(|o| identities.contains(o)).count()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stop(r: &mut Replica) {
    crate::env::terminate(&mut r.child, Duration::from_secs(30));
}

/// Runs the scenario on `env` (whose own controller is the first replica) with `replicas` in all.
pub async fn run(env: &mut Env, apps: usize, replicas: usize) -> Result<Figures> {
    let mut others = Vec::new();
    for k in 1..replicas {
        others.push(start_replica(env, &format!("replica-{k}"))?);
    }
    let result = measure(env, &mut others, apps, replicas).await;
    for r in &mut others {
        stop(r);
    }
    result
}

async fn measure(
    env: &mut Env,
    others: &mut Vec<Replica>,
    apps: usize,
    replicas: usize,
) -> Result<Figures> {
    let mut addrs = vec![env.metrics_listen];
    let mut ids = vec![env.identity.clone()];
    for r in others.iter() {
        addrs.push(r.metrics);
        ids.push(r.identity.clone());
    }
    // Every replica sees all the others before the applications come.
    settled(env, &addrs, &ids, replicas, 0, Duration::from_secs(60)).await?;
    env.commit_apps(0..apps, 0)?;
    let t0 = Instant::now();
    env.push()?;
    env.create_apps(0..apps).await?;
    env.require_ready(apps).await?;
    let ttp = t0.elapsed();
    let mut peak_rss_mib = vec![procstat::mib(env.proc()?.peak_rss)];
    for r in others.iter() {
        peak_rss_mib.push(procstat::mib(procstat::sample(r.child.id())?.peak_rss));
    }
    let before = settled(env, &addrs, &ids, replicas, apps, Duration::from_secs(120)).await?;
    let mut shares = BTreeMap::new();
    for o in before.values() {
        *shares.entry(o.clone()).or_insert(0) += 1;
    }

    // One more joins.
    let newcomer = start_replica(env, &format!("replica-{replicas}"))?;
    let t0 = Instant::now();
    addrs.push(newcomer.metrics);
    ids.push(newcomer.identity.clone());
    others.push(newcomer);
    let joined = settled(
        env,
        &addrs,
        &ids,
        replicas + 1,
        apps,
        Duration::from_secs(180),
    )
    .await?;
    let join_took = t0.elapsed();
    let join_moved = joined
        .iter()
        .filter(|(a, o)| before.get(*a) != Some(*o))
        .count();
    let join_to_newcomer = joined.values().filter(|o| **o == ids[replicas]).count();

    // The first of the other replicas leaves.
    let leaver = others.remove(0);
    let leaver_id = leaver.identity.clone();
    let mut leaver = leaver;
    let t0 = Instant::now();
    stop(&mut leaver);
    let pos = ids.iter().position(|i| *i == leaver_id).unwrap_or(1);
    addrs.remove(pos);
    ids.remove(pos);
    let left = settled(env, &addrs, &ids, replicas, apps, Duration::from_secs(180)).await?;
    let leave_took = t0.elapsed();
    let leave_moved = left
        .iter()
        .filter(|(a, o)| joined.get(*a) != Some(*o))
        .count();
    let leave_orphaned = joined.values().filter(|o| **o == leaver_id).count();
    Ok(Figures {
        apps,
        replicas,
        ttp,
        shares,
        peak_rss_mib,
        join_moved,
        join_to_newcomer,
        join_took,
        leave_moved,
        leave_orphaned,
        leave_took,
    })
}

/// The report's section.
pub fn render(f: &Figures) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Replicas sharing the applications\n\n{} replicas (`kedge run`, default settings) against {} applications \
         (5 objects each) on one cluster.\n",
        f.replicas, f.apps
    );
    let _ = writeln!(s, "| measure | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| time to production (push to all Synced and Healthy) | {:.1} s |",
        f.ttp.as_secs_f64()
    );
    let shares: Vec<String> = f.shares.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(s, "| shares | {} |", shares.join(", "));
    let rss: Vec<String> = f.peak_rss_mib.iter().map(|m| format!("{m:.0}")).collect();
    let _ = writeln!(s, "| peak RSS per replica (MiB) | {} |", rss.join(", "));
    let _ = writeln!(
        s,
        "| a replica joins: applications moved | {} ({} to the newcomer; fair share {}), settled in {:.1} s |",
        f.join_moved,
        f.join_to_newcomer,
        f.apps / (f.replicas + 1),
        f.join_took.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| a replica leaves (SIGTERM): applications moved | {} ({} were its own), taken over in {:.1} s |",
        f.leave_moved,
        f.leave_orphaned,
        f.leave_took.as_secs_f64()
    );
    s
}
