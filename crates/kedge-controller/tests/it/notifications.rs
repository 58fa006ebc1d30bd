//! Notifications end to end: a controller on the test cluster tells HTTP receivers (started here, one path per
//! channel) and a real Alertmanager what happens to applications, through Providers and Alerts.
//!
//! The Alertmanager test needs `alertmanager` (scripts/install-prometheus). Without it that test is skipped with a
//! note, except in CI (`CI=true`), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kedge_api::{Alert, Provider};
use kedge_testkit::{Received, Receiver, wait_for};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const UI: &str = "https://kedge.example.com";
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

async fn create_provider(env: &Env, name: &str, spec: Value) {
    let p: Provider = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Provider",
        "metadata": { "name": name }, "spec": spec,
    }))
    .expect("provider");
    Api::<Provider>::namespaced(env.client.clone(), env.ns())
        .create(&PostParams::default(), &p)
        .await
        .expect("create provider");
}

/// An Alert `name` sending every event of every application of the namespace to Provider `provider`.
async fn create_alert(env: &Env, name: &str, provider: &str, extra: Value) {
    let mut spec = json!({
        "providerRef": { "name": provider },
        "eventSources": [{ "kind": "Application", "name": "*" }],
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    let a: Alert = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Alert",
        "metadata": { "name": name }, "spec": spec,
    }))
    .expect("alert");
    Api::<Alert>::namespaced(env.client.clone(), env.ns())
        .create(&PostParams::default(), &a)
        .await
        .expect("create alert");
}

/// The Ready condition of Provider `name`: (status, reason, message).
async fn provider_ready(env: &Env, name: &str) -> Option<(String, String, String)> {
    let p = Api::<Provider>::namespaced(env.client.clone(), env.ns())
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let c = p
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

async fn alert_ready(env: &Env, name: &str) -> Option<(String, String)> {
    let a = Api::<Alert>::namespaced(env.client.clone(), env.ns())
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let c = a
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.message))
}

/// An environment whose repository is `acme/deploy` (two levels, as the Git hosts' APIs name repositories).
async fn env_with_owner_repo(prefix: &str) -> Env {
    let mut env = Env::new(prefix).await;
    env.servers
        .root
        .create_bare_repo("acme/deploy.git")
        .expect("bare repo");
    env.repo_url = env.servers.daemon.url("acme/deploy.git");
    env
}

/// Waits until `receiver` got requests on `path` for which `pred` holds of the whole list; returns them.
async fn wait_received(
    receiver: &Receiver,
    path: &str,
    what: &str,
    pred: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    wait_for(DEADLINE, POLL, || async {
        let got = receiver.received_at(path);
        pred(&got).then_some(got)
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{what}: got on {path}: {:#?}; everything: {:#?}",
            receiver
                .received_at(path)
                .iter()
                .map(Received::json)
                .collect::<Vec<_>>(),
            receiver
                .received()
                .iter()
                .map(|r| (r.path.clone(), r.json()["reason"].clone()))
                .collect::<Vec<_>>()
        )
    })
}

