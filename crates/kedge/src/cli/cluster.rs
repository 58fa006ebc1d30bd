//! `kedge cluster ...`: register clusters applications can deploy to, list them with their state, show one, remove
//! one.
//!
//! The cluster running Kedge is reached with the usual `--kubeconfig`, `--context` and `-n` (Kedge's namespace,
//! where Clusters and their Secrets live); the cluster being added is named by `--cluster-context` in
//! `--cluster-kubeconfig` (default: the same kubeconfig).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Subcommand;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::{
    Application, CONNECTED, Cluster, ClusterCredentials, IN_CLUSTER_NAME, IN_CLUSTER_SERVER,
};
use kedge_controller::clusters::{client_for, kubeconfig_for, server_version};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde_json::json;

use super::app::{Output, age_of, print_table};
use super::kube::{KubeArgs, runtime};

/// Label on the Secrets `kedge cluster add` writes, and annotation naming their cluster (only those are removed
/// with it).
const SECRET_TYPE_LABEL: &str = "kedge.dev/secret-type";
const CLUSTER_ANNOTATION: &str = "kedge.dev/cluster";

/// `kedge cluster` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Register a cluster from a kubeconfig context: checks that it can be reached, then writes its credentials to a
    /// Secret and the Cluster (again: updates them).
    Add {
        /// The cluster's name, as applications name it in `spec.destination.name`.
        name: String,
        /// The kubeconfig holding the cluster's context (default: the one in use).
        #[arg(long)]
        cluster_kubeconfig: Option<PathBuf>,
        /// The cluster's context in it (default: its current context).
        #[arg(long)]
        cluster_context: Option<String>,
        /// Labels for selecting the cluster, `KEY=VALUE` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Namespaces applications may deploy to there (repeatable; default any).
        #[arg(long = "allow-namespace")]
        namespaces: Vec<String>,
    },
    /// List the registered clusters (the one running Kedge first, as `in-cluster`).
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one cluster with its state and the applications deploying to it.
    Get {
        /// Cluster name.
        name: String,
    },
    /// Remove a cluster (refused while applications deploy to it, unless --force) and the Secret `add` wrote.
    Remove {
        /// Cluster name.
        name: String,
        /// Remove it even though applications deploy to it (they then fail to sync until it returns).
        #[arg(long)]
        force: bool,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Runs a `kedge cluster` subcommand.
pub fn run(kube: &KubeArgs, cmd: ClusterCommand) -> anyhow::Result<u8> {
    runtime()?.block_on(async move {
        let (client, ns) = kube.client().await?;
        match cmd {
            ClusterCommand::Add {
                name,
                cluster_kubeconfig,
                cluster_context,
                labels,
                namespaces,
            } => {
                let path = cluster_kubeconfig
                    .or_else(|| kube.kubeconfig.clone())
                    .or_else(default_kubeconfig)
                    .context("no kubeconfig: pass --cluster-kubeconfig")?;
                add(
                    &client,
                    &ns,
                    &name,
                    &path,
                    cluster_context.as_deref(),
                    labels,
                    namespaces,
                )
                .await
            }
            ClusterCommand::List { output } => list(&client, &ns, output).await,
            ClusterCommand::Get { name } => get(&client, &ns, &name).await,
            ClusterCommand::Remove { name, force } => remove(&client, &ns, &name, force).await,
        }
    })
}

fn default_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube").join("config"))
}

