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

/// Why a project refuses something: the rule and what it refused, for conditions and Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectDenied {
    /// The project does not exist.
    #[error("project {0} not found")]
    NotFound(String),
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
        Ok(())
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
