//! End to end: `CreateNamespace=true` creates a destination namespace that does not exist (as Argo CD does) and the
//! application's objects go into it; the namespace is not tracked, so the application never prunes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, automated, config_map, synced_at};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_creates_the_destination_and_keeps_it_untracked() {
    let env = Env::new("create-ns").await;
    let dest = format!("{}-dest", env.ns());
    env.write(
        "app/settings.yaml",
        &config_map("settings", "mode", "created"),
    );
    let sha = env.commit_push("settings");
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    assert!(namespaces.get_opt(&dest).await.unwrap().is_none());
    let mut policy = automated(true, true);
    policy["syncOptions"] = json!(["CreateNamespace=true"]);
    env.create_app_with(
        "web",
        "app",
        policy,
        json!({"destination": {"namespace": dest}}),
        json!({}),
    )
    .await;
    let _controller = env.start_controller("c1");
    let app = env.wait_app("web", "synced", |a| synced_at(a, &sha)).await;

    let created = namespaces.get(&dest).await.unwrap();
    let cm: Api<ConfigMap> = Api::namespaced(env.client.clone(), &dest);
    let settings = cm.get("settings").await.unwrap();
    assert_eq!(
        settings.data.unwrap()["mode"],
        "created",
        "the object went into the created namespace"
    );
    let inventory = &app.status.as_ref().unwrap().inventory;
    assert!(
        inventory.iter().all(|r| r.kind != "Namespace"),
        "the namespace is not tracked: {inventory:?}"
    );
    assert!(
        created
            .metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| k != "kedge.dev/tracking-id"),
        "no tracking id on the namespace"
    );
    namespaces
        .delete(&dest, &DeleteParams::default())
        .await
        .unwrap();
}
