//! Parsing of YAML streams and JSON files into documents (`serde_json::Value`), with kubectl-compatible scalars.

use serde_json::Value;
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

use crate::error::RenderError;

/// One non-empty document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 0-based index among the non-empty documents of the file.
    pub index: usize,
    /// 1-based line where the document's content starts, 0 when unknown.
    pub line: u64,
    /// The document.
    pub value: Value,
}

/// The deepest nesting accepted in a document. Deep CRD schemas reach a few dozen levels; a hostile document
/// nested thousands of levels deep is refused before it can exhaust the stack.
pub const MAX_DEPTH: usize = 256;

/// The most values that aliases may expand into across one file: enough for any real manifest, far below
/// what an alias bomb ("billion laughs") needs.
pub const MAX_ALIAS_EXPANSION: usize = 1_000_000;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // kubectl reads YAML 1.1 scalars: `0644` is the octal 420 (file modes in volumes).
        legacy_octal_numbers: true,
        duplicate_keys: DuplicateKeyPolicy::Error,
        // Snippets would echo file content (possibly Secret data) into errors and logs.
        with_snippet: false,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EXPANSION,
        },
        budget: serde_saphyr::budget! {
            // Input size is bounded by the tree's file size limit and kustomize's output limit; the budget
            // guards against amplification, not against size.
            max_reader_input_bytes: None,
            max_events: usize::MAX,
            max_nodes: usize::MAX,
            max_documents: usize::MAX,
            max_total_scalar_bytes: usize::MAX,
            max_depth: MAX_DEPTH,
        },
    }
}

/// Parses a YAML stream (one or more documents separated by `---`). Empty and null documents are skipped.
pub fn parse_yaml(file: &str, bytes: &[u8]) -> Result<Vec<Document>, RenderError> {
    let docs: Vec<Spanned<Value>> =
        serde_saphyr::from_slice_multiple_with_options(bytes, options()).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            RenderError::Yaml {
                file: file.to_owned(),
                line,
                column,
                // The message alone: the location is carried in the fields.
                message: UserMessageFormatter.format_message(&e).into_owned(),
            }
        })?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.value.is_null())
        .enumerate()
        .map(|(index, d)| Document {
            index,
            line: d.referenced.line(),
            value: d.value,
        })
        .collect())
}

/// The documents of a YAML stream with their key order kept (empty and null documents skipped, as in
/// [`parse_yaml`], so that indexes match).
pub(crate) fn parse_yaml_ordered(bytes: &[u8]) -> Result<Vec<kedge_sops::Node>, String> {
    let docs: Vec<kedge_sops::Node> =
        serde_saphyr::from_slice_multiple_with_options(bytes, options())
            .map_err(|e| UserMessageFormatter.format_message(&e).into_owned())?;
    Ok(docs
        .into_iter()
        .filter(|d| *d != kedge_sops::Node::Null)
        .collect())
}

/// The values of a JSON file with their key order kept (null values skipped, as in [`parse_json`]).
pub(crate) fn parse_json_ordered(bytes: &[u8]) -> Result<Vec<kedge_sops::Node>, String> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<kedge_sops::Node>()
        .filter(|d| !matches!(d, Ok(kedge_sops::Node::Null)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// Parses a JSON file holding one value (or, like kubectl, several concatenated values).
pub fn parse_json(file: &str, bytes: &[u8]) -> Result<Vec<Document>, RenderError> {
    let mut out = Vec::new();
    let mut line = 1u64;
    let mut consumed = 0usize;
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    while let Some(next) = stream.next() {
        let value = next.map_err(|e| RenderError::Json {
            file: file.to_owned(),
            line: e.line() as u64,
            column: e.column() as u64,
            message: e.to_string(),
        })?;
        let end = stream.byte_offset();
        let start_line = line
            + bytes[consumed..end]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .filter(|b| **b == b'\n')
                .count() as u64;
        line += bytes[consumed..end].iter().filter(|b| **b == b'\n').count() as u64;
        consumed = end;
        if value.is_null() {
            continue;
        }
        out.push(Document {
            index: out.len(),
            line: start_line,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn legacy_octal_reads_as_kubectl_does() {
        let docs = parse_yaml(
            "a.yaml",
            b"mode: 0644\nother: 0o17\nplain: 10\nstr: '0644'\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 1);
        let v = &docs[0].value;
        assert_eq!(v["mode"], 420);
        assert_eq!(v["plain"], 10);
        assert_eq!(v["str"], "0644");
    }

    #[test]
    fn duplicate_key_is_an_error_with_file_and_line() {
        let err = parse_yaml("dir/dup.yaml", b"a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        match &err {
            RenderError::Yaml { file, line, .. } => {
                assert_eq!(file, "dir/dup.yaml");
                assert_eq!(*line, 4, "{err}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("dir/dup.yaml"), "{text}");
        assert!(text.contains("line 4"), "{text}");
        assert!(text.to_lowercase().contains("duplicate"), "{text}");
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_yaml("bomb.yaml", y.as_bytes()).unwrap_err();
        let RenderError::Yaml { file, line, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(file, "bomb.yaml");
        assert!(*line > 0, "{err}");
    }

    #[test]
    fn small_aliases_are_fine() {
        let docs = parse_yaml("a.yaml", b"base: &b {x: 1}\nuse: *b\n").unwrap();
        assert_eq!(docs[0].value["use"]["x"], 1);
    }

    #[test]
    fn empty_documents_are_skipped_and_lines_kept() {
        let y = b"---\n# only a comment\n---\na: 1\n---\n---\nb: 2\n...\n";
        let docs = parse_yaml("a.yaml", y).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value["a"], 1);
        assert_eq!(docs[0].index, 0);
        assert_eq!(docs[0].line, 4);
        assert_eq!(docs[1].value["b"], 2);
        assert_eq!(docs[1].index, 1);
        assert_eq!(docs[1].line, 7);
    }

    #[test]
    fn yaml_1_1_booleans_and_quoted_strings() {
        let docs = parse_yaml(
            "a.yaml",
            b"a: yes\nb: 'yes'\nc: true\nd: \"1.0\"\ne: 1.5\nf: ~\n",
        )
        .unwrap();
        let v = &docs[0].value;
        assert_eq!(v["a"], true);
        assert_eq!(v["b"], "yes");
        assert_eq!(v["c"], true);
        assert_eq!(v["d"], "1.0");
        assert_eq!(v["e"], 1.5);
        assert!(v["f"].is_null());
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse_yaml("bad.yaml", b"a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        let RenderError::Yaml { line, .. } = err else {
            panic!("unexpected {err:?}");
        };
        assert!(line >= 2);
    }

    #[test]
    fn json_single_and_concatenated() {
        let docs = parse_json("a.json", b"{\"a\": 1}\n\n{\"b\": 2}\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["b"], 2);
        assert_eq!(docs[1].line, 3);
        let err = parse_json("a.json", b"{\"a\": }").unwrap_err();
        assert!(matches!(err, RenderError::Json { line: 1, .. }), "{err:?}");
    }
}
