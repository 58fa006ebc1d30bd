//! The `Project` custom resource: what the applications of one team may deploy, from where and to where. Shaped like
//! Argo CD's `AppProject` (same field names and glob rules) so that `kedge import argocd` converts one unchanged.
//!
//! The rules are pure functions here; the controller applies them before it fetches (source, destination, the
//! application's namespace) and before it plans (every rendered object), so that nothing outside the project is ever
//! applied.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// The project every application without `spec.project` belongs to. While no Project of this name exists it allows
/// everything, as Kedge did before projects.
pub const DEFAULT_PROJECT: &str = "default";

/// What the applications of a project may deploy.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kedge.dev",
    version = "v1alpha1",
    kind = "Project",
    plural = "projects",
    namespaced,
    status = "ProjectStatus",
    printcolumn = r#"{"name":"Description","type":"string","jsonPath":".spec.description"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// What the project is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Repositories the applications may deploy from (globs; `!` before a pattern denies what it matches). None
    /// listed: none allowed.
    #[serde(default)]
    pub source_repos: Vec<String>,
    /// Clusters and namespaces the applications may deploy to. None listed: none allowed.
    #[serde(default)]
    pub destinations: Vec<ProjectDestination>,
    /// Cluster-scoped kinds the applications may deploy. None listed: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_whitelist: Vec<GroupKind>,
    /// Cluster-scoped kinds the applications may not deploy (wins over the whitelist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_blacklist: Vec<GroupKind>,
    /// Namespaced kinds the applications may deploy. None listed: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_whitelist: Vec<GroupKind>,
    /// Namespaced kinds the applications may not deploy (wins over the whitelist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_blacklist: Vec<GroupKind>,
    /// Namespaces besides Kedge's own whose Applications may belong to this project (globs; the controller must also
    /// watch them: `kedge run --application-namespaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_namespaces: Vec<String>,
    /// When the applications may be synced: deny windows hold syncs while open; where allow windows apply, syncs
    /// wait for one to open. Automated syncs and self-heal wait; manual syncs too unless the window says
    /// `manualSync: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_windows: Vec<SyncWindow>,
    /// OPA Gatekeeper `ConstraintTemplate`s and constraints (the Gatekeeper policy library's format) that every
    /// rendered object of the project's applications is checked against before anything is planned: a `deny`
    /// constraint's violation refuses the sync, `warn` and `dryrun` ones are reported. Each source is a Git
    /// repository path or a ConfigMap in the project's namespace; one that cannot be read refuses every sync of
    /// the project's applications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySource>,
    /// The ServiceAccount each destination's syncs run as: every request of an application's passes is made
    /// impersonating it, so that the cluster's RBAC decides what the team may do. When the list is not empty, an
    /// application whose destination no entry matches is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_service_accounts: Vec<DestinationServiceAccount>,
    /// Who may see and act on the project's applications through Kedge's API and UI (see [`crate::ProjectRole`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<crate::ProjectRole>,
}

/// The ServiceAccount syncs to a destination run as.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationServiceAccount {
    /// The cluster's server URL or name (glob).
    pub server: String,
    /// The destination namespace (glob; empty: any).
    #[serde(default)]
    pub namespace: String,
    /// The ServiceAccount: `NAME` (in the destination namespace) or `NAMESPACE:NAME`.
    #[schemars(length(min = 1))]
    pub default_service_account: String,
}

/// Where a project's policies come from: a path of a Git repository (`repoURL`, `targetRevision`, `path`), or a
/// ConfigMap (`configMapRef`) in the project's namespace whose every data value is a YAML stream. Exactly one of
/// `repoURL` and `configMapRef`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySource {
    /// The Git repository (credentials from the repository Secrets of the project's namespace).
    #[serde(default, rename = "repoURL", skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    /// Branch, tag or commit of the repository; `HEAD` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// The directory (or file) of the repository holding the policies: every `.yaml`, `.yml` and `.json` file
    /// below it is read; documents that are neither templates nor constraints are left out. The root when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A ConfigMap in the project's namespace holding the policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapRef>,
}

/// A ConfigMap by name, in the namespace of the object that refers to it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapRef {
    /// The ConfigMap's name.
    pub name: String,
}

/// A policy source, read: what [`PolicySource`] names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicyOrigin<'a> {
    /// A path of a Git repository at a revision.
    Git {
        /// The repository URL.
        repo_url: &'a str,
        /// The revision (`HEAD` when the source says none).
        revision: &'a str,
        /// The path (`""`: the root).
        path: &'a str,
    },
    /// A ConfigMap of the project's namespace.
    ConfigMap {
        /// Its name.
        name: &'a str,
    },
}

