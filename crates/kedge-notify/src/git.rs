//! A repository's host and path as Git hosts' APIs name it, from the URL an application fetches.

use kedge_api::ProviderType;

/// A repository on a Git host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoPath {
    /// `https://host[:port]` (an SSH URL's host is reached over HTTPS; an HTTP URL keeps its scheme and port).
    pub origin: String,
    /// The host alone.
    pub host: String,
    /// The path without leading slash or `.git`, e.g. `acme/deploy` or `group/sub/deploy`.
    pub path: String,
}

impl RepoPath {
    /// Parses `https://host/a/b.git`, `ssh://git@host:22/a/b.git`, `git://host/a/b.git` or `git@host:a/b.git`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let (origin, host, path) = if let Some(rest) = url
            .strip_prefix("https://")
            .map(|r| ("https", r))
            .or_else(|| url.strip_prefix("http://").map(|r| ("http", r)))
        {
            let (scheme, rest) = rest;
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = hostport.split(':').next().unwrap_or(hostport);
            (format!("{scheme}://{hostport}"), host.to_owned(), path)
        } else if let Some(rest) = url
            .strip_prefix("ssh://")
            .or_else(|| url.strip_prefix("git://"))
        {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = hostport.split(':').next().unwrap_or(hostport);
            (format!("https://{host}"), host.to_owned(), path)
        } else if let Some((authority, path)) = url.split_once(':')
            && !authority.contains('/')
            && !path.starts_with("//")
        {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (format!("https://{host}"), host.to_owned(), path)
        } else {
            return Err("not an http(s), ssh or scp-style Git URL".into());
        };
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path).to_owned();
        if host.is_empty() || path.is_empty() {
            return Err("the URL names no host or no repository path".into());
        }
        Ok(Self { origin, host, path })
    }

    /// `(owner, name)` for hosts whose repositories are two levels deep.
    pub fn owner_and_name(&self) -> Result<(&str, &str), String> {
        match self.path.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((owner, name))
            }
            _ => Err(format!(
                "expected owner/repository in the path, found {:?}",
                self.path
            )),
        }
    }

    /// The API base a Provider of `type_` uses when it names none: the public service's API for its own host, the
    /// same host's API otherwise.
    pub fn default_api(&self, type_: ProviderType) -> String {
        match type_ {
            ProviderType::Github if self.host == "github.com" => "https://api.github.com".into(),
            ProviderType::Github => format!("{}/api/v3", self.origin),
            ProviderType::Gitlab => format!("{}/api/v4", self.origin),
            ProviderType::Gitea => format!("{}/api/v1", self.origin),
            _ => "https://api.bitbucket.org/2.0".into(),
        }
    }
}

/// Whether `s` is a full commit id (40 or 64 hex digits).
pub fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes a URL path component (`/` too, as GitLab's project ids ask).
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_ssh_and_scp_urls() {
        let p = RepoPath::parse("https://github.com/acme/deploy.git").expect("https");
        assert_eq!(
            (p.origin.as_str(), p.host.as_str(), p.path.as_str()),
            ("https://github.com", "github.com", "acme/deploy")
        );
        let p = RepoPath::parse("http://user@127.0.0.1:8080/git/sample/").expect("http");
        assert_eq!(p.origin, "http://127.0.0.1:8080");
        assert_eq!(p.path, "git/sample");
        let p = RepoPath::parse("ssh://git@gitlab.example:2222/group/sub/deploy.git").expect("ssh");
        assert_eq!(p.origin, "https://gitlab.example");
        assert_eq!(p.path, "group/sub/deploy");
        let p = RepoPath::parse("git://127.0.0.1:9418/acme/deploy.git").expect("git");
        assert_eq!(
            (p.origin.as_str(), p.path.as_str()),
            ("https://127.0.0.1", "acme/deploy")
        );
        let p = RepoPath::parse("git@bitbucket.org:ws/repo.git").expect("scp");
        assert_eq!(p.owner_and_name(), Ok(("ws", "repo")));
        assert!(RepoPath::parse("file:///tmp/repo").is_err());
        assert!(RepoPath::parse("https://github.com/").is_err());
        assert!(
            RepoPath::parse("https://gitlab.example/a/b/c")
                .expect("deep")
                .owner_and_name()
                .is_err()
        );
    }

    #[test]
    fn default_apis() {
        let gh = RepoPath::parse("https://github.com/a/b").expect("gh");
        assert_eq!(
            gh.default_api(ProviderType::Github),
            "https://api.github.com"
        );
        let ghe = RepoPath::parse("https://ghe.corp/a/b").expect("ghe");
        assert_eq!(
            ghe.default_api(ProviderType::Github),
            "https://ghe.corp/api/v3"
        );
        assert_eq!(
            ghe.default_api(ProviderType::Gitea),
            "https://ghe.corp/api/v1"
        );
        assert!(is_commit(&"a".repeat(40)));
        assert!(!is_commit("main"));
        assert_eq!(encode_component("a/b c"), "a%2Fb%20c");
    }
}
