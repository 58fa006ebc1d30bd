//! Test kit: starts or reuses the test cluster and loopback git servers, and builds git fixtures.
//!
//! # Start here
//!
//! ```no_run
//! use kedge_testkit::{GitFixture, GitServers, HttpAuth, TestCluster, wait_for};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Git: a bare repo served over git://, http:// (basic auth) and ssh://, and a work tree to push from.
//! let servers = GitServers::start(HttpAuth::basic("kedge", "s3cret"))?;
//! servers.root.create_bare_repo("app.git")?;
//! let work = GitFixture::new()?;
//! work.write("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo}\n")?;
//! let sha = work.commit("first")?;
//! work.push(&servers.http.url_with_credentials("app.git"), "main")?;
//! let _git_url = servers.daemon.url("app.git"); // git://127.0.0.1:PORT/app.git
//! let _ssh_url = servers.ssh.url("app.git"); // ssh://root@127.0.0.1:PORT/tmp/.../app.git
//! let _env = servers.ssh.git_ssh_command(); // GIT_SSH_COMMAND with the deploy key and known_hosts
//!
//! // Cluster: start or reuse the test API server, get a namespace that is deleted on drop.
//! let cluster = TestCluster::from_env().await?;
//! let ns = cluster.namespace("demo").await?;
//! let out = cluster.kubectl_ok(["get", "configmaps", "-n", ns.name(), "-o", "name"]).await?;
//! wait_for(Duration::from_secs(5), Duration::from_millis(50), || async { !out.is_empty() }).await?;
//! # let _ = sha; Ok(()) }
//! ```

mod audit;
mod cluster;
mod error;
mod git;
mod process;
mod rbac;
mod receiver;
mod requests;
mod sops;
mod wait;

pub use audit::AuditEvent;
pub use cluster::{
    CLUSTER_ENV, KUBECONFIG_ENV, KubectlOutput, TEST_LABEL, TestCluster, TestNamespace,
    client_from_kubeconfig, kubectl, up_script,
};
pub use error::{Error, Result, Timeout};
pub use git::{
    GitDaemon, GitFixture, GitHttpServer, GitSshServer, HttpAuth, HttpRequestRecord, RepoRoot,
    git_clone,
};
pub use process::redact_url;
pub use rbac::Identity;
pub use receiver::{Received, Receiver};
pub use requests::{Recorded, RequestLog, SentRequest, recorded_client};
pub use sops::{AgeKey, sops_binary, sops_encrypt};
pub use wait::{Poll, wait_for};

/// One root of bare repositories served by all three loopback git servers at once.
#[derive(Debug)]
pub struct GitServers {
    /// git:// (fetch and push, no auth).
    pub daemon: GitDaemon,
    /// http:// smart HTTP with basic auth (fetch and push).
    pub http: GitHttpServer,
    /// ssh:// with a generated deploy key and host key.
    pub ssh: GitSshServer,
    /// The shared root of bare repositories (kept alive by the servers too).
    pub root: RepoRoot,
}

impl GitServers {
    /// Creates a fresh root and starts the three servers on it; the HTTP server accepts `auth`.
    pub fn start(auth: HttpAuth) -> Result<Self> {
        let root = RepoRoot::new()?;
        Ok(Self {
            daemon: GitDaemon::start(&root)?,
            http: GitHttpServer::start(&root, auth)?,
            ssh: GitSshServer::start(&root)?,
            root,
        })
    }
}
