//! The API server's ceiling for time to production: the same namespaces and objects one scale deploys, written
//! straight to a fresh test cluster with no controller, as parallel server-side apply PATCHes and as parallel
//! creates; the clock stops when every Deployment reports all its replicas available, as it does for Kedge.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::{cluster, repo};

/// Applications written at the same time (each: its namespace, then its five objects at once).
const IN_FLIGHT: usize = 64;

/// How one way of writing went.
#[derive(Debug, Clone)]
pub struct Way {
    /// Every object written.
    pub written: Duration,
    /// Every Deployment available.
    pub available: Duration,
    /// CPU seconds of the test API server (with its in-server controllers) and of etcd over the phase.
    pub apiserver_cpu: f64,
    pub etcd_cpu: f64,
}

/// The ceiling at one scale.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub apply: Way,
    pub create: Way,
}

/// How the objects are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Apply,
    Create,
}

/// Measures both ways for `apps` applications on a fresh cluster of its own (stopped at the end).
pub async fn measure(root: &Path, apps: usize) -> Result<Ceiling> {
    let name = format!("bench-ceiling-{apps}");
    let kubeconfig = cluster::up(root, &name)?;
    let result = async {
        let (client, _) = cluster::client(&kubeconfig).await?;
        let apply = way(&client, &kubeconfig, apps, Write::Apply, "ssa").await?;
        let create = way(&client, &kubeconfig, apps, Write::Create, "post").await?;
        Ok(Ceiling { apply, create })
    }
    .await;
    cluster::down(root, &name);
    result
}

/// The objects of application `i` as the repository holds them, with their namespace set.
fn objects_of(i: usize, namespace: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (path, text) in repo::app_files(i, 0) {
        for doc in kedge_render::parse::parse_yaml(&path, text.as_bytes())? {
            let mut v = doc.value;
            v["metadata"]["namespace"] = json!(namespace);
            out.push(v);
        }
    }
    Ok(out)
}

fn resource_of(o: &Value) -> ApiResource {
    let api_version = o["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = o["kind"].as_str().unwrap_or_default();
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

async fn write(client: &kube::Client, how: Write, o: &Value) -> Result<(), kube::Error> {
    let ar = resource_of(o);
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match o["metadata"]["namespace"].as_str() {
        Some(ns) if ar.kind != "Namespace" => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    match how {
        Write::Apply => api
            .patch(
                name,
                &PatchParams::apply("ceiling").force(),
                &Patch::Apply(o),
            )
            .await
            .map(drop),
        Write::Create => {
            let obj: DynamicObject =
                serde_json::from_value(o.clone()).map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &obj).await.map(drop)
        }
    }
}

/// Whether a Deployment reports all its replicas available.
fn available(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.as_ref();
    status.and_then(|s| s.observed_generation) >= d.metadata.generation
        && status.and_then(|s| s.available_replicas).unwrap_or(0) >= want
        && status.and_then(|s| s.updated_replicas).unwrap_or(0) >= want
}

async fn way(
    client: &kube::Client,
    kubeconfig: &Path,
    apps: usize,
    how: Write,
    prefix: &str,
) -> Result<Way> {
    let mut work = Vec::with_capacity(apps);
    for i in 0..apps {
        let ns = format!("{prefix}-{}", repo::app_name(i));
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        work.push((namespace, objects_of(i, &ns)?));
    }
    let deployments = work
        .iter()
        .flat_map(|(_, objects)| objects.iter())
        .filter(|o| o["kind"] == "Deployment")
        .count();

    // Every Deployment's availability, from one watch started before the first write.
    let ready_api: Api<Deployment> = Api::all(client.clone());
    let prefix_ns = format!("{prefix}-");
    let (tx, mut rx) = tokio::sync::watch::channel(0usize);
    let watch = tokio::spawn(async move {
        let mut ready: HashSet<(String, String)> = HashSet::new();
        let mut stream = watcher(ready_api, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let seen: Vec<Deployment> = match event {
                watcher::Event::Apply(d) | watcher::Event::InitApply(d) => vec![d],
                _ => continue,
            };
            for d in seen {
                let ns = d.metadata.namespace.clone().unwrap_or_default();
                if ns.starts_with(&prefix_ns) && available(&d) {
                    ready.insert((ns, d.metadata.name.clone().unwrap_or_default()));
                }
            }
            if tx.send(ready.len()).is_err() {
                break;
            }
        }
    });

    let cpu = || cluster::cluster_cpu(kubeconfig);
    let (api0, etcd0) = cpu();
    let t0 = Instant::now();
    let failed: usize = futures::stream::iter(work)
        .map(|(namespace, objects)| async move {
            if write(client, how, &namespace).await.is_err() {
                return 1 + objects.len();
            }
            futures::future::join_all(objects.iter().map(|o| write(client, how, o)))
                .await
                .iter()
                .filter(|r| r.is_err())
                .count()
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0, |a, b| async move { a + b })
        .await;
    let written = t0.elapsed();
    if failed > 0 {
        watch.abort();
        bail!("{failed} of the ceiling's writes failed");
    }
    let deadline = Duration::from_secs(60) + Duration::from_millis(300 * apps as u64);
    let reached = tokio::time::timeout(deadline, rx.wait_for(|n| *n >= deployments)).await;
    let available = t0.elapsed();
    watch.abort();
    match reached {
        Ok(Ok(_)) => {}
        _ => bail!(
            "the ceiling's Deployments were not all available after {}s",
            deadline.as_secs()
        ),
    }
    let (api1, etcd1) = cpu();
    Ok(Way {
        written,
        available,
        apiserver_cpu: api1 - api0,
        etcd_cpu: etcd1 - etcd0,
    })
}
