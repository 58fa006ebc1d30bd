//! The `Cluster` custom resource: a cluster Kedge can deploy to, registered in Kedge's namespace with a reference to
//! the Secret that holds its credentials.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Application, Condition, LocalSecretReference};

/// The name Argo CD and Kedge give the cluster they run in.
pub const IN_CLUSTER_NAME: &str = "in-cluster";
/// The address Argo CD and Kedge give the cluster they run in.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// The key of a cluster Secret holding a kubeconfig (one context; exec plugins are honoured).
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The condition saying whether Kedge reaches the cluster.
pub const CONNECTED: &str = "Connected";

/// A cluster applications may be deployed to: its API server and the Secret with the credentials to reach it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kedge.dev",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    namespaced,
    status = "ClusterStatus",
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.server"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Connected\")].reason"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.serverVersion"}"#,
    printcolumn = r#"{"name":"Apps","type":"integer","jsonPath":".status.applications"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The API server's URL, as applications name it in `spec.destination.server`.
    #[schemars(length(min = 1))]
    pub server: String,
    /// The Secret (in the Cluster's namespace) holding the credentials: key `kubeconfig` (a kubeconfig with one
    /// context), or `ca.crt` with `token`, or `ca.crt` with `tls.crt` and `tls.key`.
    pub secret_ref: LocalSecretReference,
    /// Namespaces applications may deploy to on this cluster; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// What Kedge last saw of a cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `Connected`: whether Kedge reaches the cluster (reason and message when not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Kubernetes version the cluster's API server reports, e.g. `v1.36.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// When Kedge last reached it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<String>,
    /// How many applications deploy to it.
    #[serde(default)]
    pub applications: u32,
    /// How many objects those applications manage there.
    #[serde(default)]
    pub objects: u32,
}

/// Why a cluster Secret cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterSecretError {
    /// None of the accepted shapes.
    #[error(
        "cluster Secret {0}: expected key `kubeconfig`, or `ca.crt` with `token`, or `ca.crt` with `tls.crt` and \
         `tls.key`"
    )]
    Shape(String),
    /// A value that is not UTF-8 text.
    #[error("cluster Secret {secret}: key {key} is not text")]
    NotText {
        /// The Secret's name.
        secret: String,
        /// The key.
        key: String,
    },
}

/// The credentials of a cluster, as its Secret holds them.
#[derive(Clone, PartialEq, Eq)]
pub enum ClusterCredentials {
    /// A kubeconfig (its current context, or its only one, is used).
    Kubeconfig(String),
    /// A bearer token, with the CA to trust (PEM).
    Token {
        /// PEM CA bundle.
        ca: String,
        /// The token.
        token: String,
    },
    /// A client certificate and key (PEM), with the CA to trust.
    ClientCertificate {
        /// PEM CA bundle.
        ca: String,
        /// PEM certificate.
        cert: String,
        /// PEM key.
        key: String,
    },
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.write_str(match self {
            Self::Kubeconfig(_) => "ClusterCredentials::Kubeconfig",
            Self::Token { .. } => "ClusterCredentials::Token",
            Self::ClientCertificate { .. } => "ClusterCredentials::ClientCertificate",
        })
    }
}

impl ClusterCredentials {
    /// Reads the credentials from a Secret's decoded data.
    pub fn from_secret(
        secret: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, ClusterSecretError> {
        let text = |key: &str| -> Result<Option<String>, ClusterSecretError> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.clone()).map_err(|_| ClusterSecretError::NotText {
                        secret: secret.to_owned(),
                        key: key.to_owned(),
                    })
                })
                .transpose()
        };
        if let Some(kubeconfig) = text(KUBECONFIG_KEY)? {
            return Ok(Self::Kubeconfig(kubeconfig));
        }
        match (
            text("ca.crt")?,
            text("token")?,
            text("tls.crt")?,
            text("tls.key")?,
        ) {
            (Some(ca), Some(token), _, _) => Ok(Self::Token {
                ca,
                token: token.trim().to_owned(),
            }),
            (Some(ca), None, Some(cert), Some(key)) => {
                Ok(Self::ClientCertificate { ca, cert, key })
            }
            _ => Err(ClusterSecretError::Shape(secret.to_owned())),
        }
    }
}

impl Cluster {
    /// Whether `app` deploys to this cluster (by `destination.name` or `destination.server`).
    pub fn is_destination_of(&self, app: &Application) -> bool {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        app.spec.destination_name() == Some(name)
            || app.spec.destination_server() == Some(normalize_server(&self.spec.server))
    }
}

/// A cluster's server URL as Kedge compares it: without surrounding blanks or a trailing slash.
pub fn normalize_server(server: &str) -> &str {
    server.trim().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secrets_hold_a_kubeconfig_a_token_or_a_client_certificate() {
        assert_eq!(
            ClusterCredentials::from_secret("east", &data(&[("kubeconfig", "apiVersion: v1")])),
            Ok(ClusterCredentials::Kubeconfig("apiVersion: v1".into()))
        );
        assert_eq!(
            ClusterCredentials::from_secret("east", &data(&[("ca.crt", "CA"), ("token", "t0k\n")])),
            Ok(ClusterCredentials::Token {
                ca: "CA".into(),
                token: "t0k".into()
            })
        );
        assert!(matches!(
            ClusterCredentials::from_secret(
                "east",
                &data(&[("ca.crt", "CA"), ("tls.crt", "C"), ("tls.key", "K")])
            ),
            Ok(ClusterCredentials::ClientCertificate { .. })
        ));
        let err =
            ClusterCredentials::from_secret("east", &data(&[("token", "t")])).expect_err("refused");
        assert!(
            err.to_string()
                .contains("cluster Secret east: expected key `kubeconfig`")
        );
        let mut binary = data(&[]);
        binary.insert("kubeconfig".into(), vec![0xff, 0xfe]);
        assert_eq!(
            ClusterCredentials::from_secret("east", &binary),
            Err(ClusterSecretError::NotText {
                secret: "east".into(),
                key: "kubeconfig".into()
            })
        );
        // Debug output never shows a value.
        let creds = ClusterCredentials::Token {
            ca: "CA".into(),
            token: "secret-token".into(),
        };
        assert!(!format!("{creds:?}").contains("secret-token"));
    }

    #[test]
    fn an_application_names_its_cluster_by_name_or_server() {
        let cluster = Cluster::new(
            "east",
            ClusterSpec {
                server: "https://east.example:6443".into(),
                ..ClusterSpec::default()
            },
        );
        let mut app = Application::new("web", Default::default());
        assert!(!cluster.is_destination_of(&app));
        app.spec.destination.name = Some("east".into());
        assert!(cluster.is_destination_of(&app));
        app.spec.destination.name = None;
        app.spec.destination.server = Some("https://east.example:6443".into());
        assert!(cluster.is_destination_of(&app));
        // As the controller reads it: a trailing slash names the same server.
        app.spec.destination.server = Some("https://east.example:6443/".into());
        assert!(cluster.is_destination_of(&app));
    }
}
