//! Normalization of objects for comparison, structured and text diffs, and masking of secret values (Secret data
//! and the fields an object's `kedge.dev/sensitive-fields` annotation names) with fixed-length masks.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fieldpath::{Location, Seg, to_pointer};
use crate::object::{TRACKING_ANNOTATION, sensitive_pointers};

/// Metadata fields the server owns; they never count as a difference.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// Returns a copy of `obj` without server-owned metadata, `status` and Kedge's tracking annotation.
pub fn normalize(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SERVER_METADATA {
                meta.remove(*f);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                ann.remove(TRACKING_ANNOTATION);
            }
            for f in ["annotations", "labels"] {
                if meta
                    .get(f)
                    .is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
                {
                    meta.remove(f);
                }
            }
        }
    }
    out
}

/// The kind of change one diff operation makes to the live object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffOpKind {
    /// The desired state adds a field.
    Add,
    /// The desired state removes a field.
    Remove,
    /// The desired state changes a field's value.
    Replace,
}

/// One difference between live and desired, shaped like a JSON-patch operation from live to desired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffOp {
    /// What changes.
    pub op: DiffOpKind,
    /// JSON pointer of the field.
    pub path: String,
    /// The live value (masked for Secrets), absent for `add`.
    pub live: Option<Value>,
    /// The desired value (masked for Secrets), absent for `remove`.
    pub desired: Option<Value>,
    #[serde(skip)]
    pub(crate) location: Location,
}

/// The difference between a live object and what it would be after applying the desired state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectDiff {
    /// Structured operations turning live into desired.
    pub ops: Vec<DiffOp>,
    /// Unified diff of live vs desired rendered as YAML.
    pub text: String,
}

impl ObjectDiff {
    /// True when live and desired are equal.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Compares two normalized objects; `None` as live means the object does not exist yet.
pub fn diff(live: Option<&Value>, desired: &Value) -> ObjectDiff {
    let (live, desired) = mask_secrets(live, desired);
    let mut ops = Vec::new();
    if let Some(live) = &live {
        walk(live, &desired, &mut Vec::new(), &mut ops);
    } else {
        ops.push(DiffOp {
            op: DiffOpKind::Add,
            path: String::new(),
            live: None,
            desired: Some(desired.clone()),
            location: Vec::new(),
        });
    }
    let text = if ops.is_empty() {
        String::new()
    } else {
        text_diff(live.as_ref(), &desired)
    };
    ObjectDiff { ops, text }
}

fn walk(live: &Value, desired: &Value, loc: &mut Location, ops: &mut Vec<DiffOp>) {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            for (k, lv) in l {
                loc.push(Seg::Key(k.clone()));
                match d.get(k) {
                    Some(dv) => walk(lv, dv, loc, ops),
                    None => ops.push(op(DiffOpKind::Remove, loc, Some(lv), None)),
                }
                loc.pop();
            }
            for (k, dv) in d {
                if !l.contains_key(k) {
                    loc.push(Seg::Key(k.clone()));
                    ops.push(op(DiffOpKind::Add, loc, None, Some(dv)));
                    loc.pop();
                }
            }
        }
        (Value::Array(l), Value::Array(d)) => {
            let common = l.len().min(d.len());
            for i in 0..common {
                loc.push(Seg::Idx(i));
                walk(&l[i], &d[i], loc, ops);
                loc.pop();
            }
            // Removals from the end first keep the pointers valid when applied in order.
            for i in (common..l.len()).rev() {
                loc.push(Seg::Idx(i));
                ops.push(op(DiffOpKind::Remove, loc, Some(&l[i]), None));
                loc.pop();
            }
            for (i, dv) in d.iter().enumerate().skip(common) {
                loc.push(Seg::Idx(i));
                ops.push(op(DiffOpKind::Add, loc, None, Some(dv)));
                loc.pop();
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (l, d) if l == d => {}
        (l, d) => ops.push(op(DiffOpKind::Replace, loc, Some(l), Some(d))),
    }
}

fn op(kind: DiffOpKind, loc: &Location, live: Option<&Value>, desired: Option<&Value>) -> DiffOp {
    DiffOp {
        op: kind,
        path: to_pointer(loc),
        live: live.cloned(),
        desired: desired.cloned(),
        location: loc.clone(),
    }
}

fn text_diff(live: Option<&Value>, desired: &Value) -> String {
    let live_yaml = live.map(to_yaml).unwrap_or_default();
    let desired_yaml = to_yaml(desired);
    similar::TextDiff::from_lines(&live_yaml, &desired_yaml)
        .unified_diff()
        .context_radius(3)
        .header("live", "desired")
        .to_string()
}

/// Renders a value as YAML; falls back to JSON if YAML serialization fails.
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default())
}

