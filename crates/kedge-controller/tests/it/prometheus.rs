//! A real Prometheus scrapes the controller: a PromQL query returns an application's health and sync status as Kedge
//! reports them in the Application, every query of the Grafana dashboard (`deploy/grafana`) is valid and answers,
//! and the alert rules (`deploy/prometheus`) load and evaluate.
//!
//! Needs `prometheus` (scripts/install-prometheus). Without it the test is skipped with a note, except in CI
//! (`CI=true`), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use kedge_api::HealthCode;
use kedge_testkit::wait_for;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts Prometheus scraping `target` every second as job `kedge`, with Kedge's alert rules loaded.
fn start_prometheus(binary: &Path, target: SocketAddr) -> ServerProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = repo_root().join("deploy/prometheus/kedge-rules.yaml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: \
         kedge\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).expect("write config");
    let addr = free_addr();
    let args = vec![
        format!("--config.file={}", config_file.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address={addr}"),
    ];
    ServerProcess::start(binary, args, addr, dir)
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(prometheus: &ServerProcess, promql: &str) -> Option<Value> {
    prometheus.get(&format!("/api/v1/query?query={}", encode(promql)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_the_health_kedge_reports() {
    let Some(binary) = cache_binary("prometheus") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is missing (scripts/install-prometheus)"
        );
        eprintln!("SKIPPED prometheus_reads_the_health_kedge_reports: prometheus is missing");
        return;
    };
    let env = Env::new("prom").await;
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    let sha = env.commit_push("first");
    let (_controller, metrics) = start_with_metrics(&env, "c1", |_| {});
    env.create_app("demo", "app", automated(true, true)).await;
    let app = env
        .wait_app("demo", "Synced and Healthy", |a| {
            synced_at(a, &sha)
                && a.status
                    .as_ref()
                    .is_some_and(|s| s.health.status == HealthCode::Healthy)
        })
        .await;
    let status = app.status.expect("status");
    let prometheus = start_prometheus(&binary, metrics);

    // The application's state, as Prometheus scraped it, is what the Application says.
    let promql = format!(
        "kedge_app_info{{namespace=\"{}\", name=\"demo\"}}",
        env.ns()
    );
    let series = wait_for(Duration::from_secs(60), POLL, || async {
        let answer = query(&prometheus, &promql)?;
        let result = answer["data"]["result"].as_array()?.first()?.clone();
        Some(result)
    })
    .await
    .expect("Prometheus returns the application's series");
    let labels = &series["metric"];
    assert_eq!(
        labels["health_status"],
        format!("{:?}", status.health.status),
        "{series}"
    );
    assert_eq!(
        labels["sync_status"],
        format!("{:?}", status.sync.status),
        "{series}"
    );
    assert_eq!(labels["revision"], sha[..7], "{series}");
    assert_eq!(labels["cluster"], "in-cluster", "{series}");
    assert_eq!(labels["job"], "kedge", "{series}");

    // The only replica leads and holds the application.
    for (metric, want) in [
        ("kedge_leader", "1"),
        ("kedge_shard_members", "1"),
        ("kedge_shard_applications", "1"),
    ] {
        let got = wait_for(Duration::from_secs(30), POLL, || async {
            let answer = query(&prometheus, metric)?;
            let value = answer["data"]["result"][0]["value"][1].as_str()?.to_owned();
            (value == want).then_some(value)
        })
        .await;
        assert!(got.is_ok(), "{metric} is not {want}");
    }

    let took = format!(
        "kedge_app_reconcile_duration_seconds{{namespace=\"{}\", name=\"demo\"}} > 0",
        env.ns()
    );
    let answer = query(&prometheus, &took).expect("Prometheus answers");
    assert_eq!(
        answer["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{took}: {answer}"
    );

    // Every query of the dashboard is valid PromQL, and the count of applications is the one there is.
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/kedge-dashboard.json"))
        .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut checked = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$namespace", ".*")
                .replace("$cluster", ".*");
            let answer = query(&prometheus, &expr).expect("Prometheus answers");
            assert_eq!(
                answer["status"], "success",
                "panel {}: {expr}: {answer}",
                panel["title"]
            );
            checked += 1;
        }
    }
    let count = query(
        &prometheus,
        &panels[0]["targets"][0]["expr"]
            .as_str()
            .expect("expr")
            .replace("$namespace", env.ns())
            .replace("$cluster", ".*"),
    )
    .expect("count");
    assert_eq!(count["data"]["result"][0]["value"][1], "1", "{count}");
    eprintln!("{checked} dashboard queries answered");

    // The alert rules loaded and evaluate without errors; none fires for a healthy application.
    let rules = wait_for(Duration::from_secs(30), POLL, || async {
        let answer = prometheus.get("/api/v1/rules")?;
        let group = answer["data"]["groups"].as_array()?.first()?.clone();
        let rules = group["rules"].as_array()?.clone();
        rules
            .iter()
            .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z")
            .then_some(rules)
    })
    .await
    .expect("the alert rules evaluated");
    assert_eq!(rules.len(), 6, "{rules:?}");
    for rule in &rules {
        assert_ne!(
            rule["state"], "firing",
            "{} fires for a healthy application",
            rule["name"]
        );
    }
}
