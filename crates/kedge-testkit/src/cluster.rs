//! Access to the test Kubernetes API server started by `testcluster/up`, namespaces per test, and kubectl.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result, io_err};

/// Environment variable naming the test cluster; `default` when unset.
pub const CLUSTER_ENV: &str = "KEDGE_TEST_CLUSTER";
/// Environment variable that, when set, names a kubeconfig to use instead of running `testcluster/up`.
pub const KUBECONFIG_ENV: &str = "KEDGE_TEST_KUBECONFIG";
/// Label put on every namespace the kit creates.
pub const TEST_LABEL: &str = "kedge.dev/test";

/// Kubeconfig paths of the clusters already started by this process, by cluster name.
fn started() -> &'static Mutex<HashMap<String, PathBuf>> {
    static STARTED: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    STARTED.get_or_init(Default::default)
}

/// The kubeconfig of the cluster this process used last; namespaces created from a bare client delete with it.
fn last_kubeconfig() -> &'static Mutex<Option<PathBuf>> {
    static LAST: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    LAST.get_or_init(Default::default)
}

/// A running test cluster (real API server on etcd) and a client for it.
///
/// The client is bound to the tokio runtime that created it: get the cluster inside each test.
#[derive(Clone)]
pub struct TestCluster {
    name: String,
    kubeconfig: PathBuf,
    client: Client,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("name", &self.name)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl TestCluster {
    /// The cluster named by `KEDGE_TEST_CLUSTER` (default `default`), started if needed.
    pub async fn from_env() -> Result<Self> {
        let name = std::env::var(CLUSTER_ENV)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        Self::get(&name).await
    }

    /// Starts the cluster `name` or reuses it (`testcluster/up --name NAME`, idempotent; the first start can take
    /// minutes because it builds the server) and connects to it. With `KEDGE_TEST_KUBECONFIG` set, that
    /// kubeconfig is used and nothing is started.
    pub async fn get(name: &str) -> Result<Self> {
        Self::start(name, &[]).await
    }

    /// Like [`get`](Self::get), with the API server writing an audit log of every request but reads (see
    /// [`audit_events`](Self::audit_events)): `testcluster/up --name NAME --audit`. Use a cluster name of its own:
    /// a running cluster started without the audit log is refused, not restarted. `KEDGE_TEST_KUBECONFIG` is
    /// ignored here (that cluster's log is not ours to read).
    pub async fn get_audited(name: &str) -> Result<Self> {
        let key = format!("{name} --audit");
        let known = started().lock().ok().and_then(|m| m.get(&key).cloned());
        let kubeconfig = match known {
            Some(path) => path,
            None => {
                let path = run_up(name, &["--audit"]).await?;
                if let Ok(mut m) = started().lock() {
                    m.insert(key, path.clone());
                }
                path
            }
        };
        Self::connect(name, kubeconfig).await
    }

    /// Like [`get`](Self::get), with the API server enforcing RBAC (`testcluster/up --name NAME --rbac`): the
    /// admin kubeconfig (group `system:masters`) may still do anything, every other identity only what Roles,
    /// ClusterRoles and their bindings grant; impersonation needs the `impersonate` verb, and ServiceAccounts get
    /// tokens (see [`service_account_token`](Self::service_account_token), [`client_as`](Self::client_as),
    /// [`write_kubeconfig_as`](Self::write_kubeconfig_as)). Use a cluster name of its own (by convention the test
    /// cluster's name plus `-rbac`): a running cluster started without RBAC is refused, not restarted.
    /// `KEDGE_TEST_KUBECONFIG` is ignored here.
    pub async fn get_rbac(name: &str) -> Result<Self> {
        let key = format!("{name} --rbac");
        let known = started().lock().ok().and_then(|m| m.get(&key).cloned());
        let kubeconfig = match known {
            Some(path) => path,
            None => {
                let path = run_up(name, &["--rbac"]).await?;
                if let Ok(mut m) = started().lock() {
                    m.insert(key, path.clone());
                }
                path
            }
        };
        Self::connect(name, kubeconfig).await
    }

    async fn start(name: &str, extra: &[&str]) -> Result<Self> {
        let kubeconfig = match std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => {
                let known = started().lock().ok().and_then(|m| m.get(name).cloned());
                match known {
                    Some(path) => path,
                    None => {
                        let path = run_up(name, extra).await?;
                        if let Ok(mut m) = started().lock() {
                            m.insert(name.to_owned(), path.clone());
                        }
                        path
                    }
                }
            }
        };
        Self::connect(name, kubeconfig).await
    }

    async fn connect(name: &str, kubeconfig: PathBuf) -> Result<Self> {
        let client = client_from_kubeconfig(&kubeconfig).await?;
        if let Ok(mut last) = last_kubeconfig().lock() {
            *last = Some(kubeconfig.clone());
        }
        Ok(Self {
            name: name.to_owned(),
            kubeconfig,
            client,
        })
    }

    /// The audit log of a cluster started with [`get_audited`](Self::get_audited) (next to its kubeconfig).
    pub fn audit_log(&self) -> PathBuf {
        self.kubeconfig.with_file_name("audit.log")
    }

