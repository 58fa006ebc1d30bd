//! `data.inventory`: the objects referential policies look up, in Gatekeeper's layout, and the labels of the
//! namespaces `namespaceSelector` reads.
//!
//! ```text
//! data.inventory.cluster[apiVersion][kind][name]                 cluster-scoped objects
//! data.inventory.namespace[namespace][apiVersion][kind][name]    namespaced objects
//! ```
//!
//! `apiVersion` is the group/version as written (`v1`, `apps/v1`), as Gatekeeper's sync stores it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::matching::NamespaceLabels;
use crate::object::{ObjectRef, labels};

/// Objects by apiVersion, kind and name.
type ByVersion = BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>;

/// The objects of `data.inventory` (for Kedge: an application's rendered objects and the destination's live
/// objects of the kinds referential templates need) and the known namespaces' labels.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    cluster: ByVersion,
    namespace: BTreeMap<String, ByVersion>,
    namespace_labels: NamespaceLabels,
    len: usize,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// An inventory holding these objects.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut inventory = Self::new();
        for o in objects {
            inventory.add(o);
        }
        inventory
    }

    /// Adds an object (a later object with the same identity replaces an earlier one). A `Namespace` also gives
    /// its labels to `namespaceSelector`. Objects without an `apiVersion`, `kind` or `metadata.name` cannot be
    /// looked up and are left out; returns whether the object was added.
    pub fn add(&mut self, object: &Value) -> bool {
        let id = ObjectRef::of(object);
        if id.api_version.is_empty() || id.kind.is_empty() || id.name.is_empty() {
            return false;
        }
        if id.is_namespace() {
            self.namespace_labels
                .insert(id.name.clone(), labels(object));
        }
        let root = match &id.namespace {
            None => &mut self.cluster,
            Some(ns) => self.namespace.entry(ns.clone()).or_default(),
        };
        let by_name = root
            .entry(id.api_version)
            .or_default()
            .entry(id.kind)
            .or_default();
        if by_name.insert(id.name, object.clone()).is_none() {
            self.len += 1;
        }
        true
    }

    /// Sets the labels of a namespace that `namespaceSelector` reads, when its Namespace object is not in the
    /// inventory (a Namespace added later replaces them).
    pub fn set_namespace_labels(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.namespace_labels.insert(namespace.to_owned(), labels);
    }

    /// The labels of a namespace, when known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespace_labels.get(namespace)
    }

    /// How many objects the inventory holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the inventory holds no object.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inventory as Rego sees it under `data.inventory`: `{"cluster": ..., "namespace": ...}`.
    pub fn to_value(&self) -> Value {
        serde_json::json!({"cluster": self.cluster, "namespace": self.namespace})
    }

    pub(crate) fn all_namespace_labels(&self) -> &NamespaceLabels {
        &self.namespace_labels
    }
}

/// The kinds a template needs in `data.inventory`, from its `metadata.gatekeeper.sh/requires-sync-data`
/// annotation: each entry lists groups, versions and kinds (every combination is needed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub struct SyncRequirement {
    /// API groups (`""` for the core group).
    #[serde(default)]
    pub groups: Vec<String>,
    /// API versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Kinds.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// Reads the `requires-sync-data` annotation: a JSON list of lists ("any of" inside, "all of" outside) of
/// requirements. Kedge needs every alternative that is named, so it flattens them. The library writes the list
/// between double quotes (`"[[...]]"`, a block scalar keeping them), which Gatekeeper takes off; so does Kedge.
pub(crate) fn parse_sync_requirements(annotation: &str) -> Result<Vec<SyncRequirement>, String> {
    let trimmed = annotation.trim();
    let text = trimmed
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(trimmed);
    let lists: Vec<Vec<SyncRequirement>> = serde_json::from_str(text)
        .map_err(|e| format!("annotation metadata.gatekeeper.sh/requires-sync-data: {e}"))?;
    let mut out: Vec<SyncRequirement> = lists.into_iter().flatten().collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_as_gatekeeper() {
        let inv = Inventory::from_objects(&[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"team": "x"}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": "b"}}),
            json!({"kind": "NoVersion", "metadata": {"name": "x"}}),
        ]);
        assert_eq!(inv.len(), 3);
        let v = inv.to_value();
        assert_eq!(
            v["cluster"]["v1"]["Namespace"]["a"]["metadata"]["name"],
            "a"
        );
        assert_eq!(
            v["namespace"]["a"]["apps/v1"]["Deployment"]["web"]["kind"],
            "Deployment"
        );
        assert_eq!(
            v["namespace"]["b"]["networking.k8s.io/v1"]["Ingress"]["i"]["metadata"]["namespace"],
            "b"
        );
        assert_eq!(inv.namespace_labels("a").unwrap()["team"], "x");
        assert!(inv.namespace_labels("b").is_none());
    }

    #[test]
    fn sync_requirements() {
        let r = parse_sync_requirements(
            r#"[[{"groups": ["extensions", "networking.k8s.io"], "versions": ["v1beta1", "v1"], "kinds": ["Ingress"]}]]"#,
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kinds, ["Ingress"]);
        assert!(parse_sync_requirements("not json").is_err());
        // As the library writes it: quoted, in a block scalar.
        let quoted = parse_sync_requirements(
            "\"[\n  [\n    {\"groups\": [\"\"], \"versions\": [\"v1\"], \"kinds\": [\"Service\"]}\n  ]\n]\"\n",
        )
        .unwrap();
        assert_eq!(quoted[0].kinds, ["Service"]);
    }
}