/// A kubeconfig of the one context `context` (or the current one) of `path`, with every file it refers to read in,
/// so that it works from a Secret.
fn extract_context(path: &Path, context: Option<&str>) -> anyhow::Result<(Kubeconfig, String)> {
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("failed to read kubeconfig {}", path.display()))?;
    let name = context
        .map(str::to_owned)
        .or_else(|| kc.current_context.clone())
        .with_context(|| {
            format!(
                "{} has no current context: pass --cluster-context",
                path.display()
            )
        })?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .with_context(|| format!("context {name} not found in {}", path.display()))?;
    let inner = ctx
        .context
        .clone()
        .with_context(|| format!("context {name} is empty"))?;
    let mut cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == inner.cluster)
        .cloned()
        .with_context(|| format!("cluster {} of context {name} not found", inner.cluster))?;
    let mut user = match &inner.user {
        Some(u) => Some(
            kc.auth_infos
                .iter()
                .find(|a| &a.name == u)
                .cloned()
                .with_context(|| format!("user {u} of context {name} not found"))?,
        ),
        None => None,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let read = |file: &str| -> anyhow::Result<String> {
        let p = dir.join(file);
        let bytes = std::fs::read(&p).with_context(|| format!("failed to read {}", p.display()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let server = {
        let c = cluster
            .cluster
            .as_mut()
            .with_context(|| format!("cluster of context {name} is empty"))?;
        if let Some(file) = c.certificate_authority.take() {
            c.certificate_authority_data = Some(read(&file)?);
        }
        c.server
            .clone()
            .with_context(|| format!("cluster of context {name} has no server"))?
    };
    if let Some(auth) = user.as_mut().and_then(|u| u.auth_info.as_mut()) {
        if let Some(file) = auth.client_certificate.take() {
            auth.client_certificate_data = Some(read(&file)?);
        }
        if let Some(file) = auth.client_key.take() {
            auth.client_key_data = Some(read(&file)?.into());
        }
        if let Some(file) = auth.token_file.take() {
            let p = dir.join(&file);
            let token = std::fs::read_to_string(&p)
                .with_context(|| format!("failed to read {}", p.display()))?;
            auth.token = Some(token.trim().to_owned().into());
        }
    }
    let extracted = Kubeconfig {
        clusters: vec![cluster],
        auth_infos: user.into_iter().collect(),
        contexts: vec![ctx],
        current_context: Some(name),
        ..Kubeconfig::default()
    };
    Ok((extracted, server))
}

async fn add(
    client: &kube::Client,
    ns: &str,
    name: &str,
    path: &Path,
    context: Option<&str>,
    labels: Vec<(String, String)>,
    namespaces: Vec<String>,
) -> anyhow::Result<u8> {
    if name == IN_CLUSTER_NAME {
        bail!("{IN_CLUSTER_NAME} is the cluster running Kedge; it needs no registration");
    }
    let (kubeconfig, server) = extract_context(path, context)?;
    // JSON is YAML; the controller reads it back with the same kubeconfig reader.
    let text =
        serde_json::to_string_pretty(&kubeconfig).context("failed to write the kubeconfig")?;
    let remote = client_for(kubeconfig_for(
        &server,
        &ClusterCredentials::Kubeconfig(text.clone()),
    )?)
    .await?;
    let version = server_version(&remote, &server)
        .await
        .with_context(|| format!("cluster {name} not added"))?;
    let secret_name = format!("cluster-{name}");
    let apply = PatchParams::apply("kedge-cli").force();
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            &secret_name,
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": secret_name,
                    "labels": { SECRET_TYPE_LABEL: "cluster" },
                    "annotations": { CLUSTER_ANNOTATION: name },
                },
                "type": "Opaque",
                "stringData": { "kubeconfig": text },
            })),
        )
        .await
        .with_context(|| format!("failed to write Secret {ns}/{secret_name}"))?;
    let labels: BTreeMap<String, String> = labels.into_iter().collect();
    let mut spec = json!({ "server": server, "secretRef": { "name": secret_name } });
    if !namespaces.is_empty() {
        spec["namespaces"] = json!(namespaces);
    }
    Api::<Cluster>::namespaced(client.clone(), ns)
        .patch(
            name,
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster",
                "metadata": { "name": name, "labels": labels },
                "spec": spec,
            })),
        )
        .await
        .with_context(|| {
            format!(
                "failed to write Cluster {ns}/{name} (is the Cluster CRD installed? kedge install)"
            )
        })?;
    println!("cluster {name} added: {server}, Kubernetes {version}");
    Ok(0)
}

fn connected(c: &Cluster) -> (String, String) {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONNECTED))
        .map_or_else(
            || ("Unknown".to_owned(), "not checked yet".to_owned()),
            |c| (c.reason.clone(), c.message.clone()),
        )
}

async fn all_apps(client: &kube::Client) -> anyhow::Result<Vec<Application>> {
    Ok(Api::<Application>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("failed to list Applications")?
        .items)
}

fn in_cluster(app: &Application) -> bool {
    let d = &app.spec.destination;
    d.name.as_deref().is_none_or(|n| n == IN_CLUSTER_NAME)
        && d.server.as_deref().is_none_or(|s| s == IN_CLUSTER_SERVER)
}

