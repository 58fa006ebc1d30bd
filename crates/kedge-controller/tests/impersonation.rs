//! Syncs with the team's own rights: a project maps a destination to a ServiceAccount, and every request of the
//! application's passes impersonates it on an API server that enforces RBAC, so that what the account may not do
//! is refused by the cluster, named with the verb, the resource and the account, and nothing of that sync applied.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use kedge_api::Project;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

async fn apply(env: &Env, api_version: &str, kind: &str, plural: &str, body: Value) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let name = body["metadata"]["name"].as_str().expect("name").to_owned();
    let obj: kube::api::DynamicObject = serde_json::from_value(body).expect("object");
    Api::<kube::api::DynamicObject>::namespaced_with(env.client.clone(), env.ns(), &ar)
        .patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply");
}

/// The Role of the deployer ServiceAccount: what the team may do in its namespace.
async fn grant(env: &Env, resources: &[&str]) {
    apply(
        env,
        "rbac.authorization.k8s.io/v1",
        "Role",
        "roles",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "deployer" },
            "rules": [{ "apiGroups": [""], "resources": resources,
                        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] }],
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonated_application_may_do_what_its_account_may_and_nothing_more() {
    let env = Env::rbac("imp").await;
    let ns = env.ns().to_owned();
    apply(
        &env,
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "deployer" } }),
    )
    .await;
    grant(&env, &["configmaps"]).await;
    apply(
        &env,
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "deployer" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer" },
            "subjects": [{ "kind": "ServiceAccount", "name": "deployer", "namespace": ns }],
        }),
    )
    .await;
    let project: Project = serde_json::from_value(json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "Project",
        "metadata": { "name": "team-a", "namespace": ns },
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": ns }],
            "destinationServiceAccounts": [{ "server": "https://kubernetes.default.svc", "namespace": ns,
                                             "defaultServiceAccount": "deployer" }],
        }
    }))
    .expect("project");
    Api::<Project>::namespaced(env.client.clone(), &ns)
        .patch(
            "team-a",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&project),
        )
        .await
        .expect("project");
    env.write("app/cm.yaml", &config_map("settings", "color", "blue"));
    let v1 = env.commit_push("a config map the account may write");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "web",
        "app",
        automated(true, true),
        json!({ "project": "team-a", "destination": { "namespace": ns } }),
        json!({}),
    )
    .await;
    env.wait_synced("web", &v1).await;
    env.wait_config_map("settings", "color", "blue").await;

    // A Secret the account may not write: the cluster refuses it, and the ConfigMap change of the same commit is
    // not applied either.
    env.write("app/cm.yaml", &config_map("settings", "color", "green"));
    env.write(
        "app/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  token: not-a-real-one\n",
    );
    env.commit_push("a secret");
    let app = env
        .wait_app("web", "refused by the cluster's RBAC", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| o.message.contains("secrets"))
        })
        .await;
    let message = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .map(|o| o.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "User \"system:serviceaccount:{ns}:deployer\" cannot"
        )),
        "{message}"
    );
    assert!(message.contains("resource \"secrets\""), "{message}");
    assert!(!message.contains("not-a-real-one"), "{message}");
    assert_eq!(
        env.config_map_data("settings").await.expect("config map")["color"],
        "blue",
        "nothing of the refused sync is applied"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), &ns);
    assert!(secrets.get_opt("token").await.expect("read").is_none());

    // The team is granted Secrets: a new commit goes through.
    grant(&env, &["configmaps", "secrets"]).await;
    env.write("app/cm.yaml", &config_map("settings", "color", "red"));
    let v3 = env.commit_push("granted");
    env.wait_synced("web", &v3).await;
    env.wait_config_map("settings", "color", "red").await;
    assert!(secrets.get_opt("token").await.expect("read").is_some());
}
