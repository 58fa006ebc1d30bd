//! The loopback git servers serve clone, fetch and push to the real `git` client, and refuse bad credentials and
//! unknown host keys with clear errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use kedge_testkit::{
    GitDaemon, GitFixture, GitHttpServer, GitServers, GitSshServer, HttpAuth, RepoRoot, git_clone,
};

/// Runs isolated `git ARGS` in `dir` and returns trimmed stdout, or the failure with stderr.
fn git(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Pushes two commits through `push_url`, clones through `url`, pushes a third and fetches it.
fn round_trip(push_url: &str, url: &str, envs: &[(&str, &str)]) -> Result<()> {
    let mut work = GitFixture::new()?;
    for (k, v) in envs {
        work.set_env(*k, *v);
    }
    work.write("a.yaml", "a: 1\n")?;
    work.commit("one")?;
    work.write("dir/b.yaml", "b: 2\n")?;
    let second = work.commit("two")?;
    work.push(push_url, "main")?;

    let dest = tempfile::tempdir()?;
    let clone = dest.path().join("clone");
    git_clone(url, &clone, envs)?;
    let head = git(&clone, &["rev-parse", "HEAD"], envs).map_err(anyhow::Error::msg)?;
    ensure!(head == second, "clone HEAD {head} != pushed {second}");
    ensure!(std::fs::read_to_string(clone.join("dir/b.yaml"))? == "b: 2\n");

    work.write("a.yaml", "a: 3\n")?;
    let third = work.commit("three")?;
    work.push(push_url, "main")?;
    git(&clone, &["fetch", "--quiet", "origin"], envs).map_err(anyhow::Error::msg)?;
    let fetched = git(&clone, &["rev-parse", "origin/main"], envs).map_err(anyhow::Error::msg)?;
    ensure!(fetched == third, "fetched {fetched} != pushed {third}");
    Ok(())
}

#[test]
fn git_daemon_serves_clone_fetch_and_push() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let daemon = GitDaemon::start(&root)?;
    let url = daemon.url("app.git");
    ensure!(url == format!("git://127.0.0.1:{}/app.git", daemon.port()));
    round_trip(&url, &url, &[]).with_context(|| daemon.log())
}

#[test]
fn git_daemon_stops_on_drop() -> Result<()> {
    let root = RepoRoot::new()?;
    let daemon = GitDaemon::start(&root)?;
    let port = daemon.port();
    ensure!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(daemon);
    // The process serving the connection above was forked with the listening socket and may outlive the daemon by a
    // moment: the port must stop accepting soon, not in the same instant.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        ensure!(
            std::time::Instant::now() < deadline,
            "port {port} still accepts 5 s after drop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let path = root.path().to_owned();
    drop(root);
    ensure!(!path.exists(), "repo root {} not removed", path.display());
    Ok(())
}

#[test]
fn http_serves_clone_fetch_and_push_with_protocol_v2() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("team/app.git")?;
    let http = GitHttpServer::start(&root, HttpAuth::basic("kedge", "p@ss word"))?;
    let url = http.url_with_credentials("team/app.git");
    round_trip(&url, &url, &[]).with_context(|| http.log())?;
    let requests = http.requests();
    ensure!(
        requests.iter().any(|r| r.method == "POST"
            && r.path.ends_with("/git-receive-pack")
            && r.status == 200),
        "no successful push request in {requests:?}"
    );
    ensure!(
        requests.iter().any(|r| r.path.ends_with("/git-upload-pack")
            && r.git_protocol.as_deref() == Some("version=2")),
        "no protocol v2 fetch in {requests:?}"
    );
    ensure!(
        requests
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.user.as_deref() == Some("kedge"))
    );
    Ok(())
}

#[test]
fn http_rejects_a_wrong_password_with_401() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let http = GitHttpServer::start(&root, HttpAuth::basic("kedge", "right"))?;
    let dest = tempfile::tempdir()?;
    let bad = http
        .url("app.git")
        .replace("http://", "http://kedge:wrong@");
    let err = git_clone(&bad, &dest.path().join("a"), &[])
        .expect_err("clone with a wrong password must fail");
    let msg = err.to_string();
    ensure!(
        msg.contains("Authentication failed"),
        "unclear error: {msg}"
    );
    ensure!(
        !msg.contains("wrong"),
        "the password leaked into the error: {msg}"
    );

    let err = git_clone(&http.url("app.git"), &dest.path().join("b"), &[])
        .expect_err("no credentials must fail");
    ensure!(
        msg.contains("Authentication failed") || err.to_string().contains("Username"),
        "unclear error: {err}"
    );

    // The raw answer: 401 with a Basic challenge.
    let mut stream = TcpStream::connect(("127.0.0.1", http.port()))?;
    write!(
        stream,
        "GET /app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    ensure!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    ensure!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{answer}"
    );
    Ok(())
}

