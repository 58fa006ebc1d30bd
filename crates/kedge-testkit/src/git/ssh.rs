//! `sshd` serving a [`RepoRoot`] over ssh:// on a loopback port, with a generated host key and deploy key.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::RepoRoot;
use crate::error::{Error, Result, io_err};
use crate::process::{
    Readiness, START_ATTEMPTS, START_TIMEOUT, free_port, has_ssh_banner, kill_and_reap, log_tail,
    run, run_stdout, wait_listening,
};

const SSHD: &str = "/usr/sbin/sshd";

/// A running OpenSSH server on 127.0.0.1 that lets one generated ed25519 deploy key run git commands
/// (through `git-shell`) for the current user. Killed on drop, its key files removed.
#[derive(Debug)]
pub struct GitSshServer {
    child: Child,
    port: u16,
    user: String,
    root: RepoRoot,
    dir: TempDir,
    host_public_key: String,
}

impl GitSshServer {
    /// Generates the keys and configuration, starts `sshd -D -e` on a free port of 127.0.0.1 serving `root`,
    /// and waits until it answers with an SSH banner.
    pub fn start(root: &RepoRoot) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kedge-sshd-")
            .tempdir()
            .map_err(io_err("create a temporary directory for sshd"))?;
        let d = dir.path();
        keygen(&d.join("host_key"), "kedge-test-host")?;
        keygen(&d.join("deploy_key"), "kedge-test-deploy")?;
        let host_public_key = public_key_of(&d.join("host_key.pub"))?;
        let deploy_public_key = public_key_of(&d.join("deploy_key.pub"))?;
        // The key may only run git's own commands: git-shell refuses anything else.
        let authorized = format!(
            "restrict,command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" {deploy_public_key}\n"
        );
        std::fs::write(d.join("authorized_keys"), authorized)
            .map_err(io_err("write authorized_keys"))?;
        let user = run_stdout(Command::new("id").arg("-un"))?;
        // sshd refuses to start without its privilege-separation directory; it is absent on fresh machines.
        if !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }

        let log = d.join("sshd.log");
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let config = format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {dir}/host_key\n\
                 PidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowUsers {user}\n\
                 AcceptEnv GIT_PROTOCOL\n\
                 PrintMotd no\n\
                 LogLevel VERBOSE\n",
                dir = d.display(),
            );
            let config_path = d.join("sshd_config");
            std::fs::write(&config_path, config).map_err(io_err("write sshd_config"))?;
            let log_file = File::create(&log).map_err(io_err("create the sshd log"))?;
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|source| Error::Spawn {
                    program: SSHD.into(),
                    source,
                })?;
            let reason = match wait_listening(&mut child, port, START_TIMEOUT, has_ssh_banner) {
                Readiness::Ready => {
                    let server = Self {
                        child,
                        port,
                        user,
                        root: root.clone(),
                        dir,
                        host_public_key,
                    };
                    std::fs::write(
                        server.known_hosts_path(),
                        format!("{}\n", server.known_hosts_line()),
                    )
                    .map_err(io_err("write known_hosts"))?;
                    return Ok(server);
                }
                Readiness::Exited(status) => format!("exited while starting ({status})"),
                Readiness::TimedOut => format!("no SSH banner after {START_TIMEOUT:?}"),
            };
            kill_and_reap(&mut child);
            last_err = Some(Error::ServerStart {
                what: "sshd",
                port,
                reason,
                log: log_tail(&log, 20),
            });
        }
        Err(last_err.unwrap_or_else(|| Error::ServerStart {
            what: "sshd",
            port: 0,
            reason: "no attempt made".into(),
            log: String::new(),
        }))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the deploy key logs in as (the user running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The URL of repository `name` of the root: `ssh://USER@127.0.0.1:PORT/abs/path/name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            self.root
                .path()
                .join(name.trim_start_matches('/'))
                .display()
        )
    }

    /// The path of the deploy key's private half (OpenSSH format, mode 0600).
    pub fn private_key_path(&self) -> PathBuf {
        self.dir.path().join("deploy_key")
    }

    /// The deploy key's private half (OpenSSH format). A test secret: do not log it.
    pub fn private_key(&self) -> Result<String> {
        std::fs::read_to_string(self.private_key_path()).map_err(io_err("read the deploy key"))
    }

    /// The server's host key line for known_hosts: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_public_key)
    }

    /// A known_hosts file that holds exactly [`known_hosts_line`](Self::known_hosts_line).
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A value for `GIT_SSH_COMMAND` that authenticates with the deploy key and trusts only this server's host
    /// key (strict checking, no prompts, no agent, no user configuration).
    pub fn git_ssh_command(&self) -> String {
        ssh_command(&self.private_key_path(), &self.known_hosts_path())
    }

    /// The root it serves.
    pub fn root(&self) -> &RepoRoot {
        &self.root
    }

    /// sshd's log so far (useful when a test fails).
    pub fn log(&self) -> String {
        log_tail(&self.dir.path().join("sshd.log"), usize::MAX)
    }
}

impl Drop for GitSshServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// A `GIT_SSH_COMMAND` value using `key` and trusting only the hosts in `known_hosts`.
pub(crate) fn ssh_command(key: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
         -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
        key.display(),
        known_hosts.display()
    )
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path))?;
    Ok(())
}

/// `type base64` of a .pub file, without its comment.
fn public_key_of(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    Ok(text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}
