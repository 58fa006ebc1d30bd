//! Rendered objects, their identity and where each came from.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::error::RenderError;

/// Where a rendered object was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceRef {
    /// The file, relative to the tree root. For a kustomization this is the kustomization file.
    pub file: String,
    /// 0-based index of the document among the non-empty documents of the file (or of kustomize's output).
    pub document: usize,
    /// For an item of a `List` document, its 0-based index in `items`.
    pub item: Option<usize>,
    /// 1-based line where the document starts, 0 when unknown.
    pub line: u64,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} document {}", self.file, self.document)?;
        if let Some(i) = self.item {
            write!(f, " items[{i}]")?;
        }
        if self.line > 0 {
            write!(f, " (line {})", self.line)?;
        }
        Ok(())
    }
}

/// The identity of an object within an application: two objects with the same identity are the same object.
/// The version is not part of it (one object can be served in several versions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace, empty when not set in the manifest.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)?;
        } else {
            write!(f, "{}.{}", self.kind, self.group)?;
        }
        if self.namespace.is_empty() {
            write!(f, " {}", self.name)
        } else {
            write!(f, " {}/{}", self.namespace, self.name)
        }
    }
}

/// One Kubernetes object produced by a render.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedObject {
    /// API group, empty for the core group.
    pub group: String,
    /// API version (the part after the `/`).
    pub version: String,
    /// Kind.
    pub kind: String,
    /// `metadata.namespace`, empty when the manifest does not set one (the engine fills it in once it knows
    /// whether the kind is namespaced).
    pub namespace: String,
    /// `metadata.name`; empty for objects that only carry `metadata.generateName` (such as hooks).
    pub name: String,
    /// Where the object was read from.
    pub source: SourceRef,
    /// The object itself.
    pub object: Value,
}

