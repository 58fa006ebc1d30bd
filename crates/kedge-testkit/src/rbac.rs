//! Acting as someone other than the admin on a cluster started with [`TestCluster::get_rbac`]: ServiceAccount
//! tokens, impersonation, and clients or kubeconfig files for either.

use std::path::Path;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

use crate::cluster::TestCluster;
use crate::error::{Error, Result, io_err};

/// Who a client or kubeconfig from [`TestCluster::client_as`] / [`TestCluster::write_kubeconfig_as`] acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A ServiceAccount authenticating with a token of its own (TokenRequest, valid for an hour): what a
    /// controller running in the cluster as that ServiceAccount has.
    ServiceAccount {
        /// The ServiceAccount's namespace.
        namespace: String,
        /// The ServiceAccount's name.
        name: String,
    },
    /// The admin impersonating a ServiceAccount (`Impersonate-User: system:serviceaccount:NS:NAME`; the server
    /// adds the ServiceAccount groups).
    ImpersonatedServiceAccount {
        /// The ServiceAccount's namespace.
        namespace: String,
        /// The ServiceAccount's name.
        name: String,
    },
    /// The admin impersonating a user, with these groups (`Impersonate-User`, `Impersonate-Group`).
    ImpersonatedUser {
        /// The user name.
        user: String,
        /// Its groups (the server adds `system:authenticated`).
        groups: Vec<String>,
    },
}

impl Identity {
    /// [`Identity::ServiceAccount`]: the ServiceAccount with its own token.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// [`Identity::ImpersonatedServiceAccount`]: the admin impersonating the ServiceAccount.
    pub fn impersonated_service_account(namespace: &str, name: &str) -> Self {
        Self::ImpersonatedServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// [`Identity::ImpersonatedUser`]: the admin impersonating a user in these groups.
    pub fn impersonated_user(user: &str, groups: &[&str]) -> Self {
        Self::ImpersonatedUser {
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// The user name the API server sees (`system:serviceaccount:NS:NAME` for ServiceAccounts).
    pub fn username(&self) -> String {
        match self {
            Self::ServiceAccount { namespace, name }
            | Self::ImpersonatedServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
            Self::ImpersonatedUser { user, .. } => user.clone(),
        }
    }

    fn label(&self) -> String {
        self.username()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }
}

impl TestCluster {
    /// A token authenticating as the ServiceAccount `namespace/name` (which must exist), valid for an hour
    /// (`kubectl create token`). Only a cluster from [`get_rbac`](Self::get_rbac) issues tokens.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = Api::<ServiceAccount>::namespaced(self.client(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| Error::Kube {
                action: format!("request a token for the ServiceAccount {namespace}/{name}"),
                source,
            })?;
        Ok(response.status.and_then(|s| s.token).unwrap_or_default())
    }

    /// The admin kubeconfig turned into one that acts as `identity` (same server and CA; for a ServiceAccount,
    /// its namespace is the context's), as a JSON document that kubectl and kube-rs read as a kubeconfig.
    pub async fn kubeconfig_as(&self, identity: &Identity) -> Result<String> {
        let admin =
            Kubeconfig::read_from(self.kubeconfig()).map_err(|source| Error::Kubeconfig {
                path: self.kubeconfig().to_owned(),
                source,
            })?;
        let admin = serde_json::to_value(&admin)
            .map_err(|e| io_err("read the admin kubeconfig")(e.into()))?;
        let current = admin["current-context"].as_str().unwrap_or_default();
        let context = find_named(&admin["contexts"], current)["context"].clone();
        let cluster_name = context["cluster"].as_str().unwrap_or_default();
        let cluster = find_named(&admin["clusters"], cluster_name).clone();
        let admin_user = find_named(
            &admin["users"],
            context["user"].as_str().unwrap_or_default(),
        )["user"]
            .clone();
        let (user, namespace) = match identity {
            Identity::ServiceAccount { namespace, name } => {
                let token = self.service_account_token(namespace, name).await?;
                (json!({ "token": token }), Value::from(namespace.as_str()))
            }
            Identity::ImpersonatedServiceAccount { namespace, .. } => {
                let mut user = admin_user;
                user["as"] = identity.username().into();
                (user, Value::from(namespace.as_str()))
            }
            Identity::ImpersonatedUser { groups, .. } => {
                let mut user = admin_user;
                user["as"] = identity.username().into();
                if !groups.is_empty() {
                    user["as-groups"] = groups.clone().into();
                }
                (user, context["namespace"].clone())
            }
        };
        let name = format!("{cluster_name}-{}", identity.label());
        let mut ctx = json!({ "cluster": cluster_name, "user": name });
        if !namespace.is_null() {
            ctx["namespace"] = namespace;
        }
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{ "name": name, "user": user }],
            "contexts": [{ "name": name, "context": ctx }],
            "current-context": name,
        });
        serde_json::to_string_pretty(&doc).map_err(|e| io_err("write a kubeconfig")(e.into()))
    }

    /// Writes [`kubeconfig_as`](Self::kubeconfig_as) to `path` (mode 0600), e.g. for a Kedge controller process
    /// that must run as a ServiceAccount, or for `kubectl --kubeconfig`.
    pub async fn write_kubeconfig_as(&self, identity: &Identity, path: &Path) -> Result<()> {
        let text = self.kubeconfig_as(identity).await?;
        std::fs::write(path, text).map_err(io_err(format!("write {}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
        Ok(())
    }

    /// A client acting as `identity` (see [`Identity`]).
    pub async fn client_as(&self, identity: &Identity) -> Result<Client> {
        let text = self.kubeconfig_as(identity).await?;
        let path = self.kubeconfig().to_owned();
        let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|source| Error::Kubeconfig {
            path: path.clone(),
            source,
        })?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| Error::Kubeconfig { path, source })?;
        Client::try_from(config).map_err(|source| Error::Kube {
            action: "build a client".into(),
            source,
        })
    }
}

/// The entry named `name` of a kubeconfig list (clusters, users, contexts); null when there is none.
fn find_named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .unwrap_or(&Value::Null)
}