impl std::fmt::Display for PolicyOrigin<'_> {
    /// `https://git.example/policies.git@main:library/general` or `ConfigMap policies`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyOrigin::Git {
                repo_url,
                revision,
                path,
            } => write!(
                f,
                "{repo_url}@{revision}:{}",
                if path.is_empty() { "." } else { path }
            ),
            PolicyOrigin::ConfigMap { name } => write!(f, "ConfigMap {name}"),
        }
    }
}

impl PolicySource {
    /// What the source names, or why it cannot be read (exactly one of `repoURL` and `configMapRef`, neither
    /// empty).
    pub fn origin(&self) -> Result<PolicyOrigin<'_>, String> {
        let repo = self.repo_url.as_deref().map(str::trim);
        match (repo, &self.config_map_ref) {
            (Some(_), Some(_)) => {
                Err("sets both repoURL and configMapRef; a source is one of them".into())
            }
            (None, None) => Err("sets neither repoURL nor configMapRef".into()),
            (Some(""), None) => Err("repoURL is empty".into()),
            (Some(repo_url), None) => Ok(PolicyOrigin::Git {
                repo_url,
                revision: self
                    .target_revision
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .unwrap_or("HEAD"),
                path: self
                    .path
                    .as_deref()
                    .map(|p| p.trim().trim_matches('/'))
                    .filter(|p| *p != ".")
                    .unwrap_or_default(),
            }),
            (None, Some(cm)) => {
                if self.target_revision.is_some() || self.path.is_some() {
                    return Err(
                        "sets targetRevision or path with configMapRef; they belong to repoURL"
                            .into(),
                    );
                }
                match cm.name.trim() {
                    "" => Err("configMapRef.name is empty".into()),
                    name => Ok(PolicyOrigin::ConfigMap { name }),
                }
            }
        }
    }
}

/// A time when syncs are allowed or denied.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// `allow` or `deny`.
    pub kind: WindowKind,
    /// When the window opens: a cron schedule (`0 22 * * *`, `@daily`), read in `timeZone`.
    pub schedule: String,
    /// How long it stays open, e.g. `1h`, `30m`.
    pub duration: String,
    /// Applications it applies to (name globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    /// Destination namespaces it applies to (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Destination clusters it applies to (name or server globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Manual syncs are allowed while this window holds syncs.
    #[serde(default)]
    pub manual_sync: bool,
    /// The time zone of the schedule (e.g. `Europe/Berlin`); UTC when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The window applies only to applications that match every list it sets (not any).
    #[serde(default)]
    pub and_operator: bool,
}

/// The kinds of sync window.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Syncs may run while it is open.
    Allow,
    /// Syncs wait while it is open.
    Deny,
}

/// Why syncs wait now, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// What holds them, e.g. `deny window 0 22 * * * (8h, Europe/Berlin) is open until ...`.
    pub reason: String,
    /// When they may run again, if known.
    pub until: Option<jiff::Timestamp>,
    /// What holds them.
    pub by: HoldBy,
}

/// What holds syncs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HoldBy {
    /// A sync window of the project.
    #[default]
    Window,
    /// Applications it depends on that are not ready (`spec.dependsOn`).
    Dependencies,
    /// The rollout of its ApplicationSet has not reached it for this revision (`RollingSync`).
    Rollout,
    /// Nothing has been promoted to it yet (`spec.promotion`).
    Promotion,
}

/// What the sync windows of a project allow an application now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowVerdict {
    /// Why automated syncs and self-heal wait, if they do.
    pub automated: Option<Hold>,
    /// Why manual syncs wait, if they do.
    pub manual: Option<Hold>,
}

/// A sync window read: schedule, duration and time zone parsed.
struct ReadWindow<'a> {
    window: &'a SyncWindow,
    schedule: crate::schedule::Schedule,
    duration: jiff::SignedDuration,
    tz: jiff::tz::TimeZone,
}

impl ReadWindow<'_> {
    fn describe(&self) -> String {
        format!(
            "{} window {:?} ({}, {})",
            match self.window.kind {
                WindowKind::Allow => "allow",
                WindowKind::Deny => "deny",
            },
            self.window.schedule,
            self.window.duration,
            self.window
                .time_zone
                .as_deref()
                .filter(|t| !t.is_empty())
                .unwrap_or("UTC")
        )
    }
}

/// A destination a project allows (or, with `!`, denies).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDestination {
    /// The cluster's API server URL (glob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The cluster's name (glob), as `destination.name` says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The namespace (glob; `!ns` denies it on the clusters this entry names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A kind, by API group and kind (globs; the core group is empty).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GroupKind {
    /// The API group (`""` for the core group, `*` for any).
    #[serde(default)]
    pub group: String,
    /// The kind (`*` for any).
    pub kind: String,
}