impl RenderedObject {
    /// The identity of the object.
    pub fn id(&self) -> ObjectId {
        ObjectId {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// `apiVersion` as written: `version` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `metadata.generateName`, when the object is named by the server.
    pub fn generate_name(&self) -> Option<&str> {
        self.object
            .get("metadata")
            .and_then(|m| m.get("generateName"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// How the objects of a [`RenderedSet`] were produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A directory of YAML and JSON files.
    Directory,
    /// A Kustomize build.
    Kustomize,
    /// A Helm chart rendered with `helm template`.
    Helm,
}

/// The objects of one render, in source order (file by file, document by document).
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSet {
    /// The objects.
    pub objects: Vec<RenderedObject>,
    /// How they were produced.
    pub kind: SourceKind,
    /// The directories whose content the render depends on, with their `dir_id`s (the cache key).
    pub inputs: Vec<(String, String)>,
}

impl RenderedSet {
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when the render produced no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Finds an object by identity.
    pub fn get(&self, id: &ObjectId) -> Option<&RenderedObject> {
        self.objects.iter().find(|o| &o.id() == id)
    }
}

/// Turns one parsed document into objects (one, or the items of a `List`), pushing problems onto `errors`.
pub fn objects_from_document(
    value: Value,
    source: SourceRef,
    out: &mut Vec<RenderedObject>,
    errors: &mut Vec<RenderError>,
) {
    if is_list(&value) {
        let Value::Object(mut map) = value else {
            return;
        };
        if let Some(Value::Array(items)) = map.remove("items") {
            for (i, item) in items.into_iter().enumerate() {
                let src = SourceRef {
                    item: Some(i),
                    ..source.clone()
                };
                match object_from_value(item, src) {
                    Ok(o) => out.push(o),
                    Err(e) => errors.push(e),
                }
            }
        }
        return;
    }
    match object_from_value(value, source) {
        Ok(o) => out.push(o),
        Err(e) => errors.push(e),
    }
}

/// A `List` document: kind ends in `List` and `items` is a sequence (or null, meaning empty).
/// Annotation naming the fields of an object that hold secret values outside a `v1/Secret`'s data: a JSON array of
/// JSON pointers. The renderer writes it on objects from SOPS-decrypted documents (the fields that were encrypted)
/// and on Helm output that holds values read from Secrets; the engine (which reads the same annotation as
/// `kedge_engine::object::SENSITIVE_ANNOTATION`) and the server mask those fields wherever they show an object.
pub const SENSITIVE_ANNOTATION: &str = "kedge.dev/sensitive-fields";

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointers of the SOPS-encrypted values (`ENC[...]` strings) of a document, outside its `sops` metadata.
pub fn encrypted_pointers(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &mut String, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.starts_with("ENC[") => out.push(at.clone()),
            Value::Object(m) => {
                for (k, child) in m {
                    if at.is_empty() && k == "sops" {
                        continue;
                    }
                    let len = at.len();
                    at.push('/');
                    at.push_str(&pointer_token(k));
                    walk(child, at, out);
                    at.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    walk(child, at, out);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut String::new(), &mut out);
    out
}

/// The JSON pointers of the scalar values of `obj` that contain one of `needles` (a whole value or a part of it,
/// as a Helm template embeds a value in a configuration file).
pub fn pointers_containing(obj: &Value, needles: &[String]) -> Vec<String> {
    fn walk(v: &Value, needles: &[String], at: &mut String, out: &mut Vec<String>) {
        let hit = |text: &str| {
            needles
                .iter()
                .any(|n| !n.is_empty() && text.contains(n.as_str()))
        };
        match v {
            Value::String(s) if hit(s) => out.push(at.clone()),
            Value::Number(n) if hit(&n.to_string()) => out.push(at.clone()),
            Value::Object(m) => {
                for (k, child) in m {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&pointer_token(k));
                    walk(child, needles, at, out);
                    at.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    walk(child, needles, at, out);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !needles.is_empty() {
        walk(obj, needles, &mut String::new(), &mut out);
    }
    out
}

/// Adds `pointers` to the [`SENSITIVE_ANNOTATION`] of a document (keeping those already listed). For a `List`
/// document, a pointer into `/items/N/...` marks item N (which becomes an object of its own).
pub fn mark_sensitive(doc: &mut Value, pointers: Vec<String>) {
    if pointers.is_empty() {
        return;
    }
    if is_list(doc) {
        let mut per_item: HashMap<usize, Vec<String>> = HashMap::new();
        for p in pointers {
            let Some(rest) = p.strip_prefix("/items/") else {
                continue;
            };
            let (index, inner) = rest.split_once('/').unwrap_or((rest, ""));
            if let Ok(i) = index.parse::<usize>() {
                per_item.entry(i).or_default().push(format!("/{inner}"));
            }
        }
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for (i, ps) in per_item {
                if let Some(item) = items.get_mut(i) {
                    mark_sensitive(item, ps);
                }
            }
        }
        return;
    }
    let Some(meta) = doc
        .as_object_mut()
        .map(|m| {
            m.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if !ann.is_object() {
        *ann = Value::Object(Default::default());
    }
    let Some(ann) = ann.as_object_mut() else {
        return;
    };
    let mut all: Vec<String> = ann
        .get(SENSITIVE_ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|raw| serde_json::from_str::<Vec<String>>(raw).ok())
        .unwrap_or_default();
    all.extend(pointers);
    all.sort();
    all.dedup();
    let text = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
    ann.insert(SENSITIVE_ANNOTATION.into(), Value::String(text));
}

fn is_list(value: &Value) -> bool {
    let Some(kind) = value.get("kind").and_then(Value::as_str) else {
        return false;
    };
    kind.ends_with("List")
        && matches!(
            value.get("items"),
            Some(Value::Array(_)) | Some(Value::Null)
        )
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn object_from_value(value: Value, source: SourceRef) -> Result<RenderedObject, RenderError> {
    if !value.is_object() {
        return Err(RenderError::NotAnObject {
            found: type_name(&value),
            source_ref: source,
        });
    }
    let api_version = non_empty_str(value.get("apiVersion"));
    let kind = non_empty_str(value.get("kind"));
    let metadata = value.get("metadata");
    let name = non_empty_str(metadata.and_then(|m| m.get("name")));
    let generate_name = non_empty_str(metadata.and_then(|m| m.get("generateName")));
    let mut missing = Vec::new();
    if api_version.is_none() {
        missing.push("apiVersion");
    }
    if kind.is_none() {
        missing.push("kind");
    }
    if name.is_none() && generate_name.is_none() {
        missing.push("metadata.name");
    }
    let (Some(api_version), Some(kind), true) = (api_version, kind, missing.is_empty()) else {
        return Err(RenderError::MissingFields {
            source_ref: source,
            fields: missing,
        });
    };
    let (group, version) = match api_version.split_once('/') {
        None => ("", api_version),
        Some((g, v)) if !g.is_empty() && !v.is_empty() && !v.contains('/') => (g, v),
        Some(_) => {
            return Err(RenderError::InvalidApiVersion {
                api_version: api_version.to_owned(),
                source_ref: source,
            });
        }
    };
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(RenderedObject {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
        namespace,
        name: name.unwrap_or_default().to_owned(),
        source,
        object: value,
    })
}

/// Reports every pair of objects with the same identity (objects named by `generateName` are exempt).
pub fn check_duplicates(objects: &[RenderedObject], errors: &mut Vec<RenderError>) {
    let mut seen: HashMap<ObjectId, &SourceRef> = HashMap::with_capacity(objects.len());
    for o in objects {
        if o.name.is_empty() {
            continue;
        }
        let id = o.id();
        if let Some(first) = seen.get(&id) {
            errors.push(RenderError::DuplicateObject {
                id: id.to_string(),
                first: Box::new((*first).clone()),
                second: Box::new(o.source.clone()),
            });
        } else {
            seen.insert(id, &o.source);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod sensitive_tests {
    use super::*;
    use serde_json::json;

    fn marked(obj: &Value) -> Vec<String> {
        obj["metadata"]["annotations"][SENSITIVE_ANNOTATION]
            .as_str()
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap_or_default()
    }

    #[test]
    fn encrypted_and_containing_fields_are_found_and_marked() {
        let doc = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
            "data": {"k/x": "ENC[AES256_GCM,data:abc]", "plain": "v"},
            "list": ["ENC[AES256_GCM,data:x]", 3], "sops": {"mac": "ENC[AES256_GCM,data:m]"}});
        assert_eq!(encrypted_pointers(&doc), vec!["/data/k~1x", "/list/0"]);
        let cfg = json!({"data": {"app.conf": "user=admin\npassword=hunter2xyz\n", "port": 5432, "x": "y"}});
        let needles = vec!["hunter2xyz".to_owned(), "5432".to_owned()];
        assert_eq!(
            pointers_containing(&cfg, &needles),
            vec!["/data/app.conf", "/data/port"]
        );
        assert!(pointers_containing(&cfg, &[]).is_empty());

        let mut obj =
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"x": "y"}}});
        mark_sensitive(&mut obj, vec!["/data/b".into()]);
        mark_sensitive(&mut obj, vec!["/data/a".into(), "/data/b".into()]);
        assert_eq!(marked(&obj), vec!["/data/a", "/data/b"]);
        assert_eq!(obj["metadata"]["annotations"]["x"], "y");
        let mut untouched = json!({"kind": "ConfigMap", "metadata": {"name": "a"}});
        mark_sensitive(&mut untouched, Vec::new());
        assert!(untouched["metadata"].get("annotations").is_none());
    }

    #[test]
    fn items_of_a_list_are_marked_one_by_one() {
        let mut list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"p": "1"}},
            {"kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"q": "2"}}]});
        mark_sensitive(&mut list, vec!["/items/1/data/q".into()]);
        assert!(marked(&list["items"][0]).is_empty());
        assert_eq!(marked(&list["items"][1]), vec!["/data/q"]);
    }
}
