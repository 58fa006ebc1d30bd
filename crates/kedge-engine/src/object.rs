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
        let name = str_at(obj, &["metadata", "name"]).ok_or(ObjectError::MissingField {
            field: "metadata.name",
        })?;
        Self::named(obj, name)
    }

    /// Reads the identity of a raw object, with `name` in place of its `metadata.name` (a hook named by
    /// `metadata.generateName` is identified by that prefix until it is created).
    pub fn named(obj: &Value, name: &str) -> Result<Self, ObjectError> {
        let api_version = str_at(obj, &["apiVersion"]).ok_or(ObjectError::MissingField {
            field: "apiVersion",
        })?;
        let kind = str_at(obj, &["kind"]).ok_or(ObjectError::MissingField { field: "kind" })?;
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

/// Argo CD's annotation for an object's sync wave, read as an equal of [`SYNC_WAVE_ANNOTATION`].
pub const ARGOCD_SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// Argo CD's hook annotation, read as an equal of [`HOOK_ANNOTATION`] (it also takes `Skip`).
pub const ARGOCD_HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
/// Argo CD's hook delete policy annotation, read as an equal of [`HOOK_DELETE_POLICY_ANNOTATION`].
pub const ARGOCD_HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
/// Argo CD's per-object sync options, read as an equal of [`SYNC_OPTIONS_ANNOTATION`].
pub const ARGOCD_SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";
/// Annotation holding per-object compare options, e.g. `IgnoreExtraneous`.
pub const COMPARE_OPTIONS_ANNOTATION: &str = "kedge.dev/compare-options";
/// Argo CD's per-object compare options, read as an equal of [`COMPARE_OPTIONS_ANNOTATION`].
pub const ARGOCD_COMPARE_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/compare-options";

/// An annotation Kedge reads under its own key and under Argo CD's, as equals: either may be set, and when both
/// are set they must say the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnotationPair {
    /// Kedge's key (`kedge.dev/...`).
    pub kedge: &'static str,
    /// Argo CD's key (`argocd.argoproj.io/...`).
    pub argocd: &'static str,
}

/// `kedge.dev/sync-wave` and `argocd.argoproj.io/sync-wave`.
pub const SYNC_WAVE: AnnotationPair = AnnotationPair {
    kedge: SYNC_WAVE_ANNOTATION,
    argocd: ARGOCD_SYNC_WAVE_ANNOTATION,
};
/// `kedge.dev/hook` and `argocd.argoproj.io/hook`.
pub const HOOK: AnnotationPair = AnnotationPair {
    kedge: HOOK_ANNOTATION,
    argocd: ARGOCD_HOOK_ANNOTATION,
};
/// `kedge.dev/hook-delete-policy` and `argocd.argoproj.io/hook-delete-policy`.
pub const HOOK_DELETE_POLICY: AnnotationPair = AnnotationPair {
    kedge: HOOK_DELETE_POLICY_ANNOTATION,
    argocd: ARGOCD_HOOK_DELETE_POLICY_ANNOTATION,
};
/// `kedge.dev/sync-options` and `argocd.argoproj.io/sync-options`.
pub const SYNC_OPTIONS: AnnotationPair = AnnotationPair {
    kedge: SYNC_OPTIONS_ANNOTATION,
    argocd: ARGOCD_SYNC_OPTIONS_ANNOTATION,
};
/// `kedge.dev/compare-options` and `argocd.argoproj.io/compare-options`.
pub const COMPARE_OPTIONS: AnnotationPair = AnnotationPair {
    kedge: COMPARE_OPTIONS_ANNOTATION,
    argocd: ARGOCD_COMPARE_OPTIONS_ANNOTATION,
};

impl AnnotationPair {
    /// Whether either key is set on the object.
    pub fn is_set(&self, obj: &Value) -> bool {
        annotation(obj, self.kedge).is_some() || annotation(obj, self.argocd).is_some()
    }

