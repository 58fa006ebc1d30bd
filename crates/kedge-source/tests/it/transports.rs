//! Fetching over git://, http:// (basic auth and token) and ssh:// (deploy key + known_hosts) from loopback servers.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use kedge_source::{
    Credentials, ErrorKind, FetchRequest, FileTree, RepoSpec, Secret, Source, SourceConfig,
};
use kedge_testkit::{GitFixture, GitServers, HttpAuth};

struct Env {
    servers: GitServers,
    sha: String,
    _work: GitFixture,
}

fn env(auth: HttpAuth) -> Env {
    let servers = GitServers::start(auth).unwrap();
    let bare = servers.root.create_bare_repo("app.git").unwrap();
    let work = GitFixture::new().unwrap();
    work.write("deploy/cm.yaml", "kind: ConfigMap\n").unwrap();
    work.commit("first").unwrap();
    work.write("deploy/cm.yaml", "kind: ConfigMap # 2\n")
        .unwrap();
    let sha = work.commit("second").unwrap();
    work.push(bare.to_str().unwrap(), "main").unwrap();
    Env {
        servers,
        sha,
        _work: work,
    }
}

fn source(cache: &Path) -> Source {
    let mut config = SourceConfig::new(cache);
    config.timeout = Duration::from_secs(20);
    Source::new(config).unwrap()
}

fn assert_fetches(src: &Source, repo: RepoSpec, sha: &str) {
    let snap = src
        .fetch(&FetchRequest::new(repo, "main").with_path("deploy"))
        .unwrap();
    assert_eq!(snap.revision().sha, sha);
    assert!(snap.revision().shallow, "depth-1 fetch must stay shallow");
    assert_eq!(
        snap.read_file("deploy/cm.yaml").unwrap(),
        b"kind: ConfigMap # 2\n"
    );
}

#[test]
fn git_daemon_fetch_and_cheap_check() {
    let e = env(HttpAuth::basic("kedge", "pw"));
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&e.servers.daemon.url("app.git")).unwrap();
    assert_fetches(&src, repo.clone(), &e.sha);
    let before = src.stats();
    let (sha, name) = src.resolve_remote(&repo, "main").unwrap();
    assert_eq!(sha, e.sha);
    assert_eq!(name.as_deref(), Some("refs/heads/main"));
    let after = src.stats();
    assert_eq!(
        after.fetches, before.fetches,
        "a change check never fetches"
    );
    assert_eq!(after.ref_listings, before.ref_listings + 1);
    // A commit the mirror holds is read without asking the remote, and named after the branch it is the tip of.
    let snapshot = src
        .fetch(&FetchRequest::new(repo.clone(), e.sha.clone()))
        .unwrap();
    assert_eq!(snapshot.revision().sha, e.sha);
    assert_eq!(
        snapshot.revision().ref_name.as_deref(),
        Some("refs/heads/main")
    );
    assert!(!snapshot.revision().fetched);
    let last = src.stats();
    assert_eq!(
        last.ref_listings, after.ref_listings,
        "no listing for a held commit"
    );
}

#[test]
fn http_basic_auth_with_and_without_credentials() {
    let e = env(HttpAuth::basic("kedge", "s3cret-pw"));
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let url = e.servers.http.url("app.git");

    let anonymous = src
        .fetch(&FetchRequest::new(RepoSpec::new(&url).unwrap(), "main"))
        .unwrap_err();
    assert_eq!(anonymous.kind(), ErrorKind::AuthFailed, "{anonymous}");

    let wrong = RepoSpec::new(&url)
        .unwrap()
        .with_credentials(Credentials::Basic {
            username: "kedge".into(),
            password: Secret::new("wrong-pw-123"),
        });
    let err = src.fetch(&FetchRequest::new(wrong, "main")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("wrong-pw-123"));

    let good = RepoSpec::new(&url)
        .unwrap()
        .with_credentials(Credentials::Basic {
            username: "kedge".into(),
            password: Secret::new("s3cret-pw"),
        });
    assert_fetches(&src, good, &e.sha);

    // Credentials embedded in the URL are used and never shown.
    let embedded = RepoSpec::new(&e.servers.http.url_with_credentials("app.git")).unwrap();
    assert!(!embedded.display_url().contains("s3cret-pw"));
    assert!(!format!("{embedded:?}").contains("s3cret-pw"));
    let (sha, _) = src.resolve_remote(&embedded, "main").unwrap();
    assert_eq!(sha, e.sha);
}

