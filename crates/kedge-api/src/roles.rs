//! Project roles: who may see and act on a project's applications through Kedge's API and UI.
//!
//! A role is Argo CD's: a name, the groups whose members hold it, the tokens issued for it, and policy lines in
//! Casbin's CSV form, `p, proj:<project>:<role>, applications, <action>, <project>/<application>, allow|deny`
//! (the object may also be `<project>/<namespace>/<application>` for applications outside Kedge's namespace; `*`
//! matches any run of characters). A deny that matches wins over every allow.
//!
//! Actions Kedge's API offers: `get` (see the application: details, diff, resources, events, history, live
//! updates), `sync` (sync, rollback and refresh: each writes to the application, so unlike Argo CD a refresh is not
//! open to those who may only look), `update` (suspend and resume); `*` is all three.
//! Argo CD's `create`, `delete`, `override` and `action/...` govern operations Kedge's API does not have, so a line
//! naming them is refused rather than accepted and ignored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::project::Project;

/// A project role.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRole {
    /// The role's name (the `<role>` of `proj:<project>:<role>`).
    #[schemars(length(min = 1))]
    pub name: String,
    /// What the role is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Policy lines: `p, proj:<project>:<role>, applications, <get|sync|update|*>, <project>/<app>, <allow|deny>`.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Groups whose members hold the role: accounts' groups (entry `groups.<account>` of Secret `kedge-users`) and
    /// the groups claim of OIDC logins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The tokens issued for the role (`kedge project token create`); a token whose id is no longer listed is
    /// refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_tokens: Vec<RoleToken>,
}

/// A token issued for a project role (the token itself is only shown when it is created).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RoleToken {
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The token's id.
    pub id: String,
}

/// What a caller does with an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppAction {
    /// See it (details, diff, resources, events, history, live updates).
    Get,
    /// Sync it, roll it back, or ask for a refresh.
    Sync,
    /// Change its spec through the API (suspend, resume).
    Update,
}

impl AppAction {
    /// The action's name in policy lines.
    pub fn as_str(self) -> &'static str {
        match self {
            AppAction::Get => "get",
            AppAction::Sync => "sync",
            AppAction::Update => "update",
        }
    }
}

/// A policy line, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolePolicy {
    /// The action (`None`: `*`, all of them).
    pub action: Option<AppAction>,
    /// The object pattern, `<project>/<app>` or `<project>/<namespace>/<app>`.
    pub object: String,
    /// `allow` (true) or `deny`.
    pub allow: bool,
}

/// Why a role's policy line cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("project {project}: spec.roles[{role}].policies[{index}]: {why}")]
pub struct BadRolePolicy {
    /// The project.
    pub project: String,
    /// The role's name.
    pub role: String,
    /// The line's index.
    pub index: usize,
    /// What is wrong.
    pub why: String,
}

/// Reads one policy line of role `role` of project `project`.
pub fn parse_policy(project: &str, role: &str, line: &str) -> Result<RolePolicy, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [p, subject, resource, action, object, effect] = fields[..] else {
        return Err(format!(
            "{line:?} is not `p, proj:{project}:{role}, applications, <action>, {project}/<application>, <allow|deny>`"
        ));
    };
    if p != "p" {
        return Err(format!("policy lines start with `p`, not {p:?}"));
    }
    let expected = format!("proj:{project}:{role}");
    if subject != expected {
        return Err(format!(
            "the subject is {subject:?}; a role's lines are about the role itself, {expected:?}"
        ));
    }
    if resource != "applications" {
        return Err(format!(
            "resource {resource:?}: a project role governs `applications` only"
        ));
    }
    let action = match action {
        "get" => Some(AppAction::Get),
        "sync" => Some(AppAction::Sync),
        "update" => Some(AppAction::Update),
        "*" => None,
        other => {
            return Err(format!(
                "action {other:?}: Kedge's API offers get, sync and update (and * for all); create, delete, \
                 override and action/... are operations it does not have"
            ));
        }
    };
    if !object.starts_with(&format!("{project}/")) {
        return Err(format!(
            "object {object:?}: a role of project {project} names objects {project}/<application>"
        ));
    }
    if globset::Glob::new(object).is_err() {
        return Err(format!("object {object:?} is not a valid pattern"));
    }
    let allow = match effect {
        "allow" => true,
        "deny" => false,
        other => return Err(format!("effect {other:?}: allow or deny")),
    };
    Ok(RolePolicy {
        action,
        object: object.to_owned(),
        allow,
    })
}

fn object_matches(pattern: &str, object: &str) -> bool {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .is_ok_and(|g| g.compile_matcher().is_match(object))
}

