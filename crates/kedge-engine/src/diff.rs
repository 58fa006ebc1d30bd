//! Normalization of objects for comparison, structured and text diffs, and Secret masking.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fieldpath::{Location, Seg, to_pointer};
use crate::object::TRACKING_ANNOTATION;

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

/// Replaces Secret values with masks: equal values get equal masks, different values different ones.
pub fn mask_secrets(live: Option<&Value>, desired: &Value) -> (Option<Value>, Value) {
    let mut live = live.cloned();
    let mut desired = desired.clone();
    if !is_secret(&desired) && !live.as_ref().is_some_and(is_secret) {
        return (live, desired);
    }
    let mut distinct = BTreeSet::new();
    for doc in live.iter().chain(std::iter::once(&desired)) {
        for field in ["data", "stringData"] {
            if let Some(m) = doc.get(field).and_then(Value::as_object) {
                distinct.extend(m.values().map(Value::to_string));
            }
        }
    }
    let masks: Vec<String> = distinct.into_iter().collect();
    let mask = |v: &Value| -> Value {
        let raw = v.to_string();
        let i = masks.iter().position(|m| *m == raw).unwrap_or(0);
        Value::String("+".repeat(8 + i))
    };
    for doc in live.iter_mut().chain(std::iter::once(&mut desired)) {
        for field in ["data", "stringData"] {
            if let Some(m) = doc.get_mut(field).and_then(Value::as_object_mut) {
                for v in m.values_mut() {
                    *v = mask(v);
                }
            }
        }
        if let Some(ann) = doc
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            && ann.contains_key("kubectl.kubernetes.io/last-applied-configuration")
        {
            ann.insert(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                Value::String("<masked>".into()),
            );
        }
    }
    (live, desired)
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
}