fn is_secret(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Secret")
        && v.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// The mask of a secret value: always this long, whatever the value, so that a mask says nothing about the value.
pub const MASK: &str = "++++++++";
/// The mask of a desired secret value that differs from the live one (a diff must show that it changes).
pub const MASK_CHANGED: &str = "++++++++++++";
/// Replaces the `kubectl.kubernetes.io/last-applied-configuration` annotation of a masked object (it may hold the
/// values in clear).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Fields that identify an object: shown even when a SOPS document encrypted them (they are in every message).
const IDENTITY_POINTERS: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/annotations/kedge.dev~1sensitive-fields",
];

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointers of the fields to mask in `docs`: every value of a `v1/Secret`'s `data` and `stringData`, and
/// the fields each object's [`SENSITIVE_ANNOTATION`](crate::object::SENSITIVE_ANNOTATION) names.
pub fn masked_pointers<'a>(docs: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in docs {
        if is_secret(doc) {
            for field in ["data", "stringData"] {
                if let Some(m) = doc.get(field).and_then(Value::as_object) {
                    out.extend(m.keys().map(|k| format!("/{field}/{}", pointer_token(k))));
                }
            }
        }
        out.extend(sensitive_pointers(doc));
    }
    out.retain(|p| !IDENTITY_POINTERS.contains(&p.as_str()));
    out
}

fn mask_last_applied(doc: &mut Value) {
    if let Some(ann) = doc
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        && ann.contains_key(LAST_APPLIED)
    {
        ann.insert(LAST_APPLIED.into(), Value::String("<masked>".into()));
    }
}

