//! Argo CD cluster Secrets to a Kedge `Cluster` and the Secret holding its credentials.
//!
//! Argo CD keeps a cluster's address, name and connection settings in one Secret (`server`, `name`, `config`: JSON
//! with a bearer token, basic credentials, TLS settings or an exec plugin). Kedge registers the cluster as a
//! `Cluster` (kedge.dev) whose Secret holds a kubeconfig; the kubeconfig is written from `config`, with its
//! base64 fields copied as they are. Values are never shown in diagnostics.

use k8s_openapi::ByteString;
use serde_json::{Map, Value, json};

use super::located::{Path, Seg, key};
use super::{ARGOCD_SECRET_TYPE, Cx, SERVER_SET_METADATA, Severity, WRITTEN_BY_APPLIERS};

/// Converts the cluster Secret of `cx` into a Secret and a Cluster; `None` when it cannot be (reported).
pub(crate) fn convert(cx: &mut Cx<'_>) -> Option<Vec<Value>> {
    let value = cx.value;
    let what = cx.describe();
    let secret_name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut labels = Map::new();
    let mut namespace = None;
    for (k, v) in value["metadata"].as_object().into_iter().flatten() {
        let p = key(&key(&[], "metadata"), k);
        match k.as_str() {
            "name" => {}
            "namespace" => namespace = cx.namespace(&p, v.as_str()),
            "labels" | "annotations" => {
                for (name, value) in v.as_object().into_iter().flatten() {
                    let lp = key(&p, name);
                    if name == ARGOCD_SECRET_TYPE {
                        cx.note(&lp, "written as a kedge.dev Cluster");
                    } else if WRITTEN_BY_APPLIERS.contains(&name.as_str())
                        || (name == "managed-by" && value == "argocd.argoproj.io")
                    {
                        cx.note(&lp, "written by the tool that applied it; left out");
                    } else if k == "labels" {
                        labels.insert(name.clone(), value.clone());
                    } else {
                        cx.lost(&lp, "not carried over to the Cluster");
                    }
                }
            }
            k if SERVER_SET_METADATA.contains(&k) => cx.note(&p, "set by the API server; left out"),
            _ => cx.lost(&p, "not a field of an object's metadata"),
        }
    }
    let fields = fields(cx, value);
    let text = |k: &str| {
        fields
            .iter()
            .find(|(n, _, _)| n == k)
            .map(|(_, _, v)| v.clone())
    };
    let Some(server) = text("server") else {
        cx.skip_document(&what, "it has no server");
        return None;
    };
    if server.trim_end_matches('/') == kedge_api::IN_CLUSTER_SERVER {
        cx.about_document(
            &what,
            Severity::Note,
            "the cluster Kedge runs in needs no registration; skipped".to_owned(),
        );
        return None;
    }
    let name = text("name").unwrap_or_else(|| secret_name.clone());
    if !is_object_name(&name) {
        cx.skip_document(
            &what,
            &format!(
                "its name {name:?} cannot name a Cluster (lowercase letters, digits, '-' and '.')"
            ),
        );
        return None;
    }
    let mut namespaces = Vec::new();
    let mut kubeconfig_parts = None;
    for (k, path, v) in &fields {
        match k.as_str() {
            "server" | "name" => {}
            "namespaces" => {
                namespaces = v
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| Value::String(n.to_owned()))
                    .collect();
            }
            "clusterResources" if namespaces_set(&fields) && v != "true" => cx.lost(
                path,
                "Kedge does not keep cluster-scoped objects off a cluster limited to namespaces",
            ),
            "clusterResources" => cx.note(path, "nothing to limit; left out"),
            "config" => kubeconfig_parts = config(cx, path, v),
            "project" => cx.lost(
                path,
                "project-scoped clusters are not supported: a project's destinations say which clusters its \
                 applications may use",
            ),
            "shard" => cx.note(
                path,
                "Kedge does not shard clusters between controllers; left out",
            ),
            _ => cx.lost(path, "a key Kedge does not read"),
        }
    }
    let (cluster, user) = kubeconfig_parts.unwrap_or_default();
    let mut cluster = cluster;
    cluster.insert("server".to_owned(), Value::String(server.clone()));
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "context", "context": {"cluster": "cluster", "user": "user"}}],
        "current-context": "context",
    });
    let kubeconfig = match serde_saphyr::to_string(&kubeconfig) {
        Ok(k) => k,
        Err(e) => {
            cx.skip_document(&what, &format!("failed to write its kubeconfig: {e}"));
            return None;
        }
    };
    let mut secret_meta = json!({"name": secret_name});
    let mut cluster_meta = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace.or_else(|| cx.options.namespace.clone()) {
        secret_meta["namespace"] = json!(ns);
        cluster_meta["namespace"] = json!(ns);
    }
    let mut spec = json!({"server": server, "secretRef": {"name": secret_name}});
    if !namespaces.is_empty() {
        spec["namespaces"] = Value::Array(namespaces);
    }
    Some(vec![
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": secret_meta,
            "stringData": {kedge_api::KUBECONFIG_KEY: kubeconfig}}),
        json!({"apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster", "metadata": cluster_meta, "spec": spec}),
    ])
}

