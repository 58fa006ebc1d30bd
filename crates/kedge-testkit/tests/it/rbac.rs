//! The RBAC-enforcing test cluster (`TestCluster::get_rbac`): ServiceAccounts get exactly what their bindings
//! grant, with their own tokens and when the admin impersonates them.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kedge_testkit::{Identity, TestCluster, TestNamespace, kubectl, wait_for};
use kube::api::{Api, ObjectMeta, PostParams};

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// The suite's RBAC cluster: the test cluster's name plus `-rbac`.
fn cluster_name() -> String {
    let base = std::env::var(kedge_testkit::CLUSTER_ENV)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    format!("{base}-rbac")
}

fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

/// A namespace with a secret `s` and the ServiceAccounts `reader` (bound to a Role that reads secrets) and
/// `nobody` (no bindings).
async fn setup(cluster: &TestCluster) -> Result<TestNamespace> {
    let ns = cluster.namespace("rbac").await?;
    let n = ns.name();
    let client = cluster.client();
    let pp = PostParams::default();
    for sa in ["reader", "nobody"] {
        Api::<ServiceAccount>::namespaced(client.clone(), n)
            .create(
                &pp,
                &ServiceAccount {
                    metadata: meta(sa, n),
                    ..Default::default()
                },
            )
            .await?;
    }
    let secret = Secret {
        metadata: meta("s", n),
        string_data: Some([("k".to_owned(), "v".to_owned())].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&pp, &secret)
        .await?;
    let role = Role {
        metadata: meta("secret-reader", n),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), n)
        .create(&pp, &role)
        .await?;
    let binding = RoleBinding {
        metadata: meta("secret-reader", n),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "secret-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(n.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client, n)
        .create(&pp, &binding)
        .await?;
    Ok(ns)
}

/// Reads the secret as `identity`: Ok(()) or the status code and message of the refusal.
async fn read_secret(
    cluster: &TestCluster,
    ns: &str,
    identity: &Identity,
) -> Result<Result<(), (u16, String)>> {
    let client = cluster.client_as(identity).await?;
    match Api::<Secret>::namespaced(client, ns).get("s").await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) => Ok(Err((status.code, status.message))),
        Err(e) => Err(e).context("get the secret"),
    }
}

async fn check_access(
    cluster: &TestCluster,
    ns: &str,
    reader: Identity,
    nobody: Identity,
) -> Result<()> {
    // The binding reaches the server's authorizer through an informer: wait for it.
    wait_for(TIMEOUT, POLL, || async {
        matches!(read_secret(cluster, ns, &reader).await, Ok(Ok(())))
    })
    .await
    .context("the bound ServiceAccount never could read the secret")?;
    let refused = read_secret(cluster, ns, &nobody).await?;
    let want = format!(
        "secrets \"s\" is forbidden: User \"{}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"{ns}\"",
        nobody.username()
    );
    ensure!(
        refused == Err((403, want.clone())),
        "got {refused:?}, want 403 {want:?}"
    );
    Ok(())
}

#[tokio::test]
async fn service_account_tokens_get_what_their_bindings_grant() -> Result<()> {
    let cluster = TestCluster::get_rbac(&cluster_name()).await?;
    let ns = setup(&cluster).await?;
    let n = ns.name();
    check_access(
        &cluster,
        n,
        Identity::service_account(n, "reader"),
        Identity::service_account(n, "nobody"),
    )
    .await?;

    // Without rights on secrets elsewhere, and none to list them cluster-wide.
    let client = cluster
        .client_as(&Identity::service_account(n, "reader"))
        .await?;
    let all = Api::<Secret>::all(client).list(&Default::default()).await;
    ensure!(
        matches!(&all, Err(kube::Error::Api(s)) if s.code == 403),
        "cluster-wide list: {all:?}"
    );
    Ok(())
}

#[tokio::test]
async fn impersonated_service_accounts_get_what_their_bindings_grant() -> Result<()> {
    let cluster = TestCluster::get_rbac(&cluster_name()).await?;
    let ns = setup(&cluster).await?;
    let n = ns.name();
    check_access(
        &cluster,
        n,
        Identity::impersonated_service_account(n, "reader"),
        Identity::impersonated_service_account(n, "nobody"),
    )
    .await?;
    // A user (and its groups) without bindings.
    check_access(
        &cluster,
        n,
        Identity::impersonated_service_account(n, "reader"),
        Identity::impersonated_user("someone", &["some-team"]),
    )
    .await
}

#[tokio::test]
async fn kubeconfigs_for_kubectl_act_as_the_service_account() -> Result<()> {
    let cluster = TestCluster::get_rbac(&cluster_name()).await?;
    let ns = setup(&cluster).await?;
    let n = ns.name();
    let dir = tempfile::tempdir()?;
    for (sa, want) in [("reader", "yes"), ("nobody", "no")] {
        let path = dir.path().join(format!("{sa}.kubeconfig"));
        cluster
            .write_kubeconfig_as(&Identity::service_account(n, sa), &path)
            .await?;
        let whoami = kubectl(
            &path,
            [
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
            None,
        )
        .await?
        .into_result()?;
        ensure!(
            whoami == format!("system:serviceaccount:{n}:{sa}"),
            "whoami: {whoami}"
        );
        wait_for(TIMEOUT, POLL, || async {
            let out = kubectl(&path, ["auth", "can-i", "get", "secrets"], None).await;
            matches!(out, Ok(o) if o.stdout.trim() == want)
        })
        .await
        .with_context(|| format!("kubectl auth can-i get secrets as {sa}: want {want}"))?;
    }
    Ok(())
}
