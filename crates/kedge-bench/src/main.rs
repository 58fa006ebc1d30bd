//! Benchmark driver: measures Kedge against the test cluster and a local git server and writes a Markdown report.

mod ceiling;
mod cluster;
mod env;
mod faults;
mod fleet;
mod procstat;
mod replicas;
mod repo;
mod report;
mod scenarios;
mod web;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::env::Tools;

/// Flags of `kedge-bench` (normally run through `bench/run`).
#[derive(Parser, Debug, Clone)]
#[command(about = "Kedge benchmark suite")]
pub struct Args {
    /// Numbers of applications (5 objects each) for time to production.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    pub scales: Vec<usize>,
    /// Steady-state window at the largest scale.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub steady: Duration,
    /// Live edits for the drift figures.
    #[arg(long, default_value_t = 20)]
    pub drift_edits: usize,
    /// One-line commits announced by webhook.
    #[arg(long, default_value_t = 5)]
    pub webhook_commits: usize,
    /// One-line commits left to polling (each can take up to the poll interval, 60 s).
    #[arg(long, default_value_t = 1)]
    pub poll_commits: usize,
    /// Grow the largest scale by this factor for the memory-per-object figure (0 to skip).
    #[arg(long, default_value_t = 2)]
    pub memory_factor: usize,
    /// Objects for the sync-throughput comparison (0 to skip).
    #[arg(long, default_value_t = 1000)]
    pub throughput_objects: usize,
    /// Skip the API server's ceiling for time to production (the same objects written directly, on a cluster of
    /// their own, before each scale).
    #[arg(long)]
    pub no_ceiling: bool,
    /// The `kedge` binary under test.
    #[arg(long)]
    pub kedge: PathBuf,
    /// The engine's benchmark example binary (Kedge vs kubectl vs raw SSA).
    #[arg(long)]
    pub engine_bench: Option<PathBuf>,
    /// Repository root.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Where the report is written.
    #[arg(long, default_value = "bench/results/latest.md")]
    pub out: PathBuf,
    /// Leave the cluster and controller of a failed scale running (for debugging).
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Run the fault suite (`scripts/faults`) instead of the benchmarks: faults injected into a live controller,
    /// a table of what each did.
    #[arg(long)]
    pub faults: bool,
    /// With --faults: the short form (shorter outages, the faults the tests run).
    #[arg(long)]
    pub faults_quick: bool,
    /// With --faults: only these faults (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Instead of the benchmarks: this many `kedge run` replicas share the applications of each scale (time to
    /// production, each one's share, applications moved when one more joins and when one leaves), e.g.
    /// `--replicas 3 --scales 3000`.
    #[arg(long, default_value_t = 0)]
    pub replicas: usize,
    /// Instead of the benchmarks: the applications of each scale spread over this many clusters (the hub Kedge
    /// runs in and the others registered), e.g. `--clusters 3 --scales 1000`: time to production and the
    /// requests each API server received.
    #[arg(long, default_value_t = 0)]
    pub clusters: usize,
    /// An extra flag for `kedge run` in the benchmarks (repeatable), e.g. `--run-arg=--concurrency=32`; named in
    /// the report.
    #[arg(long = "run-arg", allow_hyphen_values = true)]
    pub run_args: Vec<String>,
    /// Folder for controller logs and caches.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    args.scales.sort_unstable();
    args.scales.dedup();
    anyhow::ensure!(
        args.scales.iter().all(|s| *s > 0),
        "scales must be positive"
    );
    let root = std::fs::canonicalize(&args.root).context("failed to resolve --root")?;
    let tmp;
    let work = match &args.work_dir {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("kedge-bench-").tempdir()?;
            tmp.path().to_owned()
        }
    };
    let tools = Tools {
        root: root.clone(),
        kedge: std::fs::canonicalize(&args.kedge).context("failed to resolve --kedge")?,
        work,
        run_args: args.run_args.clone(),
    };
    if args.faults {
        let fargs = faults::FaultArgs {
            quick: args.faults_quick,
            only: args.only.clone(),
        };
        let started = Instant::now();
        let rows = faults::run(&fargs, &root, &tools.kedge, &tools.work).await?;
        let mut text = format!(
            "# Fault suite\n\nCommit: {}; machine: {}; took {:.0} s.\n\n",
            std::env::var("KEDGE_BENCH_COMMIT").unwrap_or_else(|_| "unknown".into()),
            report::machine(&report::loadavg()),
            started.elapsed().as_secs_f64()
        );
        text.push_str(&faults::render(&rows));
        if let Some(dir) = args.out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&args.out, &text)
            .with_context(|| format!("failed to write {}", args.out.display()))?;
        println!("{text}");
        let bad: Vec<&str> = rows
            .iter()
            .filter(|r| !r.converged || r.lost > 0 || r.duplicated > 0 || r.non_leader_writes > 0)
            .map(|r| r.name)
            .collect();
        println!(
            "faults: {} passed, {} failed",
            rows.len() - bad.len(),
            bad.len()
        );
        if !bad.is_empty() {
            anyhow::bail!("faults not handled: {}", bad.join(", "));
        }
        return Ok(());
    }
    if args.clusters > 0 {
        anyhow::ensure!(args.clusters >= 2, "--clusters needs at least 2");
        eprintln!("fleet: applications over {} clusters", args.clusters);
        let others = args.clusters - 1;
        let text = each_scale(&args, &tools, "Fleet", "bench-fleet", async |env, n| {
            let figures = fleet::run(env, n, others).await?;
            eprintln!("{figures:?}");
            Ok(fleet::render(&figures))
        })
        .await?;
        return write_report(&args.out, &text);
    }
    if args.replicas > 0 {
        anyhow::ensure!(args.replicas >= 2, "--replicas needs at least 2");
        eprintln!("replicas: {} replicas", args.replicas);
        let replicas = args.replicas;
        let text = each_scale(
            &args,
            &tools,
            "Replicas",
            "bench-replicas",
            async |env, n| {
                let figures = replicas::run(env, n, replicas).await?;
                eprintln!("{figures:?}");
                Ok(replicas::render(&figures))
            },
        )
        .await?;
        return write_report(&args.out, &text);
    }
    let started = Instant::now();
    let load_start = report::loadavg();
    eprintln!("load average at the start: {load_start}");
    let results = scenarios::run_all(&args, &tools).await;
    let text = report::render(&args, &root, &results, started.elapsed(), &load_start);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text)
        .with_context(|| format!("failed to write {}", args.out.display()))?;
    println!("{text}");
    eprintln!("report written to {}", args.out.display());
    if !results.errors.is_empty() {
        anyhow::bail!(
            "{} scenario(s) failed (see the report)",
            results.errors.len()
        );
    }
    Ok(())
}

