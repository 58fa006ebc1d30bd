//! The `kedge` binary: parses the command line and hands off to the library crates.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Pull-based GitOps continuous delivery for Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "kedge", version, about)]
struct Cli {
    #[command(flatten)]
    kube: cli::kube::KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render an application (a local directory or a path of a Git repository) into the objects Kedge would
    /// apply, and print them.
    Render(cli::render::RenderArgs),
    /// Run the controller: keep every Application equal to Git.
    Run(Box<cli::run::RunArgs>),
    /// Install the Application CRD, a namespace, RBAC and the controller Deployment (or print them).
    Install(cli::install::InstallArgs),
    /// Work with Applications: create, list, get, diff, sync, history, rollback, suspend, resume, refresh, wait, delete.
    #[command(subcommand)]
    App(cli::app::AppCommand),
    /// ApplicationSets: print the Applications a set produces (generate), what applying it would do (diff), its
    /// rollout (rollout).
    #[command(subcommand)]
    Appset(cli::appset::AppsetCommand),
    /// Register the clusters applications deploy to: add, list, get, remove.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
    /// Projects, which bound what each team's applications may deploy: list, and their sync windows.
    #[command(subcommand)]
    Project(cli::project::ProjectCommand),
    /// Convert another tool's resources into Kedge's: `kedge import argocd -f apps.yaml`.
    #[command(subcommand)]
    Import(cli::import::ImportCommand),
    /// Gatekeeper policies offline: run the library's test suites (verify), check a rendered application (check).
    #[command(subcommand)]
    Policy(cli::policy::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Like `kubectl diff`: 0 in sync, 1 differences, 2 (above 1) when the comparison itself failed.
    let error_code = if matches!(
        cli.command,
        Command::App(cli::app::AppCommand::Diff { .. })
            | Command::Appset(cli::appset::AppsetCommand::Diff { .. })
    ) {
        2
    } else {
        1
    };
    let result = match cli.command {
        Command::Render(args) => cli::render::run(args).map(|()| 0),
        Command::Run(args) => cli::run::run(&cli.kube, *args).map(|()| 0),
        Command::Install(args) => cli::install::run(&cli.kube, args).map(|()| 0),
        Command::App(cmd) => cli::app::run(&cli.kube, cmd),
        Command::Appset(cmd) => cli::appset::run(&cli.kube, cmd),
        Command::Cluster(cmd) => cli::cluster::run(&cli.kube, cmd),
        Command::Project(cmd) => cli::project::run(&cli.kube, cmd),
        Command::Import(cmd) => cli::import::run(cli.kube.namespace.as_deref(), cmd),
        Command::Policy(cmd) => cli::policy::run(cmd),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("kedge: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(error_code)
        }
    }
}
