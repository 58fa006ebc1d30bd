//! `kedge run` exits within its shutdown grace period whatever it is doing when SIGTERM comes: starting up, serving
//! HTTP (a webhook just posted, a connection held open mid-request), leading, or waiting in the middle of a sync.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Event;
use kedge_testkit::wait_for;
use kube::api::Api;

/// The grace period the controllers under test get (`--shutdown-grace`).
const GRACE: Duration = Duration::from_secs(2);
/// What `kedge run` may take after the grace period: releasing the Lease and closing connections (5 s at most), plus
/// process start-up and exit on a loaded machine.
const MARGIN: Duration = Duration::from_secs(6);

/// What a run does before it is sent SIGTERM.
#[derive(Clone, Copy, Debug)]
enum Before {
    /// Waits this long after the process started (start-up: config, election, watches, first list).
    Delay(Duration),
    /// Waits until `/healthz` answers, then this long.
    Healthy(Duration),
    /// Posts a push webhook once `/healthz` answers.
    Webhook,
    /// Holds two connections open once `/healthz` answers: one idle after a request, one in the middle of its
    /// request headers.
    OpenConnections,
    /// Waits until this process started a sync (which a PreSync hook keeps waiting), then this long.
    InSync(Duration),
}

struct Outcome {
    before: Before,
    exit_after_signal: Duration,
    status: std::process::ExitStatus,
    log: String,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn http(addr: SocketAddr, request: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn healthy(addr: SocketAddr) -> bool {
    http(addr, "GET /healthz HTTP/1.0\r\n\r\n")
        .is_some_and(|r| r.lines().next().is_some_and(|l| l.contains(" 200 ")))
}

/// Waits until `/healthz` answers; on failure ends the process and shows its log.
async fn until_healthy(addr: SocketAddr, child: &mut tokio::process::Child) {
    let up = wait_for(STEP, Duration::from_millis(10), || async move {
        tokio::task::spawn_blocking(move || healthy(addr))
            .await
            .unwrap_or(false)
    })
    .await;
    if up.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        panic!("/healthz never answered; log:\n{}", read_log(child).await);
    }
}

async fn read_log(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log).await;
    }
    log
}

/// Starts `kedge run` in `ns` as `identity`, does `before`, sends SIGTERM and measures how long the process takes to
/// exit.
async fn run_once(env: &Env, ns: &str, identity: &str, cache: &Path, before: Before) -> Outcome {
    let addr = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(["-n", ns, "run", "--identity", identity])
        .args(["--listen", &addr.to_string()])
        .args(["--shutdown-grace", &format!("{}s", GRACE.as_secs())])
        .args(["--poll-interval", "1s"])
        .arg("--cache-dir")
        .arg(cache.join(identity))
        .env("RUST_LOG", "info,kube=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kedge run");
    let pid = child.id().expect("pid");
    let started = Instant::now();
    let mut held = Vec::new();
    match before {
        Before::Delay(d) => tokio::time::sleep(d).await,
        Before::Healthy(d) => {
            until_healthy(addr, &mut child).await;
            tokio::time::sleep(d).await;
        }
        Before::Webhook => {
            until_healthy(addr, &mut child).await;
            let body = format!(
                r#"{{"ref":"refs/heads/main","after":"{}","repository":{{"clone_url":"{}","html_url":"{}"}},"commits":[]}}"#,
                "0".repeat(40),
                env.repo_url,
                env.repo_url
            );
            let req = format!(
                "POST /api/webhook HTTP/1.0\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let answer = tokio::task::spawn_blocking(move || http(addr, &req))
                .await
                .expect("webhook thread");
            assert!(answer.is_some(), "the webhook got no answer");
        }
        Before::OpenConnections => {
            until_healthy(addr, &mut child).await;
            let mut idle = TcpStream::connect(addr).expect("connect");
            idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: kedge\r\n\r\n")
                .expect("request");
            let mut buf = [0u8; 256];
            let n = idle.read(&mut buf).expect("response");
            assert!(n > 0);
            let mut partial = TcpStream::connect(addr).expect("connect");
            partial
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: kedge\r\n")
                .expect("half a request");
            held.push(idle);
            held.push(partial);
        }
        Before::InSync(d) => {
            let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
            let me = identity.to_owned();
            wait_for(STEP, POLL, || {
                let (events, me) = (events.clone(), me.clone());
                async move {
                    events
                        .list(&Default::default())
                        .await
                        .ok()
                        .is_some_and(|l| {
                            l.items.iter().any(|e| {
                                e.reason.as_deref() == Some("SyncStarted")
                                    && e.reporting_instance.as_deref() == Some(me.as_str())
                            })
                        })
                }
            })
            .await
            .expect("this process started a sync");
            tokio::time::sleep(d).await;
        }
    }
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success(), "kill -TERM {pid} failed ({before:?})");
    let bound = GRACE + MARGIN;
    let waited = tokio::time::timeout(bound + Duration::from_secs(20), child.wait()).await;
    let exit_after_signal = signalled.elapsed();
    let status = match waited {
        Ok(s) => s.expect("wait"),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.expect("wait after kill")
        }
    };
    drop(held);
    let log = read_log(&mut child).await;
    eprintln!(
        "{identity}: {before:?}: started {:?} before SIGTERM, exited {exit_after_signal:?} after it ({status})",
        signalled - started
    );
    Outcome {
        before,
        exit_after_signal,
        status,
        log,
    }
}

