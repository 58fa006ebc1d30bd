//! The benchmark monorepo: `apps/app-NNNNN/` with five objects each (three ConfigMaps, a Deployment, a Service),
//! and the Application objects that point at those paths.

use serde_json::{Value, json};

/// Objects per application.
pub const OBJECTS_PER_APP: usize = 5;

/// Name of application `i` (also its destination namespace and its folder under `apps/`).
pub fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// The ConfigMap whose `data.revision` the commit-to-applied scenario changes.
pub const SETTINGS: &str = "settings";

/// Files of application `i` at `revision` (a value in the `settings` ConfigMap): (path, contents).
pub fn app_files(i: usize, revision: u64) -> Vec<(String, String)> {
    let name = app_name(i);
    let dir = format!("apps/{name}");
    let config = format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: {SETTINGS}
data:
  revision: \"{revision}\"
  logLevel: info
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: features
data:
  search: \"on\"
  checkout: \"off\"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: nginx
data:
  default.conf: |
    server {{
      listen 8080;
      location / {{ return 200 '{name}'; }}
    }}
"
    );
    let deployment = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: nginx
          image: nginx:1.27
          ports:
            - containerPort: 8080
          volumeMounts:
            - name: conf
              mountPath: /etc/nginx/conf.d
          resources:
            requests: {cpu: 10m, memory: 16Mi}
      volumes:
        - name: conf
          configMap:
            name: nginx
"
    .to_owned();
    let service = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - name: http
      port: 80
      targetPort: 8080
"
    .to_owned();
    vec![
        (format!("{dir}/config.yaml"), config),
        (format!("{dir}/deployment.yaml"), deployment),
        (format!("{dir}/service.yaml"), service),
    ]
}

/// The Application for app `i`, in namespace `ns`, tracking `main` of `repo_url`.
pub fn application(i: usize, ns: &str, repo_url: &str) -> Value {
    let name = app_name(i);
    json!({
        "apiVersion": "kedge.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": format!("apps/{name}")},
            "destination": {"namespace": name},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": ["CreateNamespace=true"]
            }
        }
    })
}
