//! Property tests of YAML/JSON parsing and duplicate detection: generated objects written as multi-document
//! streams (by a small YAML writer of the test's own, quoting every string) read back as the same objects, in
//! order, with their lines; two documents of one identity are always reported, naming both places; arbitrary or
//! mutated bytes never panic.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::collections::HashMap;

use common::TempTree;
use kedge_render::object::{check_duplicates, objects_from_document};
use kedge_render::parse::{Document, parse_json, parse_yaml};
use kedge_render::{CacheConfig, RenderConfig, RenderError, RenderOptions, Renderer, SourceRef};
use proptest::prelude::*;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------------------------
// A YAML writer independent of the parser: block style, every key double-quoted, strings double-quoted with YAML
// escapes for everything outside the printable set (or plain when they cannot be read as anything but a string).

/// Scalars YAML 1.1 reads as something other than a string when plain (kubectl's reading, which Kedge follows).
const YAML11_WORDS: &[&str] = &["y", "yes", "n", "no", "true", "false", "on", "off", "null"];

fn plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !YAML11_WORDS.contains(&s)
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let n = c as u32;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            _ if (0x20..=0x7e).contains(&n)
                || (0xa0..=0xd7ff).contains(&n)
                || ((0xe000..=0xfffd).contains(&n) && n != 0xfeff)
                || n >= 0x10000 =>
            {
                out.push(c)
            }
            _ if n <= 0xff => out.push_str(&format!("\\x{n:02x}")),
            _ => out.push_str(&format!("\\u{n:04x}")),
        }
    }
    out.push('"');
    out
}

fn scalar(v: &Value, plain: bool) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if plain && plain_safe(s) => s.clone(),
        Value::String(s) => quoted(s),
        Value::Array(_) | Value::Object(_) => unreachable!("not a scalar"),
    }
}

/// Writes `v` after a `key:` or `-` at `indent` (the indentation of its content when it is a collection).
fn write_node(v: &Value, indent: usize, plain: bool, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, indent, plain, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            for item in a {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                write_node(item, indent + 2, plain, out);
            }
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        other => {
            out.push(' ');
            out.push_str(&scalar(other, plain));
            out.push('\n');
        }
    }
}

fn write_map(m: &Map<String, Value>, indent: usize, plain: bool, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(&Value::String(k.clone()), plain));
        out.push(':');
        write_node(v, indent + 2, plain, out);
    }
}

