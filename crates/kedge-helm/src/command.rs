//! Finding the helm binary and running it with a clean environment, a timeout and an output limit (the bounded
//! runner of kedge-render, shared with kustomize).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kedge_render::process::{Bounds, Finished};

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

pub(crate) use kedge_render::process::{RunError, tail};

/// Runs `program args` in `home` (a private scratch directory that also serves as Helm's home, so no user
/// configuration, plugin or repository list is read) through the bounded runner of kedge-render: only `PATH` of
/// the parent environment, a timeout, an output limit, killed when the run ends early.
pub(crate) fn run(
    program: &Path,
    args: &[OsString],
    home: &Path,
    timeout: Duration,
    limit: usize,
) -> Result<Finished, RunError> {
    let (cache, config, data, plugins, kubeconfig) = (
        home.join("cache"),
        home.join("config"),
        home.join("data"),
        home.join("plugins"),
        home.join("no-kubeconfig"),
    );
    let env: [(&str, &OsStr); 6] = [
        ("HOME", home.as_os_str()),
        ("HELM_CACHE_HOME", cache.as_os_str()),
        ("HELM_CONFIG_HOME", config.as_os_str()),
        ("HELM_DATA_HOME", data.as_os_str()),
        ("HELM_PLUGINS", plugins.as_os_str()),
        ("KUBECONFIG", kubeconfig.as_os_str()),
    ];
    let bounds = Bounds {
        dir: home,
        env: &env,
        timeout,
        max_stdout: limit,
    };
    kedge_render::process::run(program, args, &bounds)
}
