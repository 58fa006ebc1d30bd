//! Benchmark: listing 10,000 applications the way the API does (from the controller's cache: filter, order, page,
//! JSON), printing server time and bytes per request shape.
//!
//! `cargo run --release -p kedge-server --example bench_server`
//! (Webhook push-to-synced latency is measured by `cargo test -p kedge-server --test it webhook:: -- --nocapture`.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use kedge_api::{
    Application, ApplicationSource, ApplicationSpec, ApplicationStatus, HealthCode, HistoryEntry,
    SyncCode,
};
use kedge_server::apps::{ListQuery, list};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

fn app(i: usize) -> Application {
    let mut a = Application::new(
        &format!("app-{i:05}"),
        ApplicationSpec {
            source: ApplicationSource {
                repo_url: format!("https://git.example.test/team-{}/services.git", i % 40),
                target_revision: "main".into(),
                path: format!("apps/svc-{i}"),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    a.metadata.namespace = Some(format!("team-{}", i % 40));
    a.metadata.labels = Some([("team".to_owned(), format!("t{}", i % 40))].into());
    let mut st = ApplicationStatus::default();
    st.sync.status = if i.is_multiple_of(50) {
        SyncCode::OutOfSync
    } else {
        SyncCode::Synced
    };
    st.sync.revision = Some(format!("{:040x}", i));
    st.sync.short_revision = Some(format!("{:07x}", i));
    st.health.status = if i.is_multiple_of(97) {
        HealthCode::Degraded
    } else {
        HealthCode::Healthy
    };
    st.history = vec![HistoryEntry {
        id: 0,
        revision: format!("{:040x}", i),
        deployed_at: "2026-11-25T12:00:00Z".into(),
        initiated_by: "automated".into(),
        ..HistoryEntry::default()
    }];
    a.status = Some(st);
    a
}

fn main() {
    let n = 10_000;
    let mut writer: Writer<Application> = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..n {
        writer.apply_watcher_event(&watcher::Event::InitApply(app(i)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let store = writer.as_reader();
    assert_eq!(store.state().len(), n);

    let cases: Vec<(&str, ListQuery)> = vec![
        ("all 10,000 (no limit)", ListQuery::default()),
        (
            "limit=100",
            ListQuery {
                limit: Some(100),
                ..Default::default()
            },
        ),
        (
            "page 50 of pageSize=50 (UI)",
            ListQuery {
                page: Some(50),
                page_size: Some(50),
                ..Default::default()
            },
        ),
        (
            "sync=OutOfSync",
            ListQuery {
                sync: Some("OutOfSync".into()),
                ..Default::default()
            },
        ),
        (
            "search=app-09 limit=100",
            ListQuery {
                search: Some("app-09".into()),
                limit: Some(100),
                ..Default::default()
            },
        ),
        (
            "selector=team=t7",
            ListQuery {
                selector: Some("team=t7".into()),
                ..Default::default()
            },
        ),
    ];
    println!(
        "{:<32} {:>10} {:>10} {:>12}",
        "request", "items", "median ms", "bytes"
    );
    for (name, q) in cases {
        let mut times = Vec::new();
        let mut bytes = 0;
        let mut items = 0;
        for _ in 0..21 {
            let started = Instant::now();
            let result = list(store.state(), &q).expect("list");
            let body = serde_json::to_vec(&result).expect("json");
            times.push(started.elapsed());
            bytes = body.len();
            items = result.items.len();
        }
        times.sort();
        println!(
            "{:<32} {:>10} {:>10.2} {:>12}",
            name,
            items,
            times[times.len() / 2].as_secs_f64() * 1000.0,
            bytes
        );
    }
}
