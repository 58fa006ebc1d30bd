//! OIDC login against a real OpenID Connect provider (oidc-provider, an OpenID-certified implementation, started from
//! `tests/oidc/provider.mjs` on a free loopback port), with the controller and server running in-process on the test
//! cluster. A cookie-keeping HTTP client walks the whole authorization code flow as a browser would: Kedge's
//! `/auth/login`, the provider's login and consent forms, the callback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use kedge_testkit::wait_for;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

const CLIENT_ID: &str = "kedge-test";
const CLIENT_SECRET: &str = "oidc-client-secret-never-shown";
/// Redirects followed at most in one walk through the flow.
const MAX_HOPS: usize = 20;

/// The provider, stopped (killed) when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider for a client whose redirect URI is `redirect_uri`; returns once its discovery document
    /// answers.
    async fn start(
        redirect_uri: &str,
        claims_in_id_token: bool,
        host: &str,
        port: u16,
    ) -> Provider {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the OIDC provider is not installed: run scripts/install-deps (npm ci in {})",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("KEDGE_OIDC_CLIENT_ID", CLIENT_ID)
            .env("KEDGE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("KEDGE_OIDC_REDIRECT_URI", redirect_uri)
            .env(
                "KEDGE_OIDC_ID_TOKEN_CLAIMS",
                if claims_in_id_token { "1" } else { "0" },
            )
            .env("KEDGE_OIDC_HOST", host)
            .env("KEDGE_OIDC_PORT", port.to_string())
            // Kept open for the provider's life: it exits when the test process ends, even without the drop.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node (is Node.js installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("issuer ") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let mut provider = Provider {
            child,
            issuer: String::new(),
        };
        provider.issuer = tokio::task::spawn_blocking(move || rx.recv_timeout(STEP))
            .await
            .expect("reader")
            .expect("the provider prints its issuer");
        assert!(provider.issuer.starts_with(&format!("http://{host}:")));
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        let http = http();
        wait_for(STEP, POLL, || async {
            http.get(&discovery)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
        .expect("the provider's discovery document answers");
        provider
    }
}

/// A browser: keeps cookies (by name, for 127.0.0.1), follows no redirect by itself.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

/// One answer: its URL, status, `Location` and body.
struct Page {
    url: String,
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: http(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, url: &str, r: reqwest::Response) -> Page {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let location = r.headers().get(LOCATION).map(|l| {
            let l = l.to_str().unwrap();
            reqwest::Url::parse(url)
                .unwrap()
                .join(l)
                .unwrap()
                .to_string()
        });
        Page {
            url: url.to_owned(),
            status: r.status(),
            location,
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        let r = self
            .http
            .get(url)
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(url, r).await
    }

    async fn post(&mut self, url: &str, form: &[(String, String)]) -> Page {
        let r = self
            .http
            .post(url)
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.read(url, r).await
    }

    /// Follows redirects from `page` until an answer that is not one, or until the provider sends the browser to
    /// Kedge's callback (returned unvisited, as its `location`).
    async fn follow(&mut self, mut page: Page, callback: &str) -> Page {
        for _ in 0..MAX_HOPS {
            match page.location.clone() {
                Some(next) if !next.starts_with(callback) => page = self.get(&next).await,
                _ => return page,
            }
        }
        panic!("more than {MAX_HOPS} redirects, last at {}", page.url);
    }

    /// Starts a login at Kedge and walks through the provider's pages as `user` (logging in, granting consent)
    /// until the provider sends the browser back; returns the callback URL. With `cancel`, the login is abandoned
    /// at the provider instead.
    async fn authorize(&mut self, base: &str, next: &str, user: &str, cancel: bool) -> String {
        let callback = format!("{base}/auth/callback");
        let start = self
            .get(&format!(
                "{base}/auth/login?next={}",
                kedge_server::auth::encode_component(next)
            ))
            .await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let mut page = self.follow(start, &callback).await;
        for _ in 0..4 {
            if let Some(location) = &page.location {
                assert!(location.starts_with(&callback));
                return location.clone();
            }
            assert_eq!(page.status, StatusCode::OK, "{}: {}", page.url, page.body);
            let origin = reqwest::Url::parse(&page.url).unwrap();
            if cancel {
                let abort = attribute_after(&page.body, "href=\"", "/abort")
                    .expect("the login page has a cancel link");
                let abort = origin.join(&abort).unwrap().to_string();
                let answer = self.get(&abort).await;
                page = self.follow(answer, &callback).await;
                continue;
            }
            let action = attribute_after(&page.body, "action=\"", "")
                .unwrap_or_else(|| panic!("a form at {}: {}", page.url, page.body));
            let action = origin.join(&action).unwrap().to_string();
            let mut form = hidden_inputs(&page.body);
            if page.body.contains("name=\"login\"") {
                form.push(("login".into(), user.into()));
                form.push(("password".into(), "any".into()));
            }
            let answer = self.post(&action, &form).await;
            page = self.follow(answer, &callback).await;
        }
        panic!("the provider did not send the browser back: {}", page.url);
    }

    /// The names of the applications `GET /api/v1/applications` lists for this browser's session.
    async fn app_names(&self, base: &str) -> Vec<String> {
        let r = self
            .http
            .get(format!("{base}/api/v1/applications"))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        let mut names: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The JSON of `GET /api/v1/session` with this browser's cookies.
    async fn whoami(&self, base: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{base}/api/v1/session"))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The first value of an attribute (`prefix` up to the next `"`) that contains `contains`, HTML entities for `&`
/// decoded.
fn attribute_after(html: &str, prefix: &str, contains: &str) -> Option<String> {
    html.split(prefix)
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(v, _)| v))
        .find(|v| v.contains(contains))
        .map(|v| v.replace("&amp;", "&"))
}

/// The name and value of each hidden input of a page.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(tag, _)| tag))
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let name = attribute_after(tag, "name=\"", "")?;
            let value = attribute_after(tag, "value=\"", "").unwrap_or_default();
            Some((name, value))
        })
        .collect()
}

/// Where the page that ends a login goes on to (its refresh target).
fn continues_to(page: &Page) -> String {
    attribute_after(&page.body, "content=\"0;url=", "").expect("a page that goes on")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A test namespace with a repository and the client secret in Secret `kedge-oidc`.
async fn oidc_env(prefix: &str) -> Env {
    let env = Env::new(prefix).await;
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    env.commit_push("first commit");
    env.put_secret("kedge-oidc", &[("clientSecret", CLIENT_SECRET)])
        .await;
    env
}

/// Starts Kedge on `port` with OIDC login through `issuer` (`platform-admins` are admins); returns it with its base
/// URL.
async fn start_kedge(env: &Env, port: u16, issuer: &str) -> (Running, String) {
    let base = format!("http://127.0.0.1:{port}");
    let (running, _password) = env
        .start_ready_configured(
            Duration::from_secs(1),
            |run| run.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            |server| {
                let mut oidc = kedge_server::OidcConfig::new(
                    issuer,
                    CLIENT_ID,
                    format!("{base}/auth/callback"),
                );
                oidc.admin_groups = vec!["platform-admins".into()];
                server.oidc = Some(oidc);
            },
        )
        .await;
    assert_eq!(running.base, base);
    (running, base)
}

/// Starts the provider (its issuer at `host`) and Kedge in a namespace of its own; returns Kedge's base URL.
async fn start(
    prefix: &str,
    claims_in_id_token: bool,
    host: &str,
) -> (Env, Running, Provider, String) {
    let env = oidc_env(prefix).await;
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/auth/callback");
    let provider = Provider::start(&callback, claims_in_id_token, host, 0).await;
    let (running, base) = start_kedge(&env, port, &provider.issuer).await;
    (env, running, provider, base)
}

/// The provider gives the user's claims through its userinfo endpoint only (the ID token carries `sub`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_logins_through_a_real_provider() {
    let (env, running, provider, base) = start("srv-oidc", false, "127.0.0.1").await;
    // Project `team` lets group team-a see its applications; `other` is in no project of theirs.
    apply_project(
        &env,
        "team",
        serde_json::json!({
            "sourceRepos": ["*"],
            "destinations": [{ "server": "*", "namespace": "*" }],
            "roles": [{ "name": "viewer", "groups": ["team-a"], "policies": [
                "p, proj:team:viewer, applications, get, team/*, allow",
            ] }],
        }),
    )
    .await;
    env.create_app_with(
        "web",
        "app",
        serde_json::json!({}),
        serde_json::json!({ "project": "team" }),
        serde_json::json!({}),
    )
    .await;
    env.create_app("other", "app", serde_json::json!({})).await;

    // The login page offers SSO, keeping the page to return to.
    let mut anonymous = Browser::new();
    let login = anonymous.get(&format!("{base}/login?next=/clusters")).await;
    assert!(
        login.body.contains("href=\"/auth/login?next=/clusters\""),
        "{}",
        login.body
    );

    // alice: no global role, her groups for the project roles; the page asked for is where she lands.
    let mut alice = Browser::new();
    let callback = alice.authorize(&base, "/clusters", "alice", false).await;
    assert!(callback.contains("code="), "{callback}");
    let done = alice.get(&callback).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(continues_to(&done), "/clusters");
    assert!(
        alice
            .cookies
            .contains_key(kedge_server::auth::SESSION_COOKIE)
    );
    assert!(
        !alice.cookies.contains_key("kedge_oidc_flow"),
        "the login's cookie is removed"
    );
    let (status, who) = alice.whoami(&base).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["user"], "alice");
    assert_eq!(who["role"], "none");
    assert_eq!(who["groups"], serde_json::json!(["team-a"]));
    // What she sees comes from the project roles that name her group.
    wait_for(STEP, POLL, || async {
        (alice.app_names(&base).await == ["web"]).then_some(())
    })
    .await
    .expect("alice sees the application of her group's project, and only that");
    // The same callback once more: the login it belonged to is over (and the code was used).
    let again = Browser::new().get(&callback).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);

    // root: admin through --oidc-admin-groups; a page elsewhere is never where a login ends.
    let mut root = Browser::new();
    let callback = root
        .authorize(&base, "https://evil.example/", "root", false)
        .await;
    let done = root.get(&callback).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(continues_to(&done), "/applications");
    assert!(!done.body.contains("evil.example"));
    let (_, who) = root.whoami(&base).await;
    assert_eq!(who["user"], "root");
    assert_eq!(who["role"], "admin");
    assert_eq!(
        who["groups"],
        serde_json::json!(["platform-admins", "team-a"])
    );
    let r = root
        .http
        .get(format!("{base}/api/v1/applications"))
        .header(COOKIE, root.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_for(STEP, POLL, || async {
        (root.app_names(&base).await == ["other", "web"]).then_some(())
    })
    .await
    .expect("an admin sees every application");

    // Without preferred_username, the email names the user; without either, the subject.
    for (login, name) in [("mail", "mail@example.test"), ("nameless", "nameless")] {
        let mut b = Browser::new();
        let callback = b.authorize(&base, "/", login, false).await;
        b.get(&callback).await;
        let (_, who) = b.whoami(&base).await;
        assert_eq!(who["user"], name);
        assert_eq!(who["groups"], serde_json::json!([]));
        assert_eq!(who["role"], "none");
        assert!(
            b.app_names(&base).await.is_empty(),
            "no group, no role: nothing"
        );
    }

    // More groups than a session cookie holds: a clear error, not a cookie the browser would drop.
    let mut crowd = Browser::new();
    let callback = crowd.authorize(&base, "/", "crowd", false).await;
    let refused = crowd.get(&callback).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("too many groups (300)"),
        "{}",
        refused.body
    );
    assert!(
        !crowd
            .cookies
            .contains_key(kedge_server::auth::SESSION_COOKIE)
    );

    // An answer whose state is not the one sent: refused, no session.
    let mut forged = Browser::new();
    let callback = forged.authorize(&base, "/", "alice", false).await;
    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = forged.get(url.as_str()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("start the login again"),
        "{}",
        refused.body
    );
    assert!(
        !forged
            .cookies
            .contains_key(kedge_server::auth::SESSION_COOKIE)
    );
    assert_eq!(forged.whoami(&base).await.0, StatusCode::UNAUTHORIZED);

    // The user cancels at the provider: its error is shown, no session.
    let mut cancelled = Browser::new();
    let callback = cancelled.authorize(&base, "/", "alice", true).await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let refused = cancelled.get(&callback).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("access_denied"), "{}", refused.body);
    assert!(
        !cancelled
            .cookies
            .contains_key(kedge_server::auth::SESSION_COOKIE)
    );

    // A wrong client secret: the provider refuses the code exchange; a clear error, no session, no secret shown.
    let wrong = "wrong-secret-never-shown";
    env.put_secret("kedge-oidc", &[("clientSecret", wrong)])
        .await;
    let mut unlucky = Browser::new();
    let callback = unlucky.authorize(&base, "/", "alice", false).await;
    let refused = unlucky.get(&callback).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("did not accept Kedge's client credentials"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("kedge-oidc"));
    assert!(!refused.body.contains(wrong) && !refused.body.contains(CLIENT_SECRET));
    assert!(
        !unlucky
            .cookies
            .contains_key(kedge_server::auth::SESSION_COOKIE)
    );
    assert_eq!(unlucky.whoami(&base).await.0, StatusCode::UNAUTHORIZED);

    // alice's session still holds (it needs no account), and logging out ends it.
    assert_eq!(alice.whoami(&base).await.1["user"], "alice");
    let r = alice
        .http
        .delete(format!("{base}/api/v1/session"))
        .header(COOKIE, alice.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(alice.whoami(&base).await.0, StatusCode::UNAUTHORIZED);

    running.stop().await;
    drop(provider);
}

/// The provider puts the claims in the ID token and has no userinfo endpoint: the groups come from the ID token. The
/// provider starts only after Kedge: a login before that fails with a clear error, and the next one reads the
/// provider's configuration again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_groups_from_the_id_token() {
    let env = oidc_env("srv-oidc-idt").await;
    let (kedge_port, provider_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let (running, base) = start_kedge(&env, kedge_port, &issuer).await;
    let mut early = Browser::new();
    let refused = early
        .get(&format!("{base}/auth/login?next=/applications"))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("cannot read the identity provider's configuration"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&issuer), "{}", refused.body);

    let provider = Provider::start(
        &format!("{base}/auth/callback"),
        true,
        "127.0.0.1",
        provider_port,
    )
    .await;
    assert_eq!(provider.issuer, issuer);
    for (user, role, groups) in [
        ("alice", "none", serde_json::json!(["team-a"])),
        (
            "root",
            "admin",
            serde_json::json!(["platform-admins", "team-a"]),
        ),
    ] {
        let mut b = Browser::new();
        let callback = b.authorize(&base, "/", user, false).await;
        let done = b.get(&callback).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        let (status, who) = b.whoami(&base).await;
        assert_eq!(status, StatusCode::OK, "{who}");
        assert_eq!(who["user"], user);
        assert_eq!(who["role"], role);
        assert_eq!(who["groups"], groups);
    }
    running.stop().await;
    drop(provider);
}

/// What the browser check needs and is missing, if anything.
fn missing_browser() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !PathBuf::from(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    let harness = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !harness.join("node_modules/playwright-core").exists() {
        return Some(
            "playwright-core is missing (npm ci in crates/kedge-server/tests/browser)".into(),
        );
    }
    None
}

/// A person's login in headless Chromium, the provider being another site than Kedge (`localhost` against
/// `127.0.0.1`): the browser's cross-site cookie rules hold, and the login still ends on the page asked for, logged
/// in. Skipped with a note where Chromium or playwright-core is missing, except in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_in_headless_chromium() {
    if let Some(why) = missing_browser() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "browser test cannot run in CI: {why}"
        );
        eprintln!("SKIPPED oidc_login_in_headless_chromium: {why}");
        return;
    }
    let (_env, running, provider, base) = start("srv-oidc-ui", false, "localhost").await;
    let profile = tempfile::Builder::new()
        .prefix("kedge-chromium-")
        .tempdir()
        .unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("oidc.test.mjs")
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser"))
        .env("BASE_URL", &base)
        .env("SCREENSHOT_DIR", &shots)
        .env("USER_DATA_DIR", profile.path())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("browser run within 120 s")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ok - OIDC login in Chromium"), "{stdout}");
    running.stop().await;
    drop(provider);
}