/// Whether `name` can name a Kubernetes object (a DNS subdomain).
fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn namespaces_set(fields: &[(String, Path, String)]) -> bool {
    fields
        .iter()
        .any(|(k, _, v)| k == "namespaces" && !v.trim().is_empty())
}

/// The keys of `stringData` and `data` (decoded) as text, with their paths; `stringData` wins, as the API server
/// reads them.
fn fields(cx: &mut Cx<'_>, value: &Value) -> Vec<(String, Path, String)> {
    let mut out: Vec<(String, Path, String)> = Vec::new();
    for (k, v) in value.as_object().into_iter().flatten() {
        let p = key(&[], k);
        match k.as_str() {
            "apiVersion" | "kind" | "metadata" => {}
            "type" if v == "Opaque" => {}
            "type" => cx.note(&p, "the credentials Secret is Opaque"),
            "stringData" | "data" => {
                for (name, raw) in v.as_object().into_iter().flatten() {
                    let fp = key(&p, name);
                    let text = if k == "data" {
                        serde_json::from_value::<ByteString>(raw.clone())
                            .ok()
                            .and_then(|b| String::from_utf8(b.0).ok())
                    } else {
                        raw.as_str().map(str::to_owned)
                    };
                    let Some(text) = text else {
                        cx.lost(&fp, "not text");
                        continue;
                    };
                    match out.iter_mut().find(|(n, _, _)| n == name) {
                        Some(existing) if k == "stringData" => *existing = (name.clone(), fp, text),
                        Some(_) => {}
                        None => out.push((name.clone(), fp, text)),
                    }
                }
            }
            _ => cx.lost(&p, "not a field of a Secret"),
        }
    }
    out
}

type KubeconfigParts = (Map<String, Value>, Map<String, Value>);

/// The kubeconfig's cluster and user entries from Argo CD's `config` JSON.
fn config(cx: &mut Cx<'_>, path: &[Seg], text: &str) -> Option<KubeconfigParts> {
    let parsed: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            cx.lost(path, "not JSON");
            return None;
        }
    };
    let (mut cluster, mut user) = (Map::new(), Map::new());
    for (k, v) in parsed.as_object().into_iter().flatten() {
        let p = key(path, k);
        match k.as_str() {
            "bearerToken" => {
                user.insert("token".to_owned(), v.clone());
            }
            "username" | "password" => {
                user.insert(k.clone(), v.clone());
            }
            "tlsClientConfig" => {
                for (tk, tv) in v.as_object().into_iter().flatten() {
                    let tp = key(&p, tk);
                    let (map, name) = match tk.as_str() {
                        "insecure" => (&mut cluster, "insecure-skip-tls-verify"),
                        "caData" => (&mut cluster, "certificate-authority-data"),
                        "serverName" => (&mut cluster, "tls-server-name"),
                        "certData" => (&mut user, "client-certificate-data"),
                        "keyData" => (&mut user, "client-key-data"),
                        _ => {
                            cx.lost(&tp, "a TLS setting Kedge does not read");
                            continue;
                        }
                    };
                    map.insert(name.to_owned(), tv.clone());
                }
            }
            "execProviderConfig" => {
                let mut exec = Map::new();
                for (ek, ev) in v.as_object().into_iter().flatten() {
                    match ek.as_str() {
                        "command" | "args" | "env" | "apiVersion" | "installHint" => {
                            exec.insert(ek.clone(), ev.clone());
                        }
                        _ => cx.lost(&key(&p, ek), "an exec setting Kedge does not read"),
                    }
                }
                cx.note(
                    &p,
                    "run by Kedge's controller as kubectl would: the command must be in its image",
                );
                user.insert("exec".to_owned(), Value::Object(exec));
            }
            "proxyUrl" => {
                cluster.insert("proxy-url".to_owned(), v.clone());
            }
            "disableCompression" => cx.note(&p, "a transport setting; left out"),
            "awsAuthConfig" => cx.lost(
                &p,
                "EKS authentication is not supported: use execProviderConfig",
            ),
            _ => cx.lost(&p, "a connection setting Kedge does not read"),
        }
    }
    Some((cluster, user))
}
