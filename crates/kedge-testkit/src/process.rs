//! Small helpers for child processes and ports, shared by the servers and fixtures.

use std::ffi::OsStr;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io_err};

/// How long a server gets to start listening.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(20);
/// How often a server whose port was taken in the meantime is restarted on another port.
pub(crate) const START_ATTEMPTS: usize = 5;

/// Asks the kernel for a port that is free on 127.0.0.1 right now.
pub(crate) fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("bind a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("read the address of a bound socket"))?
        .port();
    Ok(port)
}

/// Outcome of waiting for a freshly spawned server.
pub(crate) enum Readiness {
    /// The port accepts and the child is alive.
    Ready,
    /// The child exited (typically: the port was taken); the status is given.
    Exited(String),
    /// Nothing listened in time.
    TimedOut,
}

/// Polls until `port` accepts a connection that `check` approves, the child exits, or the timeout passes.
pub(crate) fn wait_listening(
    child: &mut Child,
    port: u16,
    timeout: Duration,
    check: impl Fn(&mut TcpStream) -> bool,
) -> Readiness {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Readiness::Exited(status.to_string());
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            && check(&mut stream)
        {
            // Someone else may own the port; ours is only ready if it is still alive.
            return match child.try_wait() {
                Ok(Some(status)) => Readiness::Exited(status.to_string()),
                _ => Readiness::Ready,
            };
        }
        if Instant::now() >= deadline {
            return Readiness::TimedOut;
        }
        std::thread::sleep(POLL);
    }
}

/// Reads the SSH identification string a server sends first and tells whether it is one.
pub(crate) fn has_ssh_banner(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// The last `lines` lines of a log file, or a note that it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(log {} unreadable: {e})", path.display()),
    }
}

/// Kills a child and reaps it; errors are ignored (it may have exited already).
pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Renders a command for error messages, with credentials removed from URLs.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&redact_url(&arg.to_string_lossy()));
    }
    s
}

/// Replaces the userinfo of a URL (`scheme://user:pass@host`) with `***`; other text is returned as is.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &text[..scheme_end + 3], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

/// Runs a command to completion, capturing its output; fails on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let output = cmd.output().map_err(|source| Error::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: describe(cmd),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// Runs a command and returns its trimmed standard output.
pub(crate) fn run_stdout(cmd: &mut Command) -> Result<String> {
    let output = run(cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Checks that a name is a usable relative path below a root: non-empty, relative, without `..`.
pub(crate) fn check_relative(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if Path::new(name).is_absolute() {
        Some("it is absolute")
    } else if Path::new(name)
        .components()
        .any(|c| c.as_os_str() == OsStr::new(".."))
    {
        Some("it contains `..`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            redact_url("http://u:p@127.0.0.1:1/a.git"),
            "http://***@127.0.0.1:1/a.git"
        );
        assert_eq!(
            redact_url("ssh://root@127.0.0.1:2/x"),
            "ssh://***@127.0.0.1:2/x"
        );
        assert_eq!(redact_url("http://127.0.0.1/a@b"), "http://127.0.0.1/a@b");
        assert_eq!(redact_url("main"), "main");
    }

    #[test]
    fn rejects_escaping_names() {
        assert!(check_relative("a/b.git").is_ok());
        assert!(check_relative("../x").is_err());
        assert!(check_relative("/x").is_err());
        assert!(check_relative("").is_err());
    }
}