impl ProjectRole {
    /// The role's policy lines, read; the first line that cannot be read is the error.
    pub fn read_policies(&self, project: &str) -> Result<Vec<RolePolicy>, BadRolePolicy> {
        self.policies
            .iter()
            .enumerate()
            .map(|(index, line)| {
                parse_policy(project, &self.name, line).map_err(|why| BadRolePolicy {
                    project: project.to_owned(),
                    role: self.name.clone(),
                    index,
                    why,
                })
            })
            .collect()
    }

    /// What the role says about `action` on the application (`Some(true)` allowed, `Some(false)` denied, `None`
    /// nothing); a role with a line that cannot be read grants nothing.
    pub fn decides(
        &self,
        project: &str,
        action: AppAction,
        app_namespace: &str,
        app_name: &str,
        home_namespace: &str,
    ) -> Option<bool> {
        let policies = self.read_policies(project).ok()?;
        let objects = [
            format!("{project}/{app_namespace}/{app_name}"),
            format!("{project}/{app_name}"),
        ];
        // The short form names the applications of Kedge's own namespace only, as in Argo CD.
        let objects = if app_namespace == home_namespace {
            &objects[..]
        } else {
            &objects[..1]
        };
        let mut verdict = None;
        for p in policies {
            if p.action.is_some_and(|a| a != action) {
                continue;
            }
            if !objects.iter().any(|o| object_matches(&p.object, o)) {
                continue;
            }
            if !p.allow {
                return Some(false);
            }
            verdict = Some(true);
        }
        verdict
    }
}

impl Project {
    /// The project's roles, each checked: the first policy line that cannot be read (the role then grants nothing).
    pub fn validate_roles(&self) -> Result<(), BadRolePolicy> {
        let project = self.metadata.name.clone().unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        for (index, role) in self.spec.roles.iter().enumerate() {
            if !seen.insert(role.name.as_str()) {
                return Err(BadRolePolicy {
                    project,
                    role: role.name.clone(),
                    index,
                    why: "the role is defined twice".into(),
                });
            }
            role.read_policies(&project)?;
        }
        Ok(())
    }

    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&ProjectRole> {
        self.spec.roles.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(policies: &[&str]) -> ProjectRole {
        ProjectRole {
            name: "deployer".into(),
            policies: policies.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn lines_are_read_and_wrong_ones_named() {
        let ok = parse_policy(
            "team",
            "deployer",
            "p, proj:team:deployer, applications, sync, team/*, allow",
        );
        assert_eq!(
            ok,
            Ok(RolePolicy {
                action: Some(AppAction::Sync),
                object: "team/*".into(),
                allow: true
            })
        );
        for (line, needle) in [
            (
                "p, proj:team:deployer, applications, sync, team/*",
                "is not",
            ),
            (
                "p, proj:other:deployer, applications, sync, team/*, allow",
                "subject",
            ),
            (
                "p, proj:team:deployer, clusters, get, team/*, allow",
                "resource",
            ),
            (
                "p, proj:team:deployer, applications, delete, team/*, allow",
                "delete",
            ),
            (
                "p, proj:team:deployer, applications, get, other/*, allow",
                "object",
            ),
            (
                "p, proj:team:deployer, applications, get, team/*, maybe",
                "effect",
            ),
        ] {
            let err = parse_policy("team", "deployer", line).expect_err(line);
            assert!(err.contains(needle), "{line}: {err}");
        }
    }

    #[test]
    fn deny_wins_and_actions_and_objects_must_match() {
        let r = role(&[
            "p, proj:team:deployer, applications, *, team/*, allow",
            "p, proj:team:deployer, applications, sync, team/prod-*, deny",
        ]);
        let d = |a, ns: &str, n: &str| r.decides("team", a, ns, n, "kedge");
        assert_eq!(d(AppAction::Sync, "kedge", "web"), Some(true));
        assert_eq!(d(AppAction::Sync, "kedge", "prod-web"), Some(false));
        assert_eq!(d(AppAction::Get, "kedge", "prod-web"), Some(true));
        // `team/*` matches across the slash: applications of other namespaces too.
        assert_eq!(d(AppAction::Update, "team-a", "web"), Some(true));
        let narrow = role(&["p, proj:team:deployer, applications, get, team/web, allow"]);
        assert_eq!(
            narrow.decides("team", AppAction::Get, "kedge", "web", "kedge"),
            Some(true)
        );
        assert_eq!(
            narrow.decides("team", AppAction::Sync, "kedge", "web", "kedge"),
            None
        );
        // The short form does not reach applications outside Kedge's namespace.
        assert_eq!(
            narrow.decides("team", AppAction::Get, "team-a", "web", "kedge"),
            None
        );
        let broken = role(&[
            "p, proj:team:deployer, applications, get, team/*, allow",
            "nonsense",
        ]);
        assert_eq!(
            broken.decides("team", AppAction::Get, "kedge", "web", "kedge"),
            None
        );
    }
}
