//! Values layers (files, inline YAML, objects, Secrets), their digest, and masking of secret values in messages.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::HelmError;

/// One values document, passed to Helm as one `--values` file in order.
#[derive(Clone)]
pub struct ValuesLayer {
    /// Where it comes from, for messages (a file name, `values`, `Secret ns/name key k`); never the content.
    pub origin: String,
    /// The YAML (or JSON) document.
    pub bytes: Vec<u8>,
    /// Whether the content is secret: it is then masked in Helm's messages and never echoed.
    pub secret: bool,
}

impl std::fmt::Debug for ValuesLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ValuesLayer");
        d.field("origin", &self.origin);
        if self.secret {
            d.field(
                "bytes",
                &format_args!("<{} secret bytes>", self.bytes.len()),
            );
        } else {
            d.field("bytes", &String::from_utf8_lossy(&self.bytes));
        }
        d.field("secret", &self.secret).finish()
    }
}

impl ValuesLayer {
    /// A layer whose content may be shown.
    pub fn plain(origin: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        ValuesLayer {
            origin: origin.into(),
            bytes: bytes.into(),
            secret: false,
        }
    }

    /// A layer read from a Secret.
    pub fn secret(origin: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        ValuesLayer {
            origin: origin.into(),
            bytes: bytes.into(),
            secret: true,
        }
    }

    /// Checks that the layer is a YAML mapping (or empty), returning the parsed document.
    pub(crate) fn parse(&self) -> Result<Value, HelmError> {
        let docs = kedge_render::parse::parse_yaml(&self.origin, &self.bytes).map_err(|e| {
            HelmError::Values {
                origin: self.origin.clone(),
                // The parser's message carries no snippet, but a secret document's errors say no more than this.
                reason: if self.secret {
                    "not valid YAML".into()
                } else {
                    e.to_string()
                },
            }
        })?;
        match docs.len() {
            0 => Ok(Value::Object(Default::default())),
            1 if docs[0].value.is_object() => Ok(docs[0].value.clone()),
            1 => Err(HelmError::Values {
                origin: self.origin.clone(),
                reason: "values must be a mapping".into(),
            }),
            _ => Err(HelmError::Values {
                origin: self.origin.clone(),
                reason: "values must be a single YAML document".into(),
            }),
        }
    }
}

/// Masks every secret value of `layers` in `text`.
pub(crate) struct Masker {
    needles: Vec<String>,
}

impl Masker {
    pub(crate) fn new(parsed: &[(bool, Value)]) -> Self {
        let mut needles = Vec::new();
        for (secret, v) in parsed {
            if *secret {
                collect_scalars(v, &mut needles);
            }
        }
        // Longest first, so that a value containing another is masked whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Masker { needles }
    }

    /// The secret values looked for, longest first.
    pub(crate) fn needles(&self) -> &[String] {
        &self.needles
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "<redacted>");
            }
        }
        out
    }
}

fn collect_scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        // Very short values (`a`, `1`, `true`) would mask unrelated text and say little anyway.
        Value::String(s) if s.trim().len() >= 3 => {
            out.push(s.clone());
            for line in s.lines().map(str::trim).filter(|l| l.len() >= 3) {
                out.push(line.to_owned());
            }
        }
        Value::Number(n) => {
            let s = n.to_string();
            if s.len() >= 3 {
                out.push(s);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_scalars(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_scalars(i, out)),
        _ => {}
    }
}

/// A SHA-256 over length-prefixed parts.
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn new() -> Self {
        Hasher(Sha256::new())
    }

    pub(crate) fn part(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let b = bytes.as_ref();
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Escapes a value for `--set`: Helm splits on unescaped commas.
pub(crate) fn escape_set_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_masked_and_not_debugged() {
        let layer = ValuesLayer::secret("Secret ns/s key values.yaml", "password: hunter2-xyz\n");
        let parsed = layer.parse().unwrap();
        assert!(!format!("{layer:?}").contains("hunter2"));
        let m = Masker::new(&[(true, parsed), (false, json!({"image": "public-value"}))]);
        let text = m.mask("Error: template: x: password hunter2-xyz is wrong; public-value ok");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"));
        assert!(text.contains("public-value"));
    }

    #[test]
    fn layers_must_be_mappings() {
        assert!(ValuesLayer::plain("v", "").parse().unwrap().is_object());
        let err = ValuesLayer::plain("v", "- a\n").parse().unwrap_err();
        assert!(err.to_string().contains("mapping"), "{err}");
        let err = ValuesLayer::secret("s", "a: [1, \"hunter2-xyz\n")
            .parse()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn set_values_escape_commas() {
        assert_eq!(escape_set_value("a,b\\c"), "a\\,b\\\\c");
    }
}
