//! The one place where Kedge reads a repository URL for comparison: mirror identity, credential Secret matching (Git
//! and Helm) and webhook push matching all go through [`RepoUrl`].
//!
//! A URL is reduced to scheme, host, port and path segments: scheme and host are lower-cased, user information is
//! dropped, a default port (443, 80, 22, 9418) is left out, `.git`, trailing and repeated slashes and `.`/`..`
//! segments are resolved, and the scp-like `user@host:org/repo` form is read as `ssh://host/org/repo`. Anything a
//! client library could read differently (a backslash, a second `@`, a host with characters outside letters, digits,
//! `-` and `.`, a bad port) is refused rather than guessed at, because credentials are chosen by this reading.

use std::fmt;

/// A repository URL reduced to what identifies the repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoUrl {
    scheme: String,
    host: String,
    port: Option<u16>,
    segments: Vec<String>,
}

/// A URL that cannot be compared safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read repository URL {url}: {reason}")]
pub struct RepoUrlError {
    /// The URL without user information.
    pub url: String,
    /// Why it was refused.
    pub reason: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" | "oci" => Some(443),
        "http" => Some(80),
        "ssh" => Some(22),
        "git" => Some(9418),
        _ => None,
    }
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && !host.starts_with(['.', '-'])
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Resolves the path into segments: no empty segments, `.` dropped, `..` removes the one before (as URL parsers and
/// servers do), a trailing `.git` removed from the last one.
fn segments(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        // `%2e` is a dot for URL parsers too.
        let plain = seg.replace("%2e", ".").replace("%2E", ".");
        match plain.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg.to_owned()),
        }
    }
    if let Some(last) = out.last_mut()
        && let Some(stripped) = last.strip_suffix(".git")
    {
        if stripped.is_empty() {
            out.pop();
        } else {
            *last = stripped.to_owned();
        }
    }
    out
}

impl RepoUrl {
    /// Reads `url`: `scheme://[user@]host[:port]/path` (https, http, ssh, git, oci, file), scp-like
    /// `[user@]host:path` (ssh), an absolute local path (file) or `host[:port]/path` with no scheme (an OCI
    /// reference, as Helm registry credentials are written).
    pub fn parse(url: &str) -> Result<Self, RepoUrlError> {
        let url = url.trim();
        let refuse = |reason: &str| RepoUrlError {
            url: crate::repo::strip_userinfo(url),
            reason: reason.to_owned(),
        };
        if url.is_empty() {
            return Err(refuse("empty URL"));
        }
        if url.contains('\\') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse(
                "backslashes, spaces and control characters are not allowed",
            ));
        }
        // Query and fragment do not name a repository.
        let url = url.split(['?', '#']).next().unwrap_or_default();
        let (scheme, rest) = if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            let scheme = match scheme.as_str() {
                "git+ssh" | "ssh+git" => "ssh".to_owned(),
                _ => scheme,
            };
            if !matches!(
                scheme.as_str(),
                "https" | "http" | "ssh" | "git" | "oci" | "file"
            ) {
                return Err(refuse(&format!("unsupported scheme {scheme}")));
            }
            (scheme, rest)
        } else if url.starts_with('/') {
            return Ok(RepoUrl {
                scheme: "file".into(),
                host: String::new(),
                port: None,
                segments: segments(url),
            });
        } else {
            let (authority, path) = match url.split_once('/') {
                Some((a, p)) => (a, p),
                None => (url, ""),
            };
            return match authority.split_once(':') {
                // host:port/path is an OCI reference; anything else with a colon before the first slash is scp-like.
                Some((host, port))
                    if !host.contains('@')
                        && !port.is_empty()
                        && port.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Self::from_parts("oci", authority, path).map_err(|r| refuse(&r))
                }
                Some(_) => {
                    let (authority, path) = url.split_once(':').unwrap_or((url, ""));
                    Self::from_parts("ssh", authority, path).map_err(|r| refuse(&r))
                }
                None if authority.contains('.') || authority == "localhost" => {
                    Self::from_parts("oci", authority, path).map_err(|r| refuse(&r))
                }
                None => Err(refuse("no scheme and no host")),
            };
        };
        if scheme == "file" {
            return Ok(RepoUrl {
                scheme,
                host: String::new(),
                port: None,
                segments: segments(rest),
            });
        }
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        Self::from_parts(&scheme, authority, path).map_err(|r| refuse(&r))
    }

    fn from_parts(scheme: &str, authority: &str, path: &str) -> Result<Self, String> {
        let host_port = match authority.split_once('@') {
            Some((_, h)) if h.contains('@') => {
                return Err("more than one @ before the path".into());
            }
            Some((_, h)) => h,
            None => authority,
        };
        let (host, port) = if host_port.starts_with('[') {
            match host_port.split_once(']') {
                Some((h, "")) => (format!("{h}]"), None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (format!("{h}]"), Some(p)),
                    None => return Err("invalid IPv6 host".into()),
                },
                None => return Err("invalid IPv6 host".into()),
            }
        } else {
            match host_port.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (host_port.to_owned(), None),
            }
        };
        let mut host = host.to_ascii_lowercase();
        // `host.` and `host` are one DNS name.
        if host.len() > 1 && host.ends_with('.') && !host.ends_with("..") {
            host.pop();
        }
        if !valid_host(&host) {
            return Err(format!("invalid host {host:?}"));
        }
        let port = match port {
            None | Some("") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(format!("invalid port {p:?}")),
            },
        };
        let port = port.filter(|p| Some(*p) != default_port(scheme));
        Ok(RepoUrl {
            scheme: scheme.to_owned(),
            host,
            port,
            segments: segments(path),
        })
    }

    /// The scheme, lower-case (`ssh` for the scp-like form).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lower-case, without user information (empty for local paths).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port when it is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path segments (no empty ones, no trailing `.git`).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether `self` names the same repository as `other` by the same transport: equal scheme, host, port and path.
    pub fn same_as(&self, other: &RepoUrl) -> bool {
        self == other
    }

    /// Whether `self`, taken as a credential prefix, covers `other`: equal scheme, host and port, and `self`'s path
    /// segments are the first segments of `other`'s (so `/team` covers `/team/app` but not `/team-other/app`).
    /// Returns the number of segments matched, to pick the longest prefix.
    pub fn covers(&self, other: &RepoUrl) -> Option<usize> {
        (self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && other.segments.starts_with(&self.segments))
        .then_some(self.segments.len())
    }

    /// The repository whatever the transport: host and path, lower-case (`github.com/org/repo`), with a Bitbucket
    /// Server `scm/` prefix removed. For matching push events to applications (a push names the https and ssh
    /// forms of a repository, and forges treat owner and name case-insensitively); never for credentials.
    pub fn identity(&self) -> String {
        let path = self.segments.join("/").to_ascii_lowercase();
        let path = path.strip_prefix("scm/").unwrap_or(&path);
        format!("{}/{}", self.host, path)
    }
}

