//! Object identities, Kedge annotations and accessors on raw Kubernetes objects.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ObjectError;

/// Annotation holding the tracking id of the application that owns an object.
pub const TRACKING_ANNOTATION: &str = "kedge.dev/tracking-id";
/// Annotation holding an object's sync wave (integer, default 0).
pub const SYNC_WAVE_ANNOTATION: &str = "kedge.dev/sync-wave";
/// Annotation marking an object as a hook and naming its phase.
pub const HOOK_ANNOTATION: &str = "kedge.dev/hook";
/// Annotation holding a hook's delete policies (comma separated).
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "kedge.dev/hook-delete-policy";
/// Annotation holding per-object sync options, e.g. `Prune=false,PruneLast=true`.
pub const SYNC_OPTIONS_ANNOTATION: &str = "kedge.dev/sync-options";
/// Annotation naming the fields of an object that hold secret values outside a `v1/Secret`'s data (values that
/// came from a SOPS-decrypted document or from a Secret through Helm's `valuesFrom`): a JSON array of JSON
/// pointers, e.g. `["/data/password"]`. The renderer writes it; diffs and manifests shown to people mask those
/// fields. It names fields, never values, so it is applied with the object and read back from the live object.
pub const SENSITIVE_ANNOTATION: &str = "kedge.dev/sensitive-fields";

/// One object of the desired state, as produced by the renderer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredObject {
    /// The full object (apiVersion, kind, metadata, ...).
    pub object: Value,
    /// The file the object was rendered from, if known.
    pub source: Option<String>,
}

impl DesiredObject {
    /// Wraps an object without a known source file.
    pub fn new(object: Value) -> Self {
        Self {
            object,
            source: None,
        }
    }
}

/// The application an object set belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppRef {
    /// Namespace of the application resource.
    pub namespace: String,
    /// Name of the application resource.
    pub name: String,
}

impl AppRef {
    /// Builds an application reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for AppRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Version-independent identity of a Kubernetes object: group, kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl ObjectId {
    /// Builds an identity.
    pub fn new(
        group: impl Into<String>,
        kind: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    /// Reads the identity of a raw object (namespace as written, possibly absent).
    pub fn from_object(obj: &Value) -> Result<Self, ObjectError> {
        let api_version = str_at(obj, &["apiVersion"]).ok_or(ObjectError::MissingField {
            field: "apiVersion",
        })?;
        let kind = str_at(obj, &["kind"]).ok_or(ObjectError::MissingField { field: "kind" })?;
        let name = str_at(obj, &["metadata", "name"]).ok_or(ObjectError::MissingField {
            field: "metadata.name",
        })?;
        let (group, _) = split_api_version(api_version);
        Ok(Self::new(
            group,
            kind,
            str_at(obj, &["metadata", "namespace"]).filter(|s| !s.is_empty()),
            name,
        ))
    }

    /// The tracking id an application writes on this object.
    pub fn tracking_id(&self, app: &AppRef) -> String {
        format!("{app}:{self}")
    }

    /// Parses a tracking id into the owning application and the object identity.
    pub fn parse_tracking_id(id: &str) -> Option<(AppRef, ObjectId)> {
        let mut parts = id.splitn(3, ':');
        let app = parts.next()?;
        let gk = parts.next()?;
        let nn = parts.next()?;
        let (app_ns, app_name) = app.split_once('/')?;
        let (group, kind) = gk.split_once('/')?;
        let (ns, name) = nn.split_once('/')?;
        Some((
            AppRef::new(app_ns, app_name),
            ObjectId::new(group, kind, (!ns.is_empty()).then_some(ns), name),
        ))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}/{}",
            self.group,
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }
}

/// Splits an apiVersion into (group, version); the core group is empty.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Returns the value at a path of object keys.
pub fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for key in path {
        cur = cur.get(key)?;
    }
    Some(cur)
}

/// Returns the string at a path of object keys.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    value_at(obj, path)?.as_str()
}

/// Returns the integer at a path of object keys.
pub fn i64_at(obj: &Value, path: &[&str]) -> Option<i64> {
    value_at(obj, path)?.as_i64()
}

