//! `kedge app ...`: create, list, inspect, diff, test, sync, roll back, promote, suspend, resume, refresh, wait for
//! and delete Applications.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use kedge_api::{
    Application, OPERATION_ANNOTATION, Operation, OperationPhase, PROMOTE_ANNOTATION,
    PromoteRequest, REFRESH_ANNOTATION, RESOURCES_FINALIZER, RollbackOperation, SyncOperation,
    TERMINATE_ANNOTATION,
};
use kedge_controller::pipeline::Pipeline;
use kedge_engine::plan::SyncStatus as PlanStatus;
use kedge_engine::{Engine, EngineConfig};
use kedge_render::{RenderConfig, Renderer};
use kedge_source::{Source, SourceConfig};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::kube::{KubeArgs, runtime};
use super::run::default_cache_dir;

/// Output formats, as kubectl names them.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// A table.
    #[default]
    Table,
    /// A table with more columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// `kedge app` subcommands.
#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// List Applications with their sync and health state.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        /// List across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Create an Application (or, with --upsert, update it), as `argocd app create` does.
    Create(Box<CreateArgs>),
    /// Show one Application, its objects and conditions.
    Get {
        /// Application name.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show what differs between Git and the cluster; exits 1 when out of sync, 0 when in sync.
    Diff {
        /// Application name.
        name: String,
        /// Compare this revision (a branch, tag or commit not merged yet) instead of the target revision.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Run the Helm test hooks (`helm.sh/hook: test`) of an Application's deployed revision, as `helm test` does:
    /// create each (by hook weight), wait for it to complete, delete it per its delete policy; exits 1 when one
    /// failed. A sync never applies them.
    Test {
        /// Application name.
        name: String,
        /// How long each test may run.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Sync an Application now and wait for the result.
    Sync(SyncArgs),
    /// Show the sync history.
    History {
        /// Application name.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Apply the revision of a history entry and suspend automated sync until resumed.
    Rollback {
        /// Application name.
        name: String,
        /// History id (see `kedge app history`).
        id: i64,
        /// Prune objects the old revision does not have.
        #[arg(long)]
        prune: bool,
        /// How long to wait for the result.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Stop automated sync and self-heal.
    Suspend {
        /// Application name.
        name: String,
    },
    /// Resume automated sync and self-heal.
    Resume {
        /// Application name.
        name: String,
    },
    /// Compare with Git again now (`--hard` also drops cached comparisons).
    Refresh {
        /// Application name.
        name: String,
        /// Drop cached comparisons.
        #[arg(long)]
        hard: bool,
    },
    /// Stop the running operation (a sync waiting on a hook or a wave): nothing more is applied, pruned or waited
    /// for, and the operation ends Failed; as `argocd app terminate-op`.
    TerminateOp {
        /// Application name.
        name: String,
        /// How long to wait until the operation has stopped.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Promote to a stage (an Application with spec.promotion) the candidate waiting for approval, or with
    /// --revision a revision of your choice (a rollback, or a stage skipped on purpose); waits until it is taken.
    Promote {
        /// Application name.
        name: String,
        /// The revision (commit SHA) to promote instead of the pending candidate.
        #[arg(long)]
        revision: Option<String>,
        /// How long to wait until the controller has taken the request.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Show the promotion chain an Application belongs to: each stage, the revision it runs, the candidate waiting
    /// and why.
    Promotions {
        /// Application name (any stage of the chain).
        name: String,
    },
    /// Wait until an Application is Synced and Healthy with no operation left (or only what the flags name), as
    /// compared for its current spec; exits 1 with the last state when the timeout passes.
    Wait(WaitArgs),
    /// Delete an Application; with --cascade also the objects it owns.
    Delete {
        /// Application name.
        name: String,
        /// Delete the Application's objects too (owned ones only).
        #[arg(long)]
        cascade: bool,
    },
}

/// Flags of `kedge app create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Application name.
    pub name: String,
    /// The Git repository URL (credentials come from repository Secrets, never the URL).
    #[arg(long)]
    pub repo: String,
    /// Branch, tag, commit, `HEAD` or a semver constraint.
    #[arg(long, default_value = "HEAD")]
    pub revision: String,
    /// The directory inside the repository.
    #[arg(long, default_value = ".")]
    pub path: String,
    /// Namespace for namespaced objects that do not name one.
    #[arg(long)]
    pub dest_namespace: Option<String>,
    /// `automated` (sync every new revision) or `none` (sync only when asked).
    #[arg(long, value_parser = ["automated", "none"], default_value = "none")]
    pub sync_policy: String,
    /// With automated sync: delete objects removed from Git.
    #[arg(long, requires = "sync_policy")]
    pub auto_prune: bool,
    /// With automated sync: revert changes made outside Git.
    #[arg(long, requires = "sync_policy")]
    pub self_heal: bool,
    /// A sync option such as `CreateNamespace=true` (repeatable).
    #[arg(long = "sync-option")]
    pub sync_options: Vec<String>,
    /// Label `key=value` (repeatable).
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Update the Application when it exists (its other fields are kept).
    #[arg(long)]
    pub upsert: bool,
    /// Print the Application instead of creating it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `kedge app wait`. With none of `--sync`, `--health`, `--operation`, all three are waited for.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Application name.
    pub name: String,
    /// Wait until the application is Synced.
    #[arg(long)]
    pub sync: bool,
    /// Wait until the application is Healthy.
    #[arg(long)]
    pub health: bool,
    /// Wait until no operation is requested or running.
    #[arg(long)]
    pub operation: bool,
    /// How long to wait.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Flags of `kedge app sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Application name.
    pub name: String,
    /// Delete objects removed from Git.
    #[arg(long)]
    pub prune: bool,
    /// Plan only; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Sync this revision instead of the target revision.
    #[arg(long)]
    pub revision: Option<String>,
    /// Confirm a prune that deletes more than half of the application's objects (and more than 10): without it
    /// such a sync is refused and changes nothing.
    #[arg(long, requires = "prune")]
    pub confirm: bool,
    /// How long to wait for the result.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Return at once instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    kedge_api::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs an `app` subcommand; returns the process exit code.
pub fn run(kube: &KubeArgs, cmd: AppCommand) -> anyhow::Result<u8> {
    runtime()?.block_on(async move {
        let (client, ns) = kube.client().await?;
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        match cmd {
            AppCommand::List { output, all_namespaces } => {
                let api: Api<Application> = if all_namespaces { Api::all(client.clone()) } else { api };
                let list = api.list(&ListParams::default()).await.context("failed to list Applications")?;
                print_list(&list.items, output, all_namespaces)?;
                Ok(0)
            }
            AppCommand::Create(args) => create(&api, &args).await,
            AppCommand::Get { name, output } => {
                let app = get(&api, &name).await?;
                print_app(&app, output)?;
                Ok(0)
            }
            AppCommand::Diff { name, revision } => diff(client, &api, &name, revision.as_deref()).await,
            AppCommand::Test { name, timeout } => test(client, &api, &name, timeout).await,
            AppCommand::Sync(args) => sync(&api, args).await,
            AppCommand::History { name, output } => {
                let app = get(&api, &name).await?;
                let history = app.status.map(|s| s.history).unwrap_or_default();
                match output {
                    Output::Json => println!("{}", serde_json::to_string_pretty(&history)?),
                    Output::Yaml => print!("{}", serde_saphyr::to_string(&history)?),
                    _ => {
                        let mut rows = vec![vec!["ID", "DEPLOYED AT", "REVISION", "INITIATED BY", "RESULT", "LAST ERROR"].into_iter().map(String::from).collect()];
                        for h in history.iter().rev() {
                            rows.push(vec![h.id.to_string(), h.deployed_at.clone(), h.revision.clone(), h.initiated_by.clone(), history_result(h), h.last_error.clone().unwrap_or_default()]);
                        }
                        print_table(&rows);
                    }
                }
                Ok(0)
            }
            AppCommand::Rollback { name, id, prune, timeout } => {
                let app = get(&api, &name).await?;
                let known = app.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.id == id));
                if !known {
                    bail!("application {name} has no history entry {id} (see `kedge app history {name}`)");
                }
                let op = Operation { rollback: Some(RollbackOperation { id, prune }), ..operation("cli") };
                request(&api, &name, &op).await?;
                wait_for_operation(&api, &name, &op, timeout).await
            }
            AppCommand::Wait(args) => wait(&api, args).await,
            AppCommand::Suspend { name } => set_suspend(&api, &name, true).await,
            AppCommand::Resume { name } => set_suspend(&api, &name, false).await,
            AppCommand::Refresh { name, hard } => {
                get(&api, &name).await?;
                let value = if hard { "hard" } else { "normal" };
                let patch = json!({ "metadata": { "annotations": { REFRESH_ANNOTATION: value } } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.context("failed to request a refresh")?;
                println!("application {name}: {value} refresh requested");
                Ok(0)
            }
            AppCommand::TerminateOp { name, timeout } => terminate(&api, &name, timeout).await,
            AppCommand::Promote { name, revision, timeout } => promote(&api, &name, revision, timeout).await,
            AppCommand::Promotions { name } => promotions(&api, &name).await,
            AppCommand::Delete { name, cascade } => {
                let app = get(&api, &name).await?;
                let mut finalizers: Vec<String> = app.finalizers().iter().filter(|f| *f != RESOURCES_FINALIZER).cloned().collect();
                if cascade {
                    finalizers.push(RESOURCES_FINALIZER.to_owned());
                }
                let patch = json!({ "metadata": { "finalizers": finalizers } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.context("failed to set finalizers")?;
                api.delete(&name, &DeleteParams::default()).await.context("failed to delete the application")?;
                if cascade {
                    println!("application {name} deleted; its objects are being deleted");
                } else {
                    println!("application {name} deleted; its objects are left in place");
                }
                Ok(0)
            }
        }
    })
}

/// Who runs the CLI, for what it records (`cli:$USER`).
fn cli_user() -> String {
    match std::env::var("USER") {
        Ok(u) if !u.is_empty() => format!("cli:{u}"),
        _ => "cli".to_owned(),
    }
}

async fn promote(
    api: &Api<Application>,
    name: &str,
    revision: Option<String>,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let app = get(api, name).await?;
    if app.spec.promotion.is_none() {
        bail!("application {name} has no spec.promotion: it deploys its own targetRevision");
    }
    let status = app.status.and_then(|s| s.promotion).unwrap_or_default();
    if revision.is_none() && status.pending.is_none() {
        bail!(
            "application {name} has no candidate waiting for approval{} (name one with --revision)",
            if status.waiting.is_empty() {
                String::new()
            } else {
                format!(": {}", status.waiting)
            }
        );
    }
    let request = PromoteRequest {
        revision,
        by: cli_user(),
        at: jiff::Timestamp::now().to_string(),
    };
    let raw = serde_json::to_string(&request)?;
    let patch = json!({ "metadata": { "annotations": { PROMOTE_ANNOTATION: raw } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("failed to request the promotion")?;
    let deadline = Instant::now() + timeout;
    loop {
        let app = get(api, name).await?;
        if app.annotations().get(PROMOTE_ANNOTATION) != Some(&raw) {
            let status = app.status.and_then(|s| s.promotion).unwrap_or_default();
            return match status
                .history
                .last()
                .filter(|h| h.at >= request.at || Some(&h.revision) == request.revision.as_ref())
            {
                Some(h) if status.revision.as_ref() == Some(&h.revision) => {
                    println!(
                        "application {name}: revision {} promoted ({}, approved by {})",
                        h.revision, h.from, h.approved_by
                    );
                    Ok(0)
                }
                _ => bail!(
                    "application {name}: the promotion was refused (see `kedge app get {name}` and its Events)"
                ),
            };
        }
        if Instant::now() >= deadline {
            bail!(
                "application {name}: the controller has not taken the promotion after {}s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn promotions(api: &Api<Application>, name: &str) -> anyhow::Result<u8> {
    let app = get(api, name).await?;
    let ns = app.namespace().unwrap_or_default();
    let all = api
        .list(&ListParams::default())
        .await
        .context("failed to list Applications")?
        .items;
    let find = |n: &str| all.iter().find(|a| a.name_any() == n);
    let upstream_of = |a: &Application| {
        a.spec
            .promotion
            .as_ref()
            .filter(|p| p.from.namespace.as_deref().is_none_or(|x| x == ns))
            .map(|p| p.from.name.clone())
    };
    // Up to the first stage, then down along the stages promoted from each (bounded by the number of Applications).
    let mut first = app.name_any();
    for _ in 0..all.len() {
        match find(&first).and_then(upstream_of) {
            Some(up) if find(&up).is_some() && up != app.name_any() => first = up,
            _ => break,
        }
    }
    let mut chain = vec![first];
    while chain.len() <= all.len() {
        let last = chain.last().cloned().unwrap_or_default();
        let next: Vec<String> = all
            .iter()
            .filter(|a| upstream_of(a).as_deref() == Some(last.as_str()))
            .map(|a| a.name_any())
            .collect();
        match next.as_slice() {
            [] => break,
            [one] if !chain.contains(one) => chain.push(one.clone()),
            [one] => bail!("the promotion chain of {name} loops back to {one}"),
            many => {
                chain.push(many.join("+"));
                break;
            }
        }
    }
    let short = |s: &str| s.get(..7).unwrap_or(s).to_owned();
    let mut rows = vec![
        [
            "STAGE", "APPROVAL", "REVISION", "SYNC", "HEALTH", "PENDING", "WAITING",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for stage in &chain {
        let Some(a) = find(stage) else {
            rows.push(vec![
                stage.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "several stages promote from the one before".into(),
            ]);
            continue;
        };
        let status = a.status.clone().unwrap_or_default();
        let promotion = status.promotion.clone().unwrap_or_default();
        let revision = match &a.spec.promotion {
            Some(_) => promotion
                .revision
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
            None => status
                .sync
                .revision
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
        };
        rows.push(vec![
            stage.clone(),
            a.spec
                .promotion
                .as_ref()
                .map(|p| format!("{:?}", p.approval))
                .unwrap_or_else(|| "source".into()),
            revision,
            format!("{:?}", status.sync.status),
            format!("{:?}", status.health.status),
            promotion
                .pending
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
            promotion.waiting.clone(),
        ]);
    }
    print_table(&rows);
    Ok(0)
}

fn operation(by: &str) -> Operation {
    Operation {
        initiated_by: by.to_owned(),
        requested_at: jiff::Timestamp::now().to_string(),
        ..Default::default()
    }
}

async fn get(api: &Api<Application>, name: &str) -> anyhow::Result<Application> {
    match api.get_opt(name).await {
        Ok(Some(app)) => Ok(app),
        Ok(None) => bail!(
            "application {name} not found in namespace {}",
            api_namespace(api)
        ),
        Err(e) => Err(e).with_context(|| format!("failed to read application {name}")),
    }
}

fn api_namespace(api: &Api<Application>) -> String {
    api.resource_url()
        .split('/')
        .skip_while(|s| *s != "namespaces")
        .nth(1)
        .unwrap_or("")
        .to_owned()
}

async fn set_suspend(api: &Api<Application>, name: &str, suspend: bool) -> anyhow::Result<u8> {
    get(api, name).await?;
    let patch = json!({ "spec": { "suspend": suspend } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("failed to update the application")?;
    println!(
        "application {name} {}",
        if suspend { "suspended" } else { "resumed" }
    );
    Ok(0)
}

async fn request(api: &Api<Application>, name: &str, op: &Operation) -> anyhow::Result<()> {
    let patch =
        json!({ "metadata": { "annotations": { OPERATION_ANNOTATION: op.to_annotation() } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("failed to request the operation")?;
    Ok(())
}

async fn sync(api: &Api<Application>, args: SyncArgs) -> anyhow::Result<u8> {
    get(api, &args.name).await?;
    let op = Operation {
        sync: Some(SyncOperation {
            prune: args.prune,
            dry_run: args.dry_run,
            revision: args.revision.clone(),
            confirm: args.confirm,
        }),
        ..operation("cli")
    };
    request(api, &args.name, &op).await?;
    if args.no_wait {
        println!("application {}: sync requested", args.name);
        return Ok(0);
    }
    wait_for_operation(api, &args.name, &op, args.timeout).await
}

/// Waits until the controller has taken the operation and finished it, printing each object's progress.
/// Asks the controller to stop the running operation and waits until it has.
async fn terminate(api: &Api<Application>, name: &str, timeout: Duration) -> anyhow::Result<u8> {
    let running = |app: &Application| {
        app.status
            .as_ref()
            .and_then(|s| s.operation_state.clone())
            .filter(|o| !o.phase.is_completed())
    };
    let app = get(api, name).await?;
    let Some(state) = running(&app) else {
        bail!("application {name} has no operation running: nothing to terminate");
    };
    let asked = jiff::Timestamp::now().to_string();
    let patch = json!({ "metadata": { "annotations": { TERMINATE_ANNOTATION: asked } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("failed to request the termination")?;
    println!(
        "application {name}: termination of the running operation requested ({})",
        state.message
    );
    let deadline = Instant::now() + timeout;
    loop {
        let app = get(api, name).await?;
        if running(&app).is_none() {
            let state = app
                .status
                .and_then(|s| s.operation_state)
                .unwrap_or_default();
            println!("  {}: {}", state.phase, state.message);
            return Ok(0);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} waiting for the operation of application {name} to stop (is `kedge run` running?)",
                humantime(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_for_operation(
    api: &Api<Application>,
    name: &str,
    op: &Operation,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let deadline = Instant::now() + timeout;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = std::io::stdout();
    let mut progress = String::new();
    loop {
        if Instant::now() > deadline {
            if !progress.is_empty() {
                bail!(
                    "timed out after {} waiting for the operation on application {name}, still running: {progress}",
                    humantime(timeout)
                );
            }
            bail!(
                "timed out after {} waiting for application {name} (is `kedge run` running?)",
                humantime(timeout)
            );
        }
        let app = get(api, name).await?;
        let pending = app.annotations().contains_key(OPERATION_ANNOTATION);
        let state = app.status.as_ref().and_then(|s| s.operation_state.clone());
        let ours = state.filter(|s| {
            s.operation.as_ref().map_or_else(
                || s.started_at.as_deref().unwrap_or("") >= op.requested_at.as_str(),
                |o| o.requested_at == op.requested_at,
            )
        });
        if let Some(running) = ours.as_ref().filter(|s| !s.phase.is_completed())
            && running.message != progress
        {
            writeln!(out, "  {}: {}", running.phase, running.message)?;
            progress.clone_from(&running.message);
        }
        if !pending && let Some(state) = ours.filter(|s| s.phase.is_completed()) {
            for r in state.sync_result.iter().flat_map(|r| r.resources.iter()) {
                let key = format!("{}/{}/{}", r.object.kind, r.object.namespace, r.object.name);
                if seen.get(&key).map(String::as_str) != Some(r.status.as_str()) {
                    let ns = if r.object.namespace.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", r.object.namespace)
                    };
                    let hook = if r.hook_phase.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", r.hook_phase)
                    };
                    let msg = if r.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.message)
                    };
                    writeln!(
                        out,
                        "  {:<12} {}{} {}{}{}",
                        r.status, ns, r.object.kind, r.object.name, hook, msg
                    )?;
                    seen.insert(key, r.status.to_string());
                }
            }
            println!("{}: {}", state.phase, state.message);
            return Ok(if state.phase == OperationPhase::Succeeded {
                0
            } else {
                1
            });
        }
        if !pending && op.sync.as_ref().is_some_and(|s| s.dry_run) {
            println!("dry run done; see `kedge app get {name}` or `kedge app diff {name}`");
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Application `args` describe.
fn application_of(args: &CreateArgs, namespace: &str) -> anyhow::Result<serde_json::Value> {
    if (args.auto_prune || args.self_heal) && args.sync_policy != "automated" {
        bail!("--auto-prune and --self-heal need --sync-policy automated");
    }
    let mut labels = serde_json::Map::new();
    for label in &args.labels {
        let Some((k, v)) = label.split_once('=') else {
            bail!("label {label:?} is not key=value");
        };
        labels.insert(k.trim().to_owned(), json!(v.trim()));
    }
    for option in &args.sync_options {
        if !option.contains('=') {
            bail!("sync option {option:?} is not Name=value (e.g. CreateNamespace=true)");
        }
    }
    let mut sync_policy = json!({});
    if args.sync_policy == "automated" {
        sync_policy["automated"] = json!({ "prune": args.auto_prune, "selfHeal": args.self_heal });
    }
    if !args.sync_options.is_empty() {
        sync_policy["syncOptions"] = json!(args.sync_options);
    }
    let mut destination = json!({});
    if let Some(ns) = &args.dest_namespace {
        destination["namespace"] = json!(ns);
    }
    let app = json!({
        "apiVersion": "kedge.dev/v1alpha1",
        "kind": "Application",
        "metadata": { "name": args.name, "namespace": namespace, "labels": labels },
        "spec": {
            "source": { "repoURL": args.repo, "targetRevision": args.revision, "path": args.path },
            "destination": destination,
            "syncPolicy": sync_policy,
        },
    });
    // Refuse what the API server would refuse, with the same words as the CRD.
    serde_json::from_value::<Application>(app.clone()).context("invalid application")?;
    Ok(app)
}

/// `kedge app create`: creates the Application, or with --upsert applies the fields given (server-side apply).
async fn create(api: &Api<Application>, args: &CreateArgs) -> anyhow::Result<u8> {
    let app = application_of(args, &api_namespace(api))?;
    if args.dry_run {
        print!("{}", serde_saphyr::to_string(&app)?);
        return Ok(0);
    }
    // Server-side apply in both cases, so that a later --upsert owns (and can remove) the fields this one sets.
    if !args.upsert && api.get_opt(&args.name).await?.is_some() {
        bail!(
            "application {} already exists in namespace {} (use --upsert to update it)",
            args.name,
            api_namespace(api)
        );
    }
    api.patch(
        &args.name,
        &PatchParams::apply("kedge-cli").force(),
        &Patch::Apply(&app),
    )
    .await
    .with_context(|| format!("failed to apply application {}", args.name))?;
    println!(
        "application {} {}",
        args.name,
        if args.upsert { "applied" } else { "created" }
    );
    Ok(0)
}

/// Waits until the application is where `args` asks, printing each state it passes through.
async fn wait(api: &Api<Application>, args: WaitArgs) -> anyhow::Result<u8> {
    let all = !(args.sync || args.health || args.operation);
    let want = Wanted {
        sync: all || args.sync,
        health: all || args.health,
        operation: all || args.operation,
    };
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut last = String::new();
    loop {
        let app = get(api, &args.name).await?;
        let Some(reason) = not_there_yet(&app, want) else {
            let status = app.status.unwrap_or_default();
            println!(
                "application {}: {:?}, {:?} at {} after {:.1}s",
                args.name,
                status.sync.status,
                status.health.status,
                status.sync.short_revision.as_deref().unwrap_or("-"),
                started.elapsed().as_secs_f64()
            );
            return Ok(0);
        };
        if reason != last {
            eprintln!("  {:>6.1}s {reason}", started.elapsed().as_secs_f64());
            last = reason;
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {} waiting for application {}: {last}",
                humantime(args.timeout),
                args.name
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The result column of `kedge app history`: the newest outcome, and how many syncs the entry stands for.
fn history_result(h: &kedge_api::HistoryEntry) -> String {
    if h.attempts > 1 {
        format!("{} ({} syncs, {} failed)", h.result, h.attempts, h.failures)
    } else {
        h.result.to_string()
    }
}

/// What `kedge app wait` waits for.
#[derive(Clone, Copy, Debug)]
struct Wanted {
    sync: bool,
    health: bool,
    operation: bool,
}

/// Why the application is not yet where `want` asks, or `None` when it is.
fn not_there_yet(app: &Application, want: Wanted) -> Option<String> {
    let Some(status) = app.status.as_ref() else {
        return Some("not compared yet (is `kedge run` running?)".into());
    };
    // A running sync says what it waits for (a wave, a hook); that is what the user needs to see, whatever else
    // is not there yet.
    if let Some(op) = status
        .operation_state
        .as_ref()
        .filter(|o| !o.phase.is_completed())
    {
        return Some(format!("operation {}: {}", op.phase, op.message));
    }
    let generation = app.metadata.generation;
    if generation.is_some() && status.observed_generation != generation {
        return Some(format!(
            "the status describes generation {} of the spec, not {}",
            status
                .observed_generation
                .map_or_else(|| "-".to_owned(), |g| g.to_string()),
            generation.unwrap_or_default()
        ));
    }
    let annotations = app.annotations();
    if want.operation && annotations.contains_key(OPERATION_ANNOTATION) {
        return Some("an operation is requested".into());
    }
    if (want.sync || want.health) && annotations.contains_key(REFRESH_ANNOTATION) {
        return Some("a refresh is requested".into());
    }
    let mut missing = Vec::new();
    if want.sync && status.sync.status != kedge_api::SyncCode::Synced {
        missing.push(format!("{:?}", status.sync.status));
    }
    if want.health && status.health.status != kedge_api::HealthCode::Healthy {
        missing.push(format!("{:?}", status.health.status));
    }
    if missing.is_empty() {
        return None;
    }
    // The Ready condition says why (a render error, a failed sync, what is still progressing).
    let why = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False" && !c.message.is_empty())
        .map(|c| format!(": {}", c.message))
        .unwrap_or_default();
    Some(format!("{}{why}", missing.join(", ")))
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// A pipeline of this process (Git cache under the CLI's cache folder), as the controller's.
fn local_pipeline(client: kube::Client) -> anyhow::Result<(Pipeline, Arc<Engine>)> {
    let source = Source::new(SourceConfig::new(default_cache_dir("cli/git")))
        .context("failed to set up the Git cache")?;
    let renderer = Arc::new(Renderer::new(RenderConfig::default()));
    let engine = Arc::new(
        Engine::new(client.clone(), EngineConfig::default())
            .context("failed to set up the engine")?,
    );
    Ok((
        Pipeline::new(client, source, renderer, engine.clone()),
        engine,
    ))
}

/// `kedge app test`: runs the Helm test hooks of the deployed revision as the hooks of a sync that applies and
/// prunes nothing else.
async fn test(
    client: kube::Client,
    api: &Api<Application>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let app = get(api, name).await?;
    let (pipeline, engine) = local_pipeline(client)?;
    let chain = |e: &kedge_controller::pipeline::PipelineError| {
        anyhow::anyhow!(kedge_controller::reconcile::error_chain(e))
    };
    let Some(hooks) = pipeline.test_hooks(&app).await.map_err(|e| chain(&e))? else {
        bail!("application {name} has not been deployed yet: nothing to test");
    };
    if hooks.is_empty() {
        eprintln!("application {name} has no Helm test hooks");
        return Ok(0);
    }
    let spec = kedge_controller::pipeline::engine_spec(&app).map_err(|e| chain(&e))?;
    let plan = engine
        .plan(&spec, hooks, &[])
        .await
        .context("failed to plan the tests")?;
    let options = kedge_engine::SyncOptions {
        prune: false,
        hook_timeout: timeout,
        ..Default::default()
    };
    let result = engine
        .sync(&plan, &options)
        .await
        .context("failed to run the tests")?;
    let mut out = std::io::stdout().lock();
    for h in &result.hooks {
        let verdict = if h.succeeded { "Succeeded" } else { "Failed" };
        writeln!(out, "{} {}: {verdict} {}", h.id.kind, h.id.name, h.message)?;
    }
    if result.phase == kedge_engine::SyncPhase::Succeeded {
        Ok(0)
    } else {
        eprintln!("tests failed: {}", result.message);
        Ok(1)
    }
}

async fn diff(
    client: kube::Client,
    api: &Api<Application>,
    name: &str,
    revision: Option<&str>,
) -> anyhow::Result<u8> {
    let app = get(api, name).await?;
    let (pipeline, _) = local_pipeline(client)?;
    let cmp = pipeline
        .compare(&app, revision, None)
        .await
        .map_err(|e| anyhow::anyhow!(kedge_controller::reconcile::error_chain(&e)))?;
    let mut differs = false;
    for o in &cmp.plan.objects {
        match o.status {
            PlanStatus::Synced => {}
            PlanStatus::Missing => {
                differs = true;
                println!("=== {} (missing: will be created)", o.id);
                if let Some(d) = &o.diff {
                    print!("{}", d.text);
                }
            }
            PlanStatus::OutOfSync => {
                differs = true;
                println!("=== {}", o.id);
                for a in &o.drift {
                    println!("# {}", a.message());
                }
                if let Some(d) = &o.diff {
                    print!("{}", d.text);
                }
            }
            PlanStatus::Error => {
                differs = true;
                println!("=== {} (error)\n{}", o.id, o.message);
            }
        }
    }
    for p in &cmp.plan.prune {
        differs = true;
        println!("=== {} (removed from Git: {:?})", p.id, p.action);
    }
    let rev = &cmp.revision;
    eprintln!(
        "{} at {} ({}): {}",
        name,
        rev.sha.get(..7).unwrap_or(&rev.sha),
        rev.ref_name.as_deref().unwrap_or(&rev.requested),
        if differs { "out of sync" } else { "in sync" }
    );
    Ok(if differs { 1 } else { 0 })
}

/// Prints rows as aligned columns, the first row being the header.
pub(crate) fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:<w$}", s, w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

fn age(app: &Application) -> String {
    age_of(&app.metadata)
}

/// How long ago an object was created, as kubectl prints it (`42s`, `5m`, `3h`, `2d`).
pub(crate) fn age_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let Some(created) = meta.creation_timestamp.as_ref() else {
        return "?".into();
    };
    let secs = jiff::Timestamp::now().as_second() - created.0.as_second();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn print_list(apps: &[Application], output: Output, all_namespaces: bool) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(apps)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(&apps.to_vec())?),
        Output::Table | Output::Wide => {
            let mut header = vec![];
            if all_namespaces {
                header.push("NAMESPACE");
            }
            header.extend(["NAME", "SYNC", "HEALTH", "REVISION", "AGE"]);
            if output == Output::Wide {
                header.extend(["CLUSTER", "REPO", "PATH", "TARGET", "REPLICA"]);
            }
            let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for app in apps {
                let st = app.status.clone().unwrap_or_default();
                let mut row = vec![];
                if all_namespaces {
                    row.push(app.namespace().unwrap_or_default());
                }
                row.extend([
                    app.name_any(),
                    format!("{:?}", st.sync.status),
                    format!("{:?}", st.health.status),
                    st.sync.short_revision.clone().unwrap_or_default(),
                    age(app),
                ]);
                if output == Output::Wide {
                    row.extend([
                        app.spec.cluster().to_owned(),
                        kedge_source::repo::strip_userinfo(&app.spec.primary_source().repo_url),
                        app.spec.primary_source().path.clone(),
                        app.spec.primary_source().target_revision.clone(),
                        st.reconciled_by.clone().unwrap_or_default(),
                    ]);
                }
                rows.push(row);
            }
            if apps.is_empty() {
                eprintln!("no applications found");
            } else {
                print_table(&rows);
            }
        }
    }
    Ok(())
}

fn print_app(app: &Application, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(app)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(app)?),
        Output::Table | Output::Wide => {
            let st = app.status.clone().unwrap_or_default();
            println!(
                "Name:        {}/{}",
                app.namespace().unwrap_or_default(),
                app.name_any()
            );
            println!(
                "Repository:  {}",
                kedge_source::repo::strip_userinfo(&app.spec.primary_source().repo_url)
            );
            println!("Path:        {}", app.spec.primary_source().path);
            println!("Target:      {}", app.spec.primary_source().target_revision);
            println!("Project:     {}", app.spec.project);
            println!("Cluster:     {}", app.spec.cluster());
            if let Some(replica) = &st.reconciled_by {
                println!("Replica:     {replica}");
            }
            for info in &app.spec.info {
                println!("Info:        {}: {}", info.name, info.value);
            }
            println!(
                "Revision:    {}",
                st.sync.revision.clone().unwrap_or_default()
            );
            println!("Sync:        {:?}", st.sync.status);
            let health_msg = st
                .health
                .message
                .clone()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            println!("Health:      {:?}{}", st.health.status, health_msg);
            if app.spec.suspend {
                println!("Suspended:   yes");
            }
            if let Some(op) = &st.operation_state {
                if op.phase.is_completed() {
                    println!(
                        "Last sync:   {} at {}: {}",
                        op.phase,
                        op.finished_at.clone().unwrap_or_default(),
                        op.message
                    );
                } else {
                    println!(
                        "Operation:   {} since {}{}: {}",
                        op.phase,
                        op.started_at.clone().unwrap_or_default(),
                        op.operation
                            .as_ref()
                            .map(|o| format!(" ({})", o.initiated_by))
                            .unwrap_or_default(),
                        op.message
                    );
                }
            }
            if !st.conditions.is_empty() {
                println!("\nConditions:");
                for c in &st.conditions {
                    println!(
                        "  {:<12} {:<6} {:<18} {}",
                        c.type_, c.status, c.reason, c.message
                    );
                }
            }
            println!();
            let mut rows = vec![
                vec!["KIND", "NAMESPACE", "NAME", "SYNC", "HEALTH", "MESSAGE"]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
            ];
            for r in &st.resources {
                rows.push(vec![
                    r.object.kind.to_string(),
                    r.object.namespace.to_string(),
                    r.object.name.to_string(),
                    format!("{:?}", r.status),
                    r.health
                        .as_ref()
                        .map(|h| format!("{:?}", h.status))
                        .unwrap_or_default(),
                    r.message.clone().unwrap_or_default(),
                ]);
            }
            print_table(&rows);
            if let Some(summary) = &st.resource_summary {
                println!("{}", summary_line(summary));
            }
        }
    }
    Ok(())
}

/// What `kedge app get` says under a resource table that does not list every object.
fn summary_line(s: &kedge_api::ResourceSummary) -> String {
    let counts = |m: &std::collections::BTreeMap<String, u32>| {
        m.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "... {} more: {} objects in all ({}; {}); those listed first are out of sync or not healthy. The UI and \
         GET /api/v1/applications/NAMESPACE/NAME/resources list them all.",
        s.total.saturating_sub(s.listed),
        s.total,
        counts(&s.sync),
        counts(&s.health),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_counts_what_the_table_leaves_out() {
        let s = kedge_api::ResourceSummary {
            total: 5000,
            listed: 500,
            sync: [("Synced".to_owned(), 4999), ("OutOfSync".to_owned(), 1)].into(),
            health: [("Healthy".to_owned(), 5000)].into(),
        };
        let line = summary_line(&s);
        assert!(
            line.starts_with(
                "... 4500 more: 5000 objects in all (1 OutOfSync, 4999 Synced; 5000 Healthy)"
            ),
            "{line}"
        );
    }

    fn app(
        status: serde_json::Value,
        generation: i64,
        annotations: serde_json::Value,
    ) -> Application {
        serde_json::from_value(json!({
            "apiVersion": "kedge.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": "demo", "namespace": "kedge", "generation": generation, "annotations": annotations },
            "spec": { "source": { "repoURL": "https://example.org/r.git", "path": "app" }, "destination": {} },
            "status": status,
        }))
        .expect("application")
    }

    const ALL: Wanted = Wanted {
        sync: true,
        health: true,
        operation: true,
    };

    #[test]
    fn wait_needs_the_current_generation_synced_healthy_and_no_operation() {
        let done = json!({ "observedGeneration": 2, "sync": { "status": "Synced" }, "health": { "status": "Healthy" } });
        assert_eq!(not_there_yet(&app(done.clone(), 2, json!({})), ALL), None);

        let stale = not_there_yet(&app(done.clone(), 3, json!({})), ALL).expect("stale");
        assert!(
            stale.contains("generation 2") && stale.contains("not 3"),
            "{stale}"
        );

        let requested = app(done.clone(), 2, json!({ OPERATION_ANNOTATION: "{}" }));
        assert_eq!(
            not_there_yet(&requested, ALL).as_deref(),
            Some("an operation is requested")
        );
        let only_health = Wanted {
            sync: false,
            health: true,
            operation: false,
        };
        assert_eq!(not_there_yet(&requested, only_health), None);

        let progressing = json!({
            "observedGeneration": 2, "sync": { "status": "Synced" }, "health": { "status": "Progressing" },
            "conditions": [{ "type": "Ready", "status": "False", "reason": "Progressing", "message": "Deployment web: 0 of 1 ready" }],
        });
        let why = not_there_yet(&app(progressing.clone(), 2, json!({})), ALL).expect("progressing");
        assert_eq!(why, "Progressing: Deployment web: 0 of 1 ready");
        let only_sync = Wanted {
            sync: true,
            health: false,
            operation: false,
        };
        assert_eq!(
            not_there_yet(&app(progressing, 2, json!({})), only_sync),
            None
        );

        let out = json!({ "observedGeneration": 2, "sync": { "status": "OutOfSync" }, "health": { "status": "Degraded" } });
        assert_eq!(
            not_there_yet(&app(out, 2, json!({})), ALL).as_deref(),
            Some("OutOfSync, Degraded")
        );
        assert!(not_there_yet(&app(json!(null), 1, json!({})), ALL).is_some());
    }
}
