//! Git webhooks: signatures (valid, invalid, missing), malformed and oversized payloads, and the refresh they
//! trigger (the controller polls only once an hour here, so a quick sync can only come from the webhook).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_refresh_matching_applications_at_once() {
    let env = Env::new("srv-hook").await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let first = env.commit_push("first");
    let (running, _) = env.start_ready(Duration::from_secs(3600)).await;
    let base = running.base.clone();
    env.create_labeled_app(
        "demo",
        "app",
        json!({ "automated": { "prune": true } }),
        json!({}),
    )
    .await;
    env.wait_app("demo", "first sync", |a| synced_at(a, &first))
        .await;
    let c = http();
    let hook = format!("{base}/api/webhook");
    // The repository as GitHub would name it: another scheme and a .git suffix, same host and path.
    let port_free = env.repo_url.replacen("git://", "https://", 1);
    let push = |r: &str| {
        json!({ "ref": r, "repository": { "clone_url": port_free, "default_branch": "main" } })
            .to_string()
    };

    // No secret configured at all: an unsigned push is refused, saying how to configure one.
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .body(push("refs/heads/main"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let message = r.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("kedge-webhook")
            && message.contains("github")
            && message.contains("--webhook-allow-unsigned"),
        "{message}"
    );

    env.put_secret(
        kedge_server::WEBHOOK_SECRET,
        &[("github", "gh-secret"), ("gitlab", "gl-token")],
    )
    .await;

    env.write("app/cm.yaml", &config_map("settings", "color", "green"));
    let second = env.commit_push("second");
    let body = push("refs/heads/main");

    // Missing, wrong and tampered signatures are refused; so is a provider without a configured secret.
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 401);
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign("wrong", body.as_bytes())),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign("gh-secret", b"other body")),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&hook)
        .header("x-gitea-event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "gitea has no secret configured while others do"
    );
    let r = c
        .post(&hook)
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", "nope")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Nothing was refreshed by those: the application still shows the first commit.
    assert!(synced_at(&env.app("demo").await, &first));

    // Malformed (but signed) and oversized payloads.
    let bad = b"{not json";
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign("gh-secret", bad)),
        )
        .body(bad.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Oversized: refused from the declared length, before the body is read.
    let addr = base.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "POST /api/webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Length: 2097152\r\n\r\n").unwrap();
        s.write_all(&[b' '; 1024]).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A push of another branch refreshes nothing.
    let other = push("refs/heads/feature");
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign("gh-secret", other.as_bytes())),
        )
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["refreshed"], 0);

    // A valid GitHub push: the application syncs the new commit at once.
    let started = Instant::now();
    let r = c
        .post(&hook)
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign("gh-secret", body.as_bytes())),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["refreshed"], 1, "{v}");
    env.wait_app("demo", "second commit synced after the webhook", |a| {
        synced_at(a, &second)
    })
    .await;
    eprintln!(
        "github webhook: push to synced in {} ms",
        started.elapsed().as_millis()
    );

    // GitLab with its token, the ssh form of the URL.
    env.write("app/cm.yaml", &config_map("settings", "color", "red"));
    let third = env.commit_push("third");
    let path = env
        .repo_url
        .trim_start_matches("git://")
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    let ssh = format!("ssh://git@127.0.0.1:22/{path}");
    let gl = json!({ "ref": "refs/heads/main", "project": { "git_ssh_url": ssh } }).to_string();
    let r = c
        .post(&hook)
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", "gl-token")
        .body(gl)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["refreshed"], 1);
    env.wait_app(
        "demo",
        "third commit synced after the GitLab webhook",
        |a| synced_at(a, &third),
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_pushes_are_accepted_only_when_allowed() {
    let env = Env::new("srv-hook-unsigned").await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let first = env.commit_push("first");
    let (running, _) = env
        .start_ready_with(Duration::from_secs(3600), |c| {
            c.webhook_allow_unsigned = true
        })
        .await;
    env.create_labeled_app(
        "demo",
        "app",
        json!({ "automated": { "prune": true } }),
        json!({}),
    )
    .await;
    env.wait_app("demo", "first sync", |a| synced_at(a, &first))
        .await;
    env.write("app/cm.yaml", &config_map("settings", "color", "green"));
    let second = env.commit_push("second");
    let hook = format!("{}/api/webhook", running.base);
    let body = json!({ "ref": "refs/heads/main", "repository": { "clone_url": env.repo_url } })
        .to_string();
    // Gitea without a secret anywhere: accepted unsigned with the flag, and the application syncs at once.
    let r = http()
        .post(&hook)
        .header("x-gitea-event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["refreshed"], 1);
    env.wait_app(
        "demo",
        "second commit synced after the unsigned push",
        |a| synced_at(a, &second),
    )
    .await;
    // A provider with a secret is still checked, flag or not: a wrong Gitea signature is refused.
    env.put_secret(kedge_server::WEBHOOK_SECRET, &[("gitea", "gitea-secret")])
        .await;
    let r = http()
        .post(&hook)
        .header("x-gitea-event", "push")
        .header("x-gitea-signature", sign("not-the-secret", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .post(&hook)
        .header("x-gitea-event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "unsigned, now that gitea has a secret");
    running.stop().await;
}
