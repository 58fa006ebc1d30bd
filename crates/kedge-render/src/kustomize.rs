//! Running `kustomize build` (or `kubectl kustomize`) with a timeout, an output limit and its stderr kept.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::RenderError;

/// The file names that make a directory a kustomization, in kustomize's order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How to run kustomize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KustomizeConfig {
    /// The binary. `None` picks `$KEDGE_CACHE/bin/kustomize` (default cache `$HOME/.cache/kedge`) when present,
    /// else `kustomize` on `PATH`, else `kubectl kustomize`. A path whose file name is `kubectl` runs
    /// `kubectl kustomize`.
    pub binary: Option<PathBuf>,
    /// Extra arguments after `build DIR` (for example `--enable-helm`).
    pub build_args: Vec<String>,
    /// How long one build may take before it is killed.
    pub timeout: Duration,
    /// The most bytes of output accepted; a larger build is killed and fails.
    pub max_output_bytes: usize,
}

impl Default for KustomizeConfig {
    fn default() -> Self {
        KustomizeConfig {
            binary: None,
            build_args: Vec::new(),
            timeout: Duration::from_secs(60),
            max_output_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A resolved kustomize command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KustomizeCommand {
    /// `BINARY build DIR`.
    Kustomize(PathBuf),
    /// `KUBECTL kustomize DIR`.
    Kubectl(PathBuf),
}

impl KustomizeCommand {
    /// Finds the command to run for a configuration (see [`KustomizeConfig::binary`]).
    pub fn resolve(config: &KustomizeConfig) -> Result<KustomizeCommand, RenderError> {
        if let Some(bin) = &config.binary {
            let is_kubectl = bin.file_name().is_some_and(|n| n == "kubectl");
            return Ok(if is_kubectl {
                KustomizeCommand::Kubectl(bin.clone())
            } else {
                KustomizeCommand::Kustomize(bin.clone())
            });
        }
        let mut tried = Vec::new();
        if let Some(cache) = cache_dir() {
            let candidate = cache.join("bin").join("kustomize");
            if is_executable(&candidate) {
                return Ok(KustomizeCommand::Kustomize(candidate));
            }
            tried.push(candidate.display().to_string());
        }
        if let Some(p) = find_on_path("kustomize") {
            return Ok(KustomizeCommand::Kustomize(p));
        }
        tried.push("kustomize on PATH".to_owned());
        if let Some(p) = find_on_path("kubectl") {
            return Ok(KustomizeCommand::Kubectl(p));
        }
        tried.push("kubectl on PATH".to_owned());
        Err(RenderError::KustomizeNotFound {
            tried: tried.join(", "),
        })
    }

    /// The program, for messages.
    pub fn program(&self) -> String {
        match self {
            KustomizeCommand::Kustomize(p) => p.display().to_string(),
            KustomizeCommand::Kubectl(p) => format!("{} kustomize", p.display()),
        }
    }

    fn command(&self, dir: &Path, extra: &[String]) -> Command {
        let mut cmd = match self {
            KustomizeCommand::Kustomize(p) => {
                let mut c = Command::new(p);
                c.arg("build");
                c
            }
            KustomizeCommand::Kubectl(p) => {
                let mut c = Command::new(p);
                c.arg("kustomize");
                c
            }
        };
        cmd.arg(dir).args(extra).current_dir(dir);
        cmd
    }
}

/// `${KEDGE_CACHE:-$HOME/.cache/kedge}`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("KEDGE_CACHE").filter(|c| !c.is_empty()) {
        return Some(PathBuf::from(c));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("kedge"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The most stderr kept for an error message.
const MAX_STDERR: usize = 8 * 1024;

enum Output {
    Stdout(std::io::Result<Vec<u8>>),
    Stderr(std::io::Result<Vec<u8>>),
}

/// Runs the build of `dir` (an absolute directory on disk); `label` names the application directory in errors.
pub fn build(
    command: &KustomizeCommand,
    config: &KustomizeConfig,
    dir: &Path,
    label: &str,
) -> Result<Vec<u8>, RenderError> {
    let io_err = |source| RenderError::KustomizeIo {
        program: command.program(),
        dir: label.to_owned(),
        source,
    };
    let started = Instant::now();
    let deadline = started + config.timeout;
    let mut child = command
        .command(dir, &config.build_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err)?;

    let (tx, rx) = mpsc::channel();
    let limit = config.max_output_bytes;
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = out
                .take(limit as u64 + 1)
                .read_to_end(&mut buf)
                .map(|_| buf);
            let _ = tx.send(Output::Stdout(r));
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = err.take(1024 * 1024).read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(Output::Stderr(r));
        });
    }
    drop(tx);

    let mut stdout = None;
    let mut stderr = None;
    while stdout.is_none() || stderr.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok(Output::Stdout(r)) => {
                let buf = r.map_err(|e| {
                    kill(&mut child);
                    io_err(e)
                })?;
                if buf.len() > limit {
                    kill(&mut child);
                    return Err(RenderError::KustomizeOutputTooLarge {
                        dir: label.to_owned(),
                        limit,
                    });
                }
                stdout = Some(buf);
            }
            Ok(Output::Stderr(r)) => stderr = Some(r.unwrap_or_default()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill(&mut child);
                return Err(RenderError::KustomizeTimeout {
                    dir: label.to_owned(),
                    timeout: config.timeout,
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = wait_until(&mut child, deadline).map_err(io_err)?;
    let Some(status) = status else {
        kill(&mut child);
        return Err(RenderError::KustomizeTimeout {
            dir: label.to_owned(),
            timeout: config.timeout,
        });
    };
    tracing::debug!(
        dir = label,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "kustomize build finished"
    );
    if !status.success() {
        return Err(RenderError::KustomizeFailed {
            dir: label.to_owned(),
            status: status.to_string(),
            stderr: tail(&stderr.unwrap_or_default()),
        });
    }
    Ok(stdout.unwrap_or_default())
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for the exit of a child whose pipes are closed; `None` when the deadline passes first.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        // The pipes are closed, so the process is exiting; this loop almost never runs twice.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The end of stderr, trimmed, at most [`MAX_STDERR`] bytes.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.len() <= MAX_STDERR {
        return text.to_owned();
    }
    let mut start = text.len() - MAX_STDERR;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}
