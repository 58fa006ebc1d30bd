//! `spec.promotion`: one commit moves dev -> staging -> prod through each stage's own path of one repository;
//! staging takes it automatically after a soak, prod when a person approves; a Degraded staging blocks prod.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use common::*;
use kedge_api::{Application, PromotionStatus};
use serde_json::json;

fn promotion_of(app: &Application) -> PromotionStatus {
    app.status
        .as_ref()
        .and_then(|s| s.promotion.as_deref().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_moves_through_three_stages_with_a_soak_an_approval_and_a_block() {
    let env = Env::new("promo").await;
    for stage in ["dev", "staging", "prod"] {
        env.write(
            &format!("envs/{stage}/cm.yaml"),
            &config_map(&format!("{stage}-settings"), "version", "1"),
        );
        env.write(
            &format!("envs/{stage}/web.yaml"),
            &deployment(&format!("{stage}-web"), 1, "nginx"),
        );
    }
    let v1 = env.commit_push("v1");
    let _controller = env.start_controller("c1");
    env.create_app("dev", "envs/dev", automated(true, true))
        .await;
    env.create_app_with(
        "staging",
        "envs/staging",
        automated(true, true),
        json!({ "promotion": { "from": { "name": "dev" }, "soak": "3s" } }),
        json!({}),
    )
    .await;
    env.create_app_with(
        "prod",
        "envs/prod",
        automated(true, true),
        json!({ "promotion": { "from": { "name": "staging" }, "approval": "Manual" } }),
        json!({}),
    )
    .await;

    // dev deploys v1; staging takes it once dev has run it Synced and Healthy for the soak.
    let dev = env.wait_synced("dev", &v1).await;
    let staging = env.wait_synced("staging", &v1).await;
    let dev_ready = condition(&dev, "Ready")
        .unwrap()
        .last_transition_time
        .clone()
        .unwrap();
    let dev_ready: jiff::Timestamp = dev_ready.parse().unwrap();
    let promoted = promotion_of(&staging);
    let record = promoted.history.last().expect("a promotion recorded");
    assert_eq!(record.revision, v1);
    assert_eq!(record.from, format!("{}/dev", env.ns()));
    assert_eq!(record.approved_by, "auto");
    let promoted_at: jiff::Timestamp = record.at.parse().unwrap();
    assert!(
        promoted_at.duration_since(dev_ready) >= jiff::SignedDuration::from_secs(2),
        "promoted at {promoted_at}, dev ready since {dev_ready}: the soak was kept"
    );
    env.wait_event("staging", "Promoted", |m| m.contains("approved by auto"))
        .await;
    assert_eq!(
        env.config_map_data("staging-settings").await.unwrap()["version"],
        "1",
        "staging deployed its own path"
    );

    // prod waits for a person: the candidate is pending, nothing is deployed.
    let prod = env
        .wait_app("prod", "a pending candidate", |a| {
            promotion_of(a).pending.as_deref() == Some(v1.as_str())
        })
        .await;
    assert!(promotion_of(&prod).waiting.contains("waits for approval"));
    assert!(
        condition(&prod, "WaitingForPromotion").is_some_and(|c| c.status == "True"),
        "{:?}",
        prod.status
    );
    assert!(env.config_map_data("prod-settings").await.is_none());

    // Approved (what `kedge app promote prod` writes): prod deploys v1, the approver recorded.
    env.patch_app(
        "prod",
        json!({ "metadata": { "annotations": {
            kedge_api::PROMOTE_ANNOTATION: json!({ "by": "alice", "at": "2026-01-01T00:00:00Z" }).to_string()
        } } }),
    )
    .await;
    let prod = env.wait_synced("prod", &v1).await;
    let record = promotion_of(&prod)
        .history
        .last()
        .cloned()
        .expect("recorded");
    assert_eq!(
        (record.revision.as_str(), record.approved_by.as_str()),
        (v1.as_str(), "alice")
    );
    assert!(condition(&prod, "WaitingForPromotion").is_none());
    assert_eq!(
        env.config_map_data("prod-settings").await.unwrap()["version"],
        "1"
    );

    // v2 breaks staging: it flows to staging, which turns Degraded, and prod is offered nothing.
    for stage in ["dev", "staging", "prod"] {
        env.write(
            &format!("envs/{stage}/cm.yaml"),
            &config_map(&format!("{stage}-settings"), "version", "2"),
        );
    }
    env.write(
        "envs/staging/web.yaml",
        &deployment("staging-web", 1, "nginx-fail"),
    );
    let v2 = env.commit_push("v2");
    env.wait_synced("dev", &v2).await;
    env.wait_app("staging", "staging Degraded at v2", |a| {
        a.status.as_ref().is_some_and(|s| {
            s.sync.revision.as_deref() == Some(v2.as_str())
                && s.health.status == kedge_api::HealthCode::Degraded
        })
    })
    .await;
    let prod = env
        .wait_app("prod", "blocked by staging", |a| {
            promotion_of(a).waiting.contains("Degraded")
        })
        .await;
    let promotion = promotion_of(&prod);
    assert_eq!(promotion.pending, None, "{promotion:?}");
    assert_eq!(promotion.revision.as_deref(), Some(v1.as_str()));
    assert!(synced_at(&prod, &v1), "prod still runs v1");
    assert_eq!(
        env.config_map_data("prod-settings").await.unwrap()["version"],
        "1"
    );
}
