//! Smoke tests of the proving ground: the test cluster behaves like a real API server for what Kedge relies on,
//! through kubectl and through kube-rs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kedge_testkit::{TestCluster, TestNamespace, wait_for};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

async fn setup(prefix: &str) -> Result<(TestCluster, TestNamespace)> {
    let cluster = TestCluster::from_env().await?;
    let ns = cluster.namespace(prefix).await?;
    Ok((cluster, ns))
}

fn cm_api(cluster: &TestCluster, ns: &TestNamespace) -> Api<ConfigMap> {
    Api::namespaced(cluster.client(), ns.name())
}

fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A CRD `widgets.<group>` with a defaulted `spec.size`, deleted on drop.
struct Crd {
    kubeconfig: PathBuf,
    group: String,
}

impl Crd {
    async fn create(cluster: &TestCluster, ns: &TestNamespace) -> Result<Self> {
        let group = format!("{}.kedge.test", ns.name());
        let manifest = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("widgets.{group}")},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "default": 3},
                            "color": {"type": "string"}
                        }}
                    }}}
                }]
            }
        });
        let crd = Self {
            kubeconfig: cluster.kubeconfig().to_owned(),
            group,
        };
        cluster
            .kubectl_stdin(["apply", "-f", "-"], &manifest.to_string())
            .await?
            .into_result()?;
        let api: Api<CustomResourceDefinition> = Api::all(cluster.client());
        let name = crd.name();
        wait_for(TIMEOUT, POLL, || async {
            let crd = api.get_opt(&name).await.ok().flatten()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await
        .context("CRD never Established")?;
        Ok(crd)
    }

    fn name(&self) -> String {
        format!("widgets.{}", self.group)
    }

    fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, "v1", "Widget"),
            "widgets",
        )
    }
}

impl Drop for Crd {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "crd",
                &self.name(),
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn discovery_lists_builtins_and_crds() -> Result<()> {
    let (cluster, ns) = setup("smoke-discovery").await?;
    let crd = Crd::create(&cluster, &ns).await?;

    // kubectl
    let resources = cluster.kubectl_ok(["api-resources", "-o", "name"]).await?;
    for want in [
        "configmaps",
        "deployments.apps",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        ensure!(
            resources.lines().any(|l| l == want),
            "kubectl api-resources lacks {want}:\n{resources}"
        );
    }
    let crd_name = crd.name();
    // Discovery of a new CRD may lag a moment behind Established.
    wait_for(TIMEOUT, POLL, || async {
        let out = cluster
            .kubectl_ok(["api-resources", "--api-group", &crd.group, "-o", "name"])
            .await
            .ok()?;
        out.lines().any(|l| l == crd_name).then_some(())
    })
    .await
    .context("kubectl api-resources never listed the CRD")?;

    // kube-rs
    let discovery = Discovery::new(cluster.client()).run().await?;
    let apps = discovery.get("apps").context("no apps group")?;
    ensure!(
        apps.recommended_kind("Deployment").is_some(),
        "apps/Deployment not discovered"
    );
    ensure!(
        discovery
            .get("")
            .and_then(|g| g.recommended_kind("ConfigMap"))
            .is_some(),
        "v1/ConfigMap not discovered"
    );
    let group = discovery
        .get(&crd.group)
        .context("CRD group not discovered")?;
    let (resource, caps) = group
        .recommended_kind("Widget")
        .context("Widget not discovered")?;
    ensure!(resource.plural == "widgets");
    ensure!(caps.scope == kube::discovery::Scope::Namespaced);
    Ok(())
}

#[tokio::test]
async fn crd_default_is_applied() -> Result<()> {
    let (cluster, ns) = setup("smoke-crd-default").await?;
    let crd = Crd::create(&cluster, &ns).await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), ns.name(), &crd.resource());
    let obj = json!({
        "apiVersion": format!("{}/v1", crd.group), "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"color": "blue"}
    });
    let created = api
        .patch("w1", &PatchParams::apply("kedge-test"), &Patch::Apply(&obj))
        .await?;
    ensure!(
        created.data["spec"]["size"] == json!(3),
        "no default in {:?}",
        created.data
    );
    // kubectl sees the same.
    let size = cluster
        .kubectl_ok([
            "get",
            &format!("widgets.{}", crd.group),
            "w1",
            "-n",
            ns.name(),
            "-o",
            "jsonpath={.spec.size}",
        ])
        .await?;
    ensure!(size == "3", "kubectl saw size {size:?}");
    Ok(())
}

