//! Charts from a loopback Helm HTTP repository and a loopback OCI registry, with version ranges that move when
//! a new version is published.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use kedge_helm::{
    Capabilities, HelmConfig, HelmError, HelmOptions, HelmRenderer, RemoteChart, RepoCredentials,
};

fn renderer(cache: &std::path::Path) -> HelmRenderer {
    HelmRenderer::new(HelmConfig {
        binary: Some(common::helm()),
        cache_dir: Some(cache.to_path_buf()),
        // Read the index on every resolve, so a new version is seen at once.
        index_ttl: Duration::ZERO,
        ..HelmConfig::default()
    })
}

fn index(home: &std::path::Path, repo_dir: &std::path::Path, url: &str) {
    common::run_helm(
        home,
        &["repo", "index", repo_dir.to_str().unwrap(), "--url", url],
    );
}

fn chart(url: String, version: &str, creds: Option<RepoCredentials>) -> RemoteChart {
    RemoteChart {
        repo_url: url,
        chart: "webapp".into(),
        version: version.into(),
        credentials: creds,
        plain_http: false,
    }
}

fn options() -> HelmOptions {
    HelmOptions {
        release_name: "web".into(),
        namespace: "shop".into(),
        value_files: vec!["values-production.yaml".into()],
        ..HelmOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_repository_range_moves_when_a_version_is_published() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    common::package("webapp", "1.0.0", work.path(), &repo_dir);
    common::package("webapp", "1.1.0", work.path(), &repo_dir);
    common::package("webapp", "2.0.0", work.path(), &repo_dir);
    let server = common::StaticServer::start(&repo_dir, Some(("kedge", "chart-pass-123")));
    // Chart URLs in the index are relative, as `helm repo index` writes them without --url.
    common::run_helm(work.path(), &["repo", "index", repo_dir.to_str().unwrap()]);
    let cache = work.path().join("cache");
    let r = renderer(&cache);
    let creds = RepoCredentials {
        username: "kedge".into(),
        password: "chart-pass-123".into(),
    };

    let got = r
        .fetch(&chart(server.url(), ">=1.0.0 <2", Some(creds.clone())))
        .await
        .unwrap();
    assert_eq!(got.version, "1.1.0");
    assert!(got.downloaded);
    assert!(got.digest.starts_with("sha256:"));
    let out = r
        .render_fetched(&got, &options(), &[], &Capabilities::default())
        .unwrap();
    let cm = out
        .rendered
        .objects
        .iter()
        .find(|o| o.name == "web-config")
        .unwrap();
    assert_eq!(cm.object["data"]["greeting"], "hello from production");
    assert_eq!(cm.source.file, "webapp@1.1.0/templates/config.yaml");

    // A second resolve uses the cached package.
    let again = r
        .fetch(&chart(server.url(), ">=1.0.0 <2", Some(creds.clone())))
        .await
        .unwrap();
    assert!(!again.downloaded);
    assert_eq!(again.digest, got.digest);

    // Publishing 1.2.0 moves the range; an exact version stays put.
    common::package("webapp", "1.2.0", work.path(), &repo_dir);
    index(work.path(), &repo_dir, &server.url());
    let moved = r
        .fetch(&chart(server.url(), ">=1.0.0 <2", Some(creds.clone())))
        .await
        .unwrap();
    assert_eq!(moved.version, "1.2.0");
    assert_ne!(moved.digest, got.digest);
    let exact = r
        .fetch(&chart(server.url(), "1.0.0", Some(creds.clone())))
        .await
        .unwrap();
    assert_eq!(exact.version, "1.0.0");

    // Without credentials the repository says no, and the message says why without any secret.
    let err = r.fetch(&chart(server.url(), "*", None)).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = r
        .fetch(&chart(server.url(), ">=3", Some(creds.clone())))
        .await
        .unwrap_err();
    assert!(matches!(err, HelmError::NoVersion { .. }), "{err:?}");
    assert!(err.to_string().contains("2.0.0"), "{err}");
    assert!(!err.to_string().contains("chart-pass-123"));
    // Credentials were sent to the repository for the index and the packages.
    let log = server.log.lock().unwrap().clone();
    assert!(log.iter().any(|(p, a)| p == "/index.yaml" && a.is_some()));
    assert!(log.iter().any(|(p, a)| p.ends_with(".tgz") && a.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_to_the_repository_and_nowhere_else() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    common::package("webapp", "1.0.0", work.path(), &repo_dir);
    // The index lives behind basic auth; its chart URLs are absolute and point at another origin (a download
    // mirror on another port), which needs no credentials and must not receive them.
    let repo = common::StaticServer::start(&repo_dir, Some(("kedge", "chart-pass-123")));
    let mirror = common::StaticServer::start(&repo_dir, None);
    index(work.path(), &repo_dir, &mirror.url());
    let r = renderer(&work.path().join("cache"));
    let creds = RepoCredentials {
        username: "kedge".into(),
        password: "chart-pass-123".into(),
    };
    let got = r
        .fetch(&chart(repo.url(), "1.0.0", Some(creds)))
        .await
        .unwrap();
    assert!(got.downloaded);

    let repo_log = repo.log.lock().unwrap().clone();
    assert!(
        repo_log
            .iter()
            .any(|(p, a)| p == "/index.yaml" && a.is_some()),
        "{repo_log:?}"
    );
    let mirror_log = mirror.log.lock().unwrap().clone();
    assert!(
        mirror_log.iter().any(|(p, _)| p.ends_with(".tgz")),
        "the package came from the mirror: {mirror_log:?}"
    );
    let leaked: Vec<_> = mirror_log.iter().filter(|(_, a)| a.is_some()).collect();
    assert!(
        leaked.is_empty(),
        "requests to another origin carried Authorization: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_registry_range_moves_when_a_version_is_pushed() {
    let work = tempfile::tempdir().unwrap();
    let registry = common::Registry::start();
    let pkgs = work.path().join("pkgs");
    for v in ["0.1.0", "0.2.0", "1.0.0"] {
        let p = common::package("webapp", v, work.path(), &pkgs);
        registry.push(&p, "charts", work.path());
    }
    let cache = work.path().join("cache");
    let r = renderer(&cache);
    let url = format!("oci://{}/charts", registry.host());
    let got = r.fetch(&chart(url.clone(), "^0", None)).await.unwrap();
    assert_eq!(got.version, "0.2.0");
    let out = r
        .render_fetched(&got, &options(), &[], &Capabilities::default())
        .unwrap();
    assert!(out.rendered.objects.iter().any(|o| o.name == "web-web"));

    let p = common::package("webapp", "0.3.0", work.path(), &pkgs);
    registry.push(&p, "charts", work.path());
    let pinned = r.fetch(&chart(url.clone(), "~0.2", None)).await.unwrap();
    assert_eq!(pinned.version, "0.2.0", "~0.2 excludes 0.3.0");
    let moved = r.fetch(&chart(url.clone(), "^0", None)).await.unwrap();
    assert_eq!(moved.version, "0.3.0");
    assert!(moved.downloaded);

    // The chart can also be named by the URL alone.
    let full = RemoteChart {
        repo_url: format!("{url}/webapp"),
        chart: String::new(),
        version: "1.0.0".into(),
        credentials: None,
        plain_http: false,
    };
    let exact = r.fetch(&full).await.unwrap();
    assert_eq!(exact.version, "1.0.0");
    assert_eq!(exact.name, "webapp");

    let err = r.fetch(&chart(url, "9.9.9", None)).await.unwrap_err();
    assert!(matches!(err, HelmError::NoVersion { .. }), "{err:?}");
}