/// What Kedge last saw of a project.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// `Ready`: False with `InvalidSpec` when a pattern cannot be read (nothing is then allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A sync window now: open (until when) or not, and its next opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    /// The window.
    pub window: SyncWindow,
    /// When it closes, if it is open (RFC 3339 in its time zone).
    pub open_until: Option<String>,
    /// When it next opens (RFC 3339 in its time zone), if within five years.
    pub next_opening: Option<String>,
}

/// Why a project refuses something: the rule and what it refused, for conditions and Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectDenied {
    /// The project does not exist.
    #[error("project {0} not found")]
    NotFound(String),
    /// The project maps destinations to ServiceAccounts, and none to this one.
    #[error(
        "project {project} names no ServiceAccount for destination {destination} (spec.destinationServiceAccounts)"
    )]
    NoServiceAccount {
        /// The project.
        project: String,
        /// `cluster/namespace`.
        destination: String,
    },
    /// A sync window cannot be read.
    #[error("project {project}: spec.syncWindows[{index}]: {why}")]
    BadWindow {
        /// The project.
        project: String,
        /// The window's index.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A policy source cannot be read.
    #[error("project {project}: spec.policies[{index}]: {why}")]
    BadPolicySource {
        /// The project.
        project: String,
        /// The source's index.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A pattern of the project cannot be read.
    #[error("project {project}: {field}: invalid pattern {pattern:?}")]
    BadPattern {
        /// The project.
        project: String,
        /// The field, e.g. `spec.sourceRepos`.
        field: &'static str,
        /// The pattern.
        pattern: String,
    },
    /// The application's namespace may not hold Applications of the project.
    #[error(
        "project {project} does not allow Applications in namespace {namespace} (spec.sourceNamespaces)"
    )]
    Namespace {
        /// The project.
        project: String,
        /// The application's namespace.
        namespace: String,
    },
    /// The repository is not allowed.
    #[error("project {project} does not allow repository {repo} (spec.sourceRepos)")]
    Source {
        /// The project.
        project: String,
        /// The repository URL.
        repo: String,
    },
    /// The destination is not allowed.
    #[error(
        "project {project} does not allow destination {destination}{} (spec.destinations)",
        object.as_deref().map(|o| format!(" for {o}")).unwrap_or_default()
    )]
    Destination {
        /// The project.
        project: String,
        /// `cluster/namespace` (`cluster` alone for a cluster-scoped object).
        destination: String,
        /// The object, when an object's namespace was refused.
        object: Option<String>,
    },
    /// A kind is not allowed.
    #[error("project {project} does not allow {object} ({rule})")]
    Kind {
        /// The project.
        project: String,
        /// The object, e.g. `ClusterRole admin`.
        object: String,
        /// The rule, e.g. `spec.clusterResourceWhitelist`.
        rule: &'static str,
    },
}

fn glob(
    project: &str,
    field: &'static str,
    pattern: &str,
) -> Result<globset::GlobMatcher, ProjectDenied> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|_| ProjectDenied::BadPattern {
            project: project.to_owned(),
            field,
            pattern: pattern.to_owned(),
        })
}

/// Whether `value` matches the pattern (a glob), the pattern's `!` taken off first.
fn matches(
    project: &str,
    field: &'static str,
    pattern: &str,
    value: &str,
) -> Result<bool, ProjectDenied> {
    let pattern = pattern.strip_prefix('!').unwrap_or(pattern);
    Ok(glob(project, field, pattern)?.is_match(value))
}

/// Allowed when some pattern without `!` matches and no pattern with `!` does.
fn allowed(
    project: &str,
    field: &'static str,
    patterns: &[String],
    value: &str,
) -> Result<bool, ProjectDenied> {
    let mut allow = false;
    for p in patterns {
        let hit = matches(project, field, p, value)?;
        if p.starts_with('!') {
            if hit {
                return Ok(false);
            }
        } else {
            allow |= hit;
        }
    }
    Ok(allow)
}

fn kind_listed(
    project: &str,
    field: &'static str,
    list: &[GroupKind],
    group: &str,
    kind: &str,
) -> Result<bool, ProjectDenied> {
    for gk in list {
        if matches(project, field, &gk.group, group)? && matches(project, field, &gk.kind, kind)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The cluster an application or object deploys to, by both names it may go by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterRef<'a> {
    /// Its name (`in-cluster`, or a registered Cluster's name), when known.
    pub name: Option<&'a str>,
    /// Its server URL, when known.
    pub server: Option<&'a str>,
}

impl ClusterRef<'_> {
    fn describe(&self) -> &str {
        self.name.or(self.server).unwrap_or(crate::IN_CLUSTER_NAME)
    }
}