    /// Reads the value under either key with `parse` (given the key and the raw value). When both are set, their
    /// parsed values must be equal, else [`ObjectError::ConflictingAnnotations`] names both.
    pub fn read<T: PartialEq>(
        &self,
        obj: &Value,
        parse: impl Fn(&'static str, &str) -> Result<T, ObjectError>,
    ) -> Result<Option<T>, ObjectError> {
        self.read_merged(obj, parse, |a, b| (a == b).then_some(a))
    }

    /// Like [`AnnotationPair::read`], combining both values with `merge` (`None`: they disagree).
    pub fn read_merged<T>(
        &self,
        obj: &Value,
        parse: impl Fn(&'static str, &str) -> Result<T, ObjectError>,
        merge: impl Fn(T, T) -> Option<T>,
    ) -> Result<Option<T>, ObjectError> {
        let ours = annotation(obj, self.kedge);
        let theirs = annotation(obj, self.argocd);
        let a = ours.map(|raw| parse(self.kedge, raw)).transpose()?;
        let b = theirs.map(|raw| parse(self.argocd, raw)).transpose()?;
        match (a, b) {
            (Some(a), Some(b)) => {
                merge(a, b)
                    .map(Some)
                    .ok_or_else(|| ObjectError::ConflictingAnnotations {
                        kedge: self.kedge,
                        kedge_value: ours.unwrap_or_default().to_string(),
                        argocd: self.argocd,
                        argocd_value: theirs.unwrap_or_default().to_string(),
                    })
            }
            (a, b) => Ok(a.or(b)),
        }
    }
}

/// Per-object sync options read from `kedge.dev/sync-options` and `argocd.argoproj.io/sync-options`
/// (comma-separated `Key=Value` items; both annotations may be set when they agree on every key they share).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectSyncOptions {
    /// `Prune=false`: never delete this object when it leaves the desired set.
    pub prune_disabled: bool,
    /// `PruneLast=true`: delete this object after everything else is synced and healthy.
    pub prune_last: bool,
    /// `Delete=false`: keep this object when the application is deleted.
    pub delete_disabled: bool,
    /// `Replace=true`: write the object with a replace (PUT, or a create when absent) instead of an apply.
    pub replace: bool,
    /// `Validate=false`: let the API server drop unknown fields (`fieldValidation=Ignore`) instead of refusing.
    pub skip_validation: bool,
    /// `SkipDryRunOnMissingResource=true`: an object whose kind the API server does not serve yet is planned
    /// without a dry-run, as Missing, and applied when its kind exists (a CRD installed by another party).
    pub skip_dry_run_on_missing_resource: bool,
    /// `Force=true`: an object the API server refuses to change (an immutable field) is deleted and created again;
    /// with `Replace=true`, every write deletes and creates it.
    pub force: bool,
}

/// Options Kedge reads (and whether `true` or `false` turns them on): the keys of both annotations.
const SYNC_OPTION_KEYS: &[&str] = &[
    "Prune",
    "PruneLast",
    "Delete",
    "Replace",
    "ServerSideApply",
    "Validate",
    "SkipDryRunOnMissingResource",
    "Force",
];

fn parse_bool(annotation: &'static str, raw: &str, value: &str) -> Result<bool, ObjectError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ObjectError::InvalidAnnotation {
            annotation,
            value: raw.to_string(),
        })
    }
}

/// Parses one sync-options value into `(key, on)` pairs.
fn parse_sync_options(
    annotation: &'static str,
    raw: &str,
) -> Result<Vec<(&'static str, bool)>, ObjectError> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let invalid = || ObjectError::InvalidAnnotation {
            annotation,
            value: item.to_string(),
        };
        let (k, v) = item.split_once('=').ok_or_else(invalid)?;
        let key = SYNC_OPTION_KEYS
            .iter()
            .copied()
            .find(|known| *known == k.trim())
            .ok_or_else(invalid)?;
        let v = v.trim();
        if matches!(key, "Prune" | "Delete") && v.eq_ignore_ascii_case("confirm") {
            return Err(ObjectError::UnsupportedOption {
                annotation,
                option: item.to_string(),
                reason: "Kedge has no per-object confirmation; use false to keep the object",
            });
        }
        let on = parse_bool(annotation, item, v)?;
        if key == "ServerSideApply" && !on {
            return Err(ObjectError::UnsupportedOption {
                annotation,
                option: item.to_string(),
                reason: "Kedge always applies server-side",
            });
        }
        out.push((key, on));
    }
    Ok(out)
}

impl ObjectSyncOptions {
    /// These options with the application's (`spec.syncPolicy.syncOptions`) added: an option either sets is on.
    pub fn with_defaults(self, app: &ObjectSyncOptions) -> Self {
        Self {
            prune_disabled: self.prune_disabled || app.prune_disabled,
            prune_last: self.prune_last || app.prune_last,
            delete_disabled: self.delete_disabled || app.delete_disabled,
            replace: self.replace || app.replace,
            skip_validation: self.skip_validation || app.skip_validation,
            skip_dry_run_on_missing_resource: self.skip_dry_run_on_missing_resource
                || app.skip_dry_run_on_missing_resource,
            force: self.force || app.force,
        }
    }