#[test]
fn http_token_auth_accepts_any_user_name() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let http = GitHttpServer::start(&root, HttpAuth::token("tok-123"))?;
    let work = GitFixture::new()?;
    work.write("x", "1")?;
    let sha = work.commit("x")?;
    work.push(&http.url_with_credentials("app.git"), "main")?;
    let dest = tempfile::tempdir()?;
    let url = http
        .url("app.git")
        .replace("http://", "http://someone-else:tok-123@");
    git_clone(&url, &dest.path().join("c"), &[])?;
    ensure!(
        git(&dest.path().join("c"), &["rev-parse", "HEAD"], &[]).map_err(anyhow::Error::msg)?
            == sha
    );
    let bad = http
        .url("app.git")
        .replace("http://", "http://git:tok-999@");
    ensure!(
        git_clone(&bad, &dest.path().join("d"), &[]).is_err(),
        "a wrong token must be refused"
    );
    Ok(())
}

/// A gzip-encoded protocol v2 `ls-refs` request, as git sends large requests, is decoded by the backend.
#[test]
fn http_accepts_gzip_encoded_requests() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let http = GitHttpServer::start(&root, HttpAuth::basic("u", "p"))?;
    let work = GitFixture::new()?;
    work.write("x", "1")?;
    work.commit("x")?;
    work.push(&http.url_with_credentials("app.git"), "main")?;

    let request = b"0014command=ls-refs\n00010000";
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    gzip.stdin
        .take()
        .context("gzip stdin")?
        .write_all(request)?;
    let body = gzip.wait_with_output()?.stdout;
    let mut stream = TcpStream::connect(("127.0.0.1", http.port()))?;
    write!(
        stream,
        "POST /app.git/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic dTpw\r\n\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Encoding: gzip\r\n\
         Git-Protocol: version=2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        http.log()
    );
    ensure!(answer.contains("refs/heads/main"), "{answer}");
    Ok(())
}

/// A push larger than git's 1 MiB post buffer goes out chunked and is streamed to the backend.
#[test]
fn http_streams_a_large_chunked_push() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("big.git")?;
    let http = GitHttpServer::start(&root, HttpAuth::basic("u", "p"))?;
    let work = GitFixture::new()?;
    // 4 MiB of incompressible bytes from a fixed-seed xorshift generator.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let blob: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    work.write("blob.bin", &blob)?;
    let sha = work.commit("big")?;
    work.push(&http.url_with_credentials("big.git"), "main")?;
    let dest = tempfile::tempdir()?;
    git_clone(
        &http.url_with_credentials("big.git"),
        &dest.path().join("c"),
        &[],
    )?;
    ensure!(std::fs::read(dest.path().join("c/blob.bin"))? == blob);
    ensure!(
        git(&dest.path().join("c"), &["rev-parse", "HEAD"], &[]).map_err(anyhow::Error::msg)?
            == sha
    );
    Ok(())
}

#[test]
fn ssh_serves_clone_fetch_and_push() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let ssh = GitSshServer::start(&root)?;
    let url = ssh.url("app.git");
    ensure!(
        url.starts_with(&format!("ssh://{}@127.0.0.1:{}/", ssh.user(), ssh.port())),
        "{url}"
    );
    ensure!(url.ends_with("/app.git"));
    let line = ssh.known_hosts_line();
    ensure!(
        line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", ssh.port())),
        "{line}"
    );
    ensure!(ssh.private_key()?.contains("BEGIN OPENSSH PRIVATE KEY"));
    let cmd = ssh.git_ssh_command();
    round_trip(&url, &url, &[("GIT_SSH_COMMAND", &cmd)]).with_context(|| ssh.log())
}

#[test]
fn ssh_refuses_an_unknown_host_key_and_a_wrong_key() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let ssh = GitSshServer::start(&root)?;
    let dir = tempfile::tempdir()?;

    // Right key, but the host key is not in known_hosts.
    let empty_known_hosts = dir.path().join("known_hosts");
    std::fs::write(&empty_known_hosts, "")?;
    let cmd = ssh.git_ssh_command().replace(
        &ssh.known_hosts_path().display().to_string(),
        &empty_known_hosts.display().to_string(),
    );
    let err = git_clone(
        &ssh.url("app.git"),
        &dir.path().join("a"),
        &[("GIT_SSH_COMMAND", &cmd)],
    )
    .expect_err("an unknown host key must fail");
    ensure!(
        err.to_string().contains("Host key verification failed"),
        "unclear error: {err}"
    );

    // Known host, but a key the server does not know.
    let other = dir.path().join("other_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()?;
    ensure!(status.success());
    let cmd = ssh.git_ssh_command().replace(
        &ssh.private_key_path().display().to_string(),
        &other.display().to_string(),
    );
    let err = git_clone(
        &ssh.url("app.git"),
        &dir.path().join("b"),
        &[("GIT_SSH_COMMAND", &cmd)],
    )
    .expect_err("an unknown client key must fail");
    ensure!(
        err.to_string().contains("Permission denied"),
        "unclear error: {err}"
    );
    Ok(())
}

