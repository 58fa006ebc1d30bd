//! Constraints: instances of a template's kind, with their `match`, `parameters` and `enforcementAction`.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::error::PolicyError;
use crate::matching::Match;

/// The API group of constraints.
pub const GROUP: &str = "constraints.gatekeeper.sh";

/// What a violation of a constraint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementAction {
    /// Blocks the sync (`deny`, the default).
    Deny,
    /// Reported as a warning (`warn`).
    Warn,
    /// Reported only (`dryrun`).
    Dryrun,
}

impl EnforcementAction {
    /// The value as written in `spec.enforcementAction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Warn => "warn",
            Self::Dryrun => "dryrun",
        }
    }

    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") | Some("deny") => Ok(Self::Deny),
            Some("warn") => Ok(Self::Warn),
            Some("dryrun") => Ok(Self::Dryrun),
            Some("scoped") => Err(
                "enforcementAction scoped (scopedEnforcementActions) is not supported; use deny, warn or dryrun"
                    .to_owned(),
            ),
            Some(other) => Err(format!(
                "unknown enforcementAction {other:?} (deny, warn, dryrun)"
            )),
        }
    }
}

impl fmt::Display for EnforcementAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which constraint a violation comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ConstraintRef {
    /// The constraint's kind (the template's `spec.crd.spec.names.kind`).
    pub kind: String,
    /// The constraint's `metadata.name`.
    pub name: String,
}

impl fmt::Display for ConstraintRef {
    /// `K8sRequiredLabels/all-must-have-owner`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A constraint, validated.
#[derive(Debug, Clone)]
pub(crate) struct Constraint {
    pub(crate) id: ConstraintRef,
    pub(crate) action: EnforcementAction,
    pub(crate) matcher: Match,
    /// `spec.parameters` as Rego sees it (`input.parameters`; `{}` when absent).
    pub(crate) parameters: regorus::Value,
}

/// Whether a document is a constraint (of any kind).
pub(crate) fn is_constraint(doc: &Value) -> bool {
    doc.get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.split_once('/'))
        .is_some_and(|(group, _)| group == GROUP)
}

impl Constraint {
    /// Reads a constraint document.
    pub(crate) fn load(doc: &Value) -> Result<Self, PolicyError> {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let err = |message: String| PolicyError::Constraint {
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        if kind.is_empty() {
            return Err(err("kind is missing".to_owned()));
        }
        if name.is_empty() {
            return Err(err("metadata.name is missing".to_owned()));
        }
        let spec = doc.get("spec");
        let action = EnforcementAction::parse(
            spec.and_then(|s| s.get("enforcementAction"))
                .and_then(Value::as_str),
        )
        .map_err(err)?;
        if spec
            .and_then(|s| s.get("scopedEnforcementActions"))
            .is_some_and(|s| !s.is_null())
        {
            return Err(err(
                "scopedEnforcementActions are not supported; use enforcementAction deny, warn or dryrun".to_owned(),
            ));
        }
        let matcher = Match::parse(spec.and_then(|s| s.get("match"))).map_err(err)?;
        let parameters = match spec.and_then(|s| s.get("parameters")) {
            None | Some(Value::Null) => regorus::Value::new_object(),
            Some(p) => crate::to_rego(p).map_err(|e| err(format!("spec.parameters: {e}")))?,
        };
        Ok(Self {
            id: ConstraintRef { kind, name },
            action,
            matcher,
            parameters,
        })
    }
}
