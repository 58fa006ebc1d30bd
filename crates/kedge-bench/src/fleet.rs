//! Applications spread over several clusters: Kedge runs on the hub and deploys to the hub itself and to registered
//! clusters; time to production, and the requests each cluster's API server received.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::cluster::{self, Counts};
use crate::env::{APPS_NS, Env};
use crate::procstat;

/// What one run measured.
#[derive(Debug)]
pub struct Figures {
    pub apps: usize,
    pub ttp: Duration,
    pub peak_rss_mib: f64,
    /// Per cluster: its name, applications on it, and the requests its API server received during the time to
    /// production (writes, dry runs, reads; the in-server controllers' own left out).
    pub clusters: Vec<(String, usize, (f64, f64, f64))>,
}

fn split(c: &Counts) -> (f64, f64, f64) {
    let (mut w, mut d, mut r) = (0.0, 0.0, 0.0);
    for ((verb, dry), v) in c {
        if *dry {
            d += v;
        } else if matches!(
            verb.as_str(),
            "CREATE" | "UPDATE" | "PATCH" | "APPLY" | "DELETE"
        ) {
            w += v;
        } else {
            r += v;
        }
    }
    (w, d, r)
}

/// Runs the scenario: `env` is the hub; `others` more clusters are started and registered, and application `i`
/// deploys to cluster `i % (others + 1)` (0 being the hub).
pub async fn run(env: &mut Env, apps: usize, others: usize) -> Result<Figures> {
    let mut names = vec!["in-cluster".to_owned()];
    let mut clients = vec![env.client.clone()];
    let mut started = Vec::new();
    let result = async {
        for k in 1..=others {
            let name = format!("{}-c{k}", env.name);
            let kubeconfig = cluster::up(&env.tools.root, &name)?;
            started.push(name.clone());
            let (client, _) = cluster::client(&kubeconfig).await?;
            register(env, &format!("c{k}"), &kubeconfig).await?;
            names.push(format!("c{k}"));
            clients.push(client);
        }
        let before = counts(&clients).await?;
        env.commit_apps(0..apps, 0)?;
        env.reset_peak();
        let t0 = Instant::now();
        env.push()?;
        let dest = names.clone();
        env.create_apps_with(0..apps, move |i, app| {
            app["spec"]["destination"]["name"] = json!(dest[i % dest.len()]);
        })
        .await?;
        env.require_ready(apps).await?;
        let ttp = t0.elapsed();
        let after = counts(&clients).await?;
        let per = names
            .iter()
            .enumerate()
            .map(|(k, n)| {
                let on = (0..apps).filter(|i| i % names.len() == k).count();
                let d = cluster::delta(&after[k], &before[k]);
                (n.clone(), on, split(&d))
            })
            .collect();
        Ok(Figures {
            apps,
            ttp,
            peak_rss_mib: procstat::mib(env.proc()?.peak_rss),
            clusters: per,
        })
    }
    .await;
    for name in started {
        cluster::down(&env.tools.root, &name);
    }
    result
}

async fn counts(clients: &[kube::Client]) -> Result<Vec<Counts>> {
    let mut out = Vec::new();
    for c in clients {
        out.push(cluster::server_counts(c).await?.rest);
    }
    Ok(out)
}

/// Registers the cluster of `kubeconfig` in the hub as Cluster `name` (Secret `NAME-creds` holds the kubeconfig).
async fn register(env: &Env, name: &str, kubeconfig: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("failed to read {}", kubeconfig.display()))?;
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .context("no server in the kubeconfig")?
        .to_owned();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), APPS_NS);
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-creds")}, "stringData": {"kubeconfig": text}});
    secrets
        .patch(
            &format!("{name}-creds"),
            &PatchParams::apply("kedge-bench"),
            &Patch::Apply(&secret),
        )
        .await
        .context("failed to create a cluster secret")?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kedge.dev", "v1alpha1", "Cluster"),
        "clusters",
    );
    let clusters: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), APPS_NS, &ar);
    let obj = json!({"apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {"server": server, "secretRef": {"name": format!("{name}-creds")}}});
    clusters
        .patch(
            name,
            &PatchParams::apply("kedge-bench"),
            &Patch::Apply(&obj),
        )
        .await
        .context("failed to register a cluster")?;
    Ok(())
}

/// The report's section.
pub fn render(f: &Figures) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Applications over {} clusters\n\n{} applications (5 objects each) spread evenly over the hub Kedge runs \
         in and {} registered clusters; one `kedge run` on the hub.\n",
        f.clusters.len(),
        f.apps,
        f.clusters.len() - 1
    );
    let _ = writeln!(
        s,
        "Time to production (push to all Synced and Healthy): {:.1} s; controller peak RSS {:.0} MiB.\n",
        f.ttp.as_secs_f64(),
        f.peak_rss_mib
    );
    let _ = writeln!(
        s,
        "| cluster | applications | writes | dry runs | reads | requests per object |\n|---|---|---|---|---|---|"
    );
    for (name, on, (w, d, r)) in &f.clusters {
        let objects = (on * crate::repo::OBJECTS_PER_APP).max(1) as f64;
        let _ = writeln!(
            s,
            "| {name} | {on} | {w:.0} | {d:.0} | {r:.0} | {:.2} |",
            (w + d + r) / objects
        );
    }
    let _ = writeln!(
        s,
        "\nThe hub's counts include the Applications' own traffic (their creation, status writes, the Leases)."
    );
    s
}
