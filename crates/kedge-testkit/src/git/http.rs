//! Smart HTTP git server on a loopback port: checks HTTP basic auth and runs `git http-backend` (CGI) per
//! request, streaming both bodies.

use std::convert::Infallible;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use super::RepoRoot;
use crate::error::{Result, io_err};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The credentials the HTTP server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// HTTP basic auth with exactly this user name and password.
    Basic {
        /// The accepted user name.
        username: String,
        /// The accepted password.
        password: String,
    },
    /// A token given as the password of HTTP basic auth, with any user name (as hosted git services do).
    Token(String),
}

impl HttpAuth {
    /// Basic auth with this user name and password.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Token auth: any user name, the token as password.
    pub fn token(token: impl Into<String>) -> Self {
        Self::Token(token.into())
    }

    /// The user name a client should send (`"git"` for a token, any name works).
    pub fn username(&self) -> &str {
        match self {
            Self::Basic { username, .. } => username,
            Self::Token(_) => "git",
        }
    }

    /// The password a client should send (the token for a token).
    pub fn password(&self) -> &str {
        match self {
            Self::Basic { password, .. } | Self::Token(password) => password,
        }
    }

    /// The authenticated user name, if the `Authorization` header carries accepted credentials.
    fn check(&self, value: Option<&HeaderValue>) -> Option<String> {
        let value = value?.to_str().ok()?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        let ok = match self {
            Self::Basic { username, password } => user == username && pass == password,
            Self::Token(token) => pass == token,
        };
        ok.then(|| user.to_owned())
    }
}

/// One request the HTTP server answered, for assertions in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The status code answered.
    pub status: u16,
    /// The authenticated user, if the credentials were accepted.
    pub user: Option<String>,
    /// The `Git-Protocol` header (e.g. `version=2`), if sent.
    pub git_protocol: Option<String>,
}

struct State {
    backend: PathBuf,
    auth: HttpAuth,
    root: PathBuf,
    home: PathBuf,
    log: PathBuf,
    requests: Mutex<Vec<HttpRequestRecord>>,
}

/// A running smart HTTP git server with basic auth (fetch and push) on 127.0.0.1. It runs on its own thread and
/// tokio runtime, so it works from sync and async tests alike; stopped on drop.
pub struct GitHttpServer {
    port: u16,
    state: Arc<State>,
    root: RepoRoot,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl std::fmt::Debug for GitHttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHttpServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl GitHttpServer {
    /// Starts the server on a free port of 127.0.0.1 serving `root`, accepting `auth`. It accepts connections as
    /// soon as this returns.
    pub fn start(root: &RepoRoot, auth: HttpAuth) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kedge-git-http-")
            .tempdir()
            .map_err(io_err(
                "create a temporary directory for the git HTTP server",
            ))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_err("bind the git HTTP server"))?;
        let port = listener
            .local_addr()
            .map_err(io_err("read the git HTTP server address"))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(io_err("make the git HTTP listener non-blocking"))?;
        let log = dir.path().join("http-backend.log");
        File::create(&log).map_err(io_err("create the http-backend log"))?;
        let state = Arc::new(State {
            backend: super::git_helper("git-http-backend")?,
            auth,
            root: root.path().to_owned(),
            home: dir.path().to_owned(),
            log,
            requests: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err("build the git HTTP server runtime"))?;
        let (shutdown, shutdown_rx) = oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("git-http-{port}"))
            .spawn(move || runtime.block_on(serve(listener, thread_state, shutdown_rx)))
            .map_err(io_err("spawn the git HTTP server thread"))?;
        Ok(Self {
            port,
            state,
            root: root.clone(),
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials it accepts.
    pub fn auth(&self) -> &HttpAuth {
        &self.state.auth
    }

    /// The URL of repository `name`, without credentials: `http://127.0.0.1:PORT/name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            name.trim_start_matches('/')
        )
    }

