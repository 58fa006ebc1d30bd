//! The `kedge` binary: parses the command line and hands off to the library crates.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Pull-based GitOps continuous delivery for Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "kedge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render an application (a local directory or a path of a Git repository) into the objects Kedge would
    /// apply, and print them.
    Render(cli::render::RenderArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => cli::render::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kedge: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
