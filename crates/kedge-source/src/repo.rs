//! Repository addresses and the credentials used to reach them; secrets never show in Debug output, logs or errors.

use std::fmt;

use sha2::{Digest, Sha256};

/// A secret string (password, token, private key). Its `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Only for handing it to the transport; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

/// How to authenticate to a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous access.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An HTTP access token, sent as the password of basic authentication (the way Git hosting services accept tokens).
    Token {
        /// The user name to send with the token; most servers accept any, the default is `git`.
        username: Option<String>,
        /// The token.
        token: Secret,
    },
    /// An SSH private key (deploy key) plus the known_hosts entries the server's host key must match.
    SshKey {
        /// The private key in OpenSSH format.
        private_key: Secret,
        /// One or more lines in OpenSSH known_hosts format. Required unless the repository is marked insecure.
        known_hosts: String,
    },
}

impl Credentials {
    /// The secret strings these credentials contain, to scrub them from any message.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::None => vec![],
            Credentials::Basic { password, .. } => vec![password.expose()],
            Credentials::Token { token, .. } => vec![token.expose()],
            Credentials::SshKey { private_key, .. } => vec![private_key.expose()],
        }
    }
}

/// The transport a repository URL uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A local path or `file://` URL.
    File,
    /// The unauthenticated `git://` daemon protocol.
    Git,
    /// Smart HTTP(S).
    Http,
    /// SSH, including scp-like `user@host:path`.
    Ssh,
}

/// A repository to fetch from: its URL, credentials and host key policy.
#[derive(Clone)]
pub struct RepoSpec {
    url: String,
    display: String,
    scheme: Scheme,
    /// How to authenticate.
    pub credentials: Credentials,
    /// Skip SSH host key verification and allow credentials over plain `http://` to non-loopback hosts.
    /// Only for repositories explicitly marked insecure.
    pub insecure_skip_host_key_check: bool,
}

impl fmt::Debug for RepoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoSpec")
            .field("url", &self.display)
            .field("credentials", &self.credentials)
            .field(
                "insecure_skip_host_key_check",
                &self.insecure_skip_host_key_check,
            )
            .finish()
    }
}

/// The URL could not be parsed or uses an unsupported scheme.
#[derive(Debug, thiserror::Error)]
#[error("failed to parse repository URL {display}: {reason}")]
pub struct UrlError {
    /// The URL with any user information removed.
    pub display: String,
    /// Why it was rejected.
    pub reason: String,
}

impl RepoSpec {
    /// Parses a repository URL. A password embedded in an HTTP(S) URL is moved into [`Credentials::Basic`]
    /// (unless other credentials are set later) and is never shown.
    pub fn new(url: &str) -> Result<Self, UrlError> {
        let display_guess = strip_userinfo(url);
        let parsed = gix::url::parse(url).map_err(|e| UrlError {
            display: display_guess.clone(),
            reason: scrub(&e.to_string(), &password_of(url)),
        })?;
        let scheme = match parsed.scheme {
            gix::url::Scheme::File => Scheme::File,
            gix::url::Scheme::Git => Scheme::Git,
            gix::url::Scheme::Http | gix::url::Scheme::Https => Scheme::Http,
            gix::url::Scheme::Ssh => Scheme::Ssh,
            ref other => {
                return Err(UrlError {
                    display: display_guess,
                    reason: format!("unsupported scheme {}", other.as_str()),
                });
            }
        };
        let mut credentials = Credentials::None;
        let mut clean = parsed.clone();
        if scheme == Scheme::Http {
            if let (Some(user), Some(pass)) = (parsed.user(), parsed.password()) {
                credentials = Credentials::Basic {
                    username: user.to_owned(),
                    password: Secret::new(pass),
                };
            }
            clean.set_user(None);
            clean.set_password(None);
        } else {
            // For ssh the user is part of the address (e.g. `git@`), but a password never is.
            clean.set_password(None);
        }
        let url = clean.to_bstring().to_string();
        let display = strip_userinfo(&url);
        Ok(RepoSpec {
            url,
            display,
            scheme,
            credentials,
            insecure_skip_host_key_check: false,
        })
    }

    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Marks the repository as insecure: SSH host keys are not verified and credentials may go over plain http.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure_skip_host_key_check = insecure;
        self
    }

    /// The URL handed to the transport (no password; for ssh it may hold the user name).
    pub(crate) fn transport_url(&self) -> &str {
        &self.url
    }

    /// The URL for messages: no user information at all.
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// The transport in use.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The normalized URL that identifies the repository's mirror ([`crate::url::normalize`]): lower-case scheme
    /// and host, no user information, default port, trailing slash or `.git`.
    pub fn normalized_url(&self) -> String {
        crate::url::normalize(&self.display)
    }

    /// The hex id of the mirror folder for this repository (a hash of the normalized URL).
    pub fn mirror_id(&self) -> String {
        let digest = Sha256::digest(self.normalized_url().as_bytes());
        hex::encode(&digest[..16])
    }

    /// Replaces every secret of the credentials in `text` by `<redacted>`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let secrets: Vec<String> = self
            .credentials
            .secrets()
            .into_iter()
            .map(str::to_owned)
            .collect();
        scrub(text, &secrets)
    }
}