impl Project {
    fn name_or_default(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }

    /// Checks every pattern of the spec (for the Project's status).
    pub fn validate(&self) -> Result<(), ProjectDenied> {
        let p = self.name_or_default();
        let s = &self.spec;
        for r in &s.source_repos {
            matches(&p, "spec.sourceRepos", r, "")?;
        }
        for n in &s.source_namespaces {
            matches(&p, "spec.sourceNamespaces", n, "")?;
        }
        for d in &s.destinations {
            for v in [&d.server, &d.name, &d.namespace].into_iter().flatten() {
                matches(&p, "spec.destinations", v, "")?;
            }
        }
        for (field, list) in [
            (
                "spec.clusterResourceWhitelist",
                &s.cluster_resource_whitelist,
            ),
            (
                "spec.clusterResourceBlacklist",
                &s.cluster_resource_blacklist,
            ),
            (
                "spec.namespaceResourceWhitelist",
                &s.namespace_resource_whitelist,
            ),
            (
                "spec.namespaceResourceBlacklist",
                &s.namespace_resource_blacklist,
            ),
        ] {
            kind_listed(&p, field, list, "", "")?;
        }
        self.windows()?;
        self.policy_origins()?;
        Ok(())
    }

    /// The project's policy sources, read (see [`PolicySource::origin`]).
    pub fn policy_origins(&self) -> Result<Vec<PolicyOrigin<'_>>, ProjectDenied> {
        self.spec
            .policies
            .iter()
            .enumerate()
            .map(|(index, source)| {
                source
                    .origin()
                    .map_err(|why| ProjectDenied::BadPolicySource {
                        project: self.name_or_default(),
                        index,
                        why,
                    })
            })
            .collect()
    }

    fn windows(&self) -> Result<Vec<ReadWindow<'_>>, ProjectDenied> {
        let p = self.name_or_default();
        let mut out = Vec::new();
        for (index, window) in self.spec.sync_windows.iter().enumerate() {
            let bad = |why: String| ProjectDenied::BadWindow {
                project: p.clone(),
                index,
                why,
            };
            let schedule = window
                .schedule
                .parse()
                .map_err(|e: crate::schedule::ScheduleError| bad(e.to_string()))?;
            let duration = crate::parse_duration(&window.duration)
                .map_err(|e| bad(format!("duration: {e}")))
                .and_then(|d| {
                    jiff::SignedDuration::try_from(d).map_err(|e| bad(format!("duration: {e}")))
                })?;
            let tz = crate::schedule::time_zone(window.time_zone.as_deref())
                .map_err(|e| bad(e.to_string()))?;
            for (field, patterns) in [
                ("applications", &window.applications),
                ("namespaces", &window.namespaces),
                ("clusters", &window.clusters),
            ] {
                for pattern in patterns {
                    glob(&p, "spec.syncWindows", pattern)
                        .map_err(|_| bad(format!("{field}: invalid pattern {pattern:?}")))?;
                }
            }
            out.push(ReadWindow {
                window,
                schedule,
                duration,
                tz,
            });
        }
        Ok(out)
    }

    /// What the sync windows allow application `name` (deploying to `namespace` of `cluster`) at `now`.
    pub fn window_verdict(
        &self,
        name: &str,
        namespace: Option<&str>,
        cluster: ClusterRef<'_>,
        now: jiff::Timestamp,
    ) -> Result<WindowVerdict, ProjectDenied> {
        let p = self.name_or_default();
        let windows = self.windows()?;
        let any = |patterns: &[String], values: &[Option<&str>]| -> bool {
            patterns.iter().any(|pat| {
                glob(&p, "spec.syncWindows", pat)
                    .map(|g| values.iter().flatten().any(|v| g.is_match(v)))
                    .unwrap_or(false)
            })
        };
        let applies = |w: &SyncWindow| {
            let tests = [
                (!w.applications.is_empty()).then(|| any(&w.applications, &[Some(name)])),
                (!w.namespaces.is_empty()).then(|| any(&w.namespaces, &[namespace])),
                (!w.clusters.is_empty()).then(|| any(&w.clusters, &[cluster.name, cluster.server])),
            ];
            let set: Vec<bool> = tests.into_iter().flatten().collect();
            if w.and_operator {
                !set.is_empty() && set.iter().all(|t| *t)
            } else {
                set.iter().any(|t| *t)
            }
        };
        let mine: Vec<&ReadWindow<'_>> = windows.iter().filter(|w| applies(w.window)).collect();
        let open = |w: &ReadWindow<'_>| w.schedule.open_until(now, w.duration, &w.tz);
        let deny_open: Vec<(&ReadWindow<'_>, jiff::Timestamp)> = mine
            .iter()
            .filter(|w| w.window.kind == WindowKind::Deny)
            .filter_map(|w| open(w).map(|until| (*w, until)))
            .collect();
        let allows: Vec<&&ReadWindow<'_>> = mine
            .iter()
            .filter(|w| w.window.kind == WindowKind::Allow)
            .collect();
        let allow_open = allows.iter().any(|w| open(w).is_some());
        let mut verdict = WindowVerdict::default();
        if let Some((w, until)) = deny_open.iter().max_by_key(|(_, until)| *until) {
            let hold = Hold {
                reason: format!(
                    "{} is open until {}",
                    w.describe(),
                    crate::schedule::show(*until, &w.tz)
                ),
                until: Some(*until),
                by: HoldBy::Window,
            };
            if deny_open.iter().any(|(w, _)| !w.window.manual_sync) {
                verdict.manual = Some(hold.clone());
            }
            verdict.automated = Some(hold);
        } else if !allows.is_empty() && !allow_open {
            let next = allows
                .iter()
                .filter_map(|w| w.schedule.next_after(now, &w.tz).map(|t| (t, *w)))
                .min_by_key(|(t, _)| *t);
            let hold = Hold {
                reason: match next {
                    Some((t, w)) => format!(
                        "outside the allow windows; the next, {}, opens at {}",
                        w.describe(),
                        crate::schedule::show(t, &w.tz)
                    ),
                    None => "outside the allow windows, and none opens again".to_owned(),
                },
                until: next.map(|(t, _)| t),
                by: HoldBy::Window,
            };
            if !allows.iter().any(|w| w.window.manual_sync) {
                verdict.manual = Some(hold.clone());
            }
            verdict.automated = Some(hold);
        }
        Ok(verdict)
    }

    /// Each sync window with whether it is open at `now` (until when) and when it next opens, for `kedge project
    /// windows`.
    pub fn window_schedule(&self, now: jiff::Timestamp) -> Result<Vec<WindowState>, ProjectDenied> {
        Ok(self
            .windows()?
            .iter()
            .map(|w| WindowState {
                window: w.window.clone(),
                open_until: w
                    .schedule
                    .open_until(now, w.duration, &w.tz)
                    .map(|t| crate::schedule::show(t, &w.tz)),
                next_opening: w
                    .schedule
                    .next_after(now, &w.tz)
                    .map(|t| crate::schedule::show(t, &w.tz)),
            })
            .collect())
    }

    /// May an Application in `namespace` belong to this project? Kedge's own namespace always may.
    pub fn check_namespace(
        &self,
        namespace: &str,
        kedge_namespace: &str,
    ) -> Result<(), ProjectDenied> {
        let p = self.name_or_default();
        if namespace == kedge_namespace
            || allowed(
                &p,
                "spec.sourceNamespaces",
                &self.spec.source_namespaces,
                namespace,
            )?
        {
            return Ok(());
        }
        Err(ProjectDenied::Namespace {
            project: p,
            namespace: namespace.to_owned(),
        })
    }

    /// The ServiceAccount (namespace, name) an application deploying to `namespace` of `cluster` runs as: `None`
    /// when the project maps no destination (syncs run with the controller's rights).
    pub fn service_account_for(
        &self,
        cluster: ClusterRef<'_>,
        namespace: Option<&str>,
    ) -> Result<Option<(String, String)>, ProjectDenied> {
        let p = self.name_or_default();
        let field = "spec.destinationServiceAccounts";
        if self.spec.destination_service_accounts.is_empty() {
            return Ok(None);
        }
        let ns = namespace.unwrap_or_default();
        for d in &self.spec.destination_service_accounts {
            let server_hit = [cluster.server.map(crate::normalize_server), cluster.name]
                .into_iter()
                .flatten()
                .try_fold(false, |hit, v| {
                    Ok::<_, ProjectDenied>(hit || matches(&p, field, &d.server, v)?)
                })?;
            let ns_hit = d.namespace.is_empty() || matches(&p, field, &d.namespace, ns)?;
            if server_hit && ns_hit {
                let sa = d.default_service_account.trim();
                return Ok(Some(match sa.split_once(':') {
                    Some((sa_ns, name)) => (sa_ns.to_owned(), name.to_owned()),
                    None => (ns.to_owned(), sa.to_owned()),
                }));
            }
        }
        Err(ProjectDenied::NoServiceAccount {
            project: p,
            destination: format!("{}/{ns}", cluster.describe()),
        })
    }

    /// May the applications deploy from `repo`?
    pub fn check_source(&self, repo: &str) -> Result<(), ProjectDenied> {
        let p = self.name_or_default();
        let repo_trimmed = repo.trim();
        if allowed(
            &p,
            "spec.sourceRepos",
            &self.spec.source_repos,
            repo_trimmed,
        )? {
            return Ok(());
        }
        Err(ProjectDenied::Source {
            project: p,
            repo: repo_trimmed.to_owned(),
        })
    }

    /// May the applications deploy to `namespace` (`None`: a cluster-scoped object) of `cluster`?
    pub fn check_destination(
        &self,
        cluster: ClusterRef<'_>,
        namespace: Option<&str>,
        object: Option<&str>,
    ) -> Result<(), ProjectDenied> {
        let p = self.name_or_default();
        let field = "spec.destinations";
        let mut allow = false;
        for d in &self.spec.destinations {
            let negative = [&d.server, &d.name, &d.namespace]
                .into_iter()
                .flatten()
                .any(|v| v.starts_with('!'));
            let cluster_hit = match (&d.server, &d.name) {
                (None, None) => true,
                (server, name) => {
                    let by_server = match (server, cluster.server) {
                        (Some(pat), Some(s)) => {
                            matches(&p, field, pat, crate::normalize_server(s))?
                        }
                        _ => false,
                    };
                    let by_name = match (name, cluster.name) {
                        (Some(pat), Some(n)) => matches(&p, field, pat, n)?,
                        _ => false,
                    };
                    by_server || by_name
                }
            };
            // A cluster-scoped object needs only the cluster.
            let ns_hit = match (namespace, &d.namespace) {
                (None, _) => true,
                (Some(_), None) => true,
                (Some(ns), Some(pat)) => matches(&p, field, pat, ns)?,
            };
            if negative {
                // A negative entry denies what all its patterns match; on a cluster-scoped object only one that
                // names no namespace denies.
                if cluster_hit && ns_hit && (namespace.is_some() || d.namespace.is_none()) {
                    allow = false;
                    break;
                }
            } else if cluster_hit && ns_hit {
                allow = true;
            }
        }
        if allow {
            return Ok(());
        }
        Err(ProjectDenied::Destination {
            project: p,
            destination: match namespace {
                Some(ns) => format!("{}/{ns}", cluster.describe()),
                None => cluster.describe().to_owned(),
            },
            object: object.map(str::to_owned),
        })
    }

    /// May the applications deploy an object of `group`/`kind` (named `object` in messages), namespaced or not?
    pub fn check_kind(
        &self,
        group: &str,
        kind: &str,
        namespaced: bool,
        object: &str,
    ) -> Result<(), ProjectDenied> {
        let p = self.name_or_default();
        let s = &self.spec;
        let deny = |rule: &'static str| ProjectDenied::Kind {
            project: p.clone(),
            object: object.to_owned(),
            rule,
        };
        if namespaced {
            if kind_listed(
                &p,
                "spec.namespaceResourceBlacklist",
                &s.namespace_resource_blacklist,
                group,
                kind,
            )? {
                return Err(deny("spec.namespaceResourceBlacklist"));
            }
            if !s.namespace_resource_whitelist.is_empty()
                && !kind_listed(
                    &p,
                    "spec.namespaceResourceWhitelist",
                    &s.namespace_resource_whitelist,
                    group,
                    kind,
                )?
            {
                return Err(deny("spec.namespaceResourceWhitelist"));
            }
        } else {
            if kind_listed(
                &p,
                "spec.clusterResourceBlacklist",
                &s.cluster_resource_blacklist,
                group,
                kind,
            )? {
                return Err(deny("spec.clusterResourceBlacklist"));
            }
            if !kind_listed(
                &p,
                "spec.clusterResourceWhitelist",
                &s.cluster_resource_whitelist,
                group,
                kind,
            )? {
                return Err(deny("spec.clusterResourceWhitelist"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_sources_are_git_paths_or_config_maps() {
        let p = project(serde_json::json!({ "policies": [
            { "repoURL": "https://git.example/policies.git", "targetRevision": "v1", "path": "/library/general/" },
            { "repoURL": "https://git.example/policies.git" },
            { "configMapRef": { "name": "policies" } },
        ] }));
        let origins = p.policy_origins().expect("valid");
        assert_eq!(
            origins[0],
            PolicyOrigin::Git {
                repo_url: "https://git.example/policies.git",
                revision: "v1",
                path: "library/general"
            }
        );
        assert_eq!(
            origins[0].to_string(),
            "https://git.example/policies.git@v1:library/general"
        );
        assert_eq!(
            origins[1].to_string(),
            "https://git.example/policies.git@HEAD:."
        );
        assert_eq!(origins[2], PolicyOrigin::ConfigMap { name: "policies" });
        assert_eq!(origins[2].to_string(), "ConfigMap policies");
        for (bad, why) in [
            (
                serde_json::json!({}),
                "sets neither repoURL nor configMapRef",
            ),
            (
                serde_json::json!({ "repoURL": "https://g/p.git", "configMapRef": { "name": "p" } }),
                "sets both",
            ),
            (serde_json::json!({ "repoURL": " " }), "repoURL is empty"),
            (
                serde_json::json!({ "configMapRef": { "name": "" } }),
                "configMapRef.name is empty",
            ),
            (
                serde_json::json!({ "configMapRef": { "name": "p" }, "path": "x" }),
                "belong to repoURL",
            ),
        ] {
            let p = project(
                serde_json::json!({ "policies": [{ "configMapRef": { "name": "ok" } }, bad] }),
            );
            let err = p.validate().expect_err("invalid").to_string();
            assert!(
                err.starts_with("project team-a: spec.policies[1]: "),
                "{err}"
            );
            assert!(err.contains(why), "{err}");
        }
    }

    fn project(spec: serde_json::Value) -> Project {
        let spec: ProjectSpec = serde_json::from_value(spec).expect("spec");
        Project::new("team-a", spec)
    }

    const IN: ClusterRef<'static> = ClusterRef {
        name: Some("in-cluster"),
        server: Some("https://kubernetes.default.svc"),
    };

    #[test]
    fn sources_are_globs_with_negation() {
        let p = project(serde_json::json!({
            "sourceRepos": ["https://github.com/acme/*", "!https://github.com/acme/secret*"]
        }));
        assert!(p.check_source("https://github.com/acme/web.git").is_ok());
        let err = p
            .check_source("https://github.com/acme/secrets.git")
            .expect_err("negated");
        assert_eq!(
            err.to_string(),
            "project team-a does not allow repository https://github.com/acme/secrets.git (spec.sourceRepos)"
        );
        assert!(p.check_source("https://github.com/other/web.git").is_err());
        assert!(project(serde_json::json!({})).check_source("x").is_err());
        assert!(
            project(serde_json::json!({ "sourceRepos": ["*"] }))
                .check_source("git@h:a/b")
                .is_ok()
        );
    }

    #[test]
    fn destinations_match_by_server_or_name_and_namespace() {
        let p = project(serde_json::json!({
            "destinations": [
                { "server": "https://kubernetes.default.svc", "namespace": "team-a-*" },
                { "name": "east", "namespace": "*" },
                { "name": "east", "namespace": "!kube-system" },
            ]
        }));
        assert!(p.check_destination(IN, Some("team-a-web"), None).is_ok());
        let err = p
            .check_destination(IN, Some("team-b"), Some("ConfigMap team-b/x"))
            .expect_err("ns");
        assert_eq!(
            err.to_string(),
            "project team-a does not allow destination in-cluster/team-b for ConfigMap team-b/x (spec.destinations)"
        );
        let east = ClusterRef {
            name: Some("east"),
            server: Some("https://10.0.0.1:6443"),
        };
        assert!(p.check_destination(east, Some("anything"), None).is_ok());
        assert!(
            p.check_destination(east, Some("kube-system"), None)
                .is_err()
        );
        // A cluster-scoped object needs only the cluster.
        assert!(p.check_destination(IN, None, None).is_ok());
        let west = ClusterRef {
            name: Some("west"),
            server: None,
        };
        assert!(p.check_destination(west, None, None).is_err());
    }

    #[test]
    fn kinds_follow_the_lists() {
        let p = project(serde_json::json!({
            "clusterResourceWhitelist": [{ "group": "", "kind": "Namespace" }],
            "namespaceResourceBlacklist": [{ "group": "", "kind": "ResourceQuota" }],
        }));
        assert!(p.check_kind("", "Namespace", false, "Namespace a").is_ok());
        let err = p
            .check_kind(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                false,
                "ClusterRole admin",
            )
            .expect_err("cluster kind");
        assert_eq!(
            err.to_string(),
            "project team-a does not allow ClusterRole admin (spec.clusterResourceWhitelist)"
        );
        assert!(
            p.check_kind("apps", "Deployment", true, "Deployment a/web")
                .is_ok()
        );
        assert!(
            p.check_kind("", "ResourceQuota", true, "ResourceQuota a/q")
                .is_err()
        );
        let only_cm = project(serde_json::json!({
            "namespaceResourceWhitelist": [{ "group": "", "kind": "ConfigMap" }],
            "clusterResourceWhitelist": [{ "group": "*", "kind": "*" }],
            "clusterResourceBlacklist": [{ "group": "rbac.authorization.k8s.io", "kind": "*" }],
        }));
        assert!(only_cm.check_kind("", "ConfigMap", true, "c").is_ok());
        assert!(only_cm.check_kind("apps", "Deployment", true, "d").is_err());
        assert!(only_cm.check_kind("", "Namespace", false, "n").is_ok());
        assert!(
            only_cm
                .check_kind("rbac.authorization.k8s.io", "ClusterRole", false, "r")
                .is_err()
        );
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn deny_windows_hold_syncs_while_open_and_allow_windows_until_one_opens() {
        let p = project(serde_json::json!({
            "syncWindows": [
                { "kind": "deny", "schedule": "0 22 * * *", "duration": "8h", "timeZone": "Europe/Berlin",
                  "namespaces": ["prod-*"], "manualSync": true },
                { "kind": "allow", "schedule": "0 9 * * mon-fri", "duration": "8h", "clusters": ["east"] },
            ]
        }));
        // 23:30 UTC is 00:30 in Berlin: the deny window holds prod, manual syncs still allowed.
        let v = p
            .window_verdict("web", Some("prod-eu"), IN, ts("2026-12-04T23:30:00Z"))
            .expect("verdict");
        let hold = v.automated.expect("held");
        assert_eq!(hold.until, Some(ts("2026-12-05T05:00:00Z")));
        assert!(hold.reason.contains("deny window \"0 22 * * *\" (8h, Europe/Berlin) is open until 2026-12-05T06:00:00+01:00"), "{}", hold.reason);
        assert!(v.manual.is_none());
        // Another namespace: no window applies.
        assert_eq!(
            p.window_verdict("web", Some("dev"), IN, ts("2026-12-04T23:30:00Z"))
                .expect("verdict"),
            WindowVerdict::default()
        );
        // East only syncs in office hours: on Saturday it waits for Monday 09:00, manual syncs too.
        let east = ClusterRef {
            name: Some("east"),
            server: None,
        };
        let v = p
            .window_verdict("web", Some("dev"), east, ts("2026-12-05T12:00:00Z"))
            .expect("verdict");
        assert_eq!(
            v.automated.as_ref().and_then(|h| h.until),
            Some(ts("2026-12-07T09:00:00Z"))
        );
        assert!(v.manual.is_some());
        assert_eq!(
            p.window_verdict("web", Some("dev"), east, ts("2026-12-07T10:00:00Z"))
                .expect("verdict"),
            WindowVerdict::default()
        );
        let states = p
            .window_schedule(ts("2026-12-04T23:30:00Z"))
            .expect("states");
        assert_eq!(
            states[0].open_until.as_deref(),
            Some("2026-12-05T06:00:00+01:00")
        );
        assert_eq!(
            states[1].next_opening.as_deref(),
            Some("2026-12-07T09:00:00+00:00")
        );
        let bad = project(
            serde_json::json!({ "syncWindows": [{ "kind": "deny", "schedule": "0 25 * * *", "duration": "1h" }] }),
        );
        assert!(matches!(
            bad.validate(),
            Err(ProjectDenied::BadWindow { index: 0, .. })
        ));
    }

    #[test]
    fn destinations_map_to_service_accounts() {
        let p = project(serde_json::json!({
            "destinationServiceAccounts": [
                { "server": "https://kubernetes.default.svc", "namespace": "team-a-*", "defaultServiceAccount": "deployer" },
                { "server": "east", "defaultServiceAccount": "ops:sync" },
            ]
        }));
        assert_eq!(
            p.service_account_for(IN, Some("team-a-web"))
                .expect("mapped"),
            Some(("team-a-web".into(), "deployer".into()))
        );
        let east = ClusterRef {
            name: Some("east"),
            server: None,
        };
        assert_eq!(
            p.service_account_for(east, Some("x")).expect("mapped"),
            Some(("ops".into(), "sync".into()))
        );
        let err = p
            .service_account_for(IN, Some("team-b"))
            .expect_err("unmapped");
        assert_eq!(
            err.to_string(),
            "project team-a names no ServiceAccount for destination in-cluster/team-b (spec.destinationServiceAccounts)"
        );
        assert_eq!(
            project(serde_json::json!({})).service_account_for(IN, Some("x")),
            Ok(None)
        );
    }

    #[test]
    fn source_namespaces_and_bad_patterns() {
        let p = project(serde_json::json!({ "sourceNamespaces": ["team-a-*"] }));
        assert!(p.check_namespace("kedge", "kedge").is_ok());
        assert!(p.check_namespace("team-a-dev", "kedge").is_ok());
        assert!(p.check_namespace("team-b", "kedge").is_err());
        let bad = project(serde_json::json!({ "sourceRepos": ["[unclosed"] }));
        assert!(matches!(
            bad.validate(),
            Err(ProjectDenied::BadPattern {
                field: "spec.sourceRepos",
                ..
            })
        ));
        assert!(p.validate().is_ok());
    }
}
