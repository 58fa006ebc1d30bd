//! Chart version constraints as Helm reads them: `1.2.3` (exact), `>=1.2.0 <2`, `^1.2`, `~1.2.3`, `1.2.x`,
//! `1.2 - 1.4`, `*`, and alternatives joined by `||`.

use semver::{Version, VersionReq};

/// A parsed chart version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    text: String,
    alternatives: Vec<VersionReq>,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Constraint {
    /// Parses a constraint. An empty string, `*`, `latest` and `HEAD` (the spec's default revision) mean the
    /// highest stable version; a bare version means exactly that version.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let mut alternatives = Vec::new();
        if matches!(trimmed, "" | "*" | "latest" | "HEAD") {
            alternatives.push(VersionReq::STAR);
        } else {
            for alt in trimmed.split("||") {
                alternatives.push(parse_and(alt.trim())?);
            }
        }
        Ok(Constraint {
            text: trimmed.to_owned(),
            alternatives,
        })
    }

    /// Whether a version satisfies the constraint.
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|r| r.matches(version))
    }

    /// The highest of `versions` that satisfies the constraint, with its index.
    pub fn best<'a, I>(&self, versions: I) -> Option<(usize, Version)>
    where
        I: IntoIterator<Item = &'a str>,
    {
        versions
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| parse_version(v).map(|v| (i, v)))
            .filter(|(_, v)| self.matches(v))
            .max_by(|a, b| a.1.cmp(&b.1))
    }
}

/// Parses a chart version leniently as Helm does: a leading `v` is allowed and missing minor or patch numbers
/// are zero (`1.2` is `1.2.0`).
pub fn parse_version(text: &str) -> Option<Version> {
    let t = text.trim();
    let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
    if let Ok(v) = Version::parse(t) {
        return Some(v);
    }
    let split = t.find(['-', '+']).unwrap_or(t.len());
    let (core, rest) = t.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    Version::parse(&format!("{padded}{rest}")).ok()
}

/// One `AND` group: comparators separated by spaces or commas, or a hyphen range.
fn parse_and(text: &str) -> Result<VersionReq, String> {
    let tokens: Vec<&str> = text.split([' ', ',']).filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        return Err("empty version constraint".into());
    }
    let mut comparators: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        if token == "-" {
            // Hyphen range: `A - B` is `>=A, <=B`.
            let (Some(prev), Some(next)) = (comparators.pop(), tokens.get(i + 1)) else {
                return Err("incomplete hyphen range".into());
            };
            let low = prev.trim_start_matches('=');
            comparators.push(format!(">={low}"));
            comparators.push(format!("<={}", strip_v(next)));
            i += 2;
            continue;
        }
        let op_len = token
            .find(|c: char| !matches!(c, '>' | '<' | '=' | '~' | '^' | '!'))
            .unwrap_or(token.len());
        let (op, version) = token.split_at(op_len);
        pending_op.push_str(op);
        i += 1;
        if version.is_empty() {
            continue;
        }
        if pending_op.contains('!') {
            return Err(format!("unsupported operator {pending_op:?}"));
        }
        let version = strip_v(version);
        let op = if pending_op.is_empty() && !is_wildcard(version) {
            "=".to_owned()
        } else {
            std::mem::take(&mut pending_op)
        };
        pending_op.clear();
        comparators.push(format!("{op}{version}"));
    }
    if !pending_op.is_empty() {
        return Err("incomplete version constraint".into());
    }
    VersionReq::parse(&comparators.join(", ")).map_err(|e| e.to_string())
}

fn strip_v(v: &str) -> &str {
    v.strip_prefix(['v', 'V']).unwrap_or(v)
}

fn is_wildcard(v: &str) -> bool {
    v.split('.').any(|p| matches!(p, "*" | "x" | "X"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn best(c: &str, versions: &[&str]) -> Option<String> {
        Constraint::parse(c)
            .unwrap()
            .best(versions.iter().copied())
            .map(|(_, v)| v.to_string())
    }

    const VERSIONS: &[&str] = &[
        "0.9.0",
        "1.0.0",
        "1.2.0",
        "1.2.5",
        "1.10.0",
        "2.0.0-rc.1",
        "2.0.0",
        "v2.1",
    ];

    #[test]
    fn ranges_pick_the_highest_match() {
        assert_eq!(best(">=1.2.0 <2", VERSIONS).as_deref(), Some("1.10.0"));
        assert_eq!(best(">= 1.2.0, < 2", VERSIONS).as_deref(), Some("1.10.0"));
        assert_eq!(best("^1.2", VERSIONS).as_deref(), Some("1.10.0"));
        assert_eq!(best("~1.2.0", VERSIONS).as_deref(), Some("1.2.5"));
        assert_eq!(best("1.2.x", VERSIONS).as_deref(), Some("1.2.5"));
        assert_eq!(best("1.0 - 1.2.0", VERSIONS).as_deref(), Some("1.2.0"));
        assert_eq!(
            best("<1 || >=2.0.0 <2.1", VERSIONS).as_deref(),
            Some("2.0.0")
        );
        assert_eq!(best("*", VERSIONS).as_deref(), Some("2.1.0"));
        assert_eq!(best("HEAD", VERSIONS).as_deref(), Some("2.1.0"));
        assert_eq!(best(">5", VERSIONS), None);
    }

    #[test]
    fn bare_version_is_exact() {
        assert_eq!(best("1.2.0", VERSIONS).as_deref(), Some("1.2.0"));
        assert_eq!(best("v1.0.0", VERSIONS).as_deref(), Some("1.0.0"));
        assert_eq!(best("1.3.0", VERSIONS), None);
    }

    #[test]
    fn prereleases_only_when_asked_for() {
        assert_eq!(
            best(">=2.0.0-rc.0 <2.0.0", VERSIONS).as_deref(),
            Some("2.0.0-rc.1")
        );
        assert_eq!(best("2.0.0-rc.1", VERSIONS).as_deref(), Some("2.0.0-rc.1"));
        assert_eq!(best(">1.10.0 <2", VERSIONS), None);
    }

    #[test]
    fn lenient_versions_and_errors() {
        assert_eq!(parse_version("v2.1").unwrap().to_string(), "2.1.0");
        assert_eq!(parse_version("3").unwrap().to_string(), "3.0.0");
        assert!(parse_version("latest").is_none());
        assert!(Constraint::parse(">=").is_err());
        assert!(Constraint::parse("!=1.0.0").is_err());
        assert!(Constraint::parse("1.0 -").is_err());
    }
}