fn check(o: &Outcome) {
    let bound = GRACE + MARGIN;
    let tail: String = o
        .log
        .lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        o.exit_after_signal < bound,
        "{:?}: exited {:?} after SIGTERM (bound {bound:?}); last log lines:\n{tail}",
        o.before,
        o.exit_after_signal
    );
    // A graceful exit, or (when the signal came before the handlers were installed) the default action of SIGTERM;
    // never the watchdog's exit code 1.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        o.status.success() || o.status.signal() == Some(15),
        "{:?}: exit status {} after SIGTERM; last log lines:\n{tail}",
        o.before,
        o.status
    );
}

/// A PreSync hook that never completes: a suspended Job.
fn waiting_hook() -> String {
    "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: gate\n  annotations:\n    kedge.dev/hook: PreSync\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: busybox\n".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_at_any_point_ends_kedge_run_within_the_grace_period() {
    let env = Env::new("run-stop").await;
    env.write("app/settings.yaml", &config_map("settings", "k", "v"));
    env.write("app/gate.yaml", &waiting_hook());
    env.commit_push("a sync that waits for its PreSync hook");
    let cache = tempfile::tempdir().expect("cache");

    // Start-up and HTTP, in a namespace with no Application (as in the hang first seen), four processes at a time
    // (they also contend for the Lease).
    let idle_ns = env.cluster.namespace("run-stop-idle").await.expect("ns");
    let mut plans: Vec<Before> = Vec::new();
    for i in 0..14u64 {
        plans.push(Before::Delay(Duration::from_millis(i * 2000 / 13)));
    }
    for i in 0..6u64 {
        plans.push(Before::Healthy(Duration::from_millis(i * 50)));
    }
    for _ in 0..4 {
        plans.push(Before::Webhook);
        plans.push(Before::OpenConnections);
    }
    let mut outcomes = Vec::new();
    for (round, chunk) in plans.chunks(4).enumerate() {
        let runs = chunk.iter().enumerate().map(|(i, before)| {
            let identity = format!("idle-{round}-{i}");
            let (env, ns, cache) = (&env, idle_ns.name(), cache.path());
            async move { run_once(env, ns, &identity, cache, *before).await }
        });
        outcomes.extend(futures::future::join_all(runs).await);
    }

    // In the middle of a sync: each process leads in turn (its predecessor released the Lease) and starts the
    // sync, which waits for the hook; SIGTERM comes at once or a moment later.
    env.create_app("demo", "app", automated(true, true)).await;
    for (i, d) in [0u64, 200, 500, 1000, 1500, 2500].into_iter().enumerate() {
        let identity = format!("syncing-{i}");
        outcomes.push(
            run_once(
                &env,
                env.ns(),
                &identity,
                cache.path(),
                Before::InSync(Duration::from_millis(d)),
            )
            .await,
        );
    }
    let runs = outcomes.len();
    for o in &outcomes {
        check(o);
    }
    let slowest = outcomes
        .iter()
        .map(|o| o.exit_after_signal)
        .max()
        .unwrap_or_default();
    eprintln!("{runs} runs; slowest exit {slowest:?} after SIGTERM");
    // The runs in a sync waited for their pass: they were abandoned at the end of the grace period, not before it
    // was asked for (a pass that ends at once would mean the sync was never waiting).
    for o in outcomes
        .iter()
        .filter(|o| matches!(o.before, Before::InSync(_)))
    {
        assert!(
            o.log.contains("pass abandoned"),
            "{:?}: the pass in progress was not abandoned:\n{}",
            o.before,
            o.log
        );
    }
    assert!(runs >= 30);
}
