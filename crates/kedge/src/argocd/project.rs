//! Argo CD `AppProject`s to Kedge `Project`s: the same field names and glob rules for what Kedge enforces (sources,
//! destinations, kind lists, source namespaces); what it does not enforce yet is reported, field by field.

use serde_json::{Map, Value, json};

use super::located::{Seg, index, key};
use super::{Cx, SERVER_SET_METADATA, WRITTEN_BY_APPLIERS};

/// The fields Kedge's Project has, with the same meaning.
const CARRIED: [&str; 10] = [
    "description",
    "sourceRepos",
    "destinations",
    "clusterResourceWhitelist",
    "clusterResourceBlacklist",
    "namespaceResourceWhitelist",
    "namespaceResourceBlacklist",
    "sourceNamespaces",
    "syncWindows",
    "destinationServiceAccounts",
];

/// Converts the AppProject of `cx`; `None` when it cannot be (reported).
pub(crate) fn convert(cx: &mut Cx<'_>) -> Option<Value> {
    let value = cx.value;
    let what = cx.describe();
    let mut meta = Map::new();
    let mut spec = Map::new();
    for (k, v) in value.as_object().into_iter().flatten() {
        let p = key(&[], k);
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => metadata(cx, &p, v, &mut meta),
            "spec" => {
                for (field, fv) in v.as_object().into_iter().flatten() {
                    let fp = key(&p, field);
                    if CARRIED.contains(&field.as_str()) {
                        spec.insert(field.clone(), fv.clone());
                    } else if field == "roles" {
                        let project = value
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        spec.insert(field.clone(), roles(cx, &fp, project, fv));
                    } else {
                        cx.lost(&fp, reason(field));
                    }
                }
            }
            "status" => cx.note(&p, "observed state; Kedge writes its own"),
            _ => cx.lost(&p, "not a field of Argo CD's AppProject"),
        }
    }
    if meta.get("name").and_then(Value::as_str).is_none() {
        cx.skip_document(&what, "it has no name");
        return None;
    }
    let out = json!({ "apiVersion": "kedge.dev/v1alpha1", "kind": "Project", "metadata": meta, "spec": spec });
    if let Err(e) = serde_json::from_value::<kedge_api::Project>(out.clone()) {
        cx.skip_document(
            &what,
            &format!("Kedge's Project refuses what it converts to: {e}"),
        );
        return None;
    }
    Some(out)
}

/// Why an AppProject field is not carried over.
fn reason(field: &str) -> &'static str {
    match field {
        "signatureKeys" => {
            "Kedge verifies signatures per application (spec.source.verify), not per project"
        }
        "orphanedResources" => "Kedge does not report orphaned resources",
        "permitOnlyProjectScopedClusters" => "Kedge has no project-scoped clusters",
        _ => "a field of AppProject that Kedge does not read",
    }
}

/// The project's roles: name, description, groups, and the policy lines Kedge's API has actions for; the others, and
/// the tokens (Argo CD signed them, so Kedge cannot check them), are reported.
fn roles(cx: &mut Cx<'_>, path: &[Seg], project: &str, roles: &Value) -> Value {
    let mut out = Vec::new();
    for (i, role) in roles.as_array().into_iter().flatten().enumerate() {
        let rp = index(path, i);
        let name = role.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut kept = Map::new();
        for (k, v) in role.as_object().into_iter().flatten() {
            let p = key(&rp, k);
            match k.as_str() {
                "name" | "description" | "groups" => {
                    kept.insert(k.clone(), v.clone());
                }
                "policies" => {
                    let mut lines = Vec::new();
                    for (j, line) in v.as_array().into_iter().flatten().enumerate() {
                        let text = line.as_str().unwrap_or_default();
                        match kedge_api::parse_policy(project, name, text) {
                            Ok(_) => lines.push(line.clone()),
                            Err(why) => cx.lost(&index(&p, j), why),
                        }
                    }
                    kept.insert(k.clone(), Value::Array(lines));
                }
                "jwtTokens" => cx.lost(
                    &p,
                    "tokens Argo CD signed cannot be checked by Kedge; issue new ones with `kedge project token create`",
                ),
                _ => cx.lost(&p, "not a field of a project role"),
            }
        }
        out.push(Value::Object(kept));
    }
    Value::Array(out)
}

fn metadata(cx: &mut Cx<'_>, path: &[Seg], meta: &Value, out: &mut Map<String, Value>) {
    for (k, v) in meta.as_object().into_iter().flatten() {
        let p = key(path, k);
        match k.as_str() {
            "name" | "labels" => {
                out.insert(k.clone(), v.clone());
            }
            "namespace" => {
                if let Some(ns) = cx.namespace(&p, v.as_str()) {
                    out.insert(k.clone(), Value::String(ns));
                }
            }
            "annotations" => {
                let mut kept = Map::new();
                for (name, value) in v.as_object().into_iter().flatten() {
                    if WRITTEN_BY_APPLIERS.contains(&name.as_str()) {
                        cx.note(&key(&p, name), "written by the tool that applied it; left out");
                    } else {
                        kept.insert(name.clone(), value.clone());
                    }
                }
                if !kept.is_empty() {
                    out.insert(k.clone(), Value::Object(kept));
                }
            }
            "finalizers" => cx.note(
                &p,
                "Argo CD's project finalizer; Kedge refuses applications of a missing project instead",
            ),
            k if SERVER_SET_METADATA.contains(&k) => cx.note(&p, "set by the API server; left out"),
            _ => cx.lost(&p, "not a field of an object's metadata"),
        }
    }
    cx.default_namespace(out);
}