/// Writes a report to `out` and prints it.
fn write_report(out: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, text).with_context(|| format!("failed to write {}", out.display()))?;
    println!("{text}");
    Ok(())
}

/// The first lines of a report of its own: its title, the commit and the machine.
fn report_header(title: &str) -> String {
    format!(
        "# {title}\n\nCommit: {}; machine: {}.\n\n",
        std::env::var("KEDGE_BENCH_COMMIT").unwrap_or_else(|_| "unknown".into()),
        report::machine(&report::loadavg()),
    )
}

/// Runs `scenario` at each scale of `--scales` on a fresh cluster and controller (`PREFIX-N`) and collects its
/// sections into a report of its own, titled `title`.
async fn each_scale(
    args: &Args,
    tools: &Tools,
    title: &str,
    prefix: &str,
    mut scenario: impl AsyncFnMut(&mut env::Env, usize) -> Result<String>,
) -> Result<String> {
    let started = Instant::now();
    let mut text = report_header(title);
    for &n in &args.scales {
        eprintln!("{title}: {n} applications");
        let mut env = env::Env::start(tools, &format!("{prefix}-{n}")).await?;
        let section = scenario(&mut env, n).await;
        env.stop();
        text.push_str(&section?);
        text.push('\n');
    }
    let _ = writeln!(text, "Took {:.0} s.", started.elapsed().as_secs_f64());
    Ok(text)
}
