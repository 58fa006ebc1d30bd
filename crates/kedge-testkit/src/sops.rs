//! SOPS fixtures: age keys, and documents encrypted by the real `sops` binary (installed by `scripts/install-sops`).

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, Result};

/// An age key pair.
#[derive(Debug, Clone)]
pub struct AgeKey {
    /// The secret key, `AGE-SECRET-KEY-1...`, as a key file holds it.
    pub identity: String,
    /// The public key, `age1...`, that documents are encrypted to.
    pub recipient: String,
}

impl AgeKey {
    /// A new random key pair.
    pub fn generate() -> Self {
        let identity = age::x25519::Identity::generate();
        AgeKey {
            recipient: identity.to_public().to_string(),
            identity: age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_owned(),
        }
    }
}

/// The sops binary: `KEDGE_SOPS`, else `$KEDGE_CACHE/bin/sops` (where `scripts/install-sops` puts it), else `sops`
/// on the PATH.
pub fn sops_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KEDGE_SOPS") {
        return p.into();
    }
    let cache = std::env::var_os("KEDGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kedge")));
    match cache.map(|c| c.join("bin/sops")).filter(|p| p.exists()) {
        Some(p) => p,
        None => "sops".into(),
    }
}

/// Encrypts `plain` (`format` is `yaml` or `json`) with the real sops for `recipient`, with extra sops flags (e.g.
/// `--encrypted-regex`), and returns the encrypted document.
pub fn sops_encrypt(plain: &str, format: &str, recipient: &str, flags: &[&str]) -> Result<String> {
    let io = |action: &str| {
        let action = action.to_owned();
        move |source: std::io::Error| Error::Io { action, source }
    };
    let dir = tempfile::tempdir().map_err(io("create a folder for sops"))?;
    let file = dir.path().join(format!("doc.{format}"));
    std::fs::write(&file, plain).map_err(io("write the document for sops"))?;
    let out = Command::new(sops_binary())
        .args([
            "--encrypt",
            "--age",
            recipient,
            "--input-type",
            format,
            "--output-type",
            format,
        ])
        .args(flags)
        .arg(&file)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .current_dir(dir.path())
        .output()
        .map_err(|source| Error::Spawn {
            program: format!(
                "{} (install it with scripts/install-sops)",
                sops_binary().display()
            ),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: "sops --encrypt".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| Error::Command {
        command: "sops --encrypt".into(),
        status: "ok".into(),
        stderr: "the output is not UTF-8".into(),
    })
}