    /// Reads the options of an object; an unknown option or value is an error naming it, and so is an option
    /// that Kedge's and Argo CD's annotations set differently.
    pub fn read(obj: &Value) -> Result<Self, ObjectError> {
        let items = SYNC_OPTIONS
            .read_merged(obj, parse_sync_options, |mut a, b| {
                for (k, v) in b {
                    match a.iter().find(|(ka, _)| *ka == k) {
                        Some((_, va)) if *va != v => return None,
                        Some(_) => {}
                        None => a.push((k, v)),
                    }
                }
                Some(a)
            })?
            .unwrap_or_default();
        let mut opts = Self::default();
        for (key, on) in items {
            match key {
                "Prune" => opts.prune_disabled = !on,
                "PruneLast" => opts.prune_last = on,
                "Delete" => opts.delete_disabled = !on,
                "Replace" => opts.replace = on,
                "Validate" => opts.skip_validation = !on,
                "SkipDryRunOnMissingResource" => opts.skip_dry_run_on_missing_resource = on,
                "Force" => opts.force = on,
                // ServerSideApply=true: what Kedge always does.
                _ => {}
            }
        }
        Ok(opts)
    }
}

/// Per-object compare options read from `kedge.dev/compare-options` and `argocd.argoproj.io/compare-options`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareOptions {
    /// `IgnoreExtraneous`: the object does not make the application OutOfSync when it is extraneous (tracked by
    /// the application but no longer desired); a pruning sync still deletes it.
    pub ignore_extraneous: bool,
}

fn parse_compare_options(
    annotation: &'static str,
    raw: &str,
) -> Result<CompareOptions, ObjectError> {
    let mut opts = CompareOptions::default();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), parse_bool(annotation, item, v.trim())?),
            None => (item, true),
        };
        match (key, value) {
            ("IgnoreExtraneous", on) => opts.ignore_extraneous = on,
            // What Kedge always does: compare with a server-side apply dry-run, through admission.
            ("ServerSideDiff" | "IncludeMutationWebhook", true) => {}
            ("ServerSideDiff", false) => {
                return Err(ObjectError::UnsupportedOption {
                    annotation,
                    option: item.to_string(),
                    reason: "Kedge always compares with a server-side apply dry-run",
                });
            }
            ("IncludeMutationWebhook", false) => {
                return Err(ObjectError::UnsupportedOption {
                    annotation,
                    option: item.to_string(),
                    reason: "Kedge's server-side dry-run always includes mutating webhooks",
                });
            }
            _ => {
                return Err(ObjectError::InvalidAnnotation {
                    annotation,
                    value: item.to_string(),
                });
            }
        }
    }
    Ok(opts)
}

impl CompareOptions {
    /// Reads the compare options of an object (either annotation, or both combined).
    pub fn read(obj: &Value) -> Result<Self, ObjectError> {
        Ok(COMPARE_OPTIONS
            .read_merged(obj, parse_compare_options, |a, b| {
                Some(CompareOptions {
                    ignore_extraneous: a.ignore_extraneous || b.ignore_extraneous,
                })
            })?
            .unwrap_or_default())
    }
}

/// Reads the sync wave of an object (`kedge.dev/sync-wave` or `argocd.argoproj.io/sync-wave`; default 0).
pub fn sync_wave(obj: &Value) -> Result<i64, ObjectError> {
    let wave = SYNC_WAVE.read(obj, |annotation, raw| {
        raw.trim()
            .parse()
            .map_err(|_| ObjectError::InvalidAnnotation {
                annotation,
                value: raw.to_string(),
            })
    })?;
    Ok(wave.unwrap_or(0))
}