fn to_yaml(doc: &Map<String, Value>, plain: bool) -> String {
    let mut out = String::new();
    write_map(doc, 0, plain, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Generators.

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z][a-z0-9-]{0,8}".prop_map(Value::String),
        // Strings that YAML 1.1 would read as numbers, booleans or octal when plain.
        prop::sample::select(vec![
            "0644", "yes", "off", "1.0", "~", "null", "0x1F", "-", "#x", "a: b"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A Kubernetes-looking object with arbitrary content under `data`.
fn object() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(vec!["v1", "apps/v1", "batch/v1", "example.com/v1alpha1"]),
        prop::sample::select(vec!["ConfigMap", "Deployment", "Widget"]),
        "[a-z][a-z0-9-]{0,12}",
        prop::option::of(prop::sample::select(vec!["default", "team-a"])),
        prop::collection::btree_map("[a-zA-Z0-9._-]{1,10}", tree(), 0..4),
    )
        .prop_map(|(api, kind, name, ns, data)| {
            let mut meta = Map::new();
            meta.insert("name".into(), Value::String(name));
            if let Some(ns) = ns {
                meta.insert("namespace".into(), Value::String(ns.into()));
            }
            let mut o = Map::new();
            o.insert("apiVersion".into(), Value::String(api.into()));
            o.insert("kind".into(), Value::String(kind.into()));
            o.insert("metadata".into(), Value::Object(meta));
            o.insert("data".into(), Value::Object(data.into_iter().collect()));
            o
        })
}

/// One piece of a stream between `---` separators.
#[derive(Debug, Clone)]
enum Piece {
    Doc(Map<String, Value>),
    /// A document with no content (empty, a comment, or a null scalar), which the parser skips.
    Empty(&'static str),
}

fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    prop::collection::vec(
        prop_oneof![
            4 => object().prop_map(Piece::Doc),
            1 => prop::sample::select(vec!["", "# only a comment\n", "~\n", "null\n"]).prop_map(Piece::Empty),
        ],
        0..6,
    )
}

/// The stream and the documents it holds, with the line each starts on.
fn stream(
    pieces: &[Piece],
    leading_separator: bool,
    comments: bool,
    plain: bool,
) -> (String, Vec<Document>) {
    let mut text = String::new();
    let mut docs = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 || leading_separator {
            text.push_str("---\n");
        }
        match p {
            Piece::Empty(body) => text.push_str(body),
            Piece::Doc(o) => {
                if comments {
                    text.push_str("# a comment before the document\n");
                }
                let line = text.matches('\n').count() as u64 + 1;
                text.push_str(&to_yaml(o, plain));
                docs.push(Document {
                    index: docs.len(),
                    line,
                    value: Value::Object(o.clone()),
                });
            }
        }
    }
    (text, docs)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn multi_document_yaml_reads_back_the_same_objects_in_order(
        pieces in pieces(),
        leading in any::<bool>(),
        comments in any::<bool>(),
        plain in any::<bool>(),
    ) {
        let (text, expected) = stream(&pieces, leading, comments, plain);
        let docs = parse_yaml("apps/a.yaml", text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- stream:\n{text}")))?;
        prop_assert_eq!(docs, expected, "stream:\n{}", text);
    }

    #[test]
    fn concatenated_json_reads_back_the_same_values_with_lines(
        values in prop::collection::vec(object(), 0..5),
        gaps in prop::collection::vec(prop::sample::select(vec!["\n", " ", "\n\n  ", "\t\n"]), 5),
    ) {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (i, v) in values.iter().enumerate() {
            text.push_str(gaps[i]);
            let line = text.matches('\n').count() as u64 + 1;
            expected.push(Document { index: i, line, value: Value::Object(v.clone()) });
            text.push_str(&serde_json::to_string_pretty(v).unwrap());
        }
        let docs = parse_json("a.json", text.as_bytes()).unwrap();
        prop_assert_eq!(docs, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_parse_result(&bytes)?;
    }

    #[test]
    fn mutated_yaml_never_panics(
        pieces in pieces(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let (text, _) = stream(&pieces, true, false, true);
        let mut bytes = text.into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        check_parse_result(&bytes)?;
    }
}

/// Parsing never panics; a success has documents numbered 0.. with no null among them, a failure names the file.
fn check_parse_result(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_yaml("f.yaml", bytes) {
        Ok(docs) => {
            for (i, d) in docs.iter().enumerate() {
                prop_assert_eq!(d.index, i);
                prop_assert!(!d.value.is_null());
            }
        }
        Err(RenderError::Yaml { file, .. }) => prop_assert_eq!(file, "f.yaml"),
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
    }
    match parse_json("f.json", bytes) {
        Ok(docs) => {
            for (i, d) in docs.iter().enumerate() {
                prop_assert_eq!(d.index, i);
                prop_assert!(!d.value.is_null());
                prop_assert!(d.line >= 1);
            }
        }
        Err(RenderError::Json { file, .. }) => prop_assert_eq!(file, "f.json"),
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Duplicate detection against a model.

/// An object drawn from a small pool of identities, so that collisions are frequent. `name` None: named by
/// `generateName` only (a hook), never a duplicate.
#[derive(Debug, Clone)]
struct Entry {
    api_version: &'static str,
    kind: &'static str,
    namespace: Option<&'static str>,
    name: Option<&'static str>,
}

impl Entry {
    fn to_map(&self) -> Map<String, Value> {
        let mut meta = Map::new();
        match self.name {
            Some(n) => meta.insert("name".into(), n.into()),
            None => meta.insert("generateName".into(), "hook-".into()),
        };
        if let Some(ns) = self.namespace {
            meta.insert("namespace".into(), ns.into());
        }
        let mut o = Map::new();
        o.insert("apiVersion".into(), self.api_version.into());
        o.insert("kind".into(), self.kind.into());
        o.insert("metadata".into(), Value::Object(meta));
        o
    }

    /// The identity as the model sees it: the version is not part of it.
    fn identity(&self) -> Option<(String, String, String, String)> {
        let group = self.api_version.split_once('/').map_or("", |(g, _)| g);
        Some((
            group.to_owned(),
            self.kind.to_owned(),
            self.namespace.unwrap_or_default().to_owned(),
            self.name?.to_owned(),
        ))
    }

    fn display(&self) -> String {
        let (group, kind, ns, name) = self.identity().expect("named");
        let kind = if group.is_empty() {
            kind
        } else {
            format!("{kind}.{group}")
        };
        if ns.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {ns}/{name}")
        }
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        // apps/v1 and apps/v1beta1 name the same objects.
        prop::sample::select(vec!["v1", "apps/v1", "apps/v1beta1"]),
        prop::sample::select(vec!["ConfigMap", "Deployment"]),
        prop::option::of(Just("ns")),
        prop_oneof![4 => prop::sample::select(vec!["a", "b"]).prop_map(Some), 1 => Just(None)],
    )
        .prop_map(|(api_version, kind, namespace, name)| Entry {
            api_version,
            kind,
            namespace,
            name,
        })
}

/// A document: one object, or a `List` of several.
#[derive(Debug, Clone)]
enum Doc {
    One(Entry),
    List(Vec<Entry>),
}

fn files() -> impl Strategy<Value = Vec<Vec<Doc>>> {
    let doc = prop_oneof![
        4 => entry().prop_map(Doc::One),
        1 => prop::collection::vec(entry(), 0..3).prop_map(Doc::List),
    ];
    prop::collection::vec(prop::collection::vec(doc, 1..4), 1..4)
}

fn file_text(docs: &[Doc]) -> String {
    let maps: Vec<Map<String, Value>> = docs
        .iter()
        .map(|d| match d {
            Doc::One(e) => e.to_map(),
            Doc::List(items) => {
                let mut m = Map::new();
                m.insert("apiVersion".into(), "v1".into());
                m.insert("kind".into(), "List".into());
                m.insert(
                    "items".into(),
                    Value::Array(items.iter().map(|e| Value::Object(e.to_map())).collect()),
                );
                m
            }
        })
        .collect();
    maps.iter()
        .map(|m| to_yaml(m, true))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn file_name(i: usize) -> String {
    format!("app/f{i}.yaml")
}

/// (identity shown, first place, second place) for every object whose identity an earlier object has: places are
/// (file, document, item).
type Place = (String, usize, Option<usize>);

fn expected_duplicates(files: &[Vec<Doc>]) -> Vec<(String, Place, Place)> {
    let mut first: HashMap<(String, String, String, String), Place> = HashMap::new();
    let mut out = Vec::new();
    for (f, docs) in files.iter().enumerate() {
        for (d, doc) in docs.iter().enumerate() {
            let entries: Vec<(Option<usize>, &Entry)> = match doc {
                Doc::One(e) => vec![(None, e)],
                Doc::List(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (Some(i), e))
                    .collect(),
            };
            for (item, e) in entries {
                let Some(id) = e.identity() else { continue };
                let here = (file_name(f), d, item);
                match first.get(&id) {
                    Some(p) => out.push((e.display(), p.clone(), here)),
                    None => {
                        first.insert(id, here);
                    }
                }
            }
        }
    }
    out
}

fn place(s: &SourceRef) -> Place {
    (s.file.clone(), s.document, s.item)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn every_repeated_identity_is_reported_naming_both_places(files in files()) {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (f, docs) in files.iter().enumerate() {
            let name = file_name(f);
            for d in parse_yaml(&name, file_text(docs).as_bytes()).unwrap() {
                let source = SourceRef { file: name.clone(), document: d.index, item: None, line: d.line };
                objects_from_document(d.value, source, &mut objects, &mut errors);
            }
        }
        prop_assert!(errors.is_empty(), "{:?}", errors);
        check_duplicates(&objects, &mut errors);
        let got: Vec<(String, Place, Place)> = errors
            .iter()
            .map(|e| match e {
                RenderError::DuplicateObject { id, first, second } => {
                    (id.clone(), place(first), place(second))
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        prop_assert_eq!(got, expected_duplicates(&files));
    }
}

fn no_cache() -> Renderer {
    Renderer::new(RenderConfig {
        cache: CacheConfig {
            max_entries: 0,
            max_bytes: 0,
        },
        ..RenderConfig::default()
    })
}

proptest! {
    // Each case writes files and renders them: fewer cases.
    #![proptest_config(config(48))]

    #[test]
    fn a_render_refuses_duplicates_naming_both_files_and_documents(files in files()) {
        let tree = TempTree::new();
        for (f, docs) in files.iter().enumerate() {
            tree.write(&file_name(f), &file_text(docs));
        }
        let expected = expected_duplicates(&files);
        match no_cache().render(&tree, "app", &RenderOptions::default()) {
            Ok(set) => {
                prop_assert!(expected.is_empty(), "duplicates not reported: {:?}", expected);
                let total: usize = files
                    .iter()
                    .flatten()
                    .map(|d| match d { Doc::One(_) => 1, Doc::List(items) => items.len() })
                    .sum();
                prop_assert_eq!(set.len(), total);
            }
            Err(err) => {
                prop_assert!(!expected.is_empty(), "unexpected error: {err}");
                let listed = err.errors();
                prop_assert_eq!(listed.len(), expected.len(), "{}", err);
                for (e, (id, first, second)) in listed.iter().zip(&expected) {
                    let text = e.to_string();
                    let at = |p: &Place| match p.2 {
                        Some(i) => format!("{} document {} items[{i}] (line", p.0, p.1),
                        None => format!("{} document {} (line", p.0, p.1),
                    };
                    prop_assert!(text.contains(&format!("duplicate object {id}:")), "{}", text);
                    prop_assert!(text.contains(&format!("defined in {}", at(first))), "{}", text);
                    prop_assert!(text.contains(&format!("and in {}", at(second))), "{}", text);
                }
            }
        }
    }
}
