//! Browser checks: the controller and server run in-process; `node tests/browser/ui.test.mjs` drives headless
//! Chromium through login, list, filter (by cluster too), the clusters page, diff, sync with live status, drift and
//! revert, rollback, and a promotion pipeline whose pending candidate is promoted from the page, and saves
//! screenshots under the build's temporary folder (`target/tmp/screenshots`); with `KEDGE_SCREENSHOT_DIR`
//! (absolute, e.g. `$PWD/docs/screenshots` from the repository root) it refreshes the documentation's copies, on purpose.
//!
//! Needs `node`, Debian's `chromium` and `npm ci` in tests/browser (scripts/install-deps). Without them the test is
//! skipped with a note, except in CI (`CI=true`), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::json;

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn missing_tools() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !PathBuf::from(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !harness().join("node_modules/playwright-core").exists() {
        return Some(
            "playwright-core is missing (npm ci in crates/kedge-server/tests/browser)".into(),
        );
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node is missing".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_headless_chromium() {
    if let Some(why) = missing_tools() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "browser test cannot run in CI: {why}"
        );
        eprintln!("SKIPPED ui_in_headless_chromium: {why}");
        return;
    }
    let env = Env::new("srv-ui").await;
    env.write(
        "guestbook/settings.yaml",
        &config_map("settings", "color", "blue"),
    );
    env.write("guestbook/web.yaml", &deployment("web", 1));
    env.write("backend/cm.yaml", &config_map("backend", "tier", "api"));
    // The stages of a promotion pipeline, created by the browser checks at their end.
    env.write(
        "stages/dev/cm.yaml",
        &config_map("stage-dev", "tier", "dev"),
    );
    env.write(
        "stages/prod/cm.yaml",
        &config_map("stage-prod", "tier", "prod"),
    );
    let first = env.commit_push("Guestbook with a blue theme");
    // A registered cluster nobody answers for: shown as not connected, with an application of its own.
    let marker = "secret-marker-never-shown";
    register_cluster(&env, "far", "https://127.0.0.1:1", marker).await;
    let (running, password) = env
        .start_ready_configured(
            Duration::from_secs(2),
            |rc| rc.cluster_check_interval = Duration::from_millis(500),
            |_| {},
        )
        .await;
    env.create_labeled_app(
        "guestbook",
        "guestbook",
        json!({}),
        json!({ "team": "web" }),
    )
    .await;
    env.create_labeled_app(
        "backend",
        "backend",
        json!({ "automated": { "prune": true, "selfHeal": true } }),
        json!({ "team": "api" }),
    )
    .await;
    env.create_app_on("faraway", "backend", json!({}), "far", "far")
        .await;
    env.wait_app("guestbook", "compared", |a| {
        a.status.as_ref().is_some_and(|s| s.sync.revision.is_some())
    })
    .await;
    assert_eq!(wait_not_connected(&env, "far").await, "Unreachable");

    let profile = tempfile::Builder::new()
        .prefix("kedge-chromium-")
        .tempdir()
        .unwrap();
    // Never the tracked docs/screenshots unless asked: a test run must not change the repository.
    let shots = std::env::var_os("KEDGE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("ui.test.mjs")
        .current_dir(harness())
        .env("BASE_URL", &running.base)
        .env("PASSWORD", &password)
        .env("NAMESPACE", env.ns())
        .env("FIRST_SHA", &first)
        .env("WORK_DIR", env.work.path())
        .env("REPO_URL", &env.repo_url)
        .env("KUBECONFIG", env.cluster.kubeconfig())
        .env("SCREENSHOT_DIR", &shots)
        .env("USER_DATA_DIR", profile.path())
        .env("SECRET_MARKER", marker)
        .kill_on_drop(true);
    // Below the test runner's own limit (4 x 60 s), so that a hang reports this message rather than a kill.
    let out = tokio::time::timeout(Duration::from_secs(200), cmd.output())
        .await
        .expect("browser run within 200 s")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    running.stop().await;
}
