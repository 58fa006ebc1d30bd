//! Field paths: JSON pointers and server-side-apply `fieldsV1` tries, resolved against concrete objects.

use serde_json::{Map, Value};

/// One step of a field path as written in a pointer or a `fieldsV1` trie.
#[derive(Clone, Debug, PartialEq)]
pub enum PathElem {
    /// An object field; a numeric field also addresses an array index.
    Field(String),
    /// A list element identified by the values of its key fields (`k:{...}`).
    Key(Map<String, Value>),
    /// A set element identified by its value (`v:...`).
    Value(Value),
    /// A list element by position (`i:N`).
    Index(usize),
}

/// One step of a concrete location inside a document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// Object key.
    Key(String),
    /// Array index.
    Idx(usize),
}

/// A concrete location inside a document.
pub type Location = Vec<Seg>;

/// Parses a JSON pointer (RFC 6901) into path elements; `None` if it does not start with '/'.
pub fn parse_pointer(pointer: &str) -> Option<Vec<PathElem>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| PathElem::Field(s.replace("~1", "/").replace("~0", "~")))
            .collect(),
    )
}

/// Renders a location as a JSON pointer.
pub fn to_pointer(loc: &[Seg]) -> String {
    let mut out = String::new();
    for seg in loc {
        out.push('/');
        match seg {
            Seg::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Seg::Idx(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// Renders a location in the dotted form people read, e.g. `spec.template.spec.containers[name=app].image`.
pub fn to_display(loc: &[Seg], doc: &Value) -> String {
    let mut out = String::new();
    let mut cur = Some(doc);
    for seg in loc {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
                cur = cur.and_then(|c| c.get(k));
            }
            Seg::Idx(i) => {
                let item = cur.and_then(|c| c.get(i));
                match item.and_then(|it| it.get("name")).and_then(Value::as_str) {
                    Some(name) => out.push_str(&format!("[name={name}]")),
                    None => out.push_str(&format!("[{i}]")),
                }
                cur = item;
            }
        }
    }
    out
}

/// Parses a JSON pointer string into a concrete location against `doc` (numeric steps index arrays).
pub fn pointer_location(pointer: &str, doc: &Value) -> Option<Location> {
    resolve(&parse_pointer(pointer)?, doc)
}

/// Resolves a path against a document; `None` when some step does not exist.
pub fn resolve(path: &[PathElem], doc: &Value) -> Option<Location> {
    let mut loc = Vec::with_capacity(path.len());
    let mut cur = doc;
    for elem in path {
        match (elem, cur) {
            (PathElem::Field(f), Value::Object(m)) => {
                cur = m.get(f)?;
                loc.push(Seg::Key(f.clone()));
            }
            (PathElem::Field(f), Value::Array(a)) => {
                // RFC 6901: an array index is `0` or digits without a leading zero (`00`, `+1` name no element).
                if !f.bytes().all(|b| b.is_ascii_digit()) || (f.len() > 1 && f.starts_with('0')) {
                    return None;
                }
                let i: usize = f.parse().ok()?;
                cur = a.get(i)?;
                loc.push(Seg::Idx(i));
            }
            (PathElem::Index(i), Value::Array(a)) => {
                cur = a.get(*i)?;
                loc.push(Seg::Idx(*i));
            }
            (PathElem::Key(keys), Value::Array(a)) => {
                let i = a.iter().position(|item| {
                    keys.iter()
                        .all(|(k, v)| item.get(k).is_some_and(|iv| values_match(iv, v)))
                })?;
                cur = &a[i];
                loc.push(Seg::Idx(i));
            }
            (PathElem::Value(v), Value::Array(a)) => {
                let i = a.iter().position(|item| values_match(item, v))?;
                cur = &a[i];
                loc.push(Seg::Idx(i));
            }
            _ => return None,
        }
    }
    Some(loc)
}

/// Key values in `fieldsV1` are JSON; integers may come back as strings or numbers of another width.
fn values_match(actual: &Value, key: &Value) -> bool {
    match (actual, key) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            a.to_string() == *b
        }
        _ => actual == key,
    }
}

/// Returns the value at a location.
pub fn get<'a>(doc: &'a Value, loc: &[Seg]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in loc {
        cur = match seg {
            Seg::Key(k) => cur.get(k)?,
            Seg::Idx(i) => cur.get(i)?,
        };
    }
    Some(cur)
}

