//! The HTTP API, UI pages and login against the controller running in-process on the test cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use common::*;
use kedge_testkit::wait_for;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET_VALUE: &str = "hunter2-never-shown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_endpoints_auth_roles_and_pages() {
    let env = Env::new("srv-api").await;
    env.write(
        "web/settings.yaml",
        &config_map("settings", "color", "blue"),
    );
    env.write("web/creds.yaml", &secret("creds", "password", SECRET_VALUE));
    env.write("web/web.yaml", &deployment("web", 1));
    env.write("other/a/cm.yaml", &config_map("other-a", "k", "v"));
    env.write("other/b/cm.yaml", &config_map("other-b", "k", "v"));
    let first = env.commit_push("first commit");
    let (running, password) = env.start_ready(Duration::from_secs(1)).await;
    let base = running.base.clone();
    let ns = env.ns().to_owned();
    env.create_labeled_app("web", "web", json!({}), json!({ "team": "web" }))
        .await;
    env.create_labeled_app(
        "other-a",
        "other/a",
        json!({ "automated": {} }),
        json!({ "team": "data" }),
    )
    .await;
    env.create_labeled_app(
        "other-b",
        "other/b",
        json!({ "automated": {} }),
        json!({ "team": "data" }),
    )
    .await;
    let c = http();

    // Unauthenticated: API 401 JSON, UI redirect to the login page, health and OpenAPI open.
    let r = c
        .get(format!("{base}/api/v1/applications"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], 401);
    assert!(body["message"].as_str().unwrap().contains("authentication"));
    let r = c
        .get(format!("{base}/applications?q=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=/applications%3Fq%3Dx");
    assert_eq!(
        c.get(format!("{base}/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let doc: Value = c
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let r = c
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (token, _) = login(&base, "admin", &password).await;
    let get = |url: String| {
        let c = c.clone();
        let token = token.clone();
        async move { c.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let api = |p: &str| format!("{base}/api/v1/applications{p}");

    // Manual sync through the API.
    let r = c
        .post(api(&format!("/{ns}/web/sync")))
        .bearer_auth(&token)
        .json(&json!({"prune": true, "confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(
        accepted["operation"]["sync"]["confirm"], true,
        "a confirmed prune reaches the operation: {accepted}"
    );
    let app = env
        .wait_app("web", "synced at first", |a| {
            synced_at(a, &first) && a.status.as_ref().is_some_and(|s| !s.history.is_empty())
        })
        .await;
    assert_eq!(app.status.unwrap().history[0].initiated_by, "admin");

    // List, filters, pagination.
    // The API serves the controller's cache, which follows the cluster within moments.
    let all_synced = wait_for(STEP, POLL, || async {
        let l: Value = get(api("?sync=Synced")).await.json().await.ok()?;
        (l["total"] == 3).then_some(())
    })
    .await;
    assert!(
        all_synced.is_ok(),
        "three applications Synced in the API list"
    );
    let list: Value = get(api("")).await.json().await.unwrap();
    assert_eq!(list["total"], 3, "{list}");
    assert_eq!(list["items"][0]["name"], "other-a");
    let list: Value = get(api("?selector=team%3Dweb")).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["name"], "web");
    let list: Value = get(api("?search=OTHER&sync=Synced"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 2);
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = match &next {
            Some(t) => format!("?limit=2&continue={t}"),
            None => "?limit=2".into(),
        };
        let page: Value = get(api(&q)).await.json().await.unwrap();
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned()),
        );
        match page["continue"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["other-a", "other-b", "web"]);
    let page: Value = get(api("?page=2&pageSize=2")).await.json().await.unwrap();
    assert_eq!(page["items"][0]["name"], "web");
    assert_eq!(get(api("?sync=bogus")).await.status(), 400);

    // Get, resources tree, events, history, diff, manifest; no secret value anywhere.
    let app: Value = get(api(&format!("/{ns}/web"))).await.json().await.unwrap();
    assert_eq!(app["spec"]["source"]["path"], "web");
    let tree: Value = get(api(&format!("/{ns}/web/resources")))
        .await
        .json()
        .await
        .unwrap();
    let dep = tree["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "Deployment")
        .expect("deployment node")
        .clone();
    let tree_ok = wait_for(STEP, POLL, || async {
        let tree: Value = get(api(&format!("/{ns}/web/resources")))
            .await
            .json()
            .await
            .ok()?;
        let d = tree["items"]
            .as_array()?
            .iter()
            .find(|n| n["kind"] == "Deployment")?
            .clone();
        (d["children"][0]["kind"] == "ReplicaSet").then_some(d)
    })
    .await;
    assert!(tree_ok.is_ok(), "Deployment -> ReplicaSet in {dep}");
    // Pods appear under their ReplicaSet when the cluster runs them (the test cluster simulates pods).
    let pod_api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(env.client.clone(), &ns);
    let pod_names: Vec<String> = pod_api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    if let Some(pod) = pod_names.first() {
        let shown = wait_for(STEP, POLL, || async {
            let tree: Value = get(api(&format!("/{ns}/web/resources")))
                .await
                .json()
                .await
                .ok()?;
            let text = tree.to_string();
            text.contains(&format!("\"name\":\"{pod}\"")).then_some(())
        })
        .await;
        assert!(shown.is_ok(), "pod {pod} under its ReplicaSet");
    } else {
        eprintln!("note: this cluster runs no pods; the tree shows Deployment -> ReplicaSet only");
    }
    // The controller publishes its events in the background: they may follow the status.
    let succeeded = wait_for(STEP, POLL, || async {
        let events: Value = get(api(&format!("/{ns}/web/events")))
            .await
            .json()
            .await
            .ok()?;
        events["items"]
            .as_array()?
            .iter()
            .any(|e| e["reason"] == "SyncSucceeded")
            .then_some(())
    })
    .await;
    assert!(
        succeeded.is_ok(),
        "no SyncSucceeded event in {}",
        get(api(&format!("/{ns}/web/events")))
            .await
            .text()
            .await
            .unwrap_or_default()
    );
    let history: Value = get(api(&format!("/{ns}/web/history")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["items"][0]["revision"], first.as_str());
    assert_eq!(
        history["items"][0]["commit"]["subject"], "first commit",
        "{history}"
    );
    let diff: Value = get(api(&format!("/{ns}/web/diff")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(diff["inSync"], true, "{diff}");
    assert_eq!(diff["revision"], first.as_str());

    // Drift by hand: the diff shows it with attribution; secrets stay masked.
    env.cluster
        .kubectl_ok([
            "-n",
            &ns,
            "patch",
            "configmap",
            "settings",
            "--field-manager=kubectl-edit",
            "-p",
            r#"{"data":{"color":"red"}}"#,
        ])
        .await
        .unwrap();
    env.cluster
        .kubectl_ok([
            "-n",
            &ns,
            "patch",
            "secret",
            "creds",
            "--field-manager=kubectl-edit",
            "-p",
            r#"{"stringData":{"password":"changed-by-hand"}}"#,
        ])
        .await
        .unwrap();
    let diff: Value = get(api(&format!("/{ns}/web/diff")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(diff["inSync"], false);
    let cm = diff["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "settings")
        .unwrap();
    assert_eq!(cm["status"], "OutOfSync");
    assert!(
        cm["diff"].as_str().unwrap().contains("-  color: red"),
        "{cm}"
    );
    assert!(
        cm["drift"][0].as_str().unwrap().contains("kubectl-edit"),
        "{cm}"
    );
    let text = diff.to_string();
    assert!(
        !text.contains(SECRET_VALUE) && !text.contains("changed-by-hand"),
        "secret leaked in diff"
    );
    let b64 = "aHVudGVyMi1uZXZlci1zaG93bg"; // prefix of base64(SECRET_VALUE)
    assert!(!text.contains(b64));
    let m: Value = get(api(&format!(
        "/{ns}/web/manifest?version=v1&kind=Secret&namespace={ns}&name=creds"
    )))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(m["exists"], true);
    let yaml = m["manifest"].as_str().unwrap();
    assert!(
        yaml.contains("********")
            && !yaml.contains(SECRET_VALUE)
            && !yaml.contains(b64)
            && !yaml.contains("Y2hhbmdlZC"),
        "{yaml}"
    );
    let m = get(api(&format!(
        "/{ns}/web/manifest?version=v1&kind=Secret&namespace=kube-system&name=other"
    )))
    .await;
    assert_eq!(
        m.status(),
        404,
        "only the application's objects can be read"
    );
    for path in ["", "/web", "/web/resources", "/web/events"] {
        let p = if path.is_empty() {
            String::new()
        } else {
            format!("/{ns}{path}")
        };
        let t = get(api(&p)).await.text().await.unwrap();
        assert!(
            !t.contains(SECRET_VALUE) && !t.contains(b64),
            "secret leaked in {path}"
        );
    }

    // A second commit, sync, then roll back to the first.
    env.write(
        "web/settings.yaml",
        &config_map("settings", "color", "green"),
    );
    let second = env.commit_push("second commit");
    let r = c
        .post(api(&format!("/{ns}/web/sync")))
        .bearer_auth(&token)
        .json(&json!({"revision": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    env.wait_app("web", "synced at second", |a| synced_at(a, &second))
        .await;
    let first_id = env
        .app("web")
        .await
        .status
        .unwrap()
        .history
        .iter()
        .find(|h| h.revision == first)
        .unwrap()
        .id;
    let r = c
        .post(api(&format!("/{ns}/web/rollback")))
        .bearer_auth(&token)
        .json(&json!({"id": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(api(&format!("/{ns}/web/rollback")))
        .bearer_auth(&token)
        .json(&json!({"id": first_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    env.wait_app("web", "rolled back", |a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.history.last().is_some_and(|h| h.revision == first))
    })
    .await;
    let cm: k8s_openapi::api::core::v1::ConfigMap = kube::Api::namespaced(env.client.clone(), &ns)
        .get("settings")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["color"], "blue");

    // Refresh, suspend, resume.
    assert_eq!(
        c.post(api(&format!("/{ns}/web/refresh?hard=true")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        c.post(api(&format!("/{ns}/web/suspend")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(env.app("web").await.spec.suspend);
    assert_eq!(
        c.post(api(&format!("/{ns}/web/resume")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!env.app("web").await.spec.suspend);
    assert_eq!(get(api(&format!("/{ns}/missing"))).await.status(), 404);
    assert_eq!(get(format!("{base}/api/v1/nothing")).await.status(), 404);

    // Read-only account and token: reads work, writes are 403.
    env.put_secret(
        kedge_server::USERS_SECRET,
        &[
            ("viewer", "readonly:view-pass"),
            ("token.ci", "readonly:ci-token-123"),
        ],
    )
    .await;
    let (viewer, _) = login(&base, "viewer", "view-pass").await;
    for t in [viewer.as_str(), "ci-token-123"] {
        assert_eq!(
            c.get(api("")).bearer_auth(t).send().await.unwrap().status(),
            200
        );
        let r = c
            .post(api(&format!("/{ns}/web/sync")))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = c
            .post(api(&format!("/{ns}/web/refresh")))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    // The clear token was replaced by its digest in the Secret.
    let stored = env
        .secret_value(kedge_server::USERS_SECRET, "token.ci")
        .await
        .unwrap_or_default();
    assert!(
        stored.starts_with("readonly:sha256:") && !stored.contains("ci-token-123"),
        "the API token is stored as {stored:?}"
    );
    assert_eq!(
        c.get(api(""))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Cookie sessions: CSRF token and same origin needed for writes.
    let (session, csrf) = login(&base, "admin", &password).await;
    let cookie = format!("kedge_session={session}");
    let post = |path: String| c.post(path).header("cookie", &cookie);
    assert_eq!(
        post(api(&format!("/{ns}/web/refresh")))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(api(&format!("/{ns}/web/refresh")))
            .header("x-csrf-token", "wrong")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(api(&format!("/{ns}/web/refresh")))
            .header("x-csrf-token", &csrf)
            .header("origin", "http://evil.test")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(api(&format!("/{ns}/web/refresh")))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );

    // UI pages with the cookie.
    let page = c
        .get(format!("{base}/applications"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("other-a") && html.contains("badge s-Synced"),
        "list page"
    );
    for tab in ["resources", "diff", "events", "history"] {
        let html = c
            .get(format!("{base}/applications/{ns}/web?tab={tab}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("app-summary"), "{tab}");
        assert!(
            !html.contains(SECRET_VALUE) && !html.contains(b64),
            "secret leaked on {tab}"
        );
    }
    let html = c
        .get(format!(
            "{base}/applications/{ns}/web/object?version=v1&kind=Secret&namespace={ns}&name=creds"
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("********") && !html.contains(SECRET_VALUE) && !html.contains(b64));
    // A plain HTML form post (no JavaScript) with the CSRF field works and redirects back.
    let r = post(format!("{base}/applications/{ns}/web/actions/refresh"))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = post(format!("{base}/applications/{ns}/web/actions/refresh"))
        .form(&[("_csrf", "bad")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Live events: the stream says hello, reports a change, and ends at shutdown.
    let mut sse = Live::open(&c, &base, &cookie).await;
    assert_eq!(
        c.post(api(&format!("/{ns}/other-a/refresh")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    sse.until(&format!("data: {ns}/other-a")).await;
    // Log out: the token stops working.
    let r = c
        .delete(format!("{base}/api/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.get(api(""))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    running.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = sse.response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ends at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_end_with_a_password_change() {
    let env = Env::new("srv-sessions").await;
    let (running, password) = env.start_ready(Duration::from_secs(3600)).await;
    let (token, _) = login(&running.base, "admin", &password).await;
    let c = http();
    let status = |base: String, token: String| {
        let c = c.clone();
        async move {
            c.get(format!("{base}/api/v1/applications"))
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status())
                .ok()
        }
    };
    assert_eq!(
        status(running.base.clone(), token.clone()).await,
        Some(StatusCode::OK)
    );
    running.stop().await;

    // A new server process (or another replica) accepts the same token: the signing key lives in a Secret.
    let (running, _) = env.start_ready(Duration::from_secs(3600)).await;
    assert!(
        env.secret_value(kedge_server::SESSION_KEY_SECRET, "key")
            .await
            .is_some()
    );
    assert_eq!(
        status(running.base.clone(), token.clone()).await,
        Some(StatusCode::OK)
    );
    // A token signed with another key, or altered, is refused.
    let forged = format!("{}x", token.trim_end_matches(|c: char| c != '.'));
    assert_eq!(
        status(running.base.clone(), forged).await,
        Some(StatusCode::UNAUTHORIZED)
    );

    // A new admin password ends the sessions opened with the old one (accounts are re-read within seconds).
    env.put_secret(
        kedge_server::ADMIN_SECRET,
        &[("password", "a-new-password-for-the-test")],
    )
    .await;
    let ended = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let probe = status(running.base.clone(), token.clone());
        async move { (probe.await == Some(StatusCode::UNAUTHORIZED)).then_some(()) }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the old session still works after the password change"
    );
    let (fresh, _) = login(&running.base, "admin", "a-new-password-for-the-test").await;
    assert_eq!(
        status(running.base.clone(), fresh).await,
        Some(StatusCode::OK)
    );
    running.stop().await;
}

/// Status and `Retry-After` of a login attempt over the API.
async fn try_login(base: &str, user: &str, password: &str) -> (StatusCode, Option<u64>) {
    let r = http()
        .post(format!("{base}/api/v1/session"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .expect("login request");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (r.status(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_rate_limited_and_passwords_are_stored_as_hashes() {
    let env = Env::new("srv-login").await;
    let backoff = Duration::from_secs(2);
    let (running, password) = env
        .start_ready_with(Duration::from_secs(3600), |c| {
            c.login_limits.backoff = backoff;
            c.login_limits.max_backoff = Duration::from_secs(8);
        })
        .await;
    let base = running.base.clone();

    // The initial admin password stays readable for people; the accounts store holds only its argon2id hash.
    let stored = wait_for(STEP, POLL, || async {
        env.secret_value(kedge_server::USERS_SECRET, "admin").await
    })
    .await
    .expect("admin entry in the accounts Secret");
    assert!(stored.starts_with("admin:$argon2id$"), "{stored}");
    assert!(!stored.contains(&password));
    assert_eq!(
        env.secret_value(kedge_server::ADMIN_SECRET, "password")
            .await
            .as_deref(),
        Some(password.as_str())
    );
    let (token, _) = login(&base, "admin", &password).await;
    assert!(
        !token.contains(&password),
        "no password material in the token"
    );

    // Five quick failures, then the right password is refused too, with the wait in Retry-After.
    for i in 0..5 {
        assert_eq!(
            try_login(&base, "admin", &format!("wrong-{i}")).await.0,
            StatusCode::UNAUTHORIZED,
            "failure {i}"
        );
    }
    let refused_at = std::time::Instant::now();
    let (status, retry) = try_login(&base, "admin", &password).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry = retry.expect("Retry-After");
    assert!((1..=backoff.as_secs()).contains(&retry), "{retry}");
    // The login page says so too.
    let page = http()
        .post(format!("{base}/login"))
        .form(&[("username", "admin"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers().contains_key("retry-after"));
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("too many failed logins")
    );
    // Another account is not held up by this one's failures.
    env.put_secret(
        kedge_server::USERS_SECRET,
        &[("viewer", "readonly:view-pass")],
    )
    .await;
    let (viewer, _) = login(&base, "viewer", "view-pass").await;

    // After the wait, the right password works again.
    let recovered = wait_for(Duration::from_secs(20), POLL, || async {
        (try_login(&base, "admin", &password).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(recovered.is_ok(), "the account recovers after its wait");
    assert!(
        refused_at.elapsed() + Duration::from_millis(500) >= backoff,
        "recovered after {:?}, before the {backoff:?} wait",
        refused_at.elapsed()
    );

    // The clear-text entry written above (as older versions stored passwords) has been replaced by its hash.
    let viewer_entry = env
        .secret_value(kedge_server::USERS_SECRET, "viewer")
        .await
        .expect("viewer entry");
    assert!(
        viewer_entry.starts_with("readonly:$argon2id$") && !viewer_entry.contains("view-pass"),
        "{viewer_entry}"
    );
    let c = http();
    let whoami = |token: String| {
        let c = c.clone();
        let base = base.clone();
        async move {
            c.get(format!("{base}/api/v1/session"))
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status())
                .ok()
        }
    };
    assert_eq!(whoami(viewer.clone()).await, Some(StatusCode::OK));
    // A new password for the viewer (written in clear, hashed by the server) ends the viewer's session only.
    env.put_secret(
        kedge_server::USERS_SECRET,
        &[("viewer", "readonly:new-view-pass")],
    )
    .await;
    let ended = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let probe = whoami(viewer.clone());
        async move { (probe.await == Some(StatusCode::UNAUTHORIZED)).then_some(()) }
    })
    .await;
    assert!(ended.is_ok(), "the viewer's old session still works");
    assert_eq!(whoami(token.clone()).await, Some(StatusCode::OK));
    login(&base, "viewer", "new-view-pass").await;
    assert_eq!(
        try_login(&base, "viewer", "view-pass").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Metrics are served on their own listener, not on the UI port.
    assert_eq!(
        c.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let metrics = c
        .get(format!("{}/metrics", running.metrics_base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("kedge_"));
    // The probes stay on the UI port.
    assert_eq!(
        c.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_listed_with_their_state_and_applications() {
    let env = Env::new("srv-clusters").await;
    env.write("web/cm.yaml", &config_map("web", "k", "v"));
    env.commit_push("first commit");
    let marker = "cluster-secret-never-shown";
    register_cluster(&env, "far", "https://127.0.0.1:1", marker).await;
    let (running, password) = env
        .start_ready_configured(
            Duration::from_secs(1),
            |rc| rc.cluster_check_interval = Duration::from_millis(500),
            |_| {},
        )
        .await;
    let base = running.base.clone();
    let destinations = [
        ("local", json!({})),
        (
            "local-by-server",
            json!({ "destination": { "server": "https://kubernetes.default.svc" } }),
        ),
        ("remote", json!({ "destination": { "name": "far" } })),
        (
            "remote-by-server",
            json!({ "destination": { "server": "https://127.0.0.1:1/" } }),
        ),
    ];
    for (name, spec) in &destinations {
        env.create_app_with(name, "web", json!({}), spec.clone(), json!({}))
            .await;
    }
    assert_eq!(wait_not_connected(&env, "far").await, "Unreachable");
    env.put_secret(
        kedge_server::USERS_SECRET,
        &[("viewer", "readonly:view-pass")],
    )
    .await;
    let c = http();
    let url = format!("{base}/api/v1/clusters");

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A read-only account may read the clusters; the counts follow the controller's cache.
    let viewer = wait_for(STEP, POLL, || async {
        let r = c
            .post(format!("{base}/api/v1/session"))
            .json(&json!({ "username": "viewer", "password": "view-pass" }))
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["token"].as_str().map(str::to_owned)
    })
    .await
    .expect("the viewer logs in");
    let listed = wait_for(STEP, POLL, || async {
        let r = c.get(&url).bearer_auth(&viewer).send().await.ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        (v["items"][0]["applications"] == 2 && v["items"][1]["applications"] == 1).then_some(v)
    })
    .await;
    let Ok(listed) = listed else {
        let last = c
            .get(&url)
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        panic!("two applications in-cluster and one on far: {last}");
    };
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    let local = &items[0];
    assert_eq!(local["name"], "in-cluster");
    assert_eq!(local["inCluster"], true);
    assert_eq!(local["server"], "https://kubernetes.default.svc");
    assert_eq!(local["connected"], true);
    assert!(
        local["serverVersion"].as_str().unwrap().starts_with("v1."),
        "{local}"
    );
    assert!(local["lastContact"].is_string(), "{local}");
    let far = &items[1];
    assert_eq!(far["name"], "far");
    assert_eq!(far["inCluster"], false);
    assert_eq!(far["server"], "https://127.0.0.1:1");
    assert_eq!(far["connected"], false);
    assert_eq!(far["reason"], "Unreachable");
    assert!(
        far["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach https://127.0.0.1:1"),
        "{far}"
    );
    assert!(far.get("serverVersion").is_none(), "never reached: {far}");
    assert!(far["createdAt"].is_string(), "{far}");
    assert!(!listed.to_string().contains(marker), "no Secret value");
    assert!(
        !listed.to_string().contains("far-creds"),
        "not even the Secret's name"
    );

    // Each count is what the list filter by that cluster lists.
    for (cluster, want) in [
        ("in-cluster", vec!["local", "local-by-server"]),
        ("far", vec!["remote"]),
        ("https://127.0.0.1:1", vec!["remote-by-server"]),
    ] {
        let l: Value = c
            .get(format!(
                "{base}/api/v1/applications?cluster={}",
                kedge_server::auth::encode_component(cluster)
            ))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = l["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, want, "cluster {cluster}");
    }

    // The page shows the same, without the Secret.
    let (admin, _) = login(&base, "admin", &password).await;
    let page = c
        .get(format!("{base}/clusters"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-cluster="far""#), "{html}");
    assert!(html.contains("Unreachable"), "{html}");
    assert!(html.contains(r#"href="/applications?cluster=in-cluster""#));
    assert!(!html.contains(marker));
    let doc: Value = c
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/clusters"]["get"].is_object());
    running.stop().await;
}
