//! The identity of the objects policies review, read from their `apiVersion`, `kind` and `metadata`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// Which object a violation is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apiVersion`: `v1`, `apps/v1`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects (and namespaced ones rendered without a namespace).
    pub namespace: Option<String>,
    /// `metadata.name` (empty for an object named only by `generateName`).
    pub name: String,
}

impl ObjectRef {
    /// The identity of a Kubernetes object (missing fields read as empty).
    pub fn of(object: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let meta = object.get("metadata");
        Self {
            api_version: text(object.get("apiVersion")),
            kind: text(object.get("kind")),
            namespace: meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_owned),
            name: text(meta.and_then(|m| m.get("name"))),
        }
    }

    /// The API group: empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default()
    }

    /// The API version without the group: `v1`.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }

    /// Whether this is a `Namespace` (which namespace rules match by its own name and labels).
    pub fn is_namespace(&self) -> bool {
        self.kind == "Namespace" && self.group().is_empty()
    }
}

impl fmt::Display for ObjectRef {
    /// `Deployment.apps team-a/web`, `Namespace team-a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group().is_empty() {
            write!(f, ".{}", self.group())?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

/// The labels of an object (`metadata.labels`, string values only).
pub(crate) fn labels(object: &Value) -> BTreeMap<String, String> {
    object
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}