#[test]
fn http_token_auth() {
    let e = env(HttpAuth::token("tok-abc-123"));
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let url = e.servers.http.url("app.git");
    let bad = RepoSpec::new(&url)
        .unwrap()
        .with_credentials(Credentials::Token {
            username: None,
            token: Secret::new("tok-wrong"),
        });
    let err = src.fetch(&FetchRequest::new(bad, "main")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    let good = RepoSpec::new(&url)
        .unwrap()
        .with_credentials(Credentials::Token {
            username: None,
            token: Secret::new("tok-abc-123"),
        });
    assert_fetches(&src, good, &e.sha);
}

fn other_host_key(dir: &Path) -> String {
    let key = dir.join("other");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(dir.join("other.pub")).unwrap();
    let mut parts = public.split_whitespace();
    format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn ssh_deploy_key_and_host_key_checks() {
    let e = env(HttpAuth::basic("kedge", "pw"));
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let ssh = &e.servers.ssh;
    let url = ssh.url("app.git");
    let key = ssh.private_key().unwrap();
    let with = |known_hosts: String| {
        RepoSpec::new(&url)
            .unwrap()
            .with_credentials(Credentials::SshKey {
                private_key: Secret::new(key.clone()),
                known_hosts,
            })
    };

    // Unknown host key: nothing in known_hosts.
    let err = src
        .fetch(&FetchRequest::new(with(String::new()), "main"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown, "{err}");
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));

    // Changed host key: a different key for the same host.
    let tmp = tempfile::tempdir().unwrap();
    let changed = format!("[127.0.0.1]:{} {}", ssh.port(), other_host_key(tmp.path()));
    let err = src
        .fetch(&FetchRequest::new(with(changed), "main"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyChanged, "{err}");

    // Wrong deploy key.
    let wrong_key = std::fs::read_to_string(tmp.path().join("other")).unwrap();
    let wrong = RepoSpec::new(&url)
        .unwrap()
        .with_credentials(Credentials::SshKey {
            private_key: Secret::new(wrong_key),
            known_hosts: ssh.known_hosts_line(),
        });
    let err = src.fetch(&FetchRequest::new(wrong, "main")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");

    // The right key and host key.
    assert_fetches(&src, with(ssh.known_hosts_line()), &e.sha);

    // Explicitly insecure: no known_hosts needed.
    let cache2 = tempfile::tempdir().unwrap();
    let src2 = source(cache2.path());
    assert_fetches(&src2, with(String::new()).insecure(true), &e.sha);
}

#[test]
fn concurrent_and_repeated_requests_share_one_fetch() {
    let e = env(HttpAuth::basic("kedge", "pw"));
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&e.servers.daemon.url("app.git")).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let src = src.clone();
            let repo = repo.clone();
            std::thread::spawn(move || {
                src.fetch(&FetchRequest::new(repo, "main"))
                    .map(|s| s.revision().sha.clone())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), e.sha);
    }
    assert_eq!(src.stats().fetches, 1, "{:?}", src.stats());
    // A second application on another path of the same repo and revision: no new fetch.
    let other = src
        .fetch(&FetchRequest::new(repo, "main").with_path("deploy"))
        .unwrap();
    assert!(!other.revision().fetched);
    assert_eq!(src.stats().fetches, 1);
    // Both share one mirror folder.
    let mirrors: Vec<_> = std::fs::read_dir(cache.path().join("mirrors"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
        .collect();
    assert_eq!(mirrors.len(), 1);
}

#[test]
fn unreachable_and_timeout_are_classified() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = SourceConfig::new(cache.path());
    config.timeout = Duration::from_secs(1);
    let src = Source::new(config).unwrap();

    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let repo = RepoSpec::new(&format!("git://127.0.0.1:{port}/app.git")).unwrap();
    let err = src.fetch(&FetchRequest::new(repo, "main")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));

    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let repo = RepoSpec::new(&format!("git://127.0.0.1:{port}/app.git")).unwrap();
    let started = std::time::Instant::now();
    let err = src.fetch(&FetchRequest::new(repo, "main")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[test]
fn credentials_over_plain_http_need_loopback_or_insecure() {
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new("http://git.example.invalid/app.git")
        .unwrap()
        .with_credentials(Credentials::Token {
            username: None,
            token: Secret::new("tok-xyz"),
        });
    let err = src.fetch(&FetchRequest::new(repo, "main")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(!err.to_string().contains("tok-xyz"));
}
