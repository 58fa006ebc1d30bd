//! What a first deployment costs in requests to the API server, counted by the controller's own request metrics:
//! into a namespace that does not exist yet nothing is read or dry-run before the applies, and the passes that
//! follow the rollout read only the objects that changed (the Deployment), not the twenty ConfigMaps beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use common::*;
use kedge_testkit::wait_for;
use serde_json::json;

const CONFIG_MAPS: usize = 20;

fn requests(addr: std::net::SocketAddr, verb: &str) -> f64 {
    metric(
        addr,
        &format!("kedge_api_requests_total{{verb=\"{verb}\",cluster=\"in-cluster\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deployment_reads_only_what_changed() {
    let env = Env::new("reqs").await;
    let dest = format!("{}-dest", env.ns());
    for i in 0..CONFIG_MAPS {
        env.write(
            &format!("app/cm-{i}.yaml"),
            &config_map(&format!("cm-{i}"), "k", "v"),
        );
    }
    env.write("app/web.yaml", &deployment("web", 1, "nginx"));
    let sha = env.commit_push("first");
    let (_controller, addr) = start_with_metrics(&env, "c1", |_| {});
    wait_for(STEP, POLL, || async {
        std::net::TcpStream::connect(addr).is_ok().then_some(())
    })
    .await
    .expect("metrics served");
    let before: Vec<f64> = ["get", "patch_dry_run", "patch"]
        .iter()
        .map(|v| requests(addr, v))
        .collect();
    let mut policy = automated(true, true);
    policy["syncOptions"] = json!(["CreateNamespace=true"]);
    env.create_app_with(
        "web",
        "app",
        policy,
        json!({ "destination": { "namespace": dest } }),
        json!({}),
    )
    .await;
    env.wait_synced("web", &sha).await;
    // What the sync did says "Created", and nothing more: not the plan's "will be created (namespace ... does not
    // exist yet)", which is stale once it ran.
    let app = env.app("web").await;
    let result = app
        .status
        .and_then(|s| s.operation_state)
        .and_then(|o| o.sync_result)
        .expect("a sync result");
    assert_eq!(result.resources.len(), CONFIG_MAPS + 1);
    for r in &result.resources {
        assert_eq!(
            (r.status.as_str(), r.message.as_str()),
            ("Created", ""),
            "{}",
            r.object.name
        );
    }
    let gets = requests(addr, "get") - before[0];
    let dry_runs = requests(addr, "patch_dry_run") - before[1];
    let patches = requests(addr, "patch") - before[2];
    eprintln!(
        "first deployment of {} objects: {gets} GETs, {dry_runs} dry-runs, {patches} patches",
        CONFIG_MAPS + 1
    );
    assert_eq!(
        dry_runs, 0.0,
        "no dry-run: nothing existed, and the applies' answers are the comparison"
    );
    // Discovery, the Application read back after the controller's own writes, the Deployment as it rolls out: a
    // handful, fewer than one per object (each pass read every object before).
    assert!(gets < CONFIG_MAPS as f64, "{gets} GETs");
    // One apply per object, the namespace, and the status writes of the passes.
    assert!(patches >= (CONFIG_MAPS + 2) as f64, "{patches} patches");
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(env.client.clone())
        .delete(&dest, &Default::default())
        .await;
}