/// `metadata.generateName`, when set and not empty.
pub fn generate_name(obj: &Value) -> Option<&str> {
    str_at(obj, &["metadata", "generateName"]).filter(|g| !g.is_empty())
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
        let opts = ObjectSyncOptions::read(&obj).unwrap();
        assert!(opts.prune_disabled && opts.prune_last);
        assert_eq!(sync_wave(&obj).unwrap(), -2);
        let bad = json!({"metadata": {"annotations": {"kedge.dev/sync-wave": "x"}}});
        assert!(sync_wave(&bad).is_err());
        assert!(ObjectId::from_object(&json!({"kind": "X"})).is_err());
    }

    fn annotated(annotations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "annotations": annotations}})
    }

    fn message(e: ObjectError) -> String {
        e.to_string()
    }

    #[test]
    fn argocd_sync_wave_is_read_as_ours() {
        let argo = annotated(json!({"argocd.argoproj.io/sync-wave": "3"}));
        assert_eq!(sync_wave(&argo).unwrap(), 3);
        let both =
            annotated(json!({"argocd.argoproj.io/sync-wave": "3", "kedge.dev/sync-wave": "03"}));
        assert_eq!(sync_wave(&both).unwrap(), 3, "equal values agree");
        let differ =
            annotated(json!({"argocd.argoproj.io/sync-wave": "3", "kedge.dev/sync-wave": "4"}));
        let m = message(sync_wave(&differ).unwrap_err());
        assert!(
            m.contains(r#"kedge.dev/sync-wave="4""#)
                && m.contains(r#"argocd.argoproj.io/sync-wave="3""#),
            "{m}"
        );
        let bad = annotated(json!({"argocd.argoproj.io/sync-wave": "soon"}));
        let m = message(sync_wave(&bad).unwrap_err());
        assert!(
            m.contains("argocd.argoproj.io/sync-wave") && m.contains("soon"),
            "{m}"
        );
    }

    #[test]
    fn argocd_sync_options_are_read_as_ours() {
        let o = ObjectSyncOptions::read(&annotated(json!({"argocd.argoproj.io/sync-options":
            "Prune=false,Delete=false,PruneLast=true,Replace=true,ServerSideApply=true,Validate=false,\
             SkipDryRunOnMissingResource=true,Force=true"})))
        .unwrap();
        assert_eq!(
            o,
            ObjectSyncOptions {
                prune_disabled: true,
                prune_last: true,
                delete_disabled: true,
                replace: true,
                skip_validation: true,
                skip_dry_run_on_missing_resource: true,
                force: true,
            }
        );
        assert_eq!(
            ObjectSyncOptions::read(&annotated(json!({}))).unwrap(),
            ObjectSyncOptions::default()
        );
        // Both annotations combine when they agree on what they share.
        let both = annotated(
            json!({"argocd.argoproj.io/sync-options": "Prune=false,Replace=true",
            "kedge.dev/sync-options": "Prune=false, PruneLast=true"}),
        );
        let o = ObjectSyncOptions::read(&both).unwrap();
        assert!(o.prune_disabled && o.prune_last && o.replace);
        let differ = annotated(json!({"argocd.argoproj.io/sync-options": "Prune=true",
            "kedge.dev/sync-options": "Prune=false"}));
        let m = message(ObjectSyncOptions::read(&differ).unwrap_err());
        assert!(
            m.contains(r#"kedge.dev/sync-options="Prune=false""#)
                && m.contains(r#"argocd.argoproj.io/sync-options="Prune=true""#),
            "{m}"
        );
    }

    #[test]
    fn sync_options_kedge_cannot_honour_are_refused_by_name() {
        for (option, why) in [
            ("ServerSideApply=false", "server-side"),
            ("Prune=confirm", "confirmation"),
            ("Delete=confirm", "confirmation"),
        ] {
            let obj = annotated(json!({"argocd.argoproj.io/sync-options": option}));
            let m = message(ObjectSyncOptions::read(&obj).unwrap_err());
            assert!(
                m.contains(option) && m.contains("not supported") && m.contains(why),
                "{m}"
            );
        }
        for bad in ["Prune=maybe", "Unknown=true", "Prune"] {
            let obj = annotated(json!({"kedge.dev/sync-options": bad}));
            let m = message(ObjectSyncOptions::read(&obj).unwrap_err());
            assert!(
                m.contains("kedge.dev/sync-options") && m.contains(bad),
                "{m}"
            );
        }
    }

    #[test]
    fn compare_options_are_read_from_either_annotation() {
        let argo = annotated(json!({"argocd.argoproj.io/compare-options": "IgnoreExtraneous"}));
        assert!(CompareOptions::read(&argo).unwrap().ignore_extraneous);
        let ours = annotated(json!({"kedge.dev/compare-options": "ServerSideDiff=true"}));
        assert!(!CompareOptions::read(&ours).unwrap().ignore_extraneous);
        let both = annotated(json!({"kedge.dev/compare-options": "ServerSideDiff=true",
            "argocd.argoproj.io/compare-options": "IgnoreExtraneous, IncludeMutationWebhook=true"}));
        assert!(CompareOptions::read(&both).unwrap().ignore_extraneous);
        let off = annotated(json!({"argocd.argoproj.io/compare-options": "ServerSideDiff=false"}));
        let m = message(CompareOptions::read(&off).unwrap_err());
        assert!(
            m.contains("ServerSideDiff=false") && m.contains("not supported"),
            "{m}"
        );
        let bad = annotated(json!({"argocd.argoproj.io/compare-options": "IgnoreEverything"}));
        let m = message(CompareOptions::read(&bad).unwrap_err());
        assert!(m.contains("IgnoreEverything"), "{m}");
    }

    #[test]
    fn annotations_are_set_on_bare_objects() {
        let mut obj = json!({"kind": "ConfigMap"});
        set_annotation(&mut obj, "a", "b");
        assert_eq!(annotation(&obj, "a"), Some("b"));
    }
}