/// Sets the value at a location, creating intermediate objects; returns false if impossible.
pub fn set(doc: &mut Value, loc: &[Seg], value: Value) -> bool {
    let Some((last, parents)) = loc.split_last() else {
        *doc = value;
        return true;
    };
    let mut cur = doc;
    for seg in parents {
        cur = match seg {
            Seg::Key(k) => {
                let Some(m) = cur.as_object_mut() else {
                    return false;
                };
                m.entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
            }
            Seg::Idx(i) => match cur.get_mut(i) {
                Some(v) => v,
                None => return false,
            },
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => {
            m.insert(k.clone(), value);
            true
        }
        (Seg::Idx(i), Value::Array(a)) if *i < a.len() => {
            a[*i] = value;
            true
        }
        _ => false,
    }
}

/// Removes the values at the given locations; later array elements are removed first so indices stay valid.
pub fn remove_all(doc: &mut Value, mut locs: Vec<Location>) {
    locs.sort();
    locs.dedup();
    // Drop locations nested under another removed location.
    let mut kept: Vec<Location> = Vec::with_capacity(locs.len());
    for loc in locs {
        if kept.last().is_some_and(|p| loc.starts_with(p)) {
            continue;
        }
        kept.push(loc);
    }
    for loc in kept.iter().rev() {
        remove(doc, loc);
    }
}

fn remove(doc: &mut Value, loc: &[Seg]) {
    let Some((last, parents)) = loc.split_last() else {
        return;
    };
    let mut cur = doc;
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k),
            Seg::Idx(i) => cur.get_mut(i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => {
            m.remove(k);
        }
        (Seg::Idx(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Lists the field paths a `fieldsV1` trie owns: its leaves (a node owning only itself, `.`, is a leaf).
pub fn fields_v1_paths(trie: &Value) -> Vec<Vec<PathElem>> {
    let mut out = Vec::new();
    walk_trie(trie, &mut Vec::new(), &mut out);
    out
}

fn walk_trie(node: &Value, prefix: &mut Vec<PathElem>, out: &mut Vec<Vec<PathElem>>) {
    let Some(map) = node.as_object() else {
        return;
    };
    if map.is_empty() || (map.len() == 1 && map.contains_key(".")) {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (key, child) in map {
        if key == "." {
            continue;
        }
        let Some(elem) = parse_trie_key(key) else {
            continue;
        };
        prefix.push(elem);
        walk_trie(child, prefix, out);
        prefix.pop();
    }
}

fn parse_trie_key(key: &str) -> Option<PathElem> {
    let (kind, rest) = key.split_at_checked(2)?;
    match kind {
        "f:" => Some(PathElem::Field(rest.to_string())),
        "k:" => match serde_json::from_str::<Value>(rest).ok()? {
            Value::Object(m) => Some(PathElem::Key(m)),
            _ => None,
        },
        "v:" => serde_json::from_str(rest).ok().map(PathElem::Value),
        "i:" => rest.parse().ok().map(PathElem::Index),
        _ => None,
    }
}

/// Resolves every path a `fieldsV1` trie owns against a document, skipping those absent from it.
pub fn owned_locations(trie: &Value, doc: &Value) -> Vec<Location> {
    fields_v1_paths(trie)
        .iter()
        .filter_map(|p| resolve(p, doc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_indexes_with_a_leading_zero_or_sign_name_no_element() {
        let doc = json!({"a": [10, 11]});
        let at = |p: &str| parse_pointer(p).and_then(|path| resolve(&path, &doc));
        assert_eq!(at("/a/0"), Some(vec![Seg::Key("a".into()), Seg::Idx(0)]));
        assert_eq!(at("/a/1"), Some(vec![Seg::Key("a".into()), Seg::Idx(1)]));
        for p in ["/a/00", "/a/01", "/a/+1", "/a/-", "/a/2"] {
            assert_eq!(at(p), None, "{p}");
            assert_eq!(doc.pointer(p), None, "serde_json agrees for {p}");
        }
    }

    fn deployment() -> Value {
        json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "sidecar", "image": "side:1"}
        ]}}}, "metadata": {"finalizers": ["a", "b"]}})
    }

    #[test]
    fn trie_paths_resolve_against_objects() {
        let trie = json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}},
            "k:{\"name\":\"app\"}": {"f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
        }}}}, "f:metadata": {"f:finalizers": {"v:\"b\"": {}}}});
        let doc = deployment();
        let mut locs = owned_locations(&trie, &doc);
        locs.sort();
        let ptrs: Vec<String> = locs.iter().map(|l| to_pointer(l)).collect();
        assert_eq!(
            ptrs,
            vec![
                "/metadata/finalizers/1",
                "/spec/replicas",
                "/spec/template/spec/containers/0/ports/0/containerPort",
                "/spec/template/spec/containers/1/image",
                "/spec/template/spec/containers/1/name",
            ]
        );
        let display = to_display(&locs[3], &doc);
        assert_eq!(display, "spec.template.spec.containers[name=sidecar].image");
    }

    #[test]
    fn removal_keeps_indices_valid() {
        let mut doc = deployment();
        let a = pointer_location("/spec/template/spec/containers/0", &doc).unwrap();
        let b = pointer_location("/spec/template/spec/containers/1/image", &doc).unwrap();
        let c = pointer_location("/spec/replicas", &doc).unwrap();
        remove_all(&mut doc, vec![a, b, c]);
        assert_eq!(
            doc["spec"],
            json!({"template": {"spec": {"containers": [{"name": "sidecar"}]}}})
        );
    }

    #[test]
    fn pointers_parse_and_escape() {
        let doc = json!({"metadata": {"annotations": {"a/b": "1"}}});
        let loc = pointer_location("/metadata/annotations/a~1b", &doc).unwrap();
        assert_eq!(to_pointer(&loc), "/metadata/annotations/a~1b");
        assert!(parse_pointer("no-slash").is_none());
        assert!(pointer_location("/metadata/missing", &doc).is_none());
        let mut doc2 = json!({});
        assert!(set(&mut doc2, &loc, json!("x")));
        assert_eq!(doc2, json!({"metadata": {"annotations": {"a/b": "x"}}}));
    }
}
