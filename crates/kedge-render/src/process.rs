//! Running a rendering tool (kustomize, helm) bounded: an empty environment apart from `PATH` and what the caller
//! sets, no stdin, a deadline, a cap on stdout (and on the stderr kept), and the process killed when the run ends
//! early for any reason (timeout, too much output, a read error, a panic).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most stderr read from a tool; the rest is discarded.
const MAX_STDERR_READ: usize = 1024 * 1024;

/// What a tool may use and how long it may take.
#[derive(Debug, Clone)]
pub struct Bounds<'a> {
    /// The working directory.
    pub dir: &'a Path,
    /// The environment on top of `PATH` (nothing else of the parent's environment is passed).
    pub env: &'a [(&'a str, &'a OsStr)],
    /// How long the run may take before the process is killed.
    pub timeout: Duration,
    /// The most bytes of stdout accepted; beyond it the process is killed.
    pub max_stdout: usize,
}

/// A run that finished (with any exit status).
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything written to stdout (at most [`Bounds::max_stdout`] bytes).
    pub stdout: Vec<u8>,
    /// The first MiB written to stderr.
    pub stderr: Vec<u8>,
}

/// Why a run did not finish.
#[derive(Debug)]
pub enum RunError {
    /// Starting the process or reading its output failed.
    Io(std::io::Error),
    /// The deadline passed; the process was killed.
    Timeout,
    /// Stdout passed the limit; the process was killed.
    TooLarge,
}

/// Kills and reaps the child unless it was waited for: no tool outlives the run that started it.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn child(&mut self) -> Result<&mut Child, RunError> {
        self.0
            .as_mut()
            .ok_or_else(|| RunError::Io(std::io::Error::other("the process is gone")))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `program args` within `bounds` and collects its output.
pub fn run(program: &Path, args: &[OsString], bounds: &Bounds<'_>) -> Result<Finished, RunError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(bounds.dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in bounds.env {
        cmd.env(k, v);
    }
    let deadline = Instant::now() + bounds.timeout;
    let mut guard = KillOnDrop(Some(cmd.spawn().map_err(RunError::Io)?));
    let child = guard.child()?;
    let (tx, rx) = mpsc::channel();
    let limit = bounds.max_stdout;
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
            let r = err
                .take(MAX_STDERR_READ as u64)
                .read_to_end(&mut buf)
                .map(|_| buf);
            let _ = tx.send((false, r));
        });
    }
    drop(tx);
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok((true, r)) => {
                let buf = r.map_err(RunError::Io)?;
                if buf.len() > limit {
                    return Err(RunError::TooLarge);
                }
                stdout = Some(buf);
            }
            Ok((false, r)) => stderr = Some(r.unwrap_or_default()),
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(RunError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = guard.child()?.try_wait().map_err(RunError::Io)? {
            guard.0 = None;
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
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

/// The end of a tool's error output, trimmed, at most 8 KiB.
pub fn tail(text: &str) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sh(script: &str, bounds: &Bounds<'_>) -> Result<Finished, RunError> {
        run(Path::new("/bin/sh"), &["-c".into(), script.into()], bounds)
    }

    fn bounds<'a>(dir: &'a Path, env: &'a [(&'a str, &'a OsStr)]) -> Bounds<'a> {
        Bounds {
            dir,
            env,
            timeout: Duration::from_secs(20),
            max_stdout: 1024,
        }
    }

    #[test]
    fn only_path_and_the_given_variables_are_passed() {
        let dir = std::env::temp_dir();
        let env = [("HOME", OsStr::new("/nonexistent-home"))];
        let out = sh("env", &bounds(&dir, &env)).unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            // The shell adds a few of its own.
            .filter(|k| !["PWD", "SHLVL", "_", "OLDPWD"].contains(k))
            .collect();
        names.sort_unstable();
        let expected: Vec<&str> = if std::env::var_os("PATH").is_some() {
            vec!["HOME", "PATH"]
        } else {
            vec!["HOME"]
        };
        assert_eq!(names, expected, "{text}");
    }

    #[test]
    fn a_slow_tool_is_killed_at_the_deadline() {
        let dir = std::env::temp_dir();
        let b = Bounds {
            timeout: Duration::from_millis(300),
            ..bounds(&dir, &[])
        };
        let started = Instant::now();
        // The grandchild keeps the pipes open too; the run must still end at the deadline.
        let r = sh("sleep 30 & sleep 30", &b);
        assert!(matches!(r, Err(RunError::Timeout)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_over_the_limit_is_refused() {
        let dir = std::env::temp_dir();
        let r = sh("head -c 5000 /dev/zero", &bounds(&dir, &[]));
        assert!(matches!(r, Err(RunError::TooLarge)), "{r:?}");
        let ok = sh("head -c 1024 /dev/zero", &bounds(&dir, &[])).unwrap();
        assert_eq!(ok.stdout.len(), 1024);
    }

    #[test]
    fn tail_keeps_the_end() {
        let long = format!("{}END", "x".repeat(20_000));
        let t = tail(&long);
        assert!(t.ends_with("END") && t.len() < 8 * 1024 + 10);
        assert_eq!(tail("  short \n"), "short");
    }
}
