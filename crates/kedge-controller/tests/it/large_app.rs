//! An application of 5,000 objects syncs, reports and prunes within etcd's object size limit: its status lists the
//! objects that need attention first and counts all of them, and its inventory is stored compressed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge_api::{Application, RESOURCES_LISTED, SyncCode};
use kedge_testkit::wait_for;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const FILES: usize = 10;
const PER_FILE: usize = 500;

/// How long the first sync of 5,000 objects may take on a loaded 2-core machine (about a minute when alone).
const BIG_STEP: Duration = Duration::from_secs(420);

fn part(chunk: usize) -> String {
    let mut text = String::new();
    for i in chunk * PER_FILE..(chunk + 1) * PER_FILE {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\ndata:\n  n: \"{i}\"\n"
        ));
    }
    text
}

async fn wait_big(env: &Env, what: &str, cond: impl Fn(&Application) -> bool) -> Application {
    let api = env.apps();
    match wait_for(BIG_STEP, Duration::from_millis(500), || async {
        api.get_opt("big").await.ok().flatten().filter(|a| cond(a))
    })
    .await
    {
        Ok(app) => app,
        Err(timeout) => {
            let status = api
                .get_opt("big")
                .await
                .ok()
                .flatten()
                .and_then(|a| a.status)
                .map(|s| (s.sync, s.health, s.conditions, s.operation_state));
            panic!("{what}: {timeout}; last status: {status:?}")
        }
    }
}

async fn live_names(env: &Env) -> BTreeSet<String> {
    Api::<ConfigMap>::namespaced(env.client.clone(), env.ns())
        .list_metadata(&ListParams::default())
        .await
        .expect("list ConfigMaps")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with("cm-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_objects_sync_report_and_prune_within_the_size_limit() {
    let env = Env::new("large").await;
    for chunk in 0..FILES {
        env.write(&format!("app/part-{chunk:02}.yaml"), &part(chunk));
    }
    let first = env.commit_push("5,000 ConfigMaps");
    let _controller = env.start_controller("c1");
    env.create_app("big", "app", automated(true, false)).await;

    let app = wait_big(&env, "5,000 objects synced", |a| synced_at(a, &first)).await;
    let size = serde_json::to_vec(&app).expect("serialize").len();
    eprintln!("Application object with 5,000 objects: {} KiB", size / 1024);
    assert!(
        size < 200 * 1024,
        "the Application is {} KiB with 5,000 objects",
        size / 1024
    );
    let status = app.status.expect("status");
    assert_eq!(status.resources.len(), RESOURCES_LISTED);
    let summary = status.resource_summary.clone().expect("a summary");
    assert_eq!(summary.total, 5000);
    assert_eq!(summary.sync.get("Synced"), Some(&5000), "{summary:?}");
    assert!(
        status.inventory.is_empty(),
        "a long inventory is not listed"
    );
    let inventory = status.inventory_refs().expect("inventory decodes");
    let names: BTreeSet<String> = inventory.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names.len(), 5000);
    assert_eq!(names, live_names(&env).await);
    let op = status.operation_state.expect("operation");
    let result = op.sync_result.expect("sync result");
    assert_eq!(result.resources.len(), RESOURCES_LISTED);
    assert_eq!(result.resources_omitted, 4500);

    // A tenth of the objects leaves Git: pruned from the compressed inventory exactly.
    env.work.remove("app/part-09.yaml").expect("remove file");
    let second = env.commit_push("drop 500");
    let app = wait_big(&env, "500 objects pruned", |a| synced_at(a, &second)).await;
    let status = app.status.expect("status");
    let remaining = status.inventory_refs().expect("inventory decodes");
    assert_eq!(remaining.len(), 4500);
    assert!(remaining.iter().all(|r| r.name.as_str() < "cm-04500"));
    let live = live_names(&env).await;
    assert_eq!(live.len(), 4500);
    assert!(!live.contains("cm-04500") && live.contains("cm-04499"));

    // A change by someone else to one of 4,500 objects (no self-heal) is listed first.
    Api::<ConfigMap>::namespaced(env.client.clone(), env.ns())
        .patch(
            "cm-03210",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "cm-03210" },
                "data": { "n": "changed" }
            })),
        )
        .await
        .expect("change a ConfigMap");
    let app = wait_big(&env, "the changed object listed first", |a| {
        a.status.as_ref().is_some_and(|s| {
            s.resources
                .first()
                .is_some_and(|r| r.object.name == "cm-03210" && r.status == SyncCode::OutOfSync)
        })
    })
    .await;
    let status = app.status.clone().expect("status");
    assert_eq!(status.sync.status, SyncCode::OutOfSync);
    let summary = status.resource_summary.expect("a summary");
    assert_eq!(summary.total, 4500);
    assert_eq!(summary.sync.get("OutOfSync"), Some(&1), "{summary:?}");
    assert_eq!(summary.sync.get("Synced"), Some(&4499), "{summary:?}");
    let ready = condition(&app, "Ready").expect("Ready condition");
    assert_eq!(ready.message, "1 object(s) differ from Git");
}