async fn list(client: &kube::Client, ns: &str, output: Output) -> anyhow::Result<u8> {
    let clusters = Api::<Cluster>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .context("failed to list Clusters (is the Cluster CRD installed? kedge install)")?
        .items;
    match output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&clusters)?);
            return Ok(0);
        }
        Output::Yaml => {
            print!("{}", serde_saphyr::to_string(&clusters)?);
            return Ok(0);
        }
        Output::Table | Output::Wide => {}
    }
    let wide = output == Output::Wide;
    let apps = all_apps(client).await?;
    let mut header = vec!["NAME", "SERVER", "STATUS", "VERSION", "APPS", "AGE"];
    if wide {
        header.extend(["LAST CONTACT", "LABELS", "MESSAGE"]);
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    let here = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_default();
    let mut local = vec![
        IN_CLUSTER_NAME.to_owned(),
        IN_CLUSTER_SERVER.to_owned(),
        "Connected".to_owned(),
        here,
        apps.iter().filter(|a| in_cluster(a)).count().to_string(),
        String::new(),
    ];
    if wide {
        local.extend([
            String::new(),
            String::new(),
            "the cluster running Kedge".to_owned(),
        ]);
    }
    rows.push(local);
    for c in &clusters {
        let (reason, message) = connected(c);
        let status = c.status.clone().unwrap_or_default();
        let mut row = vec![
            c.name_any(),
            c.spec.server.clone(),
            reason,
            status.server_version.clone().unwrap_or_default(),
            apps.iter()
                .filter(|a| c.is_destination_of(a))
                .count()
                .to_string(),
            age_of(&c.metadata),
        ];
        if wide {
            let labels: Vec<String> = c.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
            row.extend([
                status.last_contact.unwrap_or_default(),
                labels.join(","),
                message,
            ]);
        }
        rows.push(row);
    }
    print_table(&rows);
    Ok(0)
}

async fn get(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<u8> {
    let cluster = Api::<Cluster>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .context("failed to read the Cluster")?
        .with_context(|| format!("cluster {name} not found in namespace {ns}"))?;
    let (reason, message) = connected(&cluster);
    let status = cluster.status.clone().unwrap_or_default();
    println!("Name:          {name}");
    println!("Server:        {}", cluster.spec.server);
    println!("Secret:        {}", cluster.spec.secret_ref.name);
    println!("Status:        {reason}: {message}");
    println!(
        "Version:       {}",
        status.server_version.unwrap_or_default()
    );
    println!("Last contact:  {}", status.last_contact.unwrap_or_default());
    if !cluster.spec.namespaces.is_empty() {
        println!("Namespaces:    {}", cluster.spec.namespaces.join(", "));
    }
    let labels: Vec<String> = cluster
        .labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("Labels:        {}", labels.join(","));
    let apps: Vec<String> = all_apps(client)
        .await?
        .iter()
        .filter(|a| cluster.is_destination_of(a))
        .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
        .collect();
    println!(
        "Applications:  {}",
        if apps.is_empty() {
            "none".to_owned()
        } else {
            apps.join(", ")
        }
    );
    Ok(0)
}

async fn remove(client: &kube::Client, ns: &str, name: &str, force: bool) -> anyhow::Result<u8> {
    let api = Api::<Cluster>::namespaced(client.clone(), ns);
    let cluster = api
        .get_opt(name)
        .await
        .context("failed to read the Cluster")?
        .with_context(|| format!("cluster {name} not found in namespace {ns}"))?;
    let users: Vec<String> = all_apps(client)
        .await?
        .iter()
        .filter(|a| cluster.is_destination_of(a))
        .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
        .collect();
    if !users.is_empty() && !force {
        bail!(
            "cluster {name} is the destination of {} application(s): {}; remove them first or pass --force",
            users.len(),
            users.join(", ")
        );
    }
    api.delete(name, &DeleteParams::default())
        .await
        .context("failed to delete the Cluster")?;
    // Only the Secret `add` wrote for this cluster.
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let secret = &cluster.spec.secret_ref.name;
    if let Some(s) = secrets
        .get_opt(secret)
        .await
        .context("failed to read the cluster's Secret")?
        && s.annotations().get(CLUSTER_ANNOTATION).map(String::as_str) == Some(name)
        && s.labels().get(SECRET_TYPE_LABEL).map(String::as_str) == Some("cluster")
    {
        secrets
            .delete(secret, &DeleteParams::default())
            .await
            .context("failed to delete the cluster's Secret")?;
    }
    println!("cluster {name} removed");
    Ok(0)
}
