//! Promotion through the API and UI: a person approves prod's pending candidate with `POST .../promote`, the
//! controller (in-process) records them as the approver and prod deploys the commit; callers without `sync` are
//! refused, so are requests the stage cannot take; `GET .../promotions` shows the chain as each caller may see it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_api::PromotionStatus;
use serde_json::{Value, json};

fn promotion_of(app: &kedge_api::Application) -> PromotionStatus {
    app.status
        .as_ref()
        .and_then(|s| s.promotion.as_deref().cloned())
        .unwrap_or_default()
}

fn shop_project() -> Value {
    json!({
        "sourceRepos": ["*"],
        "destinations": [{ "server": "*", "namespace": "*" }],
        "roles": [
            { "name": "deployer", "groups": ["team-a"], "policies": [
                "p, proj:shop:deployer, applications, get, shop/*, allow",
                "p, proj:shop:deployer, applications, sync, shop/*, allow",
            ] },
            { "name": "viewer", "groups": ["viewers"], "policies": [
                "p, proj:shop:viewer, applications, get, shop/*, allow",
            ] },
        ],
    })
}

/// A POST with a bearer token and a JSON body; returns the status and the JSON answer.
async fn post(c: &reqwest::Client, url: &str, token: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn names(chain: &Value) -> Vec<String> {
    chain["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn stage<'a>(chain: &'a Value, name: &str) -> &'a Value {
    chain["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("stage {name} in {chain}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_a_pending_candidate_through_the_api() {
    let env = Env::new("srv-promo").await;
    for stage in ["dev", "prod", "audit", "edge", "held"] {
        env.write(
            &format!("envs/{stage}/cm.yaml"),
            &config_map(&format!("{stage}-settings"), "version", "1"),
        );
    }
    let v1 = env.commit_push("v1");
    apply_project(&env, "shop", shop_project()).await;
    let (running, password) = env.start_ready(Duration::from_secs(1)).await;
    let base = running.base.clone();
    let ns = env.ns().to_owned();
    let shop = |promotion: Value| json!({ "project": "shop", "promotion": promotion });
    env.create_app_with(
        "dev",
        "envs/dev",
        automated(true, true),
        json!({ "project": "shop" }),
        json!({}),
    )
    .await;
    env.create_app_with(
        "prod",
        "envs/prod",
        automated(true, true),
        shop(json!({ "from": { "name": "dev" }, "approval": "Manual" })),
        json!({}),
    )
    .await;
    // Beyond prod, a stage of the default project (which the team's roles do not see), and one of the team's after it.
    env.create_app_with(
        "audit",
        "envs/audit",
        automated(true, true),
        json!({ "promotion": { "from": { "name": "prod" } } }),
        json!({}),
    )
    .await;
    env.create_app_with(
        "edge",
        "envs/edge",
        automated(true, true),
        shop(json!({ "from": { "name": "audit" } })),
        json!({}),
    )
    .await;
    // A stage whose soak the controller cannot read: it takes no promotion request, so one written stays.
    env.create_app_with(
        "held",
        "envs/held",
        automated(true, true),
        shop(json!({ "from": { "name": "dev" }, "soak": "a while", "approval": "Manual" })),
        json!({}),
    )
    .await;
    env.put_secret(
        kedge_server::USERS_SECRET,
        &[
            ("alice", "none:alice-pass"),
            ("groups.alice", "team-a"),
            ("victor", "none:victor-pass"),
            ("groups.victor", "viewers"),
            ("bob", "none:bob-pass"),
        ],
    )
    .await;
    let c = http();
    let api = |rest: &str| format!("{base}/api/v1/applications/{ns}/{rest}");
    let (admin, _) = login(&base, "admin", &password).await;
    let (alice, alice_csrf) = login(&base, "alice", "alice-pass").await;
    let (victor, _) = login(&base, "victor", "victor-pass").await;
    let (bob, _) = login(&base, "bob", "bob-pass").await;

    // dev deploys v1; prod, Manual, holds it as its pending candidate.
    env.wait_synced("dev", &v1).await;
    let prod = env
        .wait_app("prod", "v1 pending", |a| {
            promotion_of(a).pending.as_deref() == Some(v1.as_str())
        })
        .await;
    assert_eq!(promotion_of(&prod).revision, None, "nothing promoted yet");
    // The server reads the controller's cache, which follows within moments.
    let chain = kedge_testkit::wait_for(STEP, POLL, || async {
        let (status, chain) = get(&c, &api("prod/promotions"), &alice).await;
        (status == 200 && stage(&chain, "prod")["pending"] == v1.as_str()).then_some(chain)
    })
    .await
    .expect("prod's pending candidate in the chain");

    // The chain as alice sees it: dev -> prod; the stage after prod is not hers to see, so it is left out.
    assert_eq!(names(&chain), ["dev", "prod"], "{chain}");
    assert!(!chain.to_string().contains("audit"), "{chain}");
    let dev = stage(&chain, "dev");
    assert_eq!(
        (dev["column"].as_u64(), dev["revision"].as_str()),
        (Some(0), Some(v1.as_str()))
    );
    assert!(dev.get("approval").is_none(), "a first stage: {dev}");
    let p = stage(&chain, "prod");
    assert_eq!(p["column"], 1);
    assert_eq!(p["current"], true);
    assert_eq!(p["upstream"], format!("{ns}/dev"));
    assert_eq!(p["approval"], "Manual");
    assert_eq!(p["mayPromote"], true);
    assert!(
        p["waiting"]
            .as_str()
            .unwrap()
            .contains("waits for approval"),
        "{p}"
    );
    // The admin sees the whole chain, two stages on.
    let (_, full) = get(&c, &api("prod/promotions"), &admin).await;
    assert_eq!(names(&full), ["dev", "prod", "audit", "edge"], "{full}");
    assert_eq!(stage(&full, "edge")["column"], 3);
    // From edge, alice sees that its upstream is hidden, and nothing of it beyond its name.
    let (status, from_edge) = get(&c, &api("edge/promotions"), &alice).await;
    assert_eq!(status, 200, "{from_edge}");
    assert_eq!(names(&from_edge), ["audit", "edge"], "{from_edge}");
    let audit = stage(&from_edge, "audit");
    assert_eq!(audit["hidden"], true);
    for field in [
        "sync",
        "health",
        "revision",
        "pending",
        "history",
        "mayPromote",
    ] {
        assert!(
            audit.get(field).is_none(),
            "{field} of a hidden stage: {audit}"
        );
    }
    // From dev, both stages promoted from it.
    let (_, from_dev) = get(&c, &api("dev/promotions"), &alice).await;
    assert_eq!(names(&from_dev), ["dev", "held", "prod"], "{from_dev}");

    // Who may not: a viewer sees the chain but may not promote; someone outside the project sees nothing.
    let (_, seen) = get(&c, &api("prod/promotions"), &victor).await;
    assert_eq!(stage(&seen, "prod")["mayPromote"], false, "{seen}");
    let (status, body) = post(&c, &api("prod/promote"), &victor, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["message"],
        format!("permission denied: applications, sync, {ns}/prod, sub: victor")
    );
    assert_eq!(post(&c, &api("prod/promote"), &bob, json!({})).await.0, 403);
    assert_eq!(get(&c, &api("prod/promotions"), &bob).await.0, 403);
    assert_eq!(
        post(&c, &api("nope/promote"), &alice, json!({})).await.0,
        403
    );
    assert_eq!(
        post(&c, &api("nope/promote"), &admin, json!({})).await.0,
        404
    );
    // A session cookie needs the CSRF token.
    let r = c
        .post(api("prod/promote"))
        .header("cookie", format!("kedge_session={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));

    // The UI shows the pipeline with a Promote button to alice, without one to victor.
    let page = page_text(
        &c,
        format!("{base}/applications/{ns}/prod"),
        &format!("kedge_session={alice}"),
    )
    .await;
    assert!(page.contains("id=\"app-promotion\""), "{page}");
    assert!(page.contains("data-action=\"promote\""), "{page}");
    assert!(
        page.contains(&format!("data-live=\"{ns}/dev {ns}/prod\"")),
        "{page}"
    );
    let page = page_text(
        &c,
        format!("{base}/applications/{ns}/prod"),
        &format!("kedge_session={victor}"),
    )
    .await;
    assert!(page.contains("id=\"app-promotion\""), "{page}");
    assert!(!page.contains("data-action=\"promote\""), "{page}");

    // Requests the stage cannot take, each refused with why.
    let refusals = [
        (
            "prod",
            json!({ "revision": "main" }),
            400,
            "is not a commit SHA",
        ),
        ("prod", json!({ "rev": v1 }), 400, "unknown field `rev`"),
        (
            "prod",
            json!({ "revision": v1, "candidate": v1 }),
            400,
            "not both",
        ),
        (
            "prod",
            json!({ "candidate": "0000000" }),
            409,
            &format!("is now {}, not 0000000", &v1[..7]),
        ),
        ("dev", json!({}), 400, "has no spec.promotion"),
    ];
    for (app, body, want, needle) in refusals {
        let (status, answer) =
            post(&c, &api(&format!("{app}/promote")), &alice, body.clone()).await;
        assert_eq!(status, want, "{app} {body}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(needle), "{app} {body}: {message}");
    }
    // A request not taken yet: a second one is refused until the controller has taken it.
    let (status, answer) = post(&c, &api("held/promote"), &alice, json!({ "revision": v1 })).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["candidate"], false);
    let (status, answer) = post(&c, &api("held/promote"), &admin, json!({})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("was requested by alice at"),
        "{answer}"
    );

    // Alice approves: 202 with what was asked; the controller records her, and prod deploys v1.
    let (status, answer) = post(
        &c,
        &api("prod/promote"),
        &alice,
        json!({ "candidate": &v1[..10] }),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["application"], format!("{ns}/prod"));
    assert_eq!(answer["revision"], v1.as_str());
    assert_eq!(answer["candidate"], true);
    assert_eq!(answer["request"]["by"], "alice");
    assert!(answer["request"].get("revision").is_none(), "{answer}");
    let prod = env.wait_synced("prod", &v1).await;
    let promotion = promotion_of(&prod);
    let record = promotion.history.last().expect("a promotion recorded");
    assert_eq!(
        (
            record.revision.as_str(),
            record.from.as_str(),
            record.approved_by.as_str()
        ),
        (v1.as_str(), format!("{ns}/dev").as_str(), "alice")
    );
    assert_eq!(promotion.revision.as_deref(), Some(v1.as_str()));
    assert_eq!(promotion.pending, None);
    assert!(
        !prod
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(kedge_api::PROMOTE_ANNOTATION),
        "the request was taken"
    );
    assert_eq!(
        env.config_map_data("prod-settings").await.unwrap()["version"],
        "1"
    );
    env.wait_event("prod", "PromotionRequested", |m| {
        m == format!(
            "alice approved the promotion of candidate {} from {ns}/dev",
            &v1[..7]
        )
    })
    .await;
    env.wait_event("prod", "Promoted", |m| m.contains("approved by alice"))
        .await;

    // Nothing is pending any more, and v1 is promoted already.
    let chain = kedge_testkit::wait_for(STEP, POLL, || async {
        let (_, chain) = get(&c, &api("prod/promotions"), &alice).await;
        (stage(&chain, "prod")["revision"] == v1.as_str()).then_some(chain)
    })
    .await
    .expect("prod's promotion in the chain");
    let p = stage(&chain, "prod");
    assert!(p.get("pending").is_none(), "{p}");
    assert_eq!(p["history"][0]["approvedBy"], "alice", "{p}");
    let (status, answer) = post(&c, &api("prod/promote"), &alice, json!({})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("has no candidate waiting for approval"),
        "{answer}"
    );
    let (status, answer) = post(&c, &api("prod/promote"), &alice, json!({ "revision": v1 })).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains(&format!(
            "revision {} is promoted to {ns}/prod already",
            &v1[..7]
        )),
        "{answer}"
    );

    // The UI's form (CSRF field, as the Promote button posts it) gets the same refusal, shown inline.
    let r = c
        .post(format!("{base}/applications/{ns}/prod/actions/promote"))
        .header("cookie", format!("kedge_session={alice}"))
        .header("hx-request", "true")
        .form(&[("_csrf", alice_csrf.as_str()), ("candidate", v1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fragment = r.text().await.unwrap();
    assert!(
        fragment.contains("role=\"alert\"")
            && fragment.contains("has no candidate waiting for approval"),
        "{fragment}"
    );
    running.stop().await;
}
