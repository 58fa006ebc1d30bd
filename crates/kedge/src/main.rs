//! The `kedge` binary: parses the command line and hands off to the library crates.

use clap::Parser;

/// Pull-based GitOps continuous delivery for Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "kedge", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
