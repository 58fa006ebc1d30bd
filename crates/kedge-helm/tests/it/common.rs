//! Test helpers: the helm binary, chart packaging, a static loopback HTTP chart repository and a loopback OCI
//! registry (the Distribution registry).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Standard base64 with padding (kept here so that other crates' tests can include this module).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    // Through the crate directory's parent, so that other crates' tests can include this module.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kedge-helm/tests/fixtures")
}

/// The helm binary the tests use (installed by scripts/install-helm).
pub fn helm() -> PathBuf {
    kedge_helm_binary().expect("helm not found: run scripts/install-helm")
}

fn kedge_helm_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEDGE_HELM") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("KEDGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kedge")))?;
    let p = cache.join("bin/helm");
    p.exists().then_some(p)
}

/// Runs helm with a private home; panics with its output when it fails.
pub fn run_helm(home: &Path, args: &[&str]) -> String {
    let out = Command::new(helm())
        .args(args)
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies a fixture chart into `dest` with another version and a marker value, packages it into `out_dir`
/// and returns the package path.
pub fn package(fixture: &str, version: &str, work: &Path, out_dir: &Path) -> PathBuf {
    let dir = work.join(format!("{fixture}-{version}"));
    copy_dir(&fixtures().join(fixture), &dir);
    let chart_yaml = dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {version}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&chart_yaml, format!("{text}\n")).unwrap();
    std::fs::create_dir_all(out_dir).unwrap();
    run_helm(
        work,
        &[
            "package",
            dir.to_str().unwrap(),
            "--destination",
            out_dir.to_str().unwrap(),
        ],
    );
    out_dir.join(format!("{fixture}-{version}.tgz"))
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A static HTTP server on a loopback port serving a directory, optionally behind basic auth; records
/// request paths and the Authorization headers it saw.
pub struct StaticServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub log: Arc<Log>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    pub fn start(root: &Path, auth: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let expected =
            auth.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        let (root, stop2, log2) = (root.to_path_buf(), stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &root, expected.as_deref(), &log2);
                }
            }
        });
        StaticServer {
            port,
            stop,
            log,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Request paths with the Authorization header each carried.
pub type Log = std::sync::Mutex<Vec<(String, Option<String>)>>;

fn serve(conn: TcpStream, root: &Path, auth: Option<&str>, log: &Log) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_owned());
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    log.lock()
        .unwrap()
        .push((path.clone(), authorization.clone()));
    let mut conn = conn;
    if auth.is_some() && authorization.as_deref() != auth {
        conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"charts\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let rel = path.trim_start_matches('/');
    let file = root.join(rel);
    if rel.contains("..") || !file.is_file() {
        conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut body = Vec::new();
    std::fs::File::open(&file)?.read_to_end(&mut body)?;
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(&body)
}

/// The user of [`Registry::start_with_auth`].
pub const REGISTRY_USER: &str = "kedge";
/// The password of [`Registry::start_with_auth`] (a test credential).
pub const REGISTRY_PASSWORD: &str = "oci-pass-42";
/// bcrypt (cost 5) of [`REGISTRY_PASSWORD`], as the registry's htpasswd file wants it; made once with the system's
/// crypt(3) (`$2b$`), so that the tests need no bcrypt implementation.
const REGISTRY_PASSWORD_BCRYPT: &str =
    "$2b$05$ON4Hb.mxf9JBYTX0oOip.eaitIpUHOJP5zMguS2kJCsRAJz.CMtUi";

/// The Distribution registry on a loopback port, storing in a temporary directory.
pub struct Registry {
    pub port: u16,
    child: Child,
    auth: Option<(&'static str, &'static str)>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// A registry with htpasswd basic authentication: [`REGISTRY_USER`] / [`REGISTRY_PASSWORD`].
    pub fn start_with_auth() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(with_auth: bool) -> Self {
        let bin = ["/usr/bin/docker-registry", "/usr/bin/registry"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("docker-registry not installed: run scripts/install-deps");
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if with_auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(
                &htpasswd,
                format!("{REGISTRY_USER}:{REGISTRY_PASSWORD_BCRYPT}\n"),
            )
            .unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd: {{realm: kedge-test, path: {}}}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            port,
            child,
            auth: with_auth.then_some((REGISTRY_USER, REGISTRY_PASSWORD)),
            _dir: dir,
        };
        let ready = if with_auth {
            "HTTP/1.1 401"
        } else {
            "HTTP/1.1 200"
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with(ready) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a chart package to `oci://HOST/<repo>` (with the credentials when the registry wants them).
    pub fn push(&self, package: &Path, repo: &str, home: &Path) {
        let target = format!("oci://{}/{repo}", self.host());
        let mut args = vec!["push", package.to_str().unwrap(), &target, "--plain-http"];
        if let Some((user, password)) = self.auth {
            args.extend(["--username", user, "--password", password]);
        }
        run_helm(home, &args);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
