//! `kedge project ...`: the Projects of Kedge's namespace (`-n`), and when their sync windows let applications sync.

use anyhow::Context as _;
use clap::Subcommand;
use kedge_api::{Application, Project, WindowKind};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::app::print_table;
use super::kube::{KubeArgs, runtime};

/// `kedge project` subcommands.
#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// List the projects with how many applications each has.
    List,
    /// List a project's sync windows: open now (until when) or not, and when each next opens.
    Windows {
        /// The project.
        name: String,
    },
}

/// Runs `kedge project ...`.
pub fn run(kube: &KubeArgs, cmd: ProjectCommand) -> anyhow::Result<u8> {
    runtime()?.block_on(async move {
        let (client, ns) = kube.client().await?;
        let projects: Api<Project> = Api::namespaced(client.clone(), &ns);
        match cmd {
            ProjectCommand::List => {
                let apps: Api<Application> = Api::all(client);
                let apps = apps
                    .list(&ListParams::default())
                    .await
                    .context("failed to list applications")?;
                let mut rows = vec![vec![
                    "NAME".to_owned(),
                    "APPLICATIONS".to_owned(),
                    "WINDOWS".to_owned(),
                    "READY".to_owned(),
                    "DESCRIPTION".to_owned(),
                ]];
                for p in projects
                    .list(&ListParams::default())
                    .await
                    .with_context(|| format!("failed to list projects in namespace {ns}"))?
                {
                    let name = p.name_any();
                    let count = apps.items.iter().filter(|a| a.spec.project == name).count();
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                        .map_or("Unknown".to_owned(), |c| c.status.clone());
                    rows.push(vec![
                        name,
                        count.to_string(),
                        p.spec.sync_windows.len().to_string(),
                        ready,
                        p.spec.description.clone().unwrap_or_default(),
                    ]);
                }
                print_table(&rows);
                Ok(0)
            }
            ProjectCommand::Windows { name } => {
                let project = projects
                    .get_opt(&name)
                    .await
                    .with_context(|| format!("failed to read project {name}"))?
                    .with_context(|| format!("project {name} not found in namespace {ns}"))?;
                let states = project
                    .window_schedule(jiff::Timestamp::now())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if states.is_empty() {
                    println!("project {name} has no sync windows: applications sync whenever they need to");
                    return Ok(0);
                }
                let mut rows = vec![
                    ["KIND", "SCHEDULE", "DURATION", "TIME ZONE", "APPLIES TO", "MANUAL SYNC", "OPEN", "NEXT OPENING"]
                        .map(str::to_owned)
                        .to_vec(),
                ];
                for s in states {
                    let w = &s.window;
                    let mut applies = Vec::new();
                    for (what, list) in [
                        ("applications", &w.applications),
                        ("namespaces", &w.namespaces),
                        ("clusters", &w.clusters),
                    ] {
                        if !list.is_empty() {
                            applies.push(format!("{what} {}", list.join(",")));
                        }
                    }
                    rows.push(vec![
                        match w.kind {
                            WindowKind::Allow => "allow",
                            WindowKind::Deny => "deny",
                        }
                        .to_owned(),
                        w.schedule.clone(),
                        w.duration.clone(),
                        w.time_zone.clone().unwrap_or_else(|| "UTC".to_owned()),
                        if applies.is_empty() {
                            "nothing".to_owned()
                        } else {
                            applies.join(if w.and_operator { " and " } else { "; " })
                        },
                        if w.manual_sync { "allowed" } else { "held" }.to_owned(),
                        s.open_until
                            .map_or("no".to_owned(), |u| format!("until {u}")),
                        s.next_opening.unwrap_or_else(|| "never".to_owned()),
                    ]);
                }
                print_table(&rows);
                Ok(0)
            }
        }
    })
}
