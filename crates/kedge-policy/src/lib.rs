//! Evaluates OPA Gatekeeper constraint templates and constraints against Kubernetes objects, natively, as
//! admission would.
//!
//! Start with [`PolicySet`]: load ConstraintTemplates and constraints in the format of the Gatekeeper policy
//! library (documents in any order), then evaluate rendered objects against them. Each template's Rego is
//! compiled once by the regorus interpreter (Rego v0, as the library is written, or v1 when the template says
//! so); each evaluation clones the compiled interpreter once per template and only sets the input per object.
//!
//! ```
//! use kedge_policy::{EnforcementAction, Inventory, PolicySet};
//! use serde_json::json;
//!
//! let template = json!({
//!     "apiVersion": "templates.gatekeeper.sh/v1",
//!     "kind": "ConstraintTemplate",
//!     "metadata": {"name": "k8sdenyall"},
//!     "spec": {
//!         "crd": {"spec": {"names": {"kind": "K8sDenyAll"}}},
//!         "targets": [{
//!             "target": "admission.k8s.gatekeeper.sh",
//!             "rego": "package k8sdenyall\nviolation[{\"msg\": msg}] {\n  msg := sprintf(\"%v is denied\", [input.review.object.metadata.name])\n}\n",
//!         }],
//!     },
//! });
//! let constraint = json!({
//!     "apiVersion": "constraints.gatekeeper.sh/v1beta1",
//!     "kind": "K8sDenyAll",
//!     "metadata": {"name": "no-pods"},
//!     "spec": {"match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}},
//! });
//! let policies = PolicySet::load(vec![template, constraint])?;
//! let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "a"}});
//! let result = policies.evaluate(&[pod], &Inventory::new());
//! assert!(result.denied());
//! assert_eq!(result.violations[0].action, EnforcementAction::Deny);
//! assert_eq!(result.violations[0].message, "web is denied");
//! # Ok::<(), kedge_policy::PolicyError>(())
//! ```
//!
//! [`suite`] runs Gatekeeper's `gator verify` test suites; [`files`] reads policy documents from disk.

mod compat;
mod constraint;
mod error;
pub mod files;
mod inventory;
mod matching;
mod object;
mod set;
pub mod suite;
mod template;

pub use constraint::{ConstraintRef, EnforcementAction};
pub use error::PolicyError;
pub use inventory::{Inventory, SyncRequirement};
pub use object::ObjectRef;
pub use set::{Evaluation, EvaluationError, PolicyDocument, PolicySet, Violation};
pub use suite::{CaseOutcome, CaseResult, Suite, SuiteError};
pub use template::{REQUIRES_SYNC_DATA, TARGET};

/// A JSON value as the Rego interpreter's value.
pub(crate) fn to_rego(value: &serde_json::Value) -> Result<regorus::Value, String> {
    use serde::Deserialize;
    regorus::Value::deserialize(value).map_err(|e| format!("cannot be read by Rego: {e}"))
}
