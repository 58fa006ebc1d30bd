//! ignoreDifferences: fields left out of both the comparison and the apply payload.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::EngineError;
use crate::fieldpath::{self, PathElem, fields_v1_paths, parse_pointer, resolve};
use crate::object::ObjectId;

/// Fields of matching objects that Kedge neither compares nor applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreRule {
    /// API group ("" for core, "*" for any).
    pub group: String,
    /// Kind ("*" for any).
    pub kind: String,
    /// Only this object name, if set.
    #[serde(default)]
    pub name: Option<String>,
    /// Only this namespace, if set.
    #[serde(default)]
    pub namespace: Option<String>,
    /// JSON pointers of ignored fields.
    #[serde(default)]
    pub json_pointers: Vec<String>,
    /// Ignore every field owned by these field managers (e.g. the HPA controller).
    #[serde(default)]
    pub managed_fields_managers: Vec<String>,
}

impl IgnoreRule {
    /// Checks the pointers are well-formed.
    pub fn validate(&self) -> Result<(), EngineError> {
        for p in &self.json_pointers {
            if parse_pointer(p).is_none() || p.is_empty() {
                return Err(EngineError::IgnorePointer { pointer: p.clone() });
            }
        }
        Ok(())
    }

    fn matches(&self, id: &ObjectId) -> bool {
        (self.group == "*" || self.group == id.group)
            && (self.kind == "*" || self.kind == id.kind)
            && self.name.as_ref().is_none_or(|n| *n == id.name)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| Some(n) == id.namespace.as_ref())
    }
}

/// The ignored fields of one object, as paths to resolve against each document.
#[derive(Debug, Default)]
pub(crate) struct Ignored {
    paths: Vec<Vec<PathElem>>,
}

impl Ignored {
    /// Collects the ignored paths for `id`; manager rules read the managers' fields from `live`.
    pub(crate) fn for_object(rules: &[IgnoreRule], id: &ObjectId, live: Option<&Value>) -> Self {
        let mut paths = Vec::new();
        for rule in rules.iter().filter(|r| r.matches(id)) {
            paths.extend(rule.json_pointers.iter().filter_map(|p| parse_pointer(p)));
            if rule.managed_fields_managers.is_empty() {
                continue;
            }
            let entries = live
                .and_then(|l| l.pointer("/metadata/managedFields"))
                .and_then(Value::as_array);
            for entry in entries.into_iter().flatten() {
                let manager = entry.get("manager").and_then(Value::as_str);
                if manager.is_some_and(|m| rule.managed_fields_managers.iter().any(|x| x == m))
                    && let Some(trie) = entry.get("fieldsV1")
                {
                    paths.extend(fields_v1_paths(trie));
                }
            }
        }
        Self { paths }
    }

    /// Removes the ignored fields from a document.
    pub(crate) fn strip(&self, doc: &mut Value) {
        if self.paths.is_empty() {
            return;
        }
        let locs = self.paths.iter().filter_map(|p| resolve(p, doc)).collect();
        fieldpath::remove_all(doc, locs);
    }

    /// Prepares an apply payload for an existing object: an ignored field Kedge still owns keeps
    /// its live value (so applying never changes or deletes it); any other ignored field is left out.
    pub(crate) fn prepare_payload(&self, payload: &mut Value, live: &Value, own_manager: &str) {
        if self.paths.is_empty() {
            return;
        }
        let own: Vec<fieldpath::Location> = crate::attribution::managed_entries(live)
            .into_iter()
            .filter(|e| e.manager.manager == own_manager && e.manager.subresource.is_none())
            .flat_map(|e| e.owned)
            .collect();
        let mut remove = Vec::new();
        for path in &self.paths {
            let live_loc = resolve(path, live);
            let kept = live_loc.as_ref().and_then(|l| {
                let owned = own.iter().any(|o| l.starts_with(o) || o.starts_with(l));
                owned.then(|| fieldpath::get(live, l).cloned()).flatten()
            });
            match (resolve(path, payload), kept) {
                (Some(loc), Some(value)) => {
                    fieldpath::set(payload, &loc, value);
                }
                (None, Some(value)) => {
                    if let Some(l) = &live_loc
                        && path.iter().all(|e| matches!(e, PathElem::Field(_)))
                    {
                        fieldpath::set(payload, l, value);
                    }
                }
                (Some(loc), None) => remove.push(loc),
                (None, None) => {}
            }
        }
        fieldpath::remove_all(payload, remove);
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hpa_rule() -> IgnoreRule {
        IgnoreRule {
            group: "apps".into(),
            kind: "Deployment".into(),
            json_pointers: vec!["/spec/replicas".into()],
            ..Default::default()
        }
    }

    #[test]
    fn pointer_rules_strip_matching_objects_only() {
        let id = ObjectId::new("apps", "Deployment", Some("ns"), "web");
        let other = ObjectId::new("apps", "StatefulSet", Some("ns"), "db");
        let rules = vec![hpa_rule()];
        let mut doc = json!({"spec": {"replicas": 3, "x": 1}});
        Ignored::for_object(&rules, &id, None).strip(&mut doc);
        assert_eq!(doc, json!({"spec": {"x": 1}}));
        assert!(Ignored::for_object(&rules, &other, None).paths.is_empty());
        assert!(
            IgnoreRule {
                json_pointers: vec!["spec".into()],
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn payload_keeps_live_value_only_while_kedge_owns_it() {
        let id = ObjectId::new("apps", "Deployment", Some("ns"), "web");
        let rules = vec![hpa_rule()];
        let desired = json!({"spec": {"replicas": 2, "paused": false}});
        // Kedge still owns replicas: the payload carries the live value, never resetting it.
        let live_owned = json!({"metadata": {"managedFields": [
            {"manager": "kedge", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:paused": {}}}}]},
            "spec": {"replicas": 7, "paused": false}});
        let mut p = desired.clone();
        Ignored::for_object(&rules, &id, Some(&live_owned)).prepare_payload(
            &mut p,
            &live_owned,
            "kedge",
        );
        assert_eq!(p, json!({"spec": {"replicas": 7, "paused": false}}));
        // The HPA owns it: the payload leaves it out.
        let live_hpa = json!({"metadata": {"managedFields": [
            {"manager": "kedge", "operation": "Apply", "fieldsV1": {"f:spec": {"f:paused": {}}}},
            {"manager": "hpa", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 7, "paused": false}});
        let mut p = desired.clone();
        Ignored::for_object(&rules, &id, Some(&live_hpa))
            .prepare_payload(&mut p, &live_hpa, "kedge");
        assert_eq!(p, json!({"spec": {"paused": false}}));
    }

    #[test]
    fn manager_rules_ignore_the_managers_fields() {
        let id = ObjectId::new("apps", "Deployment", Some("ns"), "web");
        let rules = vec![IgnoreRule {
            group: "*".into(),
            kind: "*".into(),
            managed_fields_managers: vec!["hpa".into()],
            ..Default::default()
        }];
        let live = json!({"metadata": {"managedFields": [
            {"manager": "hpa", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 7, "paused": false}});
        let ig = Ignored::for_object(&rules, &id, Some(&live));
        let mut doc = live.clone();
        ig.strip(&mut doc);
        assert_eq!(doc["spec"], json!({"paused": false}));
    }
}