/// `scheme://host[:port]/path`, the canonical form (`file:///path` for local paths).
impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

/// The canonical form of `url` ([`RepoUrl`]'s `Display`), or, for a URL that cannot be read, the trimmed URL
/// without user information (so that it equals only itself).
pub fn normalize(url: &str) -> String {
    match RepoUrl::parse(url) {
        Ok(u) => u.to_string(),
        Err(_) => crate::repo::strip_userinfo(url.trim()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(url: &str) -> RepoUrl {
        RepoUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn covers(prefix: &str, url: &str) -> bool {
        p(prefix).covers(&p(url)).is_some()
    }

    #[test]
    fn forms_of_one_repository_are_equal() {
        let https = [
            "https://git.example.org/team/app",
            "https://git.example.org/team/app.git",
            "https://git.example.org/team/app/",
            "https://git.example.org/team/app.git/",
            "HTTPS://Git.Example.ORG/team/app",
            "https://alice:s3cret@git.example.org/team/app",
            "https://git.example.org:443/team/app",
            "https://git.example.org//team//app",
            "https://git.example.org/team/./x/../app",
            "https://git.example.org./team/app",
            "  https://git.example.org/team/app?ref=main#frag ",
        ];
        for u in https {
            assert_eq!(p(u).to_string(), "https://git.example.org/team/app", "{u}");
        }
        let ssh = [
            "git@git.example.org:team/app.git",
            "git.example.org:team/app",
            "ssh://git@git.example.org/team/app",
            "ssh://git@git.example.org:22/team/app.git",
            "git+ssh://git@Git.Example.org/team/app",
        ];
        for u in ssh {
            assert_eq!(p(u).to_string(), "ssh://git.example.org/team/app", "{u}");
        }
        assert_eq!(
            p("ssh://git@127.0.0.1:2222/srv/repo.git").to_string(),
            "ssh://127.0.0.1:2222/srv/repo"
        );
        assert_eq!(
            p("http://[::1]:8080/x.git").to_string(),
            "http://[::1]:8080/x"
        );
        assert_eq!(p("/srv/git/repo.git").to_string(), "file:///srv/git/repo");
        assert_eq!(
            p("oci://Registry.example.org/charts").to_string(),
            "oci://registry.example.org/charts"
        );
        assert_eq!(
            p("registry.example.org/charts").to_string(),
            "oci://registry.example.org/charts"
        );
        assert_eq!(
            p("localhost:5000/charts").to_string(),
            "oci://localhost:5000/charts"
        );
    }

    #[test]
    fn different_repositories_are_not_equal() {
        let pairs = [
            // scheme
            (
                "https://git.example.org/team/app",
                "http://git.example.org/team/app",
            ),
            (
                "https://git.example.org/team/app",
                "ssh://git.example.org/team/app",
            ),
            // port
            (
                "https://git.example.org/team/app",
                "https://git.example.org:8443/team/app",
            ),
            (
                "ssh://git.example.org/team/app",
                "ssh://git.example.org:2222/team/app",
            ),
            // host
            (
                "https://git.example.org/team/app",
                "https://git.example.org.evil/team/app",
            ),
            (
                "https://git.example.org/team/app",
                "https://evil.git.example.org/team/app",
            ),
            // path (case is kept: servers may tell them apart)
            (
                "https://git.example.org/team/app",
                "https://git.example.org/team/App",
            ),
            (
                "https://git.example.org/team/app",
                "https://git.example.org/team/app2",
            ),
            (
                "https://git.example.org/team/app",
                "https://git.example.org/team",
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(p(a), p(b), "{a} vs {b}");
            assert!(!p(a).same_as(&p(b)), "{a} vs {b}");
            assert_ne!(normalize(a), normalize(b), "{a} vs {b}");
        }
    }

    #[test]
    fn prefixes_cover_whole_segments_of_one_origin() {
        assert!(covers(
            "https://git.example.org/team",
            "https://git.example.org/team/app"
        ));
        assert!(covers(
            "https://git.example.org/team/",
            "https://git.example.org/team/app.git"
        ));
        assert!(covers(
            "https://git.example.org",
            "https://git.example.org/team/app"
        ));
        assert!(covers(
            "https://git.example.org/team/app",
            "https://git.example.org/team/app"
        ));
        assert!(covers(
            "https://GIT.example.org:443/team",
            "https://git.example.org/team/x"
        ));
        assert!(covers(
            "git@git.example.org:team",
            "ssh://git@git.example.org/team/app"
        ));
        assert_eq!(
            p("https://git.example.org/team").covers(&p("https://git.example.org/team/a/b")),
            Some(1)
        );

        let refused = [
            (
                "https://git.example.org/team",
                "https://git.example.org/team-other/x",
            ),
            (
                "https://git.example.org/team",
                "https://git.example.org/teamx",
            ),
            (
                "https://git.example.org",
                "https://git.example.org.evil/team/app",
            ),
            (
                "https://git.example.org",
                "https://git.example.org:8443/team/app",
            ),
            (
                "https://git.example.org:8443",
                "https://git.example.org/team/app",
            ),
            (
                "https://git.example.org/team",
                "http://git.example.org/team/app",
            ),
            (
                "https://git.example.org/team",
                "ssh://git@git.example.org/team/app",
            ),
            (
                "https://git.example.org/team/app",
                "https://git.example.org/team",
            ),
            (
                "https://git.example.org/team",
                "https://git.example.org/team/../other/app",
            ),
            (
                "https://git.example.org/team",
                "https://git.example.org/team/%2e%2e/other/app",
            ),
            ("https://example.org", "https://git.example.org/team"),
        ];
        for (prefix, url) in refused {
            assert!(!covers(prefix, url), "{prefix} must not cover {url}");
        }
    }

    #[test]
    fn urls_a_client_could_read_differently_are_refused() {
        for u in [
            "https://evil.test\\@git.example.org/team/app",
            "https://a@b@git.example.org/team/app",
            "https://git.example.org:99999/team",
            "https://git.example.org:x/team",
            "https://git%2eexample.org/team",
            "https://gït.example.org/team",
            "https:// git.example.org/team",
            "ftp://git.example.org/team",
            "",
            "team/app",
        ] {
            assert!(RepoUrl::parse(u).is_err(), "{u} must be refused");
        }
        let err = RepoUrl::parse("https://user:s3cret@a@b.test/x").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn identity_ignores_transport_and_case_but_not_the_repository() {
        let forms = [
            "https://GitHub.com/Org/Repo.git",
            "https://user:tok@github.com/org/repo/",
            "ssh://git@github.com:22/org/repo.git",
            "git@github.com:org/repo.git",
            "git://github.com/org/repo",
            "http://github.com:80/org/repo",
        ];
        for f in forms {
            assert_eq!(p(f).identity(), "github.com/org/repo", "{f}");
        }
        assert_eq!(
            p("https://bitbucket.example.org/scm/proj/repo.git").identity(),
            p("ssh://git@bitbucket.example.org:7999/proj/repo.git").identity()
        );
        for other in [
            "https://github.com/org/other",
            "https://github.com/org/repo/sub",
            "https://github.com.evil/org/repo",
            "https://gitlab.com/org/repo",
        ] {
            assert_ne!(p(other).identity(), "github.com/org/repo", "{other}");
        }
    }

    #[test]
    fn unreadable_urls_normalize_to_themselves_only() {
        assert_eq!(normalize("not a url"), "not a url");
        assert_ne!(normalize("not a url"), normalize("not-a-url"));
        assert_eq!(
            normalize("https://u:pw@Git.Example.org/a.git"),
            "https://git.example.org/a"
        );
    }
}