fn managers(cm: &ConfigMap) -> Vec<(String, String)> {
    cm.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn ssa_twice_keeps_managed_fields_and_prunes_a_left_out_field() -> Result<()> {
    let (cluster, ns) = setup("smoke-ssa").await?;
    let api = cm_api(&cluster, &ns);
    let pp = PatchParams::apply("kedge-test");
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
    let cm = api.patch("c", &pp, &Patch::Apply(&first)).await?;
    ensure!(
        managers(&cm).contains(&("kedge-test".into(), "Apply".into())),
        "{:?}",
        managers(&cm)
    );
    let rv1 = cm.metadata.resource_version.clone();

    // The same apply again is a no-op: no new resourceVersion.
    let again = api.patch("c", &pp, &Patch::Apply(&first)).await?;
    ensure!(
        again.metadata.resource_version == rv1,
        "identical apply changed the object"
    );

    // Leaving `b` out of the next apply removes it.
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let cm = api.patch("c", &pp, &Patch::Apply(&second)).await?;
    let data = cm.data.unwrap_or_default();
    ensure!(
        data.get("a").map(String::as_str) == Some("1") && !data.contains_key("b"),
        "{data:?}"
    );

    // The same through kubectl.
    let yaml = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k\ndata:\n{data}")
    };
    let apply = [
        "apply",
        "--server-side",
        "--field-manager=kubectl-test",
        "-n",
        ns.name(),
        "-f",
        "-",
    ];
    cluster
        .kubectl_stdin(apply, &yaml("  x: \"1\"\n  y: \"2\"\n"))
        .await?
        .into_result()?;
    cluster
        .kubectl_stdin(apply, &yaml("  x: \"1\"\n"))
        .await?
        .into_result()?;
    let out = cluster
        .kubectl_ok([
            "get",
            "cm",
            "k",
            "-n",
            ns.name(),
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await?;
    let cm: Value = serde_json::from_str(&out)?;
    ensure!(cm["data"] == json!({"x": "1"}), "{}", cm["data"]);
    let fields = cm["metadata"]["managedFields"]
        .as_array()
        .context("no managedFields")?;
    ensure!(
        fields
            .iter()
            .any(|f| f["manager"] == "kubectl-test" && f["operation"] == "Apply"),
        "{fields:?}"
    );
    Ok(())
}

#[tokio::test]
async fn dry_run_ssa_changes_nothing() -> Result<()> {
    let (cluster, ns) = setup("smoke-dry-run").await?;
    let api = cm_api(&cluster, &ns);
    let obj = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": v}});
    let before = api
        .patch(
            "c",
            &PatchParams::apply("kedge-test"),
            &Patch::Apply(&obj("1")),
        )
        .await?;
    let mut dry = PatchParams::apply("kedge-test");
    dry.dry_run = true;
    let answered = api.patch("c", &dry, &Patch::Apply(&obj("2"))).await?;
    ensure!(
        answered
            .data
            .unwrap_or_default()
            .get("a")
            .map(String::as_str)
            == Some("2"),
        "dry run answer lacks the change"
    );
    let after = api.get("c").await?;
    ensure!(
        after.metadata.resource_version == before.metadata.resource_version,
        "dry run wrote"
    );
    ensure!(after.data.unwrap_or_default().get("a").map(String::as_str) == Some("1"));

    // Nothing is created by a dry run either.
    let out = cluster
        .kubectl_stdin(
            [
                "apply",
                "--server-side",
                "--dry-run=server",
                "-n",
                ns.name(),
                "-f",
                "-",
            ],
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ghost\n",
        )
        .await?
        .into_result()?;
    ensure!(out.contains("ghost"), "{out}");
    ensure!(
        api.get_opt("ghost").await?.is_none(),
        "dry run created an object"
    );
    Ok(())
}

#[tokio::test]
async fn field_manager_conflict_is_409_and_force_wins() -> Result<()> {
    let (cluster, ns) = setup("smoke-conflict").await?;
    let api = cm_api(&cluster, &ns);
    let obj = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": v}});
    api.patch(
        "c",
        &PatchParams::apply("owner-a"),
        &Patch::Apply(&obj("1")),
    )
    .await?;
    let err = api
        .patch(
            "c",
            &PatchParams::apply("owner-b"),
            &Patch::Apply(&obj("2")),
        )
        .await
        .err()
        .context("a conflicting apply must fail")?;
    ensure!(api_status(&err) == Some(409), "expected 409, got {err}");
    let cm = api
        .patch(
            "c",
            &PatchParams::apply("owner-b").force(),
            &Patch::Apply(&obj("2")),
        )
        .await?;
    ensure!(
        cm.data
            .as_ref()
            .and_then(|d| d.get("a"))
            .map(String::as_str)
            == Some("2")
    );
    let owners = managers(&cm);
    ensure!(owners.iter().any(|(m, _)| m == "owner-b"), "{owners:?}");

    // kubectl: conflict without --force-conflicts, success with it.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"3\"\n";
    let out = cluster
        .kubectl_stdin(
            [
                "apply",
                "--server-side",
                "--field-manager=owner-c",
                "-n",
                ns.name(),
                "-f",
                "-",
            ],
            yaml,
        )
        .await?;
    ensure!(
        !out.success && out.stderr.to_lowercase().contains("conflict"),
        "{out:?}"
    );
    cluster
        .kubectl_stdin(
            [
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=owner-c",
                "-n",
                ns.name(),
                "-f",
                "-",
            ],
            yaml,
        )
        .await?
        .into_result()?;
    Ok(())
}

#[tokio::test]
async fn watch_sees_added_modified_deleted() -> Result<()> {
    let (cluster, ns) = setup("smoke-watch").await?;
    let api = cm_api(&cluster, &ns);

    // kube-rs: start the watch from the list's resourceVersion, then make the changes. Only our objects are
    // watched: the namespace also gets a kube-root-ca.crt ConfigMap.
    let rv = api
        .list_metadata(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(
            &WatchParams::default().fields("metadata.name=w").timeout(60),
            &rv,
        )
        .await?
        .boxed();
    let obj = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"a": v}});
    let pp = PatchParams::apply("kedge-test");
    api.patch("w", &pp, &Patch::Apply(&obj("1"))).await?;
    api.patch("w", &pp, &Patch::Apply(&obj("2"))).await?;
    api.delete("w", &DeleteParams::default()).await?;
    let mut seen = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = stream.try_next().await? {
            match event {
                WatchEvent::Added(cm) => {
                    seen.push(("ADDED", cm.metadata.name, cm.metadata.resource_version))
                }
                WatchEvent::Modified(cm) => {
                    seen.push(("MODIFIED", cm.metadata.name, cm.metadata.resource_version))
                }
                WatchEvent::Deleted(cm) => {
                    seen.push(("DELETED", cm.metadata.name, cm.metadata.resource_version));
                    break;
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => bail!("watch error: {e:?}"),
            }
        }
        Ok(())
    })
    .await
    .context("watch did not deliver DELETED in time")??;
    let kinds: Vec<&str> = seen.iter().map(|e| e.0).collect();
    ensure!(
        kinds == ["ADDED", "MODIFIED", "DELETED"],
        "list at {rv}, then {seen:?}"
    );

    // kubectl watches the list: it resumes at the list's resourceVersion, so the listed object's ADDED comes first
    // and every change made after it is seen.
    api.patch(
        "k",
        &pp,
        &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k"}})),
    )
    .await?;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "get",
            "configmaps",
            "-n",
            ns.name(),
            "--field-selector=metadata.name=k",
            "--watch",
            "--output-watch-events",
            "--no-headers",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut events = Vec::new();
    let result = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            let kind = line.split_whitespace().next().unwrap_or("").to_owned();
            events.push(kind.clone());
            match kind.as_str() {
                "ADDED" => {
                    api.patch(
                        "k",
                        &pp,
                        &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "k"}, "data": {"b": "1"}})),
                    )
                    .await?;
                }
                "MODIFIED" => {
                    api.delete("k", &DeleteParams::default()).await?;
                }
                "DELETED" => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await;
    let _ = child.kill().await;
    result.context("kubectl watch did not deliver DELETED in time")??;
    ensure!(events == ["ADDED", "MODIFIED", "DELETED"], "{events:?}");
    Ok(())
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image, "ports": [{"containerPort": 8080}]}]}
            }
        }
    })
}

