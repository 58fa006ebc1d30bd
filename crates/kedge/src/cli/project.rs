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
    /// Tokens of a project role, for CI systems: they may do what the role allows, through Kedge's API.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `kedge project token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issues a token for a role and prints it (it is shown only once; its id is recorded in the role).
    Create {
        /// The project.
        project: String,
        /// The role.
        role: String,
        /// How long the token is valid (e.g. `30d`, `12h`, `2w`); `0` for no expiry.
        #[arg(long, default_value = "0")]
        expires: String,
        /// The token's id (default: random).
        #[arg(long)]
        id: Option<String>,
    },
    /// Lists the tokens of a project's roles (ids and dates, never the tokens).
    List {
        /// The project.
        project: String,
    },
    /// Revokes a token: removes its id from the role, after which the API refuses it.
    Delete {
        /// The project.
        project: String,
        /// The role.
        role: String,
        /// The token's id.
        id: String,
    },
}

/// Reads `30d`, `2w`, `12h`, `1h30m`... (`0`: no expiry).
fn parse_expiry(text: &str) -> anyhow::Result<Option<u64>> {
    let text = text.trim();
    if text == "0" {
        return Ok(None);
    }
    let days = |n: &str, per: u64| -> anyhow::Result<Option<u64>> {
        let n: u64 = n.parse().map_err(|_| {
            anyhow::anyhow!("invalid --expires {text:?}: a whole number of days or weeks")
        })?;
        Ok(Some(n.saturating_mul(per * 86_400)))
    };
    if let Some(n) = text.strip_suffix('d') {
        return days(n, 1);
    }
    if let Some(n) = text.strip_suffix('w') {
        return days(n, 7);
    }
    let d = kedge_api::parse_duration(text).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
    anyhow::ensure!(
        d.as_secs() > 0,
        "--expires {text:?} is not a positive duration"
    );
    Ok(Some(d.as_secs()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fmt_unix(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

async fn token(
    client: kube::Client,
    ns: &str,
    projects: &Api<Project>,
    cmd: TokenCommand,
) -> anyhow::Result<u8> {
    match cmd {
        TokenCommand::Create {
            project,
            role,
            expires,
            id,
        } => {
            let expires = parse_expiry(&expires)?;
            let mut p = projects
                .get_opt(&project)
                .await
                .with_context(|| format!("failed to read project {project}"))?
                .with_context(|| format!("project {project} not found in namespace {ns}"))?;
            let now = unix_now();
            let id = id.unwrap_or_else(kedge_server::auth::new_token_id);
            let Some(r) = p.spec.roles.iter_mut().find(|r| r.name == role) else {
                anyhow::bail!("project {project} has no role {role} (spec.roles)");
            };
            anyhow::ensure!(
                !r.jwt_tokens.iter().any(|t| t.id == id),
                "role {role} of project {project} already has a token with id {id}"
            );
            r.jwt_tokens.push(kedge_api::RoleToken {
                iat: now as i64,
                exp: expires.map(|e| (now + e) as i64),
                id: id.clone(),
            });
            let key = kedge_server::auth::ensure_session_key(&client, ns)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot read the key that signs tokens: {}", e.message)
                })?;
            let token = kedge_server::auth::sign_project_token(
                &key,
                &kedge_server::auth::ProjectTokenClaims {
                    p: project.clone(),
                    r: role.clone(),
                    i: id.clone(),
                    iat: now,
                    e: expires.map(|e| now + e),
                },
            );
            // Replaced with the version read: a concurrent change of the project fails this, not lost.
            projects
                .replace(&project, &Default::default(), &p)
                .await
                .with_context(|| format!("failed to record the token in project {project}"))?;
            eprintln!(
                "token {id} for role {role} of project {project}{}",
                expires.map_or_else(
                    || " (no expiry)".to_owned(),
                    |e| format!(", valid until {}", fmt_unix((now + e) as i64))
                )
            );
            println!("{token}");
            Ok(0)
        }
        TokenCommand::List { project } => {
            let p = projects
                .get_opt(&project)
                .await
                .with_context(|| format!("failed to read project {project}"))?
                .with_context(|| format!("project {project} not found in namespace {ns}"))?;
            let mut rows = vec![
                ["ROLE", "ID", "ISSUED", "EXPIRES"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for r in &p.spec.roles {
                for t in &r.jwt_tokens {
                    rows.push(vec![
                        r.name.clone(),
                        t.id.clone(),
                        fmt_unix(t.iat),
                        t.exp.map_or_else(|| "never".to_owned(), fmt_unix),
                    ]);
                }
            }
            print_table(&rows);
            Ok(0)
        }
        TokenCommand::Delete { project, role, id } => {
            let mut p = projects
                .get_opt(&project)
                .await
                .with_context(|| format!("failed to read project {project}"))?
                .with_context(|| format!("project {project} not found in namespace {ns}"))?;
            let Some(r) = p.spec.roles.iter_mut().find(|r| r.name == role) else {
                anyhow::bail!("project {project} has no role {role} (spec.roles)");
            };
            let before = r.jwt_tokens.len();
            r.jwt_tokens.retain(|t| t.id != id);
            anyhow::ensure!(
                r.jwt_tokens.len() < before,
                "role {role} of project {project} has no token {id}"
            );
            projects
                .replace(&project, &Default::default(), &p)
                .await
                .with_context(|| format!("failed to update project {project}"))?;
            println!("token {id} of role {role} of project {project} revoked");
            Ok(0)
        }
    }
}

/// Runs `kedge project ...`.
pub fn run(kube: &KubeArgs, cmd: ProjectCommand) -> anyhow::Result<u8> {
    runtime()?.block_on(async move {
        let (client, ns) = kube.client().await?;
        let projects: Api<Project> = Api::namespaced(client.clone(), &ns);
        match cmd {
            ProjectCommand::Token(cmd) => token(client, &ns, &projects, cmd).await,
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

#[cfg(test)]
mod tests {
    use super::parse_expiry;

    #[test]
    fn expiries_read_days_weeks_and_durations() {
        assert_eq!(parse_expiry("0").ok(), Some(None));
        assert_eq!(parse_expiry("30d").ok(), Some(Some(30 * 86_400)));
        assert_eq!(parse_expiry("2w").ok(), Some(Some(14 * 86_400)));
        assert_eq!(parse_expiry("1h30m").ok(), Some(Some(5_400)));
        for bad in ["", "3x", "-1d", "d", "0s"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
