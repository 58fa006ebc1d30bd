//! Finding the helm binary and running it with a clean environment, a timeout and an output limit.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::HelmError;

/// Environment variable naming the helm binary.
pub const HELM_ENV: &str = "KEDGE_HELM";

/// Finds helm: the configured path, else `$KEDGE_HELM`, else `$KEDGE_CACHE/bin/helm` (default cache
/// `$HOME/.cache/kedge`), else `helm` on `PATH`.
pub fn resolve(configured: Option<&Path>) -> Result<PathBuf, HelmError> {
    if let Some(p) = configured {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(HelmError::HelmNotFound {
                tried: p.display().to_string(),
            })
        };
    }
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os(HELM_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        tried.push(format!("{HELM_ENV}={}", p.display()));
    }
    if let Some(cache) = kedge_render::kustomize::cache_dir() {
        let p = cache.join("bin").join("helm");
        if is_executable(&p) {
            return Ok(p);
        }
        tried.push(p.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join("helm"))
            .find(|p| is_executable(p))
    {
        return Ok(p);
    }
    tried.push("helm on PATH".into());
    Err(HelmError::HelmNotFound {
        tried: tried.join(", "),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a finished helm run produced.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a run did not finish.
pub(crate) enum RunError {
    Io(std::io::Error),
    Timeout,
    TooLarge,
}

/// Runs `program args` in `home` (a private scratch directory that also serves as Helm's home, so no user
/// configuration, plugin or repository list is read) with only `PATH` of the parent environment.
pub(crate) fn run(
    program: &Path,
    args: &[OsString],
    home: &Path,
    timeout: Duration,
    limit: usize,
) -> Result<Finished, RunError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(home)
        .env_clear()
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_PLUGINS", home.join("plugins"))
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let deadline = Instant::now() + timeout;
    let mut child = cmd.spawn().map_err(RunError::Io)?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = out
                .take(limit as u64 + 1)
                .read_to_end(&mut buf)
                .map(|_| buf);
            let _ = tx.send((true, r));
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = err.take(1024 * 1024).read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send((false, r));
        });
    }
    drop(tx);
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok((true, r)) => {
                let buf = r.map_err(|e| {
                    kill(&mut child);
                    RunError::Io(e)
                })?;
                if buf.len() > limit {
                    kill(&mut child);
                    return Err(RunError::TooLarge);
                }
                stdout = Some(buf);
            }
            Ok((false, r)) => stderr = Some(r.unwrap_or_default()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill(&mut child);
                return Err(RunError::Timeout);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(RunError::Io)? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            kill(&mut child);
            return Err(RunError::Timeout);
        }
        // The pipes are closed, so the process is exiting; this loop almost never runs twice.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    Ok(Finished {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The end of an error output, trimmed, at most 8 KiB.
pub(crate) fn tail(text: &str) -> String {
    const MAX: usize = 8 * 1024;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut start = text.len() - MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}
