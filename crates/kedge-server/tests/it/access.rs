//! Project roles in the API and UI: what accounts without rights of their own, their groups' roles and project tokens
//! may see and do, and the audit trail of what they did, against the controller running in-process on the test
//! cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_testkit::wait_for;
use serde_json::{Value, json};

fn team_project(tokens: Value) -> Value {
    json!({
        "sourceRepos": ["*"],
        "destinations": [{ "server": "*", "namespace": "*" }],
        "roles": [
            { "name": "deployer", "groups": ["team-a"], "policies": [
                "p, proj:team:deployer, applications, get, team/*, allow",
                "p, proj:team:deployer, applications, sync, team/*, allow",
            ] },
            { "name": "ci", "policies": ["p, proj:team:ci, applications, *, team/web, allow"],
              "jwtTokens": tokens },
            // A role that cannot be read grants nothing (and says so in the project's status).
            { "name": "broken", "groups": ["team-a"], "policies": [
                "p, proj:team:broken, applications, delete, team/*, allow",
            ] },
        ],
    })
}

async fn names(c: &reqwest::Client, base: &str, token: &str) -> Vec<String> {
    let r = c
        .get(format!("{base}/api/v1/applications"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn status(c: &reqwest::Client, method: &str, url: String, token: &str) -> u16 {
    let req = match method {
        "GET" => c.get(url),
        _ => c.post(url),
    };
    req.bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_roles_bound_what_each_caller_sees_and_does() {
    let env = Env::new("srv-access").await;
    env.write("web/cm.yaml", &config_map("web", "k", "v"));
    env.write("other/cm.yaml", &config_map("other", "k", "v"));
    env.commit_push("first commit");
    apply_project(&env, "team", team_project(json!([]))).await;
    let (running, password) = env.start_ready(Duration::from_secs(1)).await;
    let base = running.base.clone();
    let ns = env.ns().to_owned();
    env.create_app_with(
        "web",
        "web",
        json!({}),
        json!({ "project": "team" }),
        json!({}),
    )
    .await;
    env.create_app("other", "other", json!({})).await;
    env.put_secret(
        kedge_server::USERS_SECRET,
        &[
            ("alice", "none:alice-pass"),
            ("groups.alice", "team-a, team-b"),
            ("bob", "none:bob-pass"),
        ],
    )
    .await;
    let c = http();
    let api = |rest: &str| format!("{base}/api/v1/applications{rest}");
    let (admin, _) = login(&base, "admin", &password).await;
    let (alice, alice_csrf) = login(&base, "alice", "alice-pass").await;
    let (bob, _) = login(&base, "bob", "bob-pass").await;
    wait_for(STEP, POLL, || async {
        (names(&c, &base, &admin).await.len() == 2).then_some(())
    })
    .await
    .expect("both applications listed for the admin");

    // The role that cannot be read is named in the project's status.
    let projects: kube::Api<kedge_api::Project> = kube::Api::namespaced(env.client.clone(), &ns);
    let ready = wait_for(STEP, POLL, || async {
        let p = projects.get("team").await.ok()?;
        p.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.reason == "InvalidRole")
    })
    .await
    .expect("the broken role reported");
    assert!(
        ready.message.contains("spec.roles[broken].policies[0]")
            && ready.message.contains("delete"),
        "{}",
        ready.message
    );

    // Alice (group team-a) sees and syncs the team's application, nothing else; Bob sees nothing.
    let who: Value = c
        .get(format!("{base}/api/v1/session"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["role"], "none");
    assert_eq!(who["groups"], json!(["team-a", "team-b"]));
    assert_eq!(names(&c, &base, &alice).await, ["web"]);
    assert!(names(&c, &base, &bob).await.is_empty());
    for rest in ["", "/diff", "/resources", "/events", "/history"] {
        assert_eq!(
            status(&c, "GET", api(&format!("/{ns}/web{rest}")), &alice).await,
            200,
            "web{rest}"
        );
        assert_eq!(
            status(&c, "GET", api(&format!("/{ns}/other{rest}")), &alice).await,
            403,
            "other{rest}"
        );
        assert_eq!(
            status(&c, "GET", api(&format!("/{ns}/web{rest}")), &bob).await,
            403,
            "bob web{rest}"
        );
    }
    // A name that does not exist is as forbidden as one that does (no probing); the admin gets 404.
    assert_eq!(
        status(&c, "GET", api(&format!("/{ns}/nope")), &alice).await,
        403
    );
    assert_eq!(
        status(&c, "GET", api(&format!("/{ns}/nope")), &admin).await,
        404
    );
    assert_eq!(
        status(&c, "GET", format!("{base}/api/v1/clusters"), &alice).await,
        403
    );
    assert_eq!(
        status(&c, "POST", api(&format!("/{ns}/other/sync")), &alice).await,
        403
    );
    // No `update` in the role: no suspend.
    let r = c
        .post(api(&format!("/{ns}/web/suspend")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        format!("permission denied: applications, update, {ns}/web, sub: alice")
    );
    assert_eq!(
        status(&c, "POST", api(&format!("/{ns}/web/sync")), &alice).await,
        202
    );

    // The sync is recorded with the user: an Event, and the history entry.
    env.wait_event("web", "SyncRequested", |m| m == "alice requested a sync")
        .await;
    env.wait_app("web", "history names alice", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.history.last())
            .is_some_and(|h| h.initiated_by == "alice")
    })
    .await;

    // The UI: the list shows web only; its page offers sync but not suspend.
    let cookie = format!("kedge_session={alice}");
    let page = page_text(&c, format!("{base}/applications"), &cookie).await;
    assert!(page.contains(&format!("/applications/{ns}/web")), "{page}");
    assert!(
        !page.contains(&format!("/applications/{ns}/other")),
        "{page}"
    );
    assert!(!page.contains("href=\"/clusters\""), "{page}");
    let page = page_text(&c, format!("{base}/applications/{ns}/web"), &cookie).await;
    assert!(page.contains("data-action=\"sync\""), "{page}");
    assert!(!page.contains("data-action=\"suspend-toggle\""), "{page}");
    let r = c
        .get(format!("{base}/applications/{ns}/other"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!(
            "{base}/applications/{ns}/web/actions/suspend-toggle"
        ))
        .header("cookie", &cookie)
        .form(&[("_csrf", alice_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Live updates: Alice's stream reports web's changes, never other's.
    let mut sse = Live::open(&c, &base, &cookie).await;
    for app in ["other", "web"] {
        assert_eq!(
            status(&c, "POST", api(&format!("/{ns}/{app}/refresh")), &admin).await,
            202
        );
    }
    sse.until(&format!("data: {ns}/web")).await;
    assert!(!sse.seen.contains(&format!("{ns}/other")), "{}", sse.seen);
    drop(sse);

    // A project token: what role ci allows (everything on web), as long as its id is listed in the role.
    let key = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), &ns)
        .get(kedge_server::SESSION_KEY_SECRET)
        .await
        .unwrap()
        .data
        .and_then(|mut d| d.remove("key"))
        .expect("the session key")
        .0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |id: &str, e: Option<u64>| kedge_server::auth::ProjectTokenClaims {
        p: "team".into(),
        r: "ci".into(),
        i: id.into(),
        iat: now,
        e,
    };
    let token = kedge_server::auth::sign_project_token(&key, &claims("t1", Some(now + 3600)));
    let expired = kedge_server::auth::sign_project_token(&key, &claims("t2", Some(now - 1)));
    apply_project(
        &env,
        "team",
        team_project(
            json!([{ "iat": now, "exp": now + 3600, "id": "t1" }, { "iat": now, "id": "t2" }]),
        ),
    )
    .await;
    wait_for(STEP, POLL, || async {
        (status(&c, "GET", api(&format!("/{ns}/web")), &token).await == 200).then_some(())
    })
    .await
    .expect("the token accepted once listed");
    assert_eq!(names(&c, &base, &token).await, ["web"]);
    assert_eq!(
        status(&c, "GET", api(&format!("/{ns}/other")), &token).await,
        403
    );
    assert_eq!(
        status(&c, "GET", api(&format!("/{ns}/web")), &expired).await,
        401
    );
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        status(&c, "GET", api(&format!("/{ns}/web")), &forged).await,
        401
    );
    assert_eq!(
        status(&c, "POST", api(&format!("/{ns}/web/suspend")), &token).await,
        200
    );
    env.wait_event("web", "Suspended", |m| {
        m == "proj:team:ci suspended automated sync and self-heal"
    })
    .await;
    // Revoked: the id is no longer listed.
    apply_project(&env, "team", team_project(json!([]))).await;
    wait_for(STEP, POLL, || async {
        (status(&c, "GET", api(&format!("/{ns}/web")), &token).await == 401).then_some(())
    })
    .await
    .expect("the token refused once revoked");
    running.stop().await;
}
