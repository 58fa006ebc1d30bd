//! The manifests `kedge install` applies: the Application CRD, the controller's namespace, its RBAC and Deployment.

use kedge_api::Application;
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// Options of the generated manifests.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Namespace the controller runs in (and where Applications live by default). Default `kedge`.
    pub namespace: String,
    /// Container image of the controller.
    pub image: String,
    /// Give the controller only what it needs when every project impersonates
    /// (`destinationServiceAccounts`): its own resources, Leases, Events, Secrets and ConfigMaps of its namespace,
    /// and `impersonate` on ServiceAccounts. Applications then live in the controller's namespace only.
    pub least_privilege: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            namespace: "kedge".to_owned(),
            image: format!("ghcr.io/kedge-dev/kedge:{}", env!("CARGO_PKG_VERSION")),
            least_privilege: false,
        }
    }
}

/// The CRD alone (what a cluster needs before Applications can be created).
pub fn crd() -> Value {
    serde_json::to_value(Application::crd()).unwrap_or(Value::Null)
}

/// The Cluster CRD (the cluster registry).
pub fn cluster_crd() -> Value {
    serde_json::to_value(kedge_api::Cluster::crd()).unwrap_or(Value::Null)
}

/// The notification CRDs: `Provider` and `Alert`.
pub fn notification_crds() -> [Value; 2] {
    [
        serde_json::to_value(kedge_api::Provider::crd()).unwrap_or(Value::Null),
        serde_json::to_value(kedge_api::Alert::crd()).unwrap_or(Value::Null),
    ]
}

/// The Project CRD.
pub fn project_crd() -> Value {
    serde_json::to_value(kedge_api::Project::crd()).unwrap_or(Value::Null)
}

/// The ApplicationSet CRD.
pub fn applicationset_crd() -> Value {
    serde_json::to_value(kedge_api::ApplicationSet::crd()).unwrap_or(Value::Null)
}

/// Every manifest, in apply order.
pub fn manifests(opts: &InstallOptions) -> Vec<Value> {
    let ns = opts.namespace.as_str();
    let labels =
        json!({ "app.kubernetes.io/name": "kedge", "app.kubernetes.io/component": "controller" });
    // Least privilege: Applications (and their Secrets) in this namespace only.
    let mut args = vec!["run"];
    if opts.least_privilege {
        args.extend(["--namespace", ns]);
    } else {
        args.push("--all-namespaces");
    }
    args.extend([
        "--listen",
        "0.0.0.0:8080",
        "--metrics-listen",
        "0.0.0.0:9090",
    ]);
    let [provider_crd, alert_crd] = notification_crds();
    vec![
        crd(),
        cluster_crd(),
        provider_crd,
        alert_crd,
        project_crd(),
        applicationset_crd(),
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "kedge-controller", "namespace": ns }
        }),
        cluster_role(opts.least_privilege),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": "kedge-controller" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kedge-controller" },
            "subjects": [ { "kind": "ServiceAccount", "name": "kedge-controller", "namespace": ns } ]
        }),
        namespace_role(ns),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "kedge-controller", "namespace": ns },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kedge-controller" },
            "subjects": [ { "kind": "ServiceAccount", "name": "kedge-controller", "namespace": ns } ]
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "kedge-controller", "namespace": ns, "labels": labels },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": labels },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "serviceAccountName": "kedge-controller",
                        "containers": [{
                            "name": "kedge",
                            "image": opts.image,
                            "args": args,
                            // The UI, API, webhooks and probes on one port; Prometheus metrics on their own, so
                            // that exposing the UI (an ingress on Service `kedge`) does not expose them.
                            "ports": [
                                { "name": "http", "containerPort": 8080 },
                                { "name": "metrics", "containerPort": 9090 }
                            ],
                            "readinessProbe": { "httpGet": { "path": "/readyz", "port": "http" } },
                            "livenessProbe": { "httpGet": { "path": "/livez", "port": "http" } },
                            // The benchmark measures 121 MiB at 2,000 applications of five objects (bench/run);
                            // the limit leaves room for four times that before the pod is killed.
                            "resources": {
                                "requests": { "cpu": "100m", "memory": "128Mi" },
                                "limits": { "memory": MEMORY_LIMIT }
                            },
                            "securityContext": {
                                "runAsNonRoot": true, "readOnlyRootFilesystem": false,
                                "allowPrivilegeEscalation": false
                            }
                        }]
                    }
                }
            }
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kedge", "namespace": ns, "labels": labels },
            "spec": { "selector": labels, "ports": [ { "name": "http", "port": 80, "targetPort": "http" } ] }
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kedge-metrics", "namespace": ns, "labels": labels },
            "spec": { "selector": labels, "ports": [ { "name": "metrics", "port": 9090, "targetPort": "metrics" } ] }
        }),
    ]
}

