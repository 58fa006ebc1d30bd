//! `kedge run` exports the traces of its reconcile passes over OTLP/HTTP: a receiver on a loopback port decodes the
//! protobuf `ExportTraceServiceRequest`s the real binary posts while it syncs an Application from a git server to the
//! test cluster, and finds the pass that synced as one trace: a `reconcile` span naming the application and the
//! deployed commit, with `fetch`, `render`, `plan`, `apply` and `health` children carrying both. Configured by
//! `--otlp-endpoint` while it runs (batches sent every 200 ms), then by the standard environment variables with a
//! batch delay longer than the test, so that the spans arrive only because the exit sends them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use kedge_testkit::wait_for;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message as _;

/// One span as received, with the resource of its batch.
#[derive(Clone, Debug)]
struct Received {
    resource: HashMap<String, String>,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    attributes: HashMap<String, String>,
    error: bool,
    /// The status message.
    message: String,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// An OTLP/HTTP trace receiver on 127.0.0.1 (a port of its own), keeping every span it is sent.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    /// Requests it could not take (wrong path, type or body).
    refused: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (kept, refusals) = (spans.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (kept, refusals) = (kept.clone(), refusals.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (kept, refusals) = (kept.clone(), refusals.clone());
                        async move { Ok::<_, Infallible>(receive(req, &kept, &refusals).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            spans,
            refused,
            task,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }

    fn refused(&self) -> Vec<String> {
        self.refused.lock().expect("refused").clone()
    }
}

/// Takes one export request: `POST /v1/traces`, `application/x-protobuf`, answered with an empty (success)
/// `ExportTraceServiceResponse`.
async fn receive(
    req: Request<Incoming>,
    kept: &Mutex<Vec<Received>>,
    refused: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode| {
        Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()))
            .expect("response")
    };
    let what = format!(
        "{} {} ({:?})",
        req.method(),
        req.uri().path(),
        req.headers().get("content-type")
    );
    let protobuf = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" || !protobuf {
        refused.lock().expect("refused").push(what);
        return answer(StatusCode::NOT_FOUND);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            refused
                .lock()
                .expect("refused")
                .push(format!("{what}: {e}"));
            return answer(StatusCode::BAD_REQUEST);
        }
    };
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            refused
                .lock()
                .expect("refused")
                .push(format!("{what}: {e}"));
            return answer(StatusCode::BAD_REQUEST);
        }
    };
    let mut spans = kept.lock().expect("spans");
    for batch in request.resource_spans {
        let resource = batch
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in batch.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    resource: resource.clone(),
                    error: span
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == SpanStatus::Error as i32),
                    message: span
                        .status
                        .as_ref()
                        .map(|s| s.message.clone())
                        .unwrap_or_default(),
                    attributes: attributes(&span.attributes),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    name: span.name,
                })
            }
        }
    }
    answer(StatusCode::OK)
}

/// The phases of a pass that syncs, each a child of its `reconcile` span.
const PHASES: [&str; 5] = ["fetch", "render", "plan", "apply", "health"];

/// The spans of the pass that synced `app` to `sha`, as exported by replica `instance`: its `reconcile` span first,
/// then one span per phase of [`PHASES`]; `None` while they are not all there.
fn synced_pass(
    spans: &[Received],
    app: &str,
    sha: &str,
    instance: &str,
) -> Option<(Received, Vec<Received>)> {
    let ours = |s: &&Received| {
        s.resource.get("service.instance.id").map(String::as_str) == Some(instance)
            && s.attributes.get("kedge.application").map(String::as_str) == Some(app)
            && s.attributes.get("kedge.revision").map(String::as_str) == Some(sha)
    };
    spans
        .iter()
        .filter(ours)
        .filter(|s| s.name == "reconcile")
        .find_map(|pass| {
            let children: Vec<Received> = PHASES
                .iter()
                .map(|phase| {
                    spans
                        .iter()
                        .filter(ours)
                        .find(|s| {
                            s.name == *phase
                                && s.trace_id == pass.trace_id
                                && s.parent_span_id == pass.span_id
                        })
                        .cloned()
                })
                .collect::<Option<_>>()?;
            Some((pass.clone(), children))
        })
}