#[test]
fn ssh_deploy_key_cannot_run_a_shell() -> Result<()> {
    let root = RepoRoot::new()?;
    let ssh = GitSshServer::start(&root)?;
    let mut args: Vec<String> = ssh
        .git_ssh_command()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    args.extend([
        "-p".into(),
        ssh.port().to_string(),
        format!("{}@127.0.0.1", ssh.user()),
        "id".into(),
    ]);
    let out = Command::new("ssh").args(&args).output()?;
    ensure!(
        !out.status.success(),
        "a shell command ran through the deploy key"
    );
    ensure!(!String::from_utf8_lossy(&out.stdout).contains("uid="));
    Ok(())
}

#[test]
fn all_three_servers_share_one_root() -> Result<()> {
    let servers = GitServers::start(HttpAuth::basic("a", "b"))?;
    servers.root.create_bare_repo("shared.git")?;
    let work = GitFixture::new()?;
    work.write("f", "1")?;
    let sha = work.commit("c")?;
    work.push(&servers.daemon.url("shared.git"), "main")?;
    let dir = tempfile::tempdir()?;
    let ssh_cmd = servers.ssh.git_ssh_command();
    for (i, (url, envs)) in [
        (servers.http.url_with_credentials("shared.git"), vec![]),
        (
            servers.ssh.url("shared.git"),
            vec![("GIT_SSH_COMMAND", ssh_cmd.as_str())],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dest = dir.path().join(i.to_string());
        git_clone(&url, &dest, &envs)?;
        ensure!(git(&dest, &["rev-parse", "HEAD"], &[]).map_err(anyhow::Error::msg)? == sha);
    }
    Ok(())
}

#[test]
fn fixture_tags_branches_symlinks_deletes_and_force_push() -> Result<()> {
    let root = RepoRoot::new()?;
    root.create_bare_repo("app.git")?;
    let daemon = GitDaemon::start(&root)?;
    let url = daemon.url("app.git");
    let work = GitFixture::new()?;
    work.write("base/cm.yaml", "x: 1\n")?;
    work.symlink("base/cm.yaml", "link.yaml")?;
    let c1 = work.commit("c1")?;
    let light = work.tag("v1")?;
    let annotated = work.tag_annotated("v1-ann", "release v1")?;
    ensure!(light == c1, "lightweight tag points at the commit");
    ensure!(annotated != c1, "annotated tag is its own object");
    ensure!(work.rev_parse("v1-ann^{commit}")? == c1);
    ensure!(work.git(["cat-file", "-t", &annotated])? == "tag");
    ensure!(
        work.git(["ls-files", "-s", "link.yaml"])?
            .starts_with("120000"),
        "symlink stored as a link"
    );

    work.switch_new("feature")?;
    work.remove("base")?;
    work.commit("drop base")?;
    ensure!(work.git(["ls-files"])? == "link.yaml");
    work.switch("main")?;
    ensure!(work.path().join("base/cm.yaml").exists());
    work.push_all(&url)?;

    // Rewrite main: a non-fast-forward push is refused, a force push goes through.
    work.write("other", "x")?;
    work.commit("ahead")?;
    work.push(&url, "main")?;
    work.git(["reset", "--quiet", "--hard", &c1])?;
    work.write("other", "y")?;
    let c3 = work.commit("rewritten")?;
    ensure!(
        work.push(&url, "main").is_err(),
        "a non-fast-forward push must be refused"
    );
    work.force_push(&url, "main")?;
    let remote = work.git(["ls-remote", &url, "refs/heads/main", "refs/tags/v1-ann"])?;
    ensure!(
        remote.contains(&format!("{c3}\trefs/heads/main")),
        "{remote}"
    );
    ensure!(
        remote.contains(&format!("{annotated}\trefs/tags/v1-ann")),
        "{remote}"
    );
    Ok(())
}

#[test]
fn fixture_shas_are_reproducible() -> Result<()> {
    let make = || -> Result<(String, String)> {
        let work = GitFixture::new()?;
        work.write("a", "1")?;
        let first = work.commit("one")?;
        work.write("a", "2")?;
        Ok((first, work.commit("two")?))
    };
    let a = make()?;
    let b = make()?;
    ensure!(a == b, "{a:?} != {b:?}");
    ensure!(a.0 != a.1);
    Ok(())
}

#[test]
fn fixture_builds_large_histories() -> Result<()> {
    let work = GitFixture::new()?;
    work.write("README", "start\n")?;
    let base = work.commit("base")?;
    let start = Instant::now();
    let tip = work.fast_history("main", 5_000, 500)?;
    let took = start.elapsed();
    eprintln!("fast_history: 5000 commits, 500 files in {took:?}");
    ensure!(work.git(["rev-list", "--count", "HEAD"])? == "5001");
    ensure!(
        work.git(["merge-base", "--is-ancestor", &base, &tip])
            .is_ok()
    );
    ensure!(work.git(["ls-files"])?.lines().count() == 501);
    ensure!(
        std::fs::read_to_string(work.path().join("data/004/f00499.yaml"))?
            .contains("revision: 4999")
    );
    // No wall-clock bound: how fast this runs depends on the machine's load; the figure is printed above.
    Ok(())
}
