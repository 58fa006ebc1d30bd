//! What the CLI tests share: running the built `kedge` against a test's cluster and namespace, and copying fixture
//! directories into the test's repository.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Stdio;

use crate::common::Env;

/// What one `kedge` run printed and how it exited.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing what was printed when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the built `kedge` against the test's cluster and namespace, with a private cache folder.
pub async fn kedge(env: &Env, cache: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(["-n", env.ns()])
        .args(args)
        .env("KEDGE_CACHE", cache)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run kedge");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Copies `src` into the test's work tree at `dest`, byte for byte (dot files included).
pub fn copy_dir(env: &Env, src: &Path, dest: &str) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let child = format!("{dest}/{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            copy_dir(env, &e.path(), &child);
        } else {
            env.write(&child, &std::fs::read_to_string(e.path()).unwrap());
        }
    }
}