/// Checks what the pass that synced says beyond its shape.
fn check_pass(pass: &Received, phases: &[Received], service: &str, instance: &str) {
    assert_eq!(
        pass.resource.get("service.name").map(String::as_str),
        Some(service),
        "{pass:?}"
    );
    assert_eq!(
        pass.resource.get("service.instance.id").map(String::as_str),
        Some(instance)
    );
    assert!(
        pass.parent_span_id.is_empty(),
        "the pass is the root of its trace: {pass:?}"
    );
    assert_eq!(pass.trace_id.len(), 16, "{pass:?}");
    assert_eq!(
        pass.attributes.get("kedge.cluster").map(String::as_str),
        Some("in-cluster")
    );
    assert_eq!(
        pass.attributes.get("kedge.decision").map(String::as_str),
        Some("sync")
    );
    assert!(!pass.error, "{pass:?}");
    for phase in phases {
        assert!(!phase.error, "{phase:?}");
        assert_eq!(
            phase.attributes.get("kedge.cluster").map(String::as_str),
            Some("in-cluster"),
            "{phase:?}"
        );
        assert_ne!(phase.span_id, pass.span_id);
    }
    let apply = phases.iter().find(|p| p.name == "apply").expect("apply");
    assert_eq!(
        apply.attributes.get("kedge.sync_phase").map(String::as_str),
        Some("Succeeded"),
        "{apply:?}"
    );
    assert_eq!(
        apply.attributes.get("kedge.trigger").map(String::as_str),
        Some("automated"),
        "{apply:?}"
    );
    let health = phases.iter().find(|p| p.name == "health").expect("health");
    assert_eq!(
        health.attributes.get("kedge.health").map(String::as_str),
        Some("Healthy"),
        "{health:?}"
    );
    let plan = phases.iter().find(|p| p.name == "plan").expect("plan");
    assert_eq!(
        plan.attributes.get("kedge.objects").map(String::as_str),
        Some("1"),
        "{plan:?}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// Variables of the OpenTelemetry SDK that the developer's or CI's environment must not bring into the test.
const OTEL_VARS: [&str; 8] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_BSP_SCHEDULE_DELAY",
];

/// Starts `kedge run` as `identity` on the test's namespace with `args` and `vars` added.
fn start_kedge(
    env: &Env,
    identity: &str,
    cache: &Path,
    args: &[&str],
    vars: &[(&str, &str)],
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kedge"));
    cmd.arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(["-n", env.ns(), "run", "--identity", identity])
        .args(["--listen", &free_port().to_string()])
        .args(["--poll-interval", "1s", "--shutdown-grace", "2s"])
        .arg("--cache-dir")
        .arg(cache.join(identity))
        .args(args)
        .env("RUST_LOG", "info,kube=warn");
    for var in OTEL_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kedge run")
}

/// Sends SIGTERM and waits for a graceful exit; returns the log.
async fn stop(mut child: tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt as _;
    let pid = child.id().expect("running");
    // The log is read while the process runs, so that a full pipe cannot block it.
    let mut stderr = child.stderr.take().expect("stderr");
    let log = tokio::spawn(async move {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log).await;
        log
    });
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success(), "kill -TERM {pid} failed");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("kedge run exits after SIGTERM")
        .expect("wait");
    let log = log.await.expect("log");
    assert!(
        status.success(),
        "kedge run exited with {status}; log:\n{log}"
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_passes_are_exported_as_otlp_traces() {
    let env = Env::new("otel").await;
    env.write("app/settings.yaml", &config_map("settings", "k", "v1"));
    let first = env.commit_push("v1");
    let receiver = Receiver::start().await;
    let cache = tempfile::tempdir().expect("cache");
    let key = format!("{}/web", env.ns());

    // With the flag: batches go out while the controller runs.
    let endpoint = format!("http://{}", receiver.addr);
    let running = start_kedge(
        &env,
        "otel-flag",
        cache.path(),
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "200")],
    );
    env.create_app("web", "app", automated(true, false)).await;
    env.wait_synced("web", &first).await;
    let exported = wait_for(STEP, POLL, || {
        let spans = receiver.spans();
        let (key, first) = (key.clone(), first.clone());
        async move { synced_pass(&spans, &key, &first, "otel-flag") }
    })
    .await;
    let (pass, phases) = match exported {
        Ok(found) => found,
        Err(timeout) => {
            let names: Vec<String> = receiver
                .spans()
                .iter()
                .map(|s| format!("{} {:?}", s.name, s.attributes))
                .collect();
            panic!(
                "no exported trace of the pass that synced {first}: {timeout}\nreceived:\n{}\nrefused: {:?}",
                names.join("\n"),
                receiver.refused()
            );
        }
    };
    check_pass(&pass, &phases, "kedge", "otel-flag");
    // A pass that fails has the failing phase's span in error, with the message the status shows.
    env.create_app("broken", "no-such-path", automated(true, false))
        .await;
    let broken = format!("{}/broken", env.ns());
    let failed = wait_for(STEP, POLL, || {
        let spans = receiver.spans();
        let broken = broken.clone();
        async move {
            spans
                .iter()
                .find(|s| {
                    s.error
                        && s.attributes.get("kedge.application") == Some(&broken)
                        && spans.iter().any(|p| {
                            p.name == "reconcile"
                                && p.span_id == s.parent_span_id
                                && p.trace_id == s.trace_id
                        })
                })
                .cloned()
        }
    })
    .await
    .expect("a failed phase of application broken");
    assert!(
        ["fetch", "render"].contains(&failed.name.as_str()),
        "{failed:?}"
    );
    assert!(failed.message.contains("no-such-path"), "{failed:?}");
    eprintln!(
        "trace {}: {} {:?}",
        hex(&pass.trace_id),
        pass.name,
        pass.attributes
    );
    for phase in &phases {
        eprintln!("  {} {:?}", phase.name, phase.attributes);
    }
    let log = stop(running).await;
    assert!(
        log.contains("exporting traces over OTLP"),
        "the start says where traces go:\n{log}"
    );
    // The pass spans are for traces: the log lines keep their own `reconcile{app=...}` context.
    assert!(
        !log.contains("kedge.application"),
        "pass spans leaked into the log:\n{log}"
    );

    // With the standard variables and a batch delay longer than the test: the spans of the sync arrive because the
    // exit sends the batch not sent yet.
    env.write("app/settings.yaml", &config_map("settings", "k", "v2"));
    let second = env.commit_push("v2");
    let running = start_kedge(
        &env,
        "otel-env",
        cache.path(),
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{endpoint}/v1/traces"),
            ),
            ("OTEL_SERVICE_NAME", "kedge-e2e"),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    env.wait_synced("web", &second).await;
    assert!(
        !receiver
            .spans()
            .iter()
            .any(|s| s.resource.get("service.instance.id").map(String::as_str) == Some("otel-env")),
        "nothing is sent before the batch delay (or a full batch) while it runs"
    );
    stop(running).await;
    let spans = receiver.spans();
    let (pass, phases) = synced_pass(&spans, &key, &second, "otel-env").unwrap_or_else(|| {
        panic!(
            "the exit did not send the pass that synced {second}; received {} spans from otel-env",
            spans
                .iter()
                .filter(
                    |s| s.resource.get("service.instance.id").map(String::as_str)
                        == Some("otel-env")
                )
                .count()
        )
    });
    check_pass(&pass, &phases, "kedge-e2e", "otel-env");
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
}
