//! `kedge policy`: Gatekeeper policies offline. `verify` runs the library's own test suites (`gator verify`
//! format); `check` renders an application and evaluates its objects against templates and constraints, for CI.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use kedge_policy::{CaseOutcome, EnforcementAction, Inventory, PolicySet, Suite, files, suite};

use super::render::{RenderSourceArgs, render};

/// `kedge policy` subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run Gatekeeper test suites (`kind: Suite`, as `gator verify` reads them) and print each case's outcome;
    /// exit 1 when a case fails. A directory stands for every suite under it.
    Verify {
        /// Suite files or directories holding them.
        #[arg(required = true)]
        suites: Vec<PathBuf>,
    },
    /// Render an application and evaluate its objects against ConstraintTemplates and constraints; print every
    /// violation and exit 1 when one has enforcementAction deny.
    Check(Box<CheckArgs>),
}

/// Arguments of `kedge policy check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A directory (read recursively) or file of ConstraintTemplates and constraints (repeatable). Other
    /// documents found there are left out.
    #[arg(long, required = true)]
    pub policies: Vec<PathBuf>,
    /// What to render, as `kedge render` takes it.
    #[command(flatten)]
    pub source: RenderSourceArgs,
}

/// Runs a `kedge policy` subcommand; returns the exit code.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<u8> {
    match cmd {
        PolicyCommand::Verify { suites } => verify(&suites),
        PolicyCommand::Check(args) => check(&args),
    }
}

fn verify(paths: &[PathBuf]) -> anyhow::Result<u8> {
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for path in paths {
        let found = match suite::find_suites(path) {
            Ok(found) => found,
            Err(e) => {
                println!("FAIL {}: {}", path.display(), chain(&e));
                failed += 1;
                continue;
            }
        };
        if found.is_empty() {
            println!("FAIL {}: no Suite found", path.display());
            failed += 1;
        }
        for file in found {
            let shown = file.display();
            let loaded = match Suite::load(&file) {
                Ok(s) => s,
                Err(e) => {
                    println!("FAIL {shown}: {}", chain(&e));
                    failed += 1;
                    continue;
                }
            };
            for r in loaded.run() {
                let case = format!("{shown} {}/{}", r.test, r.case);
                match r.outcome {
                    CaseOutcome::Pass => {
                        passed += 1;
                        println!("ok   {case}");
                    }
                    CaseOutcome::Skip => {
                        skipped += 1;
                        println!("skip {case}");
                    }
                    CaseOutcome::Fail(reasons) => {
                        failed += 1;
                        println!("FAIL {case}: {}", reasons.join("; "));
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(u8::from(failed > 0))
}

fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    let mut docs = Vec::new();
    for p in &args.policies {
        docs.extend(
            files::read_dir(p)
                .with_context(|| format!("failed to read policies from {}", p.display()))?,
        );
    }
    let policies = PolicySet::load_documents(docs).context("failed to load policies")?;
    if !policies.ignored().is_empty() {
        eprintln!(
            "kedge: left out {} documents that are neither ConstraintTemplates nor constraints",
            policies.ignored().len()
        );
    }
    let constraints = policies.constraints().count();
    if constraints == 0 {
        eprintln!("kedge: warning: no constraints found, nothing to check");
    }
    let set = render(&args.source)?;
    let objects: Vec<serde_json::Value> = set.objects.iter().map(|o| o.object.clone()).collect();
    // Offline, the inventory of referential policies is the rendered set alone.
    let inventory = Inventory::from_objects(&objects);
    let result = policies.evaluate(&objects, &inventory);
    for v in &result.violations {
        println!("{v}");
    }
    for e in &result.errors {
        println!("{e}");
    }
    let count = |a| result.with_action(a).count();
    eprintln!(
        "kedge: {} objects, {constraints} constraints: {} deny, {} warn, {} dryrun, {} errors",
        objects.len(),
        count(EnforcementAction::Deny),
        count(EnforcementAction::Warn),
        count(EnforcementAction::Dryrun),
        result.errors.len(),
    );
    Ok(u8::from(result.denied()))
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
