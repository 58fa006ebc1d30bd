//! One writer at a time: a leader asked to stop in the middle of a sync writes nothing once its successor has started
//! writing, as the API server's audit log shows.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kedge_testkit::{AuditEvent, wait_for};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// A PreSync hook that does not complete while the Job is suspended.
const GATE: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: gate\n  annotations:\n    kedge.dev/hook: PreSync\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: busybox\n";

async fn holder(env: &Env) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), env.ns())
        .get_opt(kedge_controller::runner::LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// The writes (not dry runs) to this test's namespace by the controller `identity` (told apart by its user agent).
fn writes_by<'a>(events: &'a [AuditEvent], ns: &str, identity: &str) -> Vec<&'a AuditEvent> {
    let agent = format!("({identity})");
    events
        .iter()
        .filter(|e| e.namespace == ns && e.user_agent.ends_with(&agent) && e.is_write())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_mid_sync_writes_nothing_once_its_successor_writes() {
    let env = Env::audited("handover").await;
    env.write("app/settings.yaml", &config_map("settings", "version", "1"));
    env.write("app/gate.yaml", GATE);
    let v1 = env.commit_push("v1: a sync that waits for its PreSync hook");
    let grace = Duration::from_secs(3);
    let config = |identity: &str| {
        let mut rc = env.run_config(identity);
        rc.shutdown_grace = grace;
        rc.sharing = kedge_controller::runner::Sharing::Off;
        rc
    };
    let alpha = RunningController::start(env.cluster.kubeconfig(), config("alpha"));
    wait_for(STEP, POLL, || async {
        holder(&env).await.as_deref() == Some("alpha")
    })
    .await
    .expect("alpha leads");
    let beta = RunningController::start(env.cluster.kubeconfig(), config("beta"));
    env.create_app("demo", "app", automated(true, true)).await;
    // Alpha's sync waits for the hook it created.
    env.wait_event("demo", "SyncStarted", |_| true).await;
    wait_for(STEP, POLL, || async {
        env.object("batch", "v1", "Job", "gate").await.is_some()
    })
    .await
    .expect("alpha created the hook");

    // SIGTERM alpha, and do not wait for it: beta takes over meanwhile.
    let alpha_stopped = tokio::spawn(alpha.stop());
    wait_for(STEP, POLL, || async {
        env.events("demo").await.iter().any(|e| {
            e.reason.as_deref() == Some("SyncStarted")
                && e.reporting_instance.as_deref() == Some("beta")
        })
    })
    .await
    .expect("beta starts the sync again");
    // Let the hook complete: a replica still waiting for it would go on (apply, status). Beta deletes and creates
    // the hook again as its sync starts, so each suspended Job seen is released until the sync is done.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(env.client.clone(), env.ns());
    let apps = env.apps();
    wait_for(STEP, POLL, || async {
        if let Ok(Some(job)) = jobs.get_opt("gate").await
            && job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
        {
            let _ = jobs
                .patch(
                    "gate",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"suspend": false}})),
                )
                .await;
        }
        apps.get_opt("demo")
            .await
            .ok()
            .flatten()
            .is_some_and(|a| synced_at(&a, &v1))
    })
    .await
    .expect("beta syncs once the hook may complete");
    alpha_stopped.await.expect("alpha stopped");
    assert_eq!(holder(&env).await.as_deref(), Some("beta"));

    let events = env.cluster.audit_events().expect("audit log");
    let by_alpha = writes_by(&events, env.ns(), "alpha");
    let by_beta = writes_by(&events, env.ns(), "beta");
    assert!(
        by_alpha
            .iter()
            .any(|e| e.resource == "jobs" && e.verb != "delete"),
        "alpha's hook is not in the audit log: {by_alpha:#?}"
    );
    let first_of_beta = by_beta
        .iter()
        .map(|e| e.received.as_str())
        .min()
        .expect("beta wrote");
    let late: Vec<String> = by_alpha
        .iter()
        .filter(|e| e.completed.as_str() >= first_of_beta)
        .map(|e| format!("{} {} at {}", e.verb, e.object(), e.completed))
        .collect();
    assert!(
        late.is_empty(),
        "alpha wrote after beta's first write (received {first_of_beta}):\n{}",
        late.join("\n")
    );
    eprintln!(
        "alpha: {} writes, the last finished {}; beta's first received {first_of_beta}",
        by_alpha.len(),
        by_alpha
            .iter()
            .map(|e| e.completed.as_str())
            .max()
            .unwrap_or("-")
    );
    beta.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_writes_are_refused_while_another_replica_holds_the_lease() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kedge_controller::leader::{self, LeaseConfig};
    use kube::api::PostParams;

    let env = Env::new("gate").await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), env.ns());
    // Another replica holds the lease and keeps it fresh (a long lease: it does not expire during the test).
    let held = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("gated".into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(3600),
            renew_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                jiff::Timestamp::now(),
            )),
            ..Default::default()
        }),
    };
    leases
        .create(&PostParams::default(), &held)
        .await
        .expect("create the other replica's lease");
    let kc = kube::config::Kubeconfig::read_from(env.cluster.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let stop = tokio_util::sync::CancellationToken::new();
    let mut lease = LeaseConfig::new(env.ns(), "gated", "me");
    lease.retry_period = Duration::from_millis(200);
    lease.renew_deadline = Duration::from_secs(2);
    lease.lease_duration = Duration::from_secs(3);
    lease.request_timeout = Duration::from_secs(1);
    let (guard, election) = leader::spawn(env.client.clone(), lease, stop.clone());
    let metrics = kedge_controller::metrics::Metrics::new();
    let writes =
        kedge_controller::client::leader_client(config, &metrics, guard.clone()).expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(writes, env.ns());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "gated"}})).expect("cm");
    // A few election rounds: still a follower.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!guard.is_leading());
    let refused = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("a follower's write went through");
    assert!(
        refused
            .to_string()
            .contains("does not hold the leader lease"),
        "{refused}"
    );
    // Reads and dry runs change nothing: they pass.
    assert!(cms.get_opt("gated").await.expect("read").is_none());
    cms.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &cm,
    )
    .await
    .expect("a dry run");
    assert!(env.config_map_data("gated").await.is_none());

    // The other replica releases the lease: this one takes it, and its writes go through.
    leases
        .patch(
            "gated",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": null, "renewTime": null}})),
        )
        .await
        .expect("release");
    wait_for(STEP, POLL, || async { guard.is_leading() })
        .await
        .expect("this replica leads");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("the leader's write");
    stop.cancel();
    election.await.expect("election ends");
    assert!(
        !guard.is_leading(),
        "still leading after the election stopped"
    );
    assert_eq!(
        leases
            .get("gated")
            .await
            .expect("lease")
            .spec
            .and_then(|s| s.holder_identity),
        None,
        "the lease was not released"
    );
}