/// The controller's cluster-wide rights: everything (Kedge applies whatever Git declares, like Argo CD's
/// application controller), or with `least_privilege` its own resources and `impersonate` on ServiceAccounts (every
/// write then goes through a project's ServiceAccount).
pub fn cluster_role(least_privilege: bool) -> Value {
    let rules = if least_privilege {
        json!([
            { "apiGroups": ["kedge.dev"], "resources": ["*"], "verbs": ["*"] },
            { "apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"] },
            { "nonResourceURLs": ["/version", "/api", "/api/*", "/apis", "/apis/*"], "verbs": ["get"] }
        ])
    } else {
        json!([
            { "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] },
            { "nonResourceURLs": ["*"], "verbs": ["get"] }
        ])
    };
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "kedge-controller" },
        "rules": rules,
    })
}

/// The controller's rights in its own namespace: its Leases (leader election, replicas sharing the work), Events,
/// and reading Secrets (repository, cluster and decryption credentials) and ConfigMaps.
pub fn namespace_role(namespace: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "kedge-controller", "namespace": namespace },
        "rules": [
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"] },
            { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "get", "list", "watch"] },
            { "apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"] }
        ]
    })
}

/// The controller's memory limit in the installed Deployment.
pub const MEMORY_LIMIT: &str = "512Mi";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_has_a_memory_limit() {
        let m = manifests(&InstallOptions::default());
        let deployment = m
            .iter()
            .find(|v| v["kind"] == "Deployment")
            .expect("deployment");
        let resources = &deployment["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"]["memory"], "512Mi");
        assert_eq!(resources["requests"]["memory"], "128Mi");
    }

    #[test]
    fn crd_comes_first_and_rbac_binds_the_service_account() {
        let m = manifests(&InstallOptions::default());
        assert_eq!(m[0]["kind"], "CustomResourceDefinition");
        assert_eq!(m[0]["metadata"]["name"], "applications.kedge.dev");
        assert_eq!(m[1]["metadata"]["name"], "clusters.kedge.dev");
        assert_eq!(m[2]["metadata"]["name"], "providers.kedge.dev");
        assert_eq!(m[3]["metadata"]["name"], "alerts.kedge.dev");
        assert_eq!(m[4]["metadata"]["name"], "projects.kedge.dev");
        assert_eq!(m[5]["metadata"]["name"], "applicationsets.kedge.dev");
        let binding = m
            .iter()
            .find(|v| v["kind"] == "ClusterRoleBinding")
            .expect("binding");
        assert_eq!(binding["subjects"][0]["namespace"], "kedge");
    }

    #[test]
    fn metrics_have_a_port_and_service_of_their_own_and_probes_stay_on_http() {
        let m = manifests(&InstallOptions::default());
        let deployment = m
            .iter()
            .find(|v| v["kind"] == "Deployment")
            .expect("deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let flag = args
            .iter()
            .position(|a| *a == "--metrics-listen")
            .expect("--metrics-listen");
        assert_eq!(args[flag + 1], "0.0.0.0:9090");
        let ports = container["ports"].as_array().expect("ports");
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == "metrics" && p["containerPort"] == 9090)
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
        assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");
        let services: Vec<&Value> = m.iter().filter(|v| v["kind"] == "Service").collect();
        let ui = services
            .iter()
            .find(|s| s["metadata"]["name"] == "kedge")
            .expect("UI service");
        assert!(
            ui["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .all(|p| p["targetPort"] != "metrics"),
            "the UI Service does not expose metrics"
        );
        let metrics = services
            .iter()
            .find(|s| s["metadata"]["name"] == "kedge-metrics")
            .expect("metrics service");
        assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    }
}