#[tokio::test]
async fn deployment_defaults_are_filled_in() -> Result<()> {
    let (cluster, ns) = setup("smoke-defaults").await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client(), ns.name());
    let d = api
        .patch(
            "web",
            &PatchParams::apply("kedge-test"),
            &Patch::Apply(&deployment("web", "nginx:1.27")),
        )
        .await?;
    let spec = d.spec.context("no spec")?;
    ensure!(spec.replicas == Some(1), "replicas {:?}", spec.replicas);
    ensure!(spec.revision_history_limit == Some(10));
    ensure!(spec.progress_deadline_seconds == Some(600));
    let strategy = spec.strategy.context("no strategy")?;
    ensure!(strategy.type_.as_deref() == Some("RollingUpdate"));
    let pod = spec.template.spec.context("no pod spec")?;
    ensure!(pod.restart_policy.as_deref() == Some("Always"));
    ensure!(pod.dns_policy.as_deref() == Some("ClusterFirst"));
    ensure!(pod.termination_grace_period_seconds == Some(30));
    let c = &pod.containers[0];
    ensure!(
        c.image_pull_policy.as_deref() == Some("IfNotPresent"),
        "{:?}",
        c.image_pull_policy
    );
    ensure!(c.termination_message_path.as_deref() == Some("/dev/termination-log"));
    let port = &c.ports.as_ref().context("no ports")?[0];
    ensure!(port.protocol.as_deref() == Some("TCP"));
    // `latest` pulls Always; kubectl sees the same object.
    cluster
        .kubectl_stdin(
            ["apply", "--server-side", "-n", ns.name(), "-f", "-"],
            &deployment("latest", "nginx").to_string(),
        )
        .await?
        .into_result()?;
    let policy = cluster
        .kubectl_ok([
            "get",
            "deployment",
            "latest",
            "-n",
            ns.name(),
            "-o",
            "jsonpath={.spec.template.spec.containers[0].imagePullPolicy}",
        ])
        .await?;
    ensure!(policy == "Always", "{policy:?}");
    Ok(())
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test]
async fn simulated_deployment_becomes_available_and_fail_image_does_not() -> Result<()> {
    let (cluster, ns) = setup("smoke-sim").await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client(), ns.name());
    let pp = PatchParams::apply("kedge-test");
    api.patch(
        "good",
        &pp,
        &Patch::Apply(&deployment("good", "nginx:1.27")),
    )
    .await?;
    api.patch(
        "bad",
        &pp,
        &Patch::Apply(&deployment("bad", "registry.test/fail:1")),
    )
    .await?;

    let good = wait_for(TIMEOUT, POLL, || async {
        let d = api.get("good").await.ok()?;
        (condition(&d, "Available").map(|c| c.0).as_deref() == Some("True")).then_some(d)
    })
    .await
    .context("Deployment never became Available")?;
    let status = good.status.context("no status")?;
    ensure!(
        status.observed_generation == good.metadata.generation,
        "observedGeneration lags"
    );
    ensure!(
        status.available_replicas == Some(1) && status.ready_replicas == Some(1),
        "{status:?}"
    );
    ensure!(
        condition_reason(&api, "good", "Progressing")
            .await?
            .as_deref()
            == Some("NewReplicaSetAvailable"),
        "Progressing reason"
    );
    // kubectl agrees.
    cluster
        .kubectl_ok([
            "wait",
            "--for=condition=Available",
            "deployment/good",
            "-n",
            ns.name(),
            "--timeout=30s",
        ])
        .await?;

    let bad = wait_for(TIMEOUT, POLL, || async {
        let d = api.get("bad").await.ok()?;
        (condition(&d, "Progressing") == Some(("False".into(), "ProgressDeadlineExceeded".into())))
            .then_some(d)
    })
    .await
    .context("failing Deployment never reported ProgressDeadlineExceeded")?;
    ensure!(
        condition(&bad, "Available").map(|c| c.0).as_deref() != Some("True"),
        "a fail image became Available"
    );
    Ok(())
}