    /// The URL of repository `name` with the accepted credentials in its userinfo. A test secret: do not log it.
    pub fn url_with_credentials(&self, name: &str) -> String {
        format!(
            "http://{}:{}@127.0.0.1:{}/{}",
            encode_userinfo(self.state.auth.username()),
            encode_userinfo(self.state.auth.password()),
            self.port,
            name.trim_start_matches('/')
        )
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<HttpRequestRecord> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The root it serves.
    pub fn root(&self) -> &RepoRoot {
        &self.root
    }

    /// The standard error of `git http-backend` so far (useful when a test fails).
    pub fn log(&self) -> String {
        crate::process::log_tail(&self.state.log, usize::MAX)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, state.clone(), peer));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn full(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text.into()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let mut record = HttpRequestRecord {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        status: 0,
        user: None,
        git_protocol: req
            .headers()
            .get("git-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let resp = match state.auth.check(req.headers().get(header::AUTHORIZATION)) {
        None => {
            let mut resp = full(StatusCode::UNAUTHORIZED, "authentication required\n");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kedge test git\""),
            );
            resp
        }
        Some(user) => {
            record.user = Some(user.clone());
            match run_backend(req, &state, &user, peer).await {
                Ok(resp) => resp,
                Err(e) => full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("git http-backend failed: {e}\n"),
                ),
            }
        }
    };
    record.status = resp.status().as_u16();
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(record);
    }
    Ok(resp)
}

async fn run_backend(
    req: Request<Incoming>,
    state: &State,
    user: &str,
    peer: SocketAddr,
) -> std::io::Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let header_str = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let stderr = std::fs::OpenOptions::new().append(true).open(&state.log)?;
    // The helper itself, not `git http-backend`: killing `git` would not stop the helper it runs.
    let mut cmd = tokio::process::Command::new(&state.backend);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", &state.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "safe.directory")
        .env("GIT_CONFIG_VALUE_1", "*")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "kedge-testkit")
        .env("AUTH_TYPE", "Basic")
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", percent_decode(parts.uri.path()))
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""));
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-length", "CONTENT_LENGTH"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(value) = header_str(header) {
            cmd.env(var, value);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other(
            "git http-backend has no stdin or stdout pipe",
        ));
    };

    // Stream the request body into the CGI; it may stop reading early, so write errors end the copy quietly.
    tokio::spawn(async move {
        let mut body = body;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && stdin.write_all(&data).await.is_err()
            {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });

    let mut reader = BufReader::new(stdout);
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            let _ = child.wait().await;
            return Err(std::io::Error::other(format!(
                "git http-backend ended before its headers; stderr: {}",
                crate::process::log_tail(&state.log, 5)
            )));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse::<u16>().ok());
                status = code
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
            } else {
                resp = resp.header(name.trim(), value);
            }
        }
    }
    let stream = futures::stream::unfold(Some((reader, child)), |slot| async move {
        let (mut reader, mut child) = slot?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        match reader.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = child.wait().await;
                None
            }
            Ok(_) => Some((Ok(Frame::data(buf.freeze())), Some((reader, child)))),
            Err(e) => Some((Err(e), None)),
        }
    });
    resp.status(status)
        .body(StreamBody::new(stream).boxed_unsync())
        .map_err(|e| std::io::Error::other(format!("invalid CGI response header: {e}")))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("/a%20b/c.git"), "/a b/c.git");
        assert_eq!(percent_decode("/a%2"), "/a%2");
    }

    #[test]
    fn encodes_userinfo() {
        assert_eq!(encode_userinfo("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    #[test]
    fn checks_basic_and_token_auth() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let hv = |s: String| HeaderValue::from_str(&s).expect("header");
        let basic = HttpAuth::basic("alice", "secret");
        assert_eq!(
            basic.check(Some(&hv(format!("Basic {}", b64("alice:secret"))))),
            Some("alice".into())
        );
        assert_eq!(
            basic.check(Some(&hv(format!("Basic {}", b64("alice:wrong"))))),
            None
        );
        assert_eq!(basic.check(None), None);
        let token = HttpAuth::token("tok");
        assert_eq!(
            token.check(Some(&hv(format!("basic {}", b64("anyone:tok"))))),
            Some("anyone".into())
        );
        assert_eq!(
            token.check(Some(&hv(format!("Bearer {}", b64("anyone:tok"))))),
            None
        );
    }
}
