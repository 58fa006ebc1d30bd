//! Benchmark: fetch of a 10,000-file, 1,000-commit repository and a no-change check, ours vs the git CLI,
//! against loopback git daemon and smart HTTP servers. Run with
//! `cargo run --release -p kedge-source --example bench_source`.

use std::process::Command;
use std::time::{Duration, Instant};

use kedge_source::{Credentials, FetchRequest, FileTree, RepoSpec, Secret, Source, SourceConfig};
use kedge_testkit::{GitFixture, GitServers, HttpAuth};

const FILES: usize = 10_000;
const COMMITS: usize = 1_000;
const CHECKS: usize = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = GitServers::start(HttpAuth::basic("bench", "bench-pw"))?;
    let bare = servers.root.create_bare_repo("big.git")?;
    let work = GitFixture::new()?;
    let t = Instant::now();
    let tip = work.fast_history("main", COMMITS, FILES)?;
    work.push(&bare.display().to_string(), "main")?;
    println!(
        "fixture: {FILES} files, {COMMITS} commits, tip {} (built in {:.2?})",
        &tip[..12],
        t.elapsed()
    );

    let http_repo =
        RepoSpec::new(&servers.http.url("big.git"))?.with_credentials(Credentials::Basic {
            username: "bench".into(),
            password: Secret::new("bench-pw"),
        });
    let targets = [
        (
            "git://",
            RepoSpec::new(&servers.daemon.url("big.git"))?,
            servers.daemon.url("big.git"),
        ),
        (
            "http://",
            http_repo,
            servers.http.url_with_credentials("big.git"),
        ),
    ];
    println!();
    println!("{:<8} {:<44} {:>12}", "server", "operation", "time");
    for (label, repo, cli_url) in targets {
        // Fresh fetch: ours (depth 1, into a bare mirror, no checkout).
        let cache = tempfile::tempdir()?;
        let src = Source::new(SourceConfig::new(cache.path()))?;
        let t = Instant::now();
        let snap = src.fetch(&FetchRequest::new(repo.clone(), "main"))?;
        let ours_fetch = t.elapsed();
        assert_eq!(snap.revision().sha, tip);
        let t = Instant::now();
        let dir = snap.materialize()?;
        let ours_materialize = t.elapsed();
        let files = count_files(&dir)?;
        assert!(files >= FILES, "materialized {files} files");

        // git clone --depth 1, bare and with checkout.
        let git_bare = time_git(
            &["clone", "--quiet", "--depth", "1", "--bare", &cli_url],
            "bare.git",
        )?;
        let git_full = time_git(&["clone", "--quiet", "--depth", "1", &cli_url], "wt")?;

        // No-change check: ours (ls-refs, resolve) vs git ls-remote; and our full no-change fetch (ls-refs + local lookup).
        let ours_check = median(CHECKS, || {
            src.resolve_remote(&repo, "main")
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        let ours_refetch = median(CHECKS, || {
            src.fetch(&FetchRequest::new(repo.clone(), "main"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        let git_ls = median(CHECKS, || {
            let out = git_cmd()
                .args(["ls-remote", &cli_url, "refs/heads/main"])
                .output();
            match out {
                Ok(o) if o.status.success() => Ok(()),
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Err(e.to_string()),
            }
        })?;
        assert_eq!(src.stats().fetches, 1);

        row(label, "ours: fetch depth 1 (bare mirror)", ours_fetch);
        row(label, "ours: materialize 10k files", ours_materialize);
        row(label, "git clone --depth 1 --bare", git_bare);
        row(label, "git clone --depth 1 (with checkout)", git_full);
        row(
            label,
            &format!("ours: no-change check (median of {CHECKS})"),
            ours_check,
        );
        row(
            label,
            &format!("ours: no-change fetch (median of {CHECKS})"),
            ours_refetch,
        );
        row(
            label,
            &format!("git ls-remote (median of {CHECKS})"),
            git_ls,
        );
        println!(
            "{:<8} {:<44} {:>12}",
            label,
            "fetches / ref listings",
            format!("{} / {}", src.stats().fetches, src.stats().ref_listings)
        );
    }
    if let Some(kib) = peak_rss_kib() {
        println!("\npeak RSS of this process: {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

fn git_cmd() -> Command {
    let mut c = Command::new("git");
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    c
}

fn time_git(args: &[&str], dest: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let status = git_cmd().args(args).arg(dir.path().join(dest)).status()?;
    let elapsed = t.elapsed();
    if !status.success() {
        return Err(format!("git {} failed", args[0]).into());
    }
    Ok(elapsed)
}

fn median(
    n: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[n / 2])
}

fn row(server: &str, op: &str, d: Duration) {
    println!("{server:<8} {op:<44} {:>9.1} ms", d.as_secs_f64() * 1000.0);
}

fn count_files(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
