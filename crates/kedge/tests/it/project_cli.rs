//! `kedge project token create|list|delete` with the built binary against the test cluster: the token it prints is
//! signed with the server's key and names the id it records in the role; revoking removes the id.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use cli::kedge;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_tokens_are_issued_listed_and_revoked() {
    let env = Env::new("cli-token").await;
    let cache = tempfile::tempdir().unwrap();
    apply_project(
        &env,
        "team",
        json!({
            "sourceRepos": ["*"],
            "roles": [{ "name": "ci", "policies": ["p, proj:team:ci, applications, sync, team/*, allow"] }],
        }),
    )
    .await;

    let run = kedge(
        &env,
        cache.path(),
        &[
            "project",
            "token",
            "create",
            "team",
            "ci",
            "--expires",
            "30d",
        ],
    )
    .await;
    run.expect_code(0);
    let token = run.stdout.trim().to_owned();
    assert!(
        run.stderr.contains("role ci of project team, valid until"),
        "{}",
        run.stderr
    );
    let key = Api::<Secret>::namespaced(env.client.clone(), env.ns())
        .get(kedge_server::SESSION_KEY_SECRET)
        .await
        .expect("the key was created")
        .data
        .and_then(|mut d| d.remove("key"))
        .unwrap()
        .0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        kedge_server::auth::verify_project_token(&key, &token, now).expect("a valid token");
    assert_eq!((claims.p.as_str(), claims.r.as_str()), ("team", "ci"));
    let expiry = claims.e.expect("an expiry");
    assert!(expiry.abs_diff(now + 30 * 86_400) < 120, "{expiry}");
    // Only the id and dates are kept in the project, never the token.
    let project = Api::<kedge_api::Project>::namespaced(env.client.clone(), env.ns())
        .get("team")
        .await
        .unwrap();
    let listed = &project.role("ci").unwrap().jwt_tokens;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, claims.i);
    assert_eq!(listed[0].exp, Some(expiry as i64));
    assert!(!serde_json::to_string(&project).unwrap().contains(&token));

    let run = kedge(&env, cache.path(), &["project", "token", "list", "team"]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("ci") && l.contains(&claims.i)),
        "{}",
        run.stdout
    );

    let run = kedge(
        &env,
        cache.path(),
        &["project", "token", "create", "team", "admin"],
    )
    .await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("project team has no role admin"),
        "{}",
        run.stderr
    );
    let run = kedge(
        &env,
        cache.path(),
        &[
            "project",
            "token",
            "create",
            "team",
            "ci",
            "--expires",
            "3x",
        ],
    )
    .await;
    run.expect_code(1);
    assert!(run.stderr.contains("--expires"), "{}", run.stderr);

    let run = kedge(
        &env,
        cache.path(),
        &["project", "token", "delete", "team", "ci", &claims.i],
    )
    .await;
    run.expect_code(0);
    let project = Api::<kedge_api::Project>::namespaced(env.client.clone(), env.ns())
        .get("team")
        .await
        .unwrap();
    assert!(project.role("ci").unwrap().jwt_tokens.is_empty());
    let run = kedge(
        &env,
        cache.path(),
        &["project", "token", "delete", "team", "ci", &claims.i],
    )
    .await;
    run.expect_code(1);
    assert!(run.stderr.contains("has no token"), "{}", run.stderr);
}
