//! YAML documents read with the line of every field, so that a field that cannot be converted is reported where
//! it stands in the input.

use std::collections::BTreeMap;
use std::fmt;

// serde as k8s-openapi re-exports it (the crate whose traits its and serde-saphyr's types implement).
use k8s_openapi::serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

/// One step of a path inside a document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path inside a document.
pub type Path = Vec<Seg>;

/// A path as people read it: `spec.source.helm.parameters[0].name`, keys that hold dots or slashes in brackets
/// (`metadata.annotations[argocd.argoproj.io/refresh]`).
pub fn show(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if k.contains(['.', '/', '[', ']']) || k.is_empty() => {
                out.push('[');
                out.push_str(k);
                out.push(']');
            }
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A path extended by one key.
pub fn key(path: &[Seg], k: &str) -> Path {
    let mut p = path.to_vec();
    p.push(Seg::Key(k.to_owned()));
    p
}

/// A path extended by one index.
pub fn index(path: &[Seg], i: usize) -> Path {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

/// One document of the input: its value, and the line of each of its fields.
#[derive(Clone, Debug)]
pub struct Document {
    /// The document as JSON.
    pub value: Value,
    /// 1-based line of the document's first field.
    pub line: u64,
    lines: BTreeMap<Path, u64>,
}

impl Document {
    /// The line of the field at `path`, else of the nearest field that holds it.
    pub fn line_of(&self, path: &[Seg]) -> u64 {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&path[..n]).copied())
            .unwrap_or(self.line)
    }
}

/// Why the input could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// Reads a YAML stream (documents separated by `---`); empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Document>, ParseError> {
    let options = serde_saphyr::options! {
        // As kubectl reads YAML: `0644` is the octal 420.
        legacy_octal_numbers: true,
        duplicate_keys: DuplicateKeyPolicy::Error,
        // Snippets would echo the input (possibly Secret values) into the message.
        with_snippet: false,
    };
    let nodes = serde_saphyr::from_str_multiple_with_options::<Node, Vec<Node>>(text, options)
        .map_err(|e| ParseError {
            line: e.location().map(|l| l.line()).unwrap_or(0),
            message: UserMessageFormatter.format_message(&e).into_owned(),
        })?;
    Ok(nodes
        .into_iter()
        .filter(|n| !matches!(n.kind, Kind::Scalar(Value::Null)))
        .map(|node| {
            let mut lines = BTreeMap::new();
            let line = node.line;
            let value = node.into_value(&mut Vec::new(), &mut lines);
            Document { value, line, lines }
        })
        .collect())
}

/// A YAML node with the line it starts on.
struct Node {
    line: u64,
    kind: Kind,
}

enum Kind {
    Scalar(Value),
    Seq(Vec<Node>),
    /// Entries with the line of their key.
    Map(Vec<(String, u64, Node)>),
}

impl Node {
    fn into_value(self, path: &mut Path, lines: &mut BTreeMap<Path, u64>) -> Value {
        match self.kind {
            Kind::Scalar(v) => v,
            Kind::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        path.push(Seg::Index(i));
                        lines.insert(path.clone(), item.line);
                        let v = item.into_value(path, lines);
                        path.pop();
                        v
                    })
                    .collect(),
            ),
            Kind::Map(entries) => {
                let mut map = Map::new();
                for (k, line, node) in entries {
                    path.push(Seg::Key(k.clone()));
                    lines.insert(path.clone(), line);
                    let v = node.into_value(path, lines);
                    path.pop();
                    map.insert(k, v);
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        Ok(Node {
            line: spanned.referenced.line(),
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Number::from_f64(v)
            .map(|n| Kind::Scalar(Value::Number(n)))
            .ok_or_else(|| E::custom("a number JSON cannot hold (NaN or infinite)"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k.value, k.referenced.line(), v));
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_its_line() {
        let text = "# a comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations:\n    \
                    a.b/c: \"1\"\ndata:\n  list:\n---\n---\nitems:\n  - one\n  - two: 2\n    three: true\n";
        let docs = parse(text).expect("parses");
        assert_eq!(docs.len(), 2, "the empty document is skipped");
        let (a, b) = (&docs[0], &docs[1]);
        assert_eq!(a.line, 2);
        assert_eq!(a.line_of(&key(&[], "kind")), 3);
        let ann = key(&key(&[], "metadata"), "annotations");
        assert_eq!(a.line_of(&key(&ann, "a.b/c")), 7);
        assert_eq!(show(&key(&ann, "a.b/c")), "metadata.annotations[a.b/c]");
        assert_eq!(a.value["metadata"]["annotations"]["a.b/c"], "1");
        assert!(a.value["data"]["list"].is_null());
        let items = key(&[], "items");
        assert_eq!(b.line_of(&index(&items, 1)), 14);
        assert_eq!(b.line_of(&key(&index(&items, 1), "three")), 15);
        // A path the document does not have: the nearest field that holds it.
        assert_eq!(b.line_of(&key(&index(&items, 1), "four")), 14);
        assert_eq!(show(&key(&index(&items, 1), "three")), "items[1].three");
        assert_eq!(b.value["items"][1]["three"], true);
        assert_eq!(b.value["items"][1]["two"], 2);
    }

    #[test]
    fn broken_yaml_says_where() {
        let err = parse("a: 1\nb: [\n").expect_err("broken");
        assert!(err.line >= 2, "{err:?}");
        let err = parse("a: 1\na: 2\n").expect_err("duplicate key");
        assert!(err.message.contains('a'), "{err:?}");
    }
}
