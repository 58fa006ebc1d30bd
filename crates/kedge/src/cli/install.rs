//! `kedge install`: apply (or print) the CRD, namespace, RBAC and Deployment.

use anyhow::Context as _;
use clap::Args;
use kedge_controller::install::{InstallOptions, manifests};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;

use super::kube::{KubeArgs, runtime};

/// Flags of `kedge install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Print the manifests as YAML instead of applying them.
    #[arg(long)]
    pub print: bool,
    /// Namespace for the controller.
    #[arg(long, default_value = "kedge")]
    pub install_namespace: String,
    /// Container image of the controller.
    #[arg(long)]
    pub image: Option<String>,
    /// Apply only the CRD and the namespace (for running `kedge run` outside the cluster).
    #[arg(long)]
    pub crd_only: bool,
    /// Give the controller only its own resources, Leases, Events, its namespace's Secrets and `impersonate` on
    /// ServiceAccounts: for installs where every project maps its destinations to ServiceAccounts
    /// (`destinationServiceAccounts`). Applications then live in the install namespace only.
    #[arg(long)]
    pub least_privilege: bool,
}

/// Runs `kedge install`.
pub fn run(kube: &KubeArgs, args: InstallArgs) -> anyhow::Result<()> {
    let mut opts = InstallOptions {
        namespace: args.install_namespace.clone(),
        least_privilege: args.least_privilege,
        ..Default::default()
    };
    if let Some(image) = &args.image {
        opts.image = image.clone();
    }
    let mut docs = manifests(&opts);
    if args.crd_only {
        docs.retain(|d| d["kind"] == "CustomResourceDefinition" || d["kind"] == "Namespace");
    }
    if args.print {
        for d in &docs {
            println!("---");
            print!(
                "{}",
                serde_saphyr::to_string(d).context("failed to write YAML")?
            );
        }
        return Ok(());
    }
    runtime()?.block_on(async move {
        let (client, _) = kube.client().await?;
        let params = PatchParams::apply("kedge").force();
        for doc in docs {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let (resource, caps) =
                pinned_kind(&client, &GroupVersionKind::gvk(group, version, kind))
                    .await
                    .with_context(|| format!("the cluster does not serve {api_version} {kind}"))?;
            let api: Api<DynamicObject> = match (caps.scope, doc["metadata"]["namespace"].as_str())
            {
                (kube::discovery::Scope::Namespaced, Some(ns)) => {
                    Api::namespaced_with(client.clone(), ns, &resource)
                }
                _ => Api::all_with(client.clone(), &resource),
            };
            api.patch(&name, &params, &Patch::Apply(&doc))
                .await
                .with_context(|| format!("failed to apply {kind} {name}"))?;
            println!("{kind}/{name} applied");
            if kind == "CustomResourceDefinition" {
                wait_established(&client, &name).await?;
            }
        }
        Ok(())
    })
}

async fn wait_established(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let cond = kube::runtime::conditions::is_crd_established();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        kube::runtime::wait::await_condition(api, name, cond),
    )
    .await
    .with_context(|| format!("CRD {name} did not become established within 30 s"))?
    .with_context(|| format!("failed to wait for CRD {name}"))?;
    Ok(())
}