    /// Every audit event logged so far, in the order the server finished the requests (see
    /// [`AuditEvent`](crate::AuditEvent)); an error when the cluster writes no audit log.
    pub fn audit_events(&self) -> Result<Vec<crate::AuditEvent>> {
        crate::audit::read(&self.audit_log())
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the cluster and removes its data (`testcluster/down --name NAME`): its API server stops answering.
    /// A later [`get`](Self::get) of the same name starts a new, empty cluster (other ports, other credentials).
    pub async fn stop(&self) -> Result<()> {
        if let Ok(mut m) = started().lock() {
            m.retain(|key, _| key != &self.name && !key.starts_with(&format!("{} ", self.name)));
        }
        run_script(&up_script().with_file_name("down"), &self.name, &[]).await?;
        Ok(())
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client for the cluster (cheap to clone).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates a namespace with a unique name starting with `prefix`, deleted on drop.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        TestNamespace::create_with(&self.client, Some(self.kubeconfig.clone()), prefix).await
    }

    /// Runs `kubectl --kubeconfig K ARGS`; a non-zero exit is reported in the output, not as an error.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<KubectlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        kubectl(&self.kubeconfig, args, None).await
    }

    /// Runs `kubectl --kubeconfig K ARGS` with `input` on its standard input (e.g. `apply -f -`).
    pub async fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Result<KubectlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        kubectl(&self.kubeconfig, args, Some(input)).await
    }

    /// Runs kubectl and returns its standard output; a non-zero exit is an error carrying its stderr.
    pub async fn kubectl_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl(args).await?.into_result()
    }
}

/// What a kubectl run printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubectlOutput {
    /// The command line (without the kubeconfig flag).
    pub command: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// The exit code, if it exited normally.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl KubectlOutput {
    /// Standard output if it succeeded, else an error with the exit status and stderr.
    pub fn into_result(self) -> Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(Error::Command {
                command: self.command,
                status: self
                    .code
                    .map_or_else(|| "killed".into(), |c| format!("exit status: {c}")),
                stderr: self.stderr.trim().to_owned(),
            })
        }
    }
}

/// Runs `kubectl --kubeconfig KUBECONFIG ARGS`, optionally feeding `input` on stdin.
pub async fn kubectl<I, S>(kubeconfig: &Path, args: I, input: Option<&str>) -> Result<KubectlOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = std::iter::once("kubectl".to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(&args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "kubectl".into(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(io_err("write kubectl's standard input"))?;
        drop(stdin);
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(io_err(format!("wait for `{command}`")))?;
    Ok(KubectlOutput {
        command,
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Builds a client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    Client::try_from(config_from_kubeconfig(path).await?).map_err(|source| Error::Kube {
        action: "build a client".into(),
        source,
    })
}

/// The client configuration of a kubeconfig file's current context.
pub(crate) async fn config_from_kubeconfig(path: &Path) -> Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_owned(),
            source,
        })
}

/// Path of the `testcluster/up` script of this repository.
pub fn up_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcluster/up")
}

/// Runs `script --name NAME EXTRA...`; its standard output, or an error with the end of its standard error.
async fn run_script(script: &Path, name: &str, extra: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new(script)
        .args(["--name", name])
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::Spawn {
            program: script.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(Error::Command {
            command: format!("{} --name {name} {}", script.display(), extra.join(" ")),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn run_up(name: &str, extra: &[&str]) -> Result<PathBuf> {
    let script = up_script();
    let stdout = run_script(&script, name, extra).await?;
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    let path = PathBuf::from(&line);
    if line.is_empty() || !path.is_file() {
        return Err(Error::NoKubeconfig { script, line });
    }
    Ok(path)
}

/// A namespace with a unique name, deleted when dropped (through kubectl, so no async runtime is needed), or
/// explicitly with [`cleanup`](Self::cleanup).
pub struct TestNamespace {
    name: String,
    client: Client,
    kubeconfig: Option<PathBuf>,
    done: bool,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates a namespace named `PREFIX-<unique suffix>` (labelled `kedge.dev/test=true`).
    ///
    /// Deletion on drop uses the kubeconfig of the last [`TestCluster`] this process got; prefer
    /// [`TestCluster::namespace`] when a client of another cluster is used.
    pub async fn create(client: &Client, prefix: &str) -> Result<Self> {
        let kubeconfig = last_kubeconfig().lock().ok().and_then(|l| l.clone());
        Self::create_with(client, kubeconfig, prefix).await
    }

    async fn create_with(
        client: &Client,
        kubeconfig: Option<PathBuf>,
        prefix: &str,
    ) -> Result<Self> {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|source| Error::Kube {
                action: format!("create namespace {name}"),
                source,
            })?;
        Ok(Self {
            name,
            client: client.clone(),
            kubeconfig,
            done: false,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace now (not waiting for it to be gone); dropping afterwards does nothing.
    pub async fn cleanup(mut self) -> Result<()> {
        self.done = true;
        match Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Kube {
                action: format!("delete namespace {}", self.name),
                source,
            }),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(kubeconfig) = &self.kubeconfig else {
            eprintln!(
                "kedge-testkit: namespace {} left behind: no kubeconfig known to delete it",
                self.name
            );
            return;
        };
        let status = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("kedge-testkit: failed to delete namespace {}", self.name);
        }
    }
}

/// `prefix-<pid><counter><time>` as a DNS label of at most 63 characters.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean = clean
        .trim_matches('-')
        .chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned();
    if clean.is_empty() {
        clean = "test".into();
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{clean}-{:x}-{n:x}{:05x}",
        std::process::id(),
        nanos & 0xfffff
    )
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_are_dns_labels() {
        let a = unique_name("My_Test.Prefix");
        let b = unique_name("My_Test.Prefix");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test-prefix-"), "{a}");
        let long = unique_name(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{long}"
        );
        assert!(unique_name("--").starts_with("test-"));
    }
}