/// Returns the value of an annotation.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// Sets an annotation, creating `metadata.annotations` when needed.
pub fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if !ann.is_object() {
        *ann = Value::Object(Default::default());
    }
    if let Some(ann) = ann.as_object_mut() {
        ann.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// The JSON pointers listed in an object's [`SENSITIVE_ANNOTATION`] (none when absent or malformed; a malformed
/// list masks nothing more, so the renderer always writes a valid one).
pub fn sensitive_pointers(obj: &Value) -> Vec<String> {
    annotation(obj, SENSITIVE_ANNOTATION)
        .and_then(|raw| serde_json::from_str::<Vec<String>>(raw).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.starts_with('/'))
        .collect()
}

/// Sets `metadata.namespace`.
pub fn set_namespace(obj: &mut Value, ns: &str) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(ns.to_string()));
    }
}

/// Removes `metadata.namespace`.
pub fn remove_namespace(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
    }
}

/// Per-object sync options read from `kedge.dev/sync-options`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSyncOptions {
    /// `Prune=false`: never delete this object.
    pub prune_disabled: bool,
    /// `PruneLast=true`: delete this object after everything else is synced and healthy.
    pub prune_last: bool,
}

impl ObjectSyncOptions {
    /// Reads the options of an object; unknown options are ignored.
    pub fn of(obj: &Value) -> Self {
        let mut opts = Self::default();
        if let Some(raw) = annotation(obj, SYNC_OPTIONS_ANNOTATION) {
            for item in raw.split(',') {
                let Some((k, v)) = item.split_once('=') else {
                    continue;
                };
                let on = v.trim().eq_ignore_ascii_case("true");
                match k.trim() {
                    "Prune" => opts.prune_disabled = !on,
                    "PruneLast" => opts.prune_last = on,
                    _ => {}
                }
            }
        }
        opts
    }
}

/// Reads the sync wave of an object.
pub fn sync_wave(obj: &Value) -> Result<i64, ObjectError> {
    match annotation(obj, SYNC_WAVE_ANNOTATION) {
        None => Ok(0),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| ObjectError::InvalidAnnotation {
                annotation: SYNC_WAVE_ANNOTATION,
                value: raw.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tracking_id_round_trips() {
        let app = AppRef::new("kedge", "shop");
        let id = ObjectId::new("apps", "Deployment", Some("web"), "api");
        let t = id.tracking_id(&app);
        assert_eq!(t, "kedge/shop:apps/Deployment:web/api");
        assert_eq!(ObjectId::parse_tracking_id(&t), Some((app.clone(), id)));
        let core = ObjectId::new("", "Namespace", None, "web");
        let t = core.tracking_id(&app);
        assert_eq!(t, "kedge/shop:/Namespace:/web");
        assert_eq!(ObjectId::parse_tracking_id(&t), Some((app, core)));
        assert_eq!(ObjectId::parse_tracking_id("garbage"), None);
    }

    #[test]
    fn identity_and_options_are_read() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "annotations": {
                "kedge.dev/sync-options": "Prune=false, PruneLast=true",
                "kedge.dev/sync-wave": "-2"}}});
        let id = ObjectId::from_object(&obj).unwrap();
        assert_eq!(id, ObjectId::new("", "ConfigMap", None, "a"));
        let opts = ObjectSyncOptions::of(&obj);
        assert!(opts.prune_disabled && opts.prune_last);
        assert_eq!(sync_wave(&obj).unwrap(), -2);
        let bad = json!({"metadata": {"annotations": {"kedge.dev/sync-wave": "x"}}});
        assert!(sync_wave(&bad).is_err());
        assert!(ObjectId::from_object(&json!({"kind": "X"})).is_err());
    }

    #[test]
    fn annotations_are_set_on_bare_objects() {
        let mut obj = json!({"kind": "ConfigMap"});
        set_annotation(&mut obj, "a", "b");
        assert_eq!(annotation(&obj, "a"), Some("b"));
    }
}