fn states(got: &[Received], field: &str) -> Vec<String> {
    got.iter()
        .map(|r| r.json()[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// HMAC-SHA256 of `body` keyed by `key`, computed by openssl (not by Kedge's code).
fn openssl_hmac(key: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write body");
    let out = child.wait_with_output().expect("openssl output");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split_whitespace().next().expect("digest").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_gets_what_its_service_documents() {
    let env = env_with_owner_repo("notify").await;
    let receiver = Receiver::start().expect("receiver");
    // Slack's webhook URL is itself a secret: it comes from the Secret's `address` (which wins over spec.address).
    env.create_secret(
        "slack-hook",
        json!({ "address": receiver.url("/slack/T000/B000/XXXX") }),
    )
    .await;
    env.create_secret("hooks", json!({ "token": "t0ken" }))
        .await;
    env.create_secret("bitbucket", json!({ "token": "kedge:app-pass" }))
        .await;
    let hook = receiver.url("/hook");
    create_provider(
        &env,
        "signed",
        json!({ "type": "generic-hmac", "address": hook, "secretRef": { "name": "hooks" } }),
    )
    .await;
    create_provider(&env, "slack", json!({ "type": "slack", "channel": "#deploys", "address": receiver.url("/not-here"), "secretRef": { "name": "slack-hook" } })).await;
    create_provider(
        &env,
        "teams",
        json!({ "type": "msteams", "address": receiver.url("/teams") }),
    )
    .await;
    create_provider(&env, "github", json!({ "type": "github", "address": receiver.url("/api/v3"), "secretRef": { "name": "hooks" } })).await;
    create_provider(&env, "gitlab", json!({ "type": "gitlab", "address": receiver.url("/api/v4"), "secretRef": { "name": "hooks" } })).await;
    create_provider(&env, "gitea", json!({ "type": "gitea", "address": receiver.url("/api/v1"), "secretRef": { "name": "hooks" } })).await;
    create_provider(&env, "bitbucket", json!({ "type": "bitbucket", "address": receiver.url("/2.0"), "secretRef": { "name": "bitbucket" } })).await;
    // A templated body with a header from the spec.
    create_provider(
        &env,
        "templated",
        json!({
            "type": "generic", "address": receiver.url("/templated"),
            "headers": { "X-Kedge-App": "{{ app.namespace }}/{{ app.name }}" },
            "body": "{\"text\": {{ event.title | tojson }}, \"reason\": \"{{ event.reason }}\"}",
        }),
    )
    .await;
    for p in [
        "signed",
        "slack",
        "teams",
        "github",
        "gitlab",
        "gitea",
        "bitbucket",
        "templated",
    ] {
        create_alert(&env, p, p, json!({})).await;
    }
    // A Provider with a field its type does not use, and an Alert without its Provider: both refused in status.
    create_provider(
        &env,
        "wrong",
        json!({ "type": "msteams", "address": receiver.url("/wrong"), "channel": "#x" }),
    )
    .await;
    create_alert(&env, "orphan", "missing", json!({})).await;

    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let sha = env.commit_push("first");
    let mut rc = env.run_config("c1");
    rc.ui_url = Some(UI.to_owned());
    let _controller = RunningController::start(env.cluster.kubeconfig(), rc);
    env.create_app("web", "app", automated(true, true)).await;
    env.wait_synced("web", &sha).await;
    let ns = env.ns().to_owned();
    let link = format!("{UI}/applications/{ns}/web");
    let context = format!("kedge/{ns}/web");

    // GitHub: pending when the sync starts, success when it ends, for the synced commit.
    let path = format!("/api/v3/repos/acme/deploy/statuses/{sha}");
    let got = wait_received(&receiver, &path, "GitHub statuses", |g| {
        states(g, "state") == ["pending", "success"]
    })
    .await;
    assert_eq!(
        got[1].json(),
        json!({ "state": "success", "description": format!("Kedge synced {ns}/web"),
                "context": context, "target_url": link })
    );
    assert_eq!(got[1].header("authorization"), Some("Bearer t0ken"));
    assert_eq!(got[1].header("accept"), Some("application/vnd.github+json"));
    assert_eq!(got[1].method, "POST");

    // GitLab: the project path URL-encoded; running, then success.
    let path = format!("/api/v4/projects/acme%2Fdeploy/statuses/{sha}");
    let got = wait_received(&receiver, &path, "GitLab statuses", |g| {
        states(g, "state") == ["running", "success"]
    })
    .await;
    assert_eq!(got[1].json()["name"], context.as_str());
    assert_eq!(got[1].json()["target_url"], link.as_str());
    assert_eq!(got[1].header("private-token"), Some("t0ken"));

    // Gitea / Forgejo.
    let path = format!("/api/v1/repos/acme/deploy/statuses/{sha}");
    let got = wait_received(&receiver, &path, "Gitea statuses", |g| {
        states(g, "state") == ["pending", "success"]
    })
    .await;
    assert_eq!(got[1].json()["context"], context.as_str());
    assert_eq!(got[1].header("authorization"), Some("token t0ken"));

    // Bitbucket Cloud: build statuses with a key and a required URL; basic auth from `user:app-password`.
    let path = format!("/2.0/repositories/acme/deploy/commit/{sha}/statuses/build");
    let got = wait_received(&receiver, &path, "Bitbucket statuses", |g| {
        states(g, "state") == ["INPROGRESS", "SUCCESSFUL"]
    })
    .await;
    assert_eq!(
        got[1].json(),
        json!({ "state": "SUCCESSFUL", "key": context, "name": context, "url": link,
                "description": format!("Kedge synced {ns}/web") })
    );
    assert_eq!(
        got[1].header("authorization"),
        Some("Basic a2VkZ2U6YXBwLXBhc3M=")
    );

    // The signed generic webhook: Kedge's event, signed over the exact body.
    let got = wait_received(&receiver, "/hook", "generic events", |g| {
        states(g, "reason").contains(&"RevisionDeployed".to_owned())
    })
    .await;
    let reasons = states(&got, "reason");
    assert_eq!(
        reasons[..3],
        ["SyncStarted", "SyncSucceeded", "RevisionDeployed"],
        "{reasons:?}"
    );
    for r in &got {
        let sig = r.header("x-signature").expect("signature");
        assert_eq!(sig, format!("sha256={}", openssl_hmac("t0ken", &r.body)));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let deployed = got
        .iter()
        .find(|r| r.json()["reason"] == "RevisionDeployed")
        .expect("deployed")
        .json();
    assert_eq!(deployed["involvedObject"]["kind"], "Application");
    assert_eq!(deployed["involvedObject"]["namespace"], ns.as_str());
    assert_eq!(deployed["metadata"]["revision"], sha.as_str());
    assert_eq!(deployed["metadata"]["url"], link.as_str());
    assert_eq!(deployed["severity"], "info");

    // The templated body and header.
    let got = wait_received(&receiver, "/templated", "templated bodies", |g| {
        g.iter().any(|r| r.json()["reason"] == "SyncSucceeded")
    })
    .await;
    let r = got
        .iter()
        .find(|r| r.json()["reason"] == "SyncSucceeded")
        .expect("succeeded");
    assert_eq!(
        r.json(),
        json!({ "text": format!("{ns}/web: synced {}", &sha[..7]), "reason": "SyncSucceeded" })
    );
    assert_eq!(r.header("x-kedge-app"), Some(format!("{ns}/web").as_str()));

    // Teams: an Adaptive Card with a link to the application.
    let got = wait_received(&receiver, "/teams", "Teams messages", |g| g.len() >= 3).await;
    let card = got[1].json();
    assert_eq!(card["type"], "message");
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert_eq!(
        card["attachments"][0]["content"]["body"][0]["text"],
        format!("{ns}/web: synced {}", &sha[..7])
    );
    assert_eq!(
        card["attachments"][0]["content"]["actions"][0]["url"],
        link.as_str()
    );

    // A commit Kedge cannot apply: the sync fails, and every channel says so.
    env.write(
        "app/widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    let bad = env.commit_push("an unknown kind");
    let path = format!("/api/v3/repos/acme/deploy/statuses/{bad}");
    let got = wait_received(&receiver, &path, "GitHub failure", |g| {
        states(g, "state").last().map(String::as_str) == Some("failure")
    })
    .await;
    let description = got.last().expect("failure").json()["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        description.starts_with("Kedge sync failed: ") && description.chars().count() <= 140,
        "{description}"
    );
    // Slack: Block Kit with the fallback text, posted to the Secret's address, to the spec's channel.
    let got = wait_received(&receiver, "/slack/T000/B000/XXXX", "Slack failure", |g| {
        g.iter()
            .any(|r| r.json()["text"] == format!("{ns}/web: sync of {} failed", &bad[..7]))
    })
    .await;
    let failed = got
        .iter()
        .map(Received::json)
        .find(|b| b["text"] == format!("{ns}/web: sync of {} failed", &bad[..7]))
        .expect("failure message");
    assert_eq!(failed["channel"], "#deploys");
    let section = failed["blocks"][0]["text"]["text"]
        .as_str()
        .expect("section");
    assert!(
        section.starts_with(&format!(
            "*<{link}|{ns}/web: sync of {} failed>*\n",
            &bad[..7]
        )),
        "{section}"
    );
    assert!(section.contains("Widget"), "{section}");
    assert_eq!(failed["blocks"][0]["type"], "section");
    assert_eq!(failed["blocks"][0]["text"]["type"], "mrkdwn");
    assert_eq!(
        failed["blocks"][1],
        json!({ "type": "context", "elements": [{ "type": "mrkdwn",
            "text": format!("Revision: `{}` · Project: `default` · Cluster: `in-cluster`", &bad[..7]) }] })
    );

    // Statuses: delivering Providers are Ready; the misconfigured one and the orphan Alert say why not.
    for p in ["github", "slack", "signed"] {
        let (status, reason, _) = provider_ready(&env, p).await.expect("status");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Delivered"),
            "{p}"
        );
    }
    let (status, reason, message) = wait_for(DEADLINE, POLL, || async {
        provider_ready(&env, "wrong")
            .await
            .filter(|(_, r, _)| r == "InvalidSpec")
    })
    .await
    .expect("the wrong Provider is refused");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.channel"), "{message}");
    assert!(receiver.received_at("/wrong").is_empty() || reason == "InvalidSpec");
    let (status, message) = wait_for(DEADLINE, POLL, || async {
        alert_ready(&env, "orphan")
            .await
            .filter(|(s, _)| s == "False")
    })
    .await
    .expect("the orphan Alert is refused");
    assert_eq!(status, "False");
    assert!(message.contains("Provider missing not found"), "{message}");
    // No secret value anywhere in what was sent or reported.
    for r in receiver.received() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("t0ken") && !body.contains("app-pass"),
            "{body}"
        );
    }
    for p in ["slack", "github"] {
        let (_, _, message) = provider_ready(&env, p).await.expect("status");
        assert!(!message.contains("XXXX") && !message.contains("t0ken"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_retried_until_the_receiver_answers() {
    let env = Env::new("notify-retry").await;
    // A port nothing listens on yet.
    let addr = free_addr();
    create_provider(
        &env,
        "hook",
        json!({ "type": "generic", "address": format!("http://{addr}/events"), "timeout": "2s" }),
    )
    .await;
    create_alert(&env, "hook", "hook", json!({ "events": ["SyncSucceeded"] })).await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let sha = env.commit_push("first");
    let (_controller, metrics) = start_with_metrics(&env, "c1", |_| {});
    env.create_app("web", "app", automated(true, true)).await;
    env.wait_synced("web", &sha).await;
    // The failure shows in the Provider's status while the attempts go on.
    let (_, _, message) = wait_for(DEADLINE, POLL, || async {
        provider_ready(&env, "hook")
            .await
            .filter(|(s, r, _)| s == "False" && r == "DeliveryFailing")
    })
    .await
    .expect("the failing delivery is reported");
    assert!(message.contains("SyncSucceeded"), "{message}");
    assert!(message.contains("retrying"), "{message}");
    assert!(metric(metrics, "kedge_notification_retries_total") >= 1.0);
    // The receiver comes up: the notice arrives, once, and the Provider is Ready again.
    let receiver = Receiver::start_at(addr).expect("receiver on the reserved port");
    let got = wait_received(&receiver, "/events", "the retried delivery", |g| {
        !g.is_empty()
    })
    .await;
    assert_eq!(got[0].json()["reason"], "SyncSucceeded");
    assert_eq!(got[0].json()["metadata"]["revision"], sha.as_str());
    wait_for(DEADLINE, POLL, || async {
        provider_ready(&env, "hook")
            .await
            .filter(|(s, r, _)| s == "True" && r == "Delivered")
    })
    .await
    .expect("the Provider is Ready after the delivery");
    assert_eq!(receiver.received_at("/events").len(), 1);
    assert!(metric(metrics, "kedge_notifications_sent_total") >= 1.0);

    // A receiver that answers 400: not retried, reported as failed with the answer's status.
    receiver.respond_with(400);
    env.write("app/cm.yaml", &config_map("settings", "color", "green"));
    let sha2 = env.commit_push("second");
    env.wait_synced("web", &sha2).await;
    let (_, _, message) = wait_for(DEADLINE, POLL, || async {
        provider_ready(&env, "hook")
            .await
            .filter(|(s, r, _)| s == "False" && r == "DeliveryFailed")
    })
    .await
    .expect("a refused delivery is reported");
    assert!(message.contains("after 1 attempt(s)"), "{message}");
    assert!(message.contains("400"), "{message}");
    assert_eq!(receiver.received_at("/events").len(), 2);
}

fn start_alertmanager(binary: &std::path::Path) -> ServerProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .expect("config");
    let addr = free_addr();
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.path().join("data").display()),
        format!("--web.listen-address={addr}"),
        // No gossip with peers: a single instance on loopback.
        "--cluster.listen-address=".to_owned(),
    ];
    ServerProcess::start(binary, args, addr, dir)
}

/// Kedge's alerts for application `name` that Alertmanager holds as active.
fn active_alerts(am: &ServerProcess, name: &str) -> Option<Vec<Value>> {
    let all = am.get("/api/v2/alerts?active=true&silenced=false&inhibited=false")?;
    Some(
        all.as_array()?
            .iter()
            .filter(|a| a["labels"]["application"] == name && a["status"]["state"] == "active")
            .cloned()
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_fires_when_an_application_degrades_and_resolves_when_it_recovers() {
    let Some(binary) = cache_binary("alertmanager") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "alertmanager is missing (scripts/install-prometheus)"
        );
        eprintln!("SKIPPED alertmanager test: alertmanager is missing");
        return;
    };
    let am = start_alertmanager(&binary);
    wait_for(DEADLINE, POLL, || async {
        am.get("/api/v2/status").map(|_| ())
    })
    .await
    .expect("alertmanager answers");
    let env = Env::new("notify-am").await;
    create_provider(
        &env,
        "am",
        json!({ "type": "alertmanager", "address": format!("http://{}", am.addr) }),
    )
    .await;
    create_alert(&env, "problems", "am", json!({ "eventSeverity": "error" })).await;
    // An image whose name says "fail" never becomes available: the Deployment turns Degraded.
    env.write("app/web.yaml", &deployment("web", 1, "nginx:fail"));
    env.commit_push("a failing image");
    let mut rc = env.run_config("c1");
    rc.ui_url = Some(UI.to_owned());
    let _controller = RunningController::start(env.cluster.kubeconfig(), rc);
    env.create_app("shop", "app", automated(true, true)).await;
    let firing = wait_for(
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            active_alerts(&am, "shop").filter(|a| {
                a.iter()
                    .any(|alert| alert["labels"]["alertname"] == "KedgeApplicationDegraded")
            })
        },
    )
    .await
    .expect("the Degraded application fires an alert");
    // The sync may also end failed while it waits for the Deployment (KedgeSyncFailed); the Degraded alert is the
    // one for the health.
    let firing: Vec<Value> = firing
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "KedgeApplicationDegraded")
        .collect();
    assert_eq!(firing.len(), 1, "{firing:#?}");
    let labels = &firing[0]["labels"];
    assert_eq!(labels["alertname"], "KedgeApplicationDegraded");
    assert_eq!(labels["namespace"], env.ns());
    assert_eq!(labels["cluster"], "in-cluster");
    assert_eq!(labels["severity"], "warning");
    assert_eq!(
        firing[0]["generatorURL"],
        format!("{UI}/applications/{}/shop", env.ns())
    );
    let description = firing[0]["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(description.contains("Degraded"), "{description}");
    // What Kedge says in the Application is what the alert says.
    let app = env.app("shop").await;
    assert_eq!(
        app.status.as_ref().map(|s| s.health.status),
        Some(kedge_api::HealthCode::Degraded)
    );

    // A good image: Healthy again, and the alert is resolved.
    env.write("app/web.yaml", &deployment("web", 1, "nginx:1.27"));
    let good = env.commit_push("a good image");
    env.wait_synced("shop", &good).await;
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { active_alerts(&am, "shop").filter(|a| a.is_empty()) },
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the recovered application's alerts are not resolved: {:#?}",
            active_alerts(&am, "shop")
        )
    });
    let (status, reason, _) = provider_ready(&env, "am").await.expect("status");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Delivered"));
}