fn password_of(url: &str) -> Vec<String> {
    gix::url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .into_iter()
        .collect()
}

fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

/// Removes `user[:password]@` from a URL with a scheme; scp-like `user@host:path` keeps no user either.
pub fn strip_userinfo(url: &str) -> String {
    if let Some(i) = url.find("://") {
        let rest = &url[i + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            return format!("{}{}", &url[..i + 3], &rest[at + 1..]);
        }
        return url.to_owned();
    }
    // scp-like: user@host:path (only when there is a colon before any slash)
    if let (Some(at), Some(colon)) = (url.find('@'), url.find(':'))
        && at < colon
        && url[..colon].find('/').is_none()
    {
        return url[at + 1..].to_owned();
    }
    url.to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_and_password_moves_to_credentials() {
        let spec = RepoSpec::new("https://alice:s3cret@Example.COM/org/repo.git/").unwrap();
        assert_eq!(spec.display_url(), "https://example.com/org/repo.git/");
        assert!(!spec.transport_url().contains("s3cret"));
        assert!(!format!("{spec:?}").contains("s3cret"));
        assert_eq!(spec.normalized_url(), "https://example.com/org/repo");
        match &spec.credentials {
            Credentials::Basic { username, password } => {
                assert_eq!(username, "alice");
                assert_eq!(password.expose(), "s3cret");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(spec.scrub("boom s3cret boom"), "boom <redacted> boom");
    }

    #[test]
    fn scp_like_and_ssh_urls() {
        assert_eq!(strip_userinfo("git@host:org/repo"), "host:org/repo");
        assert_eq!(strip_userinfo("ssh://git@host:22/x"), "ssh://host:22/x");
        let spec = RepoSpec::new("ssh://git@127.0.0.1:2222/srv/repo.git").unwrap();
        assert_eq!(spec.scheme(), Scheme::Ssh);
        assert_eq!(spec.display_url(), "ssh://127.0.0.1:2222/srv/repo.git");
        assert!(spec.transport_url().contains("git@"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = Credentials::SshKey {
            private_key: Secret::new("-----BEGIN KEY-----abc"),
            known_hosts: "host ssh-ed25519 AAAA".into(),
        };
        assert!(!format!("{c:?}").contains("BEGIN"));
    }

    #[test]
    fn same_repo_same_mirror() {
        let a = RepoSpec::new("https://example.com/org/repo.git").unwrap();
        let b = RepoSpec::new("https://user:pw@EXAMPLE.com/org/repo/").unwrap();
        assert_eq!(a.mirror_id(), b.mirror_id());
        for other in [
            "https://example.com/org/repo2",
            "https://example.com/org/Repo",
            "http://example.com/org/repo",
            "https://example.com:8443/org/repo",
            "https://example.com.evil/org/repo",
        ] {
            let c = RepoSpec::new(other).unwrap();
            assert_ne!(a.mirror_id(), c.mirror_id(), "{other}");
        }
    }
}
