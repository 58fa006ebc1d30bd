//! Include/exclude patterns for directory sources, with Argo CD's semantics.
//!
//! A pattern is a glob matched against the file's path relative to the application directory. `*` and `?`
//! also match `/` (so `*.yaml` matches `sub/x.yaml`), `[...]` is a class and `{a,b}` an alternation. A
//! pattern may list several globs separated by commas at the top level (`a.yaml,env/*`), which is the same as
//! `{a.yaml,env/*}`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::RenderError;

/// A compiled include or exclude pattern.
#[derive(Debug, Clone)]
pub struct PatternList {
    set: GlobSet,
}

impl PatternList {
    /// Compiles a pattern; `which` ("include" or "exclude") names it in errors.
    pub fn new(which: &'static str, pattern: &str) -> Result<Self, RenderError> {
        let mut builder = GlobSetBuilder::new();
        for part in split_top_level(pattern) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(part)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|source| RenderError::Glob {
                    which,
                    pattern: pattern.to_owned(),
                    source,
                })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|source| RenderError::Glob {
            which,
            pattern: pattern.to_owned(),
            source,
        })?;
        Ok(PatternList { set })
    }

    /// True when the relative path matches any glob of the list.
    pub fn matches(&self, relative: &str) -> bool {
        self.set.is_match(relative)
    }
}

/// Splits at commas that are outside `{...}` and `[...]`.
fn split_top_level(pattern: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut braces = 0usize;
    let mut in_class = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in pattern.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => braces += 1,
            '}' if !in_class => braces = braces.saturating_sub(1),
            ',' if !in_class && braces == 0 => {
                parts.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&pattern[start..]);
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        PatternList::new("include", p).unwrap().matches(path)
    }

    #[test]
    fn star_crosses_directories_like_argo() {
        assert!(m("*.yaml", "a.yaml"));
        assert!(m("*.yaml", "sub/a.yaml"));
        assert!(!m("*.yaml", "a.json"));
        assert!(m("sub/*", "sub/deep/a.yaml"));
        assert!(!m("sub/*", "other/a.yaml"));
    }

    #[test]
    fn braces_and_commas_are_lists() {
        assert!(m("{config.json,env-usw2/*}", "config.json"));
        assert!(m("{config.json,env-usw2/*}", "env-usw2/x.yaml"));
        assert!(!m("{config.json,env-usw2/*}", "env-use1/x.yaml"));
        assert!(m("config.json,env-usw2/*", "config.json"));
        assert!(m("config.json, env-usw2/*", "env-usw2/x.yaml"));
        assert!(!m("config.json,env-usw2/*", "other.yaml"));
        assert!(m("a.yaml,{b,c}.yaml", "c.yaml"));
        assert!(m("[ab].yaml,z.yaml", "b.yaml"));
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        let err = PatternList::new("exclude", "a[").unwrap_err();
        assert!(err.to_string().contains("exclude"), "{err}");
    }
}
