//! Running `kustomize build` (or `kubectl kustomize`) through the bounded runner ([`crate::process`]): a cleared
//! environment, a timeout, an output limit and its stderr kept.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::RenderError;
use crate::process;

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
    /// Let kustomizations name remote bases (URLs in `resources`, `components`, `bases`, ..., and Helm chart
    /// repositories), which kustomize then fetches itself. Off by default: every entry must be a file or directory
    /// of the repository (Flux's `--no-remote-bases`).
    pub allow_remote_bases: bool,
}

impl Default for KustomizeConfig {
    fn default() -> Self {
        KustomizeConfig {
            binary: None,
            build_args: Vec::new(),
            timeout: Duration::from_secs(60),
            max_output_bytes: 256 * 1024 * 1024,
            allow_remote_bases: false,
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

/// Runs the build of `dir` (an absolute directory on disk); `label` names the application directory in errors.
///
/// kustomize sees none of the controller's environment: only `PATH` and a private, empty `HOME` (so no user
/// configuration, plugin, kubeconfig, proxy setting or credential of the controller reaches it).
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
    let home = tempfile::Builder::new()
        .prefix("kedge-kustomize-")
        .tempdir()
        .map_err(io_err)?;
    let (program, mut args): (&Path, Vec<OsString>) = match command {
        KustomizeCommand::Kustomize(p) => (p, vec!["build".into()]),
        KustomizeCommand::Kubectl(p) => (p, vec!["kustomize".into()]),
    };
    args.push(dir.as_os_str().to_owned());
    args.extend(config.build_args.iter().map(OsString::from));
    let config_home = home.path().join("config");
    let kubeconfig = home.path().join("no-kubeconfig");
    let env: [(&str, &OsStr); 3] = [
        ("HOME", home.path().as_os_str()),
        ("XDG_CONFIG_HOME", config_home.as_os_str()),
        ("KUBECONFIG", kubeconfig.as_os_str()),
    ];
    let bounds = process::Bounds {
        dir,
        env: &env,
        timeout: config.timeout,
        max_stdout: config.max_output_bytes,
    };
    let finished = process::run(program, &args, &bounds).map_err(|e| match e {
        process::RunError::Io(source) => io_err(source),
        process::RunError::Timeout => RenderError::KustomizeTimeout {
            dir: label.to_owned(),
            timeout: config.timeout,
        },
        process::RunError::TooLarge => RenderError::KustomizeOutputTooLarge {
            dir: label.to_owned(),
            limit: config.max_output_bytes,
        },
    })?;
    tracing::debug!(
        dir = label,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "kustomize build finished"
    );
    if !finished.status.success() {
        return Err(RenderError::KustomizeFailed {
            dir: label.to_owned(),
            status: finished.status.to_string(),
            stderr: process::tail(&String::from_utf8_lossy(&finished.stderr)),
        });
    }
    Ok(finished.stdout)
}
