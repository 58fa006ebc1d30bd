//! `kedge appset`: what an ApplicationSet produces and how its rollout stands. `generate` prints the Applications a
//! set would produce now, reading the registered Clusters from the cluster (only when the set has a clusters
//! generator) and Git as the controller does; `diff` compares them with the Applications the set made, as the
//! controller would write them (`kedge_appset::owned`, server-side dry runs), and says what applying would create,
//! change and delete; `rollout` shows a `RollingSync` set's rollout and lets it pass a Degraded Application
//! (`--resume`) or wait for it again (`--restart`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use kedge_api::{Application, ApplicationSet, Cluster, ROLLOUT_SKIP_ANNOTATION, RepositorySecrets};
use kedge_appset::owned::{Allowed, FIELD_MANAGER, desired, made_by, policy_name};
use kedge_appset::{GitFiles, Inputs, fetch_tree, generate, parse_set};
use kedge_controller::appsets::{CONFIRM_DELETIONS, MAX_DELETIONS};
use kedge_controller::pipeline::credentials_for;
use kedge_source::{FileTree, RepoSpec, Source, SourceConfig};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::kube::{KubeArgs, runtime};
use super::render::{Format, print_objects};

/// `kedge appset` subcommands.
#[derive(Subcommand, Debug)]
pub enum AppsetCommand {
    /// Print the Applications an ApplicationSet file produces now (an Argo CD ApplicationSet is read too). Clusters
    /// come from Kedge's namespace (-n) of the current context, repositories from Git.
    Generate {
        /// The ApplicationSet file (YAML or JSON; `-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
        output: Format,
        /// Where Git mirrors are kept. Default: `$KEDGE_CACHE/source`.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Show what the controller would do to an ApplicationSet's Applications now: those it would create, change (a
    /// unified diff of what the set writes: labels, annotations, finalizers, spec) and delete, as its
    /// applicationsSync policy allows. Exits 0 when nothing would change, 1 when something would, 2 on errors.
    Diff {
        /// The ApplicationSet's name (with -f, it may be left out).
        #[arg(required_unless_present = "file")]
        name: Option<String>,
        /// Compare the set written in this file (YAML or JSON, Kedge's or Argo CD's; `-` for standard input), as it
        /// would be once applied, instead of the stored one.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Where Git mirrors are kept. Default: `$KEDGE_CACHE/source`.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Show the rollout of a RollingSync set (each Application's step and state); with --resume, let it pass the
    /// Applications that stop it (Degraded, or their sync failed) at their current revision; with --restart, drop
    /// what --resume allowed, so that the rollout waits for every Application again.
    Rollout {
        /// The ApplicationSet's name.
        name: String,
        /// Let the rollout pass the Applications that stop it now.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Forget what --resume allowed.
        #[arg(long)]
        restart: bool,
    },
}

/// Runs a `kedge appset` subcommand.
pub fn run(kube: &KubeArgs, cmd: AppsetCommand) -> anyhow::Result<u8> {
    match cmd {
        AppsetCommand::Generate {
            file,
            output,
            cache_dir,
        } => generate_cmd(kube, &file, output, cache_dir),
        AppsetCommand::Diff {
            name,
            file,
            cache_dir,
        } => diff_cmd(kube, name.as_deref(), file.as_deref(), cache_dir),
        AppsetCommand::Rollout {
            name,
            resume,
            restart,
        } => runtime()?.block_on(rollout_cmd(kube, &name, resume, restart)),
    }
}

async fn rollout_cmd(
    kube: &KubeArgs,
    name: &str,
    resume: bool,
    restart: bool,
) -> anyhow::Result<u8> {
    let (client, ns) = kube.client().await?;
    let api: Api<ApplicationSet> = Api::namespaced(client, &ns);
    let set = api
        .get_opt(name)
        .await
        .with_context(|| format!("failed to read application set {name} in namespace {ns}"))?
        .with_context(|| format!("application set {name} not found in namespace {ns}"))?;
    let rolling = set
        .spec
        .strategy
        .as_ref()
        .is_some_and(|s| s.type_ == "RollingSync");
    if !rolling {
        bail!(
            "application set {name} has no RollingSync strategy: its Applications sync all at once"
        );
    }
    let status = set.status.clone().unwrap_or_default();
    if resume {
        let pass: Vec<String> = status
            .application_status
            .iter()
            .filter(|e| e.status == "Degraded")
            .filter_map(|e| {
                e.target_revisions
                    .first()
                    .map(|r| format!("{}@{r}", e.application))
            })
            .collect();
        if pass.is_empty() {
            bail!("the rollout of {name} is not stopped by any Application: nothing to resume");
        }
        let mut all: Vec<String> = set
            .annotations()
            .get(ROLLOUT_SKIP_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for p in &pass {
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        let patch = serde_json::json!({ "metadata": { "annotations": { ROLLOUT_SKIP_ANNOTATION: all.join(",") } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("failed to annotate application set {name}"))?;
        println!("the rollout of {name} passes {}", pass.join(", "));
        return Ok(0);
    }
    if restart {
        let patch =
            serde_json::json!({ "metadata": { "annotations": { ROLLOUT_SKIP_ANNOTATION: null } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("failed to annotate application set {name}"))?;
        println!("the rollout of {name} waits for every Application again");
        return Ok(0);
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "RolloutProgressing")
    {
        println!("{}: {}", c.reason, c.message);
    }
    println!(
        "{:<32} {:<5} {:<12} {:<9} MESSAGE",
        "APPLICATION", "STEP", "STATUS", "REVISION"
    );
    for e in &status.application_status {
        let rev = e
            .target_revisions
            .first()
            .map(|r| r.get(..7).unwrap_or(r))
            .unwrap_or("-");
        println!(
            "{:<32} {:<5} {:<12} {:<9} {}",
            e.application,
            if e.step.is_empty() { "-" } else { &e.step },
            e.status,
            rev,
            e.message
        );
    }
    Ok(0)
}

fn generate_cmd(
    kube: &KubeArgs,
    file: &std::path::Path,
    output: Format,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let mut set = read_set(file)?;
    let rt = runtime()?;
    let clusters = if uses_generator(&set.spec, "clusters") {
        let (clusters, ns) = rt.block_on(list_clusters(kube))?;
        if set.metadata.namespace.is_none() {
            set.metadata.namespace = Some(ns);
        }
        clusters
    } else {
        Vec::new()
    };
    if set.metadata.namespace.is_none() {
        // Where the Applications would live: -n, else the context's namespace, else `default`.
        let context_ns = || rt.block_on(kube.config()).ok().map(|c| c.default_namespace);
        set.metadata.namespace = kube.namespace.clone().or_else(context_ns);
    }
    let git = CliGit::new(kube, &set, source(cache_dir)?, rt);
    let apps = generate(&set, &Inputs::new(&clusters, &git)).with_context(|| {
        format!(
            "ApplicationSet {} produces no Applications",
            set.metadata.name.as_deref().unwrap_or("")
        )
    })?;
    let mut objects = Vec::with_capacity(apps.len());
    for app in &apps {
        let mut value =
            serde_json::to_value(&app.application).context("failed to write an Application")?;
        if let Some(m) = value.as_object_mut() {
            m.remove("status");
        }
        objects.push(value);
    }
    print_objects(objects.iter(), output)?;
    eprintln!("kedge: {} application(s)", apps.len());
    Ok(0)
}

/// Reads an ApplicationSet file (`-`: standard input), printing the parser's notes.
fn read_set(file: &Path) -> anyhow::Result<ApplicationSet> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("failed to read standard input")?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?
    };
    let parsed = parse_set(&text)
        .with_context(|| format!("{} is not a usable ApplicationSet", file.display()))?;
    for note in &parsed.notes {
        eprintln!("kedge: note: {note}");
    }
    Ok(parsed.set)
}

/// Kedge's source cache: `cache_dir`, else `$KEDGE_CACHE/source`.
fn source(cache_dir: Option<PathBuf>) -> anyhow::Result<Source> {
    kedge_source::install_crypto_provider();
    let cache = match cache_dir {
        Some(c) => c,
        None => kedge_render::kustomize::cache_dir()
            .context("cannot find a cache directory: set KEDGE_CACHE or HOME")?
            .join("source"),
    };
    Ok(Source::new(SourceConfig::new(cache))?)
}

/// What applying a set would do to its Applications.
#[derive(Debug, Default)]
struct Preview {
    /// Generated, not there yet.
    created: Vec<String>,
    /// Made by the set and different from what it generates now: the name and the diff.
    changed: Vec<(String, String)>,
    /// Made by the set and no longer generated.
    gone: Vec<Application>,
    /// Generated, but the name belongs to an Application the set did not make.
    taken: Vec<String>,
    /// Made by the set and equal to what it generates.
    unchanged: usize,
}

fn diff_cmd(
    kube: &KubeArgs,
    name: Option<&str>,
    file: Option<&Path>,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let (client, context_ns) = rt
        .block_on(kube.client())
        .context("kedge appset diff compares with the Applications in the cluster")?;
    let mut set = match file {
        Some(file) => {
            let set = read_set(file)?;
            let in_file = set
                .metadata
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .with_context(|| format!("{} has no metadata.name", file.display()))?;
            if let Some(name) = name.filter(|n| *n != in_file) {
                bail!(
                    "{} holds application set {in_file}, not {name}",
                    file.display()
                );
            }
            if let (Some(flag), Some(own)) = (&kube.namespace, &set.metadata.namespace)
                && flag != own
            {
                bail!(
                    "{} puts application set {in_file} in namespace {own}, not {flag} (-n)",
                    file.display()
                );
            }
            set
        }
        None => {
            let name = name.context("name the application set, or give its file with -f")?;
            let api: Api<ApplicationSet> = Api::namespaced(client.clone(), &context_ns);
            rt.block_on(api.get_opt(name))
                .with_context(|| {
                    format!("failed to read application set {name} in namespace {context_ns}")
                })?
                .with_context(|| {
                    format!("application set {name} not found in namespace {context_ns}")
                })?
        }
    };
    let ns = set
        .metadata
        .namespace
        .get_or_insert_with(|| context_ns.clone())
        .clone();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let clusters = if uses_generator(&set.spec, "clusters") {
        rt.block_on(list_clusters_in(client.clone(), &ns))?
    } else {
        Vec::new()
    };
    let git = CliGit::new(kube, &set, source(cache_dir)?, rt);
    let generated = generate(&set, &Inputs::new(&clusters, &git)).with_context(|| {
        format!(
            "application set {set_name} produces no Applications: the controller changes none of them while this \
             lasts"
        )
    })?;
    let rt = &git.runtime;
    let apps: Api<Application> = Api::namespaced(client, &ns);
    let existing: BTreeMap<String, Application> = rt
        .block_on(apps.list(&ListParams::default()))
        .with_context(|| format!("failed to list the Applications of namespace {ns}"))?
        .items
        .into_iter()
        .map(|a| (a.name_any(), a))
        .collect();
    let mut preview = Preview::default();
    let mut names = BTreeSet::new();
    for g in &generated {
        let app_name = g.application.name_any();
        // The body the controller writes; what it refuses (another namespace) stops its whole pass.
        let body = desired(&set, &g.application, &ns).with_context(|| {
            format!("application set {set_name}: the controller changes none of its Applications")
        })?;
        names.insert(app_name.clone());
        match existing.get(&app_name) {
            None => preview.created.push(app_name),
            Some(live) if !made_by(live, &set_name) => preview.taken.push(app_name),
            Some(live) => {
                // What the Application would be after the controller's write: the API server's answer to a dry
                // run of it (as the set's field manager), so that fields others own stay as they would.
                let after = rt
                    .block_on(apps.patch(
                        &app_name,
                        &PatchParams::apply(FIELD_MANAGER).force().dry_run(),
                        &Patch::Apply(&body),
                    ))
                    .with_context(|| {
                        format!(
                            "cannot compare application {app_name}: the API server refused a dry run of the set's \
                             write"
                        )
                    })?;
                let text = managed_diff(&app_name, live, &after)?;
                if text.is_empty() {
                    preview.unchanged += 1;
                } else {
                    preview.changed.push((app_name, text));
                }
            }
        }
    }
    preview.gone = existing
        .into_values()
        .filter(|a| made_by(a, &set_name) && !names.contains(&a.name_any()))
        .collect();
    let (out, changes) = report(&set, generated.is_empty(), &preview);
    print!("{out}");
    Ok(if changes { 1 } else { 0 })
}

/// What applying `set` would do, as printed by `kedge appset diff`, and whether it would change anything
/// (`generated_empty`: its generators returned no Applications at all).
fn report(set: &ApplicationSet, generated_empty: bool, preview: &Preview) -> (String, bool) {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let allowed = Allowed::of(set);
    let policy = policy_name(allowed.policy);
    let mut out = String::new();
    let mut changes = 0;
    for n in &preview.created {
        out.push_str(&format!("created: {n}\n"));
        changes += 1;
    }
    for (n, text) in &preview.changed {
        if allowed.update {
            out.push_str(&format!("changed: {n}\n"));
            changes += 1;
        } else {
            out.push_str(&format!(
                "not changed: {n} (it differs from what the set generates, but applicationsSync {policy} never \
                 updates)\n"
            ));
        }
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    let confirmed = kedge_appset::owned::deletions_confirmed(set);
    let preserve = set
        .spec
        .sync_policy
        .as_ref()
        .is_some_and(|p| p.preserve_resources_on_deletion);
    // As the controller: nothing generated at all keeps what the set made until a person confirms.
    let held = kedge_appset::owned::held_when_nothing_generated(
        set,
        allowed.delete,
        generated_empty,
        preview.gone.len(),
    );
    for app in &preview.gone {
        let n = app.name_any();
        if !allowed.delete {
            out.push_str(&format!(
                "not deleted: {n} (no longer generated, but applicationsSync {policy} never deletes)\n"
            ));
        } else if held {
            out.push_str(&format!(
                "not deleted: {n} (the generators returned no Applications: the controller keeps the ones made \
                 before until the set is annotated {CONFIRM_DELETIONS}: \"true\")\n"
            ));
        } else {
            let finalizer = app
                .finalizers()
                .iter()
                .any(|f| f == kedge_api::RESOURCES_FINALIZER);
            let deployed = match (preserve, finalizer) {
                (true, _) => "what it deployed stays: syncPolicy.preserveResourcesOnDeletion",
                (false, true) => {
                    "what it deployed is deleted with it: it has the kedge.dev/resources-finalizer finalizer"
                }
                (false, false) => {
                    "what it deployed stays: it has no kedge.dev/resources-finalizer finalizer"
                }
            };
            out.push_str(&format!("deleted: {n} ({deployed})\n"));
            changes += 1;
        }
    }
    let deletions = if allowed.delete && !held {
        preview.gone.len()
    } else {
        0
    };
    if deletions > MAX_DELETIONS && !confirmed {
        out.push_str(&format!(
            "note: the controller deletes at most {MAX_DELETIONS} Applications per pass: these {deletions} go over \
             several passes (annotate the set {CONFIRM_DELETIONS}: \"true\" to delete them at once)\n"
        ));
    }
    for n in &preview.taken {
        out.push_str(&format!(
            "taken: {n} (taken by an Application the set did not make: the set leaves it alone)\n"
        ));
    }
    out.push_str(&format!(
        "application set {set_name}: {} to create, {} to change, {deletions} to delete, {} unchanged{}\n",
        preview.created.len(),
        if allowed.update {
            preview.changed.len()
        } else {
            0
        },
        preview.unchanged,
        if preview.taken.is_empty() {
            String::new()
        } else {
            format!(", {} taken", preview.taken.len())
        }
    ));
    (out, changes > 0)
}

/// The unified diff of what the set manages of an Application (labels, annotations, finalizers, spec; never status)
/// between `live` and `after` the set's write; empty when they are equal.
fn managed_diff(name: &str, live: &Application, after: &Application) -> anyhow::Result<String> {
    fn view(app: &Application) -> anyhow::Result<serde_json::Value> {
        let mut meta = serde_json::Map::new();
        for (key, map) in [
            ("labels", &app.metadata.labels),
            ("annotations", &app.metadata.annotations),
        ] {
            if let Some(m) = map.as_ref().filter(|m| !m.is_empty()) {
                meta.insert(key.to_owned(), serde_json::to_value(m)?);
            }
        }
        if let Some(f) = app.metadata.finalizers.as_ref().filter(|f| !f.is_empty()) {
            meta.insert("finalizers".to_owned(), serde_json::to_value(f)?);
        }
        Ok(serde_json::json!({ "metadata": meta, "spec": serde_json::to_value(&app.spec)? }))
    }
    let (before, after) = (view(live)?, view(after)?);
    if before == after {
        return Ok(String::new());
    }
    let (before, after) = (
        kedge_engine::diff::to_yaml(&before),
        kedge_engine::diff::to_yaml(&after),
    );
    Ok(similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{name} (live)"),
            &format!("{name} (as the set writes it)"),
        )
        .to_string())
}

/// Git as the controller reads it: credentials from the repository Secrets of the set's namespace when the
/// cluster can be reached, anonymous access otherwise (with a note).
struct CliGit {
    source: Source,
    runtime: tokio::runtime::Runtime,
    secrets: Option<(RepositorySecrets, String)>,
}

impl CliGit {
    fn new(
        kube: &KubeArgs,
        set: &kedge_api::ApplicationSet,
        source: Source,
        runtime: tokio::runtime::Runtime,
    ) -> Self {
        let mut secrets = None;
        if uses_generator(&set.spec, "git") {
            match runtime.block_on(kube.client()) {
                Ok((client, ns)) => {
                    let ns = set.metadata.namespace.clone().unwrap_or(ns);
                    secrets = Some((RepositorySecrets::Read(client), ns));
                }
                Err(e) => eprintln!(
                    "kedge: note: no cluster to read repository Secrets from ({e}); repositories are read without \
                     credentials"
                ),
            }
        }
        Self {
            source,
            runtime,
            secrets,
        }
    }
}

impl GitFiles for CliGit {
    fn tree(&self, repo_url: &str, revision: &str) -> Result<Arc<dyn FileTree>, String> {
        let repo = RepoSpec::new(repo_url).map_err(|e| e.to_string())?;
        let repo = match &self.secrets {
            Some((secrets, ns)) => {
                let (credentials, insecure) = self
                    .runtime
                    .block_on(credentials_for(secrets, ns, repo_url))
                    .map_err(|e| e.to_string())?;
                repo.with_credentials(credentials).insecure(insecure)
            }
            None => repo,
        };
        fetch_tree(&self.source, repo, revision)
    }
}

/// Whether a generator of `kind` appears anywhere (nested generators are free-form JSON).
fn uses_generator(spec: &kedge_api::ApplicationSetSpec, kind: &str) -> bool {
    fn walk(v: &serde_json::Value, kind: &str) -> bool {
        match v {
            serde_json::Value::Object(m) => m.iter().any(|(k, v)| k == kind || walk(v, kind)),
            serde_json::Value::Array(a) => a.iter().any(|v| walk(v, kind)),
            _ => false,
        }
    }
    serde_json::to_value(&spec.generators).is_ok_and(|v| walk(&v, kind))
}

async fn list_clusters(kube: &KubeArgs) -> anyhow::Result<(Vec<Cluster>, String)> {
    let (client, ns) = kube
        .client()
        .await
        .context("the set has a clusters generator, which reads the registered Clusters")?;
    let clusters = list_clusters_in(client, &ns).await?;
    Ok((clusters, ns))
}

/// The Clusters registered in namespace `ns`, for a set with a clusters generator.
async fn list_clusters_in(client: kube::Client, ns: &str) -> anyhow::Result<Vec<Cluster>> {
    let api: Api<Cluster> = Api::namespaced(client, ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(e)) if e.code == 404 => bail!(
            "the set has a clusters generator, but the Cluster CRD is not installed (kedge install) in the current \
             context"
        ),
        Err(e) => Err(e).with_context(|| format!("failed to list the Clusters in namespace {ns}")),
    }
}
