//! Argo CD repository and repo-creds Secrets to Kedge's repository credential Secrets.
//!
//! Kedge reads the same keys for the same purposes (`url`, `username`, `password`, `sshPrivateKey`, `insecure`)
//! from Secrets labelled `kedge.dev/secret-type: repository|repo-creds` in the application's namespace. Values
//! are copied as they are; diagnostics name keys, never values.

use serde_json::{Map, Value};

use super::located::{Seg, key};
use super::{ARGOCD_SECRET_TYPE, Cx, SERVER_SET_METADATA, WRITTEN_BY_APPLIERS};

/// The Argo CD Secret type of a document (label, else annotation), if it has one.
pub(crate) fn argocd_type(v: &Value) -> Option<&str> {
    ["labels", "annotations"]
        .iter()
        .find_map(|m| v["metadata"][m][ARGOCD_SECRET_TYPE].as_str())
}

/// Converts the Secret of `cx`; `None` when it is not a kind of Secret Kedge has (reported).
pub(crate) fn convert(cx: &mut Cx<'_>) -> Option<Value> {
    let value = cx.value;
    let v = value;
    let what = cx.describe();
    let kind = argocd_type(v).unwrap_or("");
    match kind {
        "repository" | "repo-creds" => {}
        "repository-write" | "repo-write-creds" => {
            cx.skip_document(
                &what,
                "Kedge never writes to Git, so it has no write credentials",
            );
            return None;
        }
        other => {
            cx.skip_document(
                &what,
                &format!("Argo CD Secret type {other:?} has no Kedge equivalent"),
            );
            return None;
        }
    }
    let mut out = Map::new();
    for (k, val) in v.as_object().into_iter().flatten() {
        let p = key(&[], k);
        match k.as_str() {
            "apiVersion" | "kind" | "type" | "immutable" => {
                out.insert(k.clone(), val.clone());
            }
            "metadata" => {
                out.insert(k.clone(), Value::Object(metadata(cx, &p, val, kind)));
            }
            "data" | "stringData" => {
                out.insert(k.clone(), Value::Object(values(cx, &p, val, kind)));
            }
            _ => cx.lost(&p, "not a field of a Secret"),
        }
    }
    Some(Value::Object(out))
}

fn metadata(cx: &mut Cx<'_>, path: &[Seg], meta: &Value, kind: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut labels = Map::new();
    labels.insert(
        kedge_api::SECRET_TYPE_LABEL.to_owned(),
        Value::String(kind.to_owned()),
    );
    for (k, v) in meta.as_object().into_iter().flatten() {
        let p = key(path, k);
        match k.as_str() {
            "name" | "generateName" => {
                out.insert(k.clone(), v.clone());
            }
            "namespace" => {
                if let Some(ns) = cx.namespace(&p, v.as_str()) {
                    out.insert(k.clone(), Value::String(ns));
                }
            }
            "labels" | "annotations" => {
                let mut kept = Map::new();
                for (name, value) in v.as_object().into_iter().flatten() {
                    let lp = key(&p, name);
                    if name == ARGOCD_SECRET_TYPE {
                        cx.note(
                            &lp,
                            format!("written as the label {}", kedge_api::SECRET_TYPE_LABEL),
                        );
                    } else if name == "managed-by" && value == "argocd.argoproj.io" {
                        cx.note(&lp, "written by Argo CD; left out");
                    } else if WRITTEN_BY_APPLIERS.contains(&name.as_str()) {
                        cx.note(&lp, "written by the tool that applied it; left out");
                    } else {
                        kept.insert(name.clone(), value.clone());
                    }
                }
                if k == "labels" {
                    labels.extend(kept);
                } else if !kept.is_empty() {
                    out.insert(k.clone(), Value::Object(kept));
                }
            }
            k if SERVER_SET_METADATA.contains(&k) => cx.note(&p, "set by the API server; left out"),
            _ => cx.lost(&p, "not a field of an object's metadata"),
        }
    }
    out.insert("labels".to_owned(), Value::Object(labels));
    cx.default_namespace(&mut out);
    out
}

/// The keys of `data` or `stringData`: copied when Kedge reads them as Argo CD does.
fn values(cx: &mut Cx<'_>, path: &[Seg], map: &Value, kind: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map.as_object().into_iter().flatten() {
        let p = key(path, k);
        match k.as_str() {
            "url" | "username" | "password" | "sshPrivateKey" | "insecure" => {
                out.insert(k.clone(), v.clone());
                if k == "sshPrivateKey" {
                    cx.note(
                        &p,
                        "Kedge checks the server's host key against this Secret's knownHosts key (Argo CD reads \
                         argocd-ssh-known-hosts-cm): add it",
                    );
                }
            }
            "type" => cx.note(
                &p,
                "left out: Kedge tells Git from Helm repositories by the application's source",
            ),
            "name" => cx.note(&p, "a display name; left out"),
            "enableOCI" => cx.note(
                &p,
                "left out: Kedge reads a chart repository URL without a scheme as an OCI registry",
            ),
            "project" => cx.lost(
                &p,
                format!(
                    "project-scoped credentials are not supported: these {kind} credentials serve every \
                     application of their namespace"
                ),
            ),
            "enableLfs" => cx.lost(&p, "Git LFS is not supported"),
            "tlsClientCertData" | "tlsClientCertKey" => cx.lost(&p, "TLS client certificates are not supported"),
            "githubAppID" | "githubAppInstallationID" | "githubAppEnterpriseBaseUrl" | "githubAppPrivateKey" => {
                cx.lost(&p, "GitHub App credentials are not supported")
            }
            "gcpServiceAccountKey" | "useAzureWorkloadIdentity" => {
                cx.lost(&p, "cloud identity credentials are not supported")
            }
            "proxy" | "noProxy" => cx.lost(&p, "repository proxies are not supported"),
            "forceHttpBasicAuth" => cx.lost(&p, "sending credentials before the server asks is not supported"),
            "bearerToken" => cx.lost(&p, "bearer tokens are not supported (Kedge sends tokens as basic credentials)"),
            _ => cx.lost(&p, "a key Kedge does not read"),
        }
    }
    out
}
