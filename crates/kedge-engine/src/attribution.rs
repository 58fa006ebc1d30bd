//! Drift attribution: which field managers own the live values that differ from the desired state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diff::{DiffOp, DiffOpKind};
use crate::fieldpath::{Location, owned_locations, to_display};

/// A field manager entry of an object's `managedFields`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerRef {
    /// Manager name, e.g. `kubectl-edit`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// When the manager last wrote, RFC 3339.
    pub time: Option<String>,
    /// Subresource written through (`status`, `scale`), if any.
    pub subresource: Option<String>,
}

/// The managers owning one differing field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// JSON pointer of the field in the live object.
    pub path: String,
    /// Dotted field path for people, e.g. `spec.replicas`.
    pub field: String,
    /// Managers other than Kedge that own the live value (empty when nobody else does).
    pub managers: Vec<ManagerRef>,
}

impl Attribution {
    /// One line for people, e.g. `spec.replicas changed by kubectl-edit (Update) at 2026-11-25T12:03:11Z`.
    pub fn message(&self) -> String {
        if self.managers.is_empty() {
            return format!(
                "{} differs from the desired state (no other field manager owns it)",
                self.field
            );
        }
        let who: Vec<String> = self
            .managers
            .iter()
            .map(|m| {
                let mut s = format!("{} ({}", m.manager, m.operation);
                if let Some(sub) = &m.subresource {
                    s.push_str(&format!(" on {sub}"));
                }
                s.push(')');
                if let Some(t) = &m.time {
                    s.push_str(&format!(" at {t}"));
                }
                s
            })
            .collect();
        format!("{} changed by {}", self.field, who.join(", "))
    }
}

/// One parsed `managedFields` entry with the locations it owns in the live object.
pub(crate) struct ManagedEntry {
    pub(crate) manager: ManagerRef,
    pub(crate) owned: Vec<Location>,
}

/// Parses `metadata.managedFields` of a live object.
pub(crate) fn managed_entries(live: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let manager = e.get("manager")?.as_str()?.to_string();
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let owned = e
                .get("fieldsV1")
                .map(|t| owned_locations(t, live))
                .unwrap_or_default();
            Some(ManagedEntry {
                manager: ManagerRef {
                    manager,
                    operation: s("operation").unwrap_or_default(),
                    time: s("time"),
                    subresource: s("subresource").filter(|x| !x.is_empty()),
                },
                owned,
            })
        })
        .collect()
}

fn related(a: &Location, b: &Location) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Names the managers (other than `own_manager`) that own each differing live field.
pub fn attribute(live: &Value, ops: &[DiffOp], own_manager: &str) -> Vec<Attribution> {
    let entries = managed_entries(live);
    ops.iter()
        .filter(|op| op.op != DiffOpKind::Add || !op.location.is_empty())
        .map(|op| {
            // For an added field, the nearest existing ancestor is what someone else may have changed.
            let loc = match op.op {
                DiffOpKind::Add => op.location[..op.location.len() - 1].to_vec(),
                _ => op.location.clone(),
            };
            let mut managers: Vec<ManagerRef> = Vec::new();
            if op.op != DiffOpKind::Add {
                for e in &entries {
                    if e.manager.manager != own_manager
                        && e.owned.iter().any(|o| related(o, &loc))
                        && !managers.contains(&e.manager)
                    {
                        managers.push(e.manager.clone());
                    }
                }
            }
            Attribution {
                path: op.path.clone(),
                field: to_display(&op.location, live),
                managers,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{diff, normalize};
    use serde_json::json;

    #[test]
    fn names_the_manager_of_a_changed_field() {
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "managedFields": [
                {"manager": "kedge", "operation": "Apply", "time": "2026-11-25T12:00:00Z",
                 "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
                {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-25T12:03:11Z",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:replicas": {}}}}
            ]},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}},
            "status": {"replicas": 5}});
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}}}});
        let d = diff(Some(&normalize(&live)), &normalize(&desired));
        let attrs = attribute(&live, &d.ops, "kedge");
        assert_eq!(attrs.len(), 2);
        let replicas = attrs.iter().find(|a| a.path == "/spec/replicas").unwrap();
        assert_eq!(
            replicas.message(),
            "spec.replicas changed by kubectl-edit (Update) at 2026-11-25T12:03:11Z"
        );
        let image = attrs.iter().find(|a| a.path.ends_with("/image")).unwrap();
        assert!(image.managers.is_empty());
        assert_eq!(image.field, "spec.template.spec.containers[name=app].image");
    }
}