async fn condition_reason(
    api: &Api<Deployment>,
    name: &str,
    type_: &str,
) -> Result<Option<String>> {
    Ok(condition(&api.get(name).await?, type_).map(|c| c.1))
}

#[tokio::test]
async fn gc_removes_an_orphaned_replicaset() -> Result<()> {
    let (cluster, ns) = setup("smoke-gc").await?;
    let cms = cm_api(&cluster, &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}}))?,
        )
        .await?;
    let uid = owner.metadata.uid.clone().context("no uid")?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(cluster.client(), ns.name());
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
        ]},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "orphan"}},
            "template": {"metadata": {"labels": {"app": "orphan"}},
                         "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}
        }
    }))?;
    rs_api.create(&PostParams::default(), &rs).await?;
    cms.delete("owner", &DeleteParams::background()).await?;
    wait_for(TIMEOUT, POLL, || async {
        matches!(rs_api.get_opt("orphan").await, Ok(None))
    })
    .await
    .context("the orphaned ReplicaSet was not garbage-collected")?;
    Ok(())
}

#[tokio::test]
async fn namespaces_are_unique_and_deleted_on_drop() -> Result<()> {
    let cluster = TestCluster::from_env().await?;
    let a = cluster.namespace("smoke-ns").await?;
    let b = TestNamespace::create(&cluster.client(), "smoke-ns").await?;
    ensure!(a.name() != b.name());
    let names = [a.name().to_owned(), b.name().to_owned()];
    drop(a);
    b.cleanup().await?;
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client());
    for name in names {
        // Gone, or terminating: deletion was requested.
        let ns = api.get_opt(&name).await?;
        let deleting = ns
            .as_ref()
            .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some());
        ensure!(deleting, "namespace {name} not being deleted");
    }
    ensure!(Path::new(cluster.kubeconfig()).is_file());
    Ok(())
}

/// `kubectl` through the kit, and a failing kubectl carries its stderr.
#[tokio::test]
async fn kubectl_helpers_capture_output() -> Result<()> {
    let (cluster, ns) = setup("smoke-kubectl").await?;
    let out = cluster
        .kubectl_ok([
            "get",
            "namespace",
            ns.name(),
            "-o",
            "jsonpath={.metadata.name}",
        ])
        .await?;
    ensure!(out == ns.name());
    let err = cluster
        .kubectl_ok(["get", "configmap", "missing", "-n", ns.name()])
        .await
        .err()
        .context("must fail")?;
    ensure!(err.to_string().contains("not found"), "{err}");
    let version = cluster.kubectl(["version", "-o", "json"]).await?;
    ensure!(
        version.success && version.stdout.contains("serverVersion"),
        "{version:?}"
    );
    Ok(())
}
