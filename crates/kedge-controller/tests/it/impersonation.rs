//! Syncs with the team's own rights: a project maps a destination to a ServiceAccount, and every request of the
//! application's passes impersonates it on an API server that enforces RBAC, so that what the account may not do
//! is refused by the cluster, named with the verb, the resource and the account, and nothing of that sync applied.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use common::*;
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
    apply_project(
        &env,
        "team-a",
        json!({
            "sourceRepos": ["*"],
            "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": ns }],
            "destinationServiceAccounts": [{ "server": "https://kubernetes.default.svc", "namespace": ns,
                                             "defaultServiceAccount": "deployer" }],
        }),
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_controller_writes_only_through_the_projects_accounts() {
    let env = Env::rbac("imp-lp").await;
    let ns = env.ns().to_owned();
    // The controller as `kedge install --least-privilege` sets it up (its ClusterRole named after this test, so that
    // tests running at once do not share it).
    let role_name = format!("{ns}-controller");
    let mut cluster_role = kedge_controller::install::cluster_role(true);
    cluster_role["metadata"]["name"] = json!(role_name);
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(env.client.clone());
    roles
        .patch(
            &role_name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&cluster_role),
        )
        .await
        .expect("cluster role");
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
        Api::all(env.client.clone());
    bindings
        .patch(
            &role_name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": { "name": role_name },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name },
                "subjects": [{ "kind": "ServiceAccount", "name": "kedge-controller", "namespace": ns }],
            })),
        )
        .await
        .expect("cluster role binding");
    apply(
        &env,
        "rbac.authorization.k8s.io/v1",
        "Role",
        "roles",
        kedge_controller::install::namespace_role(&ns),
    )
    .await;
    apply(
        &env,
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "kedge-controller" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kedge-controller" },
            "subjects": [{ "kind": "ServiceAccount", "name": "kedge-controller", "namespace": ns }],
        }),
    )
    .await;
    for sa in ["kedge-controller", "deployer"] {
        apply(
            &env,
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": sa } }),
        )
        .await;
    }
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
    for (name, accounts) in [
        (
            "team-a",
            json!([{ "server": "https://kubernetes.default.svc", "defaultServiceAccount": "deployer" }]),
        ),
        ("open", json!([])),
    ] {
        apply_project(
            &env,
            name,
            json!({
                "sourceRepos": ["*"],
                "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": ns }],
                "destinationServiceAccounts": accounts,
            }),
        )
        .await;
    }
    env.write("team/cm.yaml", &config_map("team", "k", "v"));
    env.write("open/cm.yaml", &config_map("open", "k", "v"));
    let v1 = env.commit_push("two applications");
    // The controller runs as its own ServiceAccount, with only the rights above (bindings reach the API server's
    // authorizer through its watches: wait until they are in force).
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig file");
    let identity = kedge_testkit::Identity::ServiceAccount {
        namespace: ns.clone(),
        name: "kedge-controller".into(),
    };
    env.cluster
        .write_kubeconfig_as(&identity, kubeconfig.path())
        .await
        .expect("controller kubeconfig");
    let as_controller = env.cluster.client_as(&identity).await.expect("client");
    kedge_testkit::wait_for(
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(100),
        || async {
            Api::<kedge_api::Application>::namespaced(as_controller.clone(), &ns)
                .list(&Default::default())
                .await
                .ok()
        },
    )
    .await
    .expect("the controller's rights are in force");
    let _controller = RunningController::start(kubeconfig.path(), env.run_config("c1"));
    for (name, project) in [("team", "team-a"), ("open", "open")] {
        env.create_app_with(
            name,
            name,
            automated(true, true),
            json!({ "project": project, "destination": { "namespace": ns } }),
            json!({}),
        )
        .await;
    }
    // Through the project's account: synced.
    env.wait_synced("team", &v1).await;
    env.wait_config_map("team", "k", "v").await;
    // Without one, the controller's own rights do not reach the namespace's ConfigMaps.
    let app = env
        .wait_app(
            "open",
            "refused: the controller has no rights of its own there",
            |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.message.contains("kedge-controller\" cannot"))
                        || s.operation_state
                            .as_ref()
                            .is_some_and(|o| o.message.contains("kedge-controller\" cannot"))
                })
            },
        )
        .await;
    assert!(
        env.config_map_data("open").await.is_none(),
        "{:?}",
        app.status
    );
    drop(_controller);
    let _ = bindings.delete(&role_name, &Default::default()).await;
    let _ = roles.delete(&role_name, &Default::default()).await;
}