/// Replaces secret values (see [`masked_pointers`]) with fixed-length masks: [`MASK`] for every live value and for
/// a desired value equal to the live one, [`MASK_CHANGED`] for a desired value that differs from it. Neither the
/// values nor their lengths can be read from the result, only whether a value changes.
pub fn mask_secrets(live: Option<&Value>, desired: &Value) -> (Option<Value>, Value) {
    let mut live = live.cloned();
    let mut desired = desired.clone();
    let pointers = masked_pointers(live.iter().chain(std::iter::once(&desired)));
    if pointers.is_empty() {
        return (live, desired);
    }
    for p in &pointers {
        let before = live.as_ref().and_then(|l| l.pointer(p)).cloned();
        if let Some(slot) = live.as_mut().and_then(|l| l.pointer_mut(p)) {
            *slot = Value::String(MASK.into());
        }
        if let Some(slot) = desired.pointer_mut(p) {
            let changed = before.as_ref().is_some_and(|b| !same_value(b, slot));
            *slot = Value::String(if changed { MASK_CHANGED } else { MASK }.into());
        }
    }
    for doc in live.iter_mut().chain(std::iter::once(&mut desired)) {
        mask_last_applied(doc);
    }
    (live, desired)
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A copy of one object with its secret values masked (every one as [`MASK`]), for showing a manifest.
pub fn mask_object(obj: &Value) -> Value {
    mask_secrets(None, obj).1
}

/// The secret values of an object as text (the values of the fields [`masked_pointers`] names, and each of their
/// lines), longest first, for [`redact`]. Values shorter than 3 characters are left out: masking `a` or `1` in a
/// message would hide unrelated text and protects nothing.
pub fn secret_values(obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in masked_pointers(std::iter::once(obj)) {
        let Some(v) = obj.pointer(&p) else { continue };
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            Value::Null => continue,
            other => other.to_string(),
        };
        for line in text.lines().map(str::trim) {
            if line.len() >= 3 && line != text {
                out.push(line.to_owned());
            }
        }
        if text.trim().len() >= 3 {
            out.push(text);
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out.dedup();
    out
}

/// Replaces every occurrence of one of `values` in `text` with [`MASK`] (used on messages that may echo a desired
/// value: the API server's validation errors, for example).
pub fn redact(text: &str, values: &[String]) -> String {
    let mut out = text.to_owned();
    for v in values {
        if !v.is_empty() && out.contains(v.as_str()) {
            out = out.replace(v.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalize_drops_server_fields() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a",
            "uid": "u", "resourceVersion": "5", "generation": 2, "creationTimestamp": "t",
            "managedFields": [], "annotations": {"kedge.dev/tracking-id": "x"}},
            "data": {"k": "v"}, "status": {"x": 1}});
        assert_eq!(
            normalize(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn diff_reports_pointer_ops_and_text() {
        let live = json!({"spec": {"replicas": 3, "paused": false, "list": [1, 2, 3]}});
        let desired = json!({"spec": {"replicas": 2, "list": [1, 5], "new": "x"}});
        let d = diff(Some(&live), &desired);
        let summary: Vec<(DiffOpKind, &str)> =
            d.ops.iter().map(|o| (o.op, o.path.as_str())).collect();
        assert_eq!(
            summary,
            vec![
                (DiffOpKind::Replace, "/spec/list/1"),
                (DiffOpKind::Remove, "/spec/list/2"),
                (DiffOpKind::Remove, "/spec/paused"),
                (DiffOpKind::Replace, "/spec/replicas"),
                (DiffOpKind::Add, "/spec/new"),
            ]
        );
        assert!(d.text.contains("-  replicas: 3"), "{}", d.text);
        assert!(d.text.contains("+  replicas: 2"), "{}", d.text);
        assert!(diff(Some(&live), &live).is_empty());
        assert!(diff(Some(&json!({"a": 1})), &json!({"a": 1.0})).is_empty());
    }

    #[test]
    fn secrets_are_masked() {
        let live = json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "c2VjcmV0", "b": "c2FtZQ=="}});
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "b3RoZXI=", "b": "c2FtZQ=="}});
        let d = diff(Some(&live), &desired);
        assert_eq!(d.ops.len(), 1);
        assert_eq!(d.ops[0].path, "/data/a");
        assert_ne!(d.ops[0].live, d.ops[0].desired);
        let text = serde_json::to_string(&d).unwrap();
        for secret in ["c2VjcmV0", "b3RoZXI=", "c2FtZQ=="] {
            assert!(!text.contains(secret), "secret leaked: {text}");
        }
        assert!(d.text.contains("++++++++"));
    }

    #[test]
    fn masks_have_fixed_lengths_whatever_the_values() {
        // Two values of very different lengths, unchanged: equal masks.
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"short": "YQ==", "long": "bG9uZy1sb25nLWxvbmctbG9uZy1zZWNyZXQtdmFsdWU="}});
        let (l, d) = mask_secrets(Some(&live), &live);
        let l = l.unwrap();
        assert_eq!(l["data"]["short"], MASK);
        assert_eq!(l["data"]["long"], MASK);
        assert_eq!(d["data"]["short"], d["data"]["long"]);
        // A changed value: the desired mask differs from the live one, and does not depend on either value.
        let mut desired = live.clone();
        desired["data"]["short"] = json!("YWJjZGVmZ2hpamtsbW5vcA==");
        desired["data"]["long"] = json!("Yg==");
        let (l, d) = mask_secrets(Some(&live), &desired);
        assert_eq!(l.unwrap()["data"]["short"], MASK);
        assert_eq!(d["data"]["short"], MASK_CHANGED);
        assert_eq!(d["data"]["long"], MASK_CHANGED);
        // The order of values says nothing either: swapping them gives the same masks.
        let mut swapped = live.clone();
        swapped["data"]["short"] = live["data"]["long"].clone();
        swapped["data"]["long"] = live["data"]["short"].clone();
        let (l2, _) = mask_secrets(Some(&swapped), &swapped);
        let (l1, _) = mask_secrets(Some(&live), &live);
        assert_eq!(l1, l2);
    }

    #[test]
    fn sensitive_fields_of_other_kinds_are_masked_in_diffs() {
        let ann = json!({"kedge.dev/sensitive-fields": "[\"/data/password\", \"/data/conf\"]"});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "db", "annotations": ann},
            "data": {"password": "old-hunter2", "conf": "url=x", "plain": "a"}});
        let mut desired = live.clone();
        desired["data"]["password"] = json!("new-correct-horse-battery");
        desired["data"]["plain"] = json!("b");
        let d = diff(Some(&live), &desired);
        let text = serde_json::to_string(&d).unwrap();
        for secret in ["old-hunter2", "new-correct-horse-battery", "url=x"] {
            assert!(!text.contains(secret), "secret leaked: {text}");
        }
        // The change is still visible (and so is a plain field's).
        let paths: Vec<&str> = d.ops.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, vec!["/data/password", "/data/plain"]);
        assert_eq!(d.ops[0].live, Some(json!(MASK)));
        assert_eq!(d.ops[0].desired, Some(json!(MASK_CHANGED)));
        assert!(d.text.contains("+  plain: b"), "{}", d.text);
        // The live object's own annotation is enough (a desired object that lost it still hides the old value).
        let mut bare = desired.clone();
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let text = serde_json::to_string(&diff(Some(&live), &bare)).unwrap();
        assert!(!text.contains("old-hunter2"), "{text}");
        // A new object is masked too, and identity fields are never masked.
        let created = diff(None, &desired);
        assert!(!created.text.contains("new-correct-horse-battery"));
        assert!(created.text.contains("name: db"), "{}", created.text);
        assert_eq!(mask_object(&live)["data"]["password"], MASK);
    }

    #[test]
    fn messages_are_redacted_of_secret_values() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "db", "annotations": {"kedge.dev/sensitive-fields": "[\"/data/pw\"]"}},
            "data": {"pw": "hunter2-long\nsecond-line", "x": "y"}});
        let values = secret_values(&obj);
        let msg = redact("invalid value \"hunter2-long\" near second-line", &values);
        assert!(
            !msg.contains("hunter2") && !msg.contains("second-line"),
            "{msg}"
        );
        assert!(msg.contains(MASK));
        assert!(secret_values(&json!({"kind": "ConfigMap", "data": {"a": "b"}})).is_empty());
    }
}
