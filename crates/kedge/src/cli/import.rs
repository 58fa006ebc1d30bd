//! `kedge import argocd`: converts Argo CD resources into Kedge's (see the `kedge::argocd` library module).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use kedge::argocd::{self, Options};

/// What to import.
#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Convert Argo CD Applications, ApplicationSets, AppProjects, repository and cluster Secrets into Kedge's,
    /// printed as YAML. Every field without an equivalent is listed on stderr with its line; exits 1 when something
    /// could not be converted. With -n, every converted resource goes to that namespace (default: each keeps its
    /// own).
    Argocd(ArgocdArgs),
}

/// Arguments of `kedge import argocd`.
#[derive(Args, Debug)]
pub struct ArgocdArgs {
    /// The YAML file to read (`-`: standard input).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
}

/// Runs `kedge import ...`; returns the exit code (1 when something could not be converted).
pub fn run(namespace: Option<&str>, cmd: ImportCommand) -> anyhow::Result<u8> {
    let ImportCommand::Argocd(args) = cmd;
    let (name, input) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("failed to read standard input")?;
        ("-".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("failed to read {}", args.file.display()))?;
        (args.file.display().to_string(), text)
    };
    let options = Options {
        namespace: namespace.map(str::to_owned),
    };
    let conversion = argocd::convert(&input, &options);
    let yaml = conversion.to_yaml().context("failed to write YAML")?;
    let mut err = std::io::stderr().lock();
    for d in &conversion.diagnostics {
        writeln!(err, "{name}:{d}").context("failed to write to stderr")?;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("failed to write to stdout"),
    }
    Ok(if conversion.complete() { 0 } else { 1 })
}
