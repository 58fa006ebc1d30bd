//! A set of templates and constraints, loaded once and evaluated against object sets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::constraint::{Constraint, ConstraintRef, EnforcementAction, is_constraint};
use crate::error::PolicyError;
use crate::inventory::{Inventory, SyncRequirement};
use crate::object::{ObjectRef, labels};
use crate::template::{Template, is_template};

/// A policy document and where it came from (`policies/labels.yaml#2`), for errors.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// Where the document came from.
    pub origin: String,
    /// The document.
    pub value: Value,
}

/// Compiled ConstraintTemplates and their constraints.
///
/// Loading compiles each template once; [`PolicySet::evaluate`] clones a template's compiled interpreter once per
/// call (not per object) and only sets the input for each object and constraint.
#[derive(Debug, Clone)]
pub struct PolicySet {
    templates: Vec<Template>,
    /// Constraints by template index, sorted by name.
    constraints: Vec<Vec<Constraint>>,
    ignored: Vec<String>,
    user_info: Value,
}

/// One policy finding on one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The constraint that found it.
    pub constraint: ConstraintRef,
    /// What it does: `deny` blocks a sync, `warn` and `dryrun` are reported only.
    pub action: EnforcementAction,
    /// The object it is about.
    pub object: ObjectRef,
    /// The Rego's `msg`.
    pub message: String,
    /// The Rego's `details`, when it gave any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl fmt::Display for Violation {
    /// `deny K8sRequiredLabels/all-must-have-owner Namespace foo: you must provide labels: {"owner"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.action, self.constraint, self.object, self.message
        )
    }
}

/// A constraint that could not be evaluated on an object: a Rego runtime error, or a `namespaceSelector` on an
/// object whose namespace is unknown. With `deny`, it blocks a sync as a violation would.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationError {
    /// The constraint.
    pub constraint: ConstraintRef,
    /// Its enforcement action.
    pub action: EnforcementAction,
    /// The object.
    pub object: ObjectRef,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for EvaluationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: evaluation failed: {}",
            self.action, self.constraint, self.object, self.message
        )
    }
}

/// The outcome of evaluating a policy set against objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evaluation {
    /// Every violation, in the order of the objects, then by constraint.
    pub violations: Vec<Violation>,
    /// Constraints that could not be evaluated on an object.
    pub errors: Vec<EvaluationError>,
}

impl Evaluation {
    /// Whether the objects must not be applied: a `deny` violation, or a `deny` constraint that could not be
    /// evaluated.
    pub fn denied(&self) -> bool {
        self.violations
            .iter()
            .any(|v| v.action == EnforcementAction::Deny)
            || self
                .errors
                .iter()
                .any(|e| e.action == EnforcementAction::Deny)
    }

    /// The violations of one enforcement action.
    pub fn with_action(&self, action: EnforcementAction) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.action == action)
    }
}

/// What one evaluation reviews: the object that match criteria read, and `input.review`.
pub(crate) struct Review {
    pub(crate) id: ObjectRef,
    pub(crate) object: Value,
    pub(crate) review: Value,
}

impl Review {
    /// The review Gatekeeper's admission webhook builds for creating `object`.
    pub(crate) fn create(object: &Value, user_info: &Value) -> Self {
        let id = ObjectRef::of(object);
        let mut review = serde_json::json!({
            "kind": {"group": id.group(), "version": id.version(), "kind": id.kind},
            "operation": "CREATE",
            "object": object,
            "oldObject": null,
            "userInfo": user_info,
        });
        if !id.name.is_empty() {
            review["name"] = Value::from(id.name.as_str());
        }
        if let Some(ns) = &id.namespace {
            review["namespace"] = Value::from(ns.as_str());
        }
        Self {
            id,
            object: object.clone(),
            review,
        }
    }
}

impl PolicySet {
    /// Loads templates and constraints from documents (as read from a directory or a Git path, in any order).
    /// Documents that are neither ConstraintTemplates nor constraints are left out and listed by
    /// [`PolicySet::ignored`].
    pub fn load(docs: Vec<Value>) -> Result<Self, PolicyError> {
        Self::load_documents(
            docs.into_iter()
                .enumerate()
                .map(|(i, value)| PolicyDocument {
                    origin: format!("document #{}", i + 1),
                    value,
                })
                .collect(),
        )
    }

    /// Like [`PolicySet::load`], with each error naming the document's origin.
    pub fn load_documents(docs: Vec<PolicyDocument>) -> Result<Self, PolicyError> {
        let in_file = |origin: &str, error: PolicyError| PolicyError::InFile {
            path: origin.to_owned(),
            error: Box::new(error),
        };
        let mut templates: Vec<Template> = Vec::new();
        let mut raw_constraints = Vec::new();
        let mut ignored = Vec::new();
        for doc in &docs {
            if is_template(&doc.value) {
                let t = Template::load(&doc.value).map_err(|e| in_file(&doc.origin, e))?;
                if templates
                    .iter()
                    .any(|o| o.name == t.name || o.kind == t.kind)
                {
                    return Err(in_file(
                        &doc.origin,
                        PolicyError::Duplicate {
                            what: format!("ConstraintTemplate {} (kind {})", t.name, t.kind),
                        },
                    ));
                }
                templates.push(t);
            } else if is_constraint(&doc.value) {
                let c = Constraint::load(&doc.value).map_err(|e| in_file(&doc.origin, e))?;
                raw_constraints.push((doc.origin.as_str(), c));
            } else {
                ignored.push(format!("{} ({})", doc.origin, ObjectRef::of(&doc.value)));
            }
        }
        templates.sort_by(|a, b| a.kind.cmp(&b.kind));
        let mut constraints: Vec<Vec<Constraint>> = vec![Vec::new(); templates.len()];
        let mut seen = BTreeSet::new();
        for (origin, c) in raw_constraints {
            let Some(index) = templates.iter().position(|t| t.kind == c.id.kind) else {
                let known: Vec<&str> = templates.iter().map(|t| t.kind.as_str()).collect();
                return Err(in_file(
                    origin,
                    PolicyError::UnknownKind {
                        kind: c.id.kind,
                        name: c.id.name,
                        known: if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        },
                    },
                ));
            };
            if !seen.insert(c.id.clone()) {
                return Err(in_file(
                    origin,
                    PolicyError::Duplicate {
                        what: format!("constraint {}", c.id),
                    },
                ));
            }
            constraints[index].push(c);
        }
        for list in &mut constraints {
            list.sort_by(|a, b| a.id.name.cmp(&b.id.name));
        }
        Ok(Self {
            templates,
            constraints,
            ignored,
            user_info: serde_json::json!({}),
        })
    }

    /// Sets `input.review.userInfo` (default `{}`): the identity that applies the objects, as admission would see
    /// it (`{"username": "system:serviceaccount:kedge:kedge"}`).
    #[must_use]
    pub fn with_user_info(mut self, user_info: Value) -> Self {
        self.user_info = user_info;
        self
    }

    /// The documents that were neither templates nor constraints (origin and identity).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// The names of the loaded templates, sorted by kind.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.templates.iter().map(|t| t.name.as_str())
    }

    /// The loaded constraints with their enforcement actions.
    pub fn constraints(&self) -> impl Iterator<Item = (&ConstraintRef, EnforcementAction)> {
        self.constraints.iter().flatten().map(|c| (&c.id, c.action))
    }

    /// The kinds that referential templates (with constraints) read from `data.inventory`, from their
    /// `metadata.gatekeeper.sh/requires-sync-data` annotations: the live objects of these kinds, with the
    /// rendered ones, make the [`Inventory`].
    pub fn inventory_kinds(&self) -> Vec<SyncRequirement> {
        let mut out: Vec<SyncRequirement> = self
            .in_use()
            .filter(|t| t.referential)
            .flat_map(|t| t.sync.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Templates (with constraints) whose Rego reads the inventory but that do not say which kinds
    /// (no `requires-sync-data` annotation): they see only what the caller puts in the inventory.
    pub fn referential_without_sync_data(&self) -> Vec<&str> {
        self.in_use()
            .filter(|t| t.referential && t.sync.is_empty())
            .map(|t| t.name.as_str())
            .collect()
    }

    fn in_use(&self) -> impl Iterator<Item = &Template> {
        self.templates
            .iter()
            .zip(&self.constraints)
            .filter(|(_, c)| !c.is_empty())
            .map(|(t, _)| t)
    }

    /// Evaluates every constraint against every object it matches, as Gatekeeper's admission webhook would on
    /// creating them: `input.review.object` is the object, `input.parameters` the constraint's parameters, and
    /// `data.inventory` the inventory. A `namespaceSelector` reads namespace labels from the Namespaces among the
    /// objects, then from the inventory.
    pub fn evaluate(&self, objects: &[Value], inventory: &Inventory) -> Evaluation {
        let reviews: Vec<Review> = objects
            .iter()
            .map(|o| Review::create(o, &self.user_info))
            .collect();
        self.evaluate_reviews(&reviews, inventory)
    }

    pub(crate) fn evaluate_reviews(&self, reviews: &[Review], inventory: &Inventory) -> Evaluation {
        let mut namespace_labels = inventory.all_namespace_labels().clone();
        for r in reviews.iter().filter(|r| r.id.is_namespace()) {
            namespace_labels.insert(r.id.name.clone(), labels(&r.object));
        }
        let mut inventory_value: Option<Result<regorus::Value, String>> = None;
        let mut rego_reviews: Vec<Option<Result<regorus::Value, String>>> =
            (0..reviews.len()).map(|_| None).collect();
        // (object index, violation) to sort by object at the end.
        let mut violations: Vec<(usize, Violation)> = Vec::new();
        let mut errors: Vec<(usize, EvaluationError)> = Vec::new();
        for (template, constraints) in self.templates.iter().zip(&self.constraints) {
            if constraints.is_empty() {
                continue;
            }
            let mut engine: Option<Result<regorus::Engine, String>> = None;
            for (index, review) in reviews.iter().enumerate() {
                for c in constraints {
                    let error = |message: String| {
                        (
                            index,
                            EvaluationError {
                                constraint: c.id.clone(),
                                action: c.action,
                                object: review.id.clone(),
                                message,
                            },
                        )
                    };
                    match c
                        .matcher
                        .matches(&review.id, &review.object, &namespace_labels)
                    {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(message) => {
                            errors.push(error(message));
                            continue;
                        }
                    }
                    let engine = engine.get_or_insert_with(|| {
                        let mut e = template.engine.clone();
                        if template.referential {
                            let inv = inventory_value
                                .get_or_insert_with(|| crate::to_rego(&inventory.to_value()))
                                .clone()?;
                            let mut data = BTreeMap::new();
                            data.insert(regorus::Value::from("inventory"), inv);
                            e.add_data(regorus::Value::from(data))
                                .map_err(|e| format!("failed to set data.inventory: {e:#}"))?;
                        }
                        Ok(e)
                    });
                    let engine = match engine {
                        Ok(e) => e,
                        Err(message) => {
                            errors.push(error(message.clone()));
                            continue;
                        }
                    };
                    let rego_review = match rego_reviews[index]
                        .get_or_insert_with(|| crate::to_rego(&review.review))
                    {
                        Ok(r) => r.clone(),
                        Err(message) => {
                            errors.push(error(message.clone()));
                            continue;
                        }
                    };
                    let mut input = BTreeMap::new();
                    input.insert(regorus::Value::from("review"), rego_review);
                    input.insert(regorus::Value::from("parameters"), c.parameters.clone());
                    engine.set_input(regorus::Value::from(input));
                    match engine.eval_rule(template.query.clone()) {
                        Ok(results) => {
                            let found = match results_of(&results) {
                                Ok(found) => found,
                                Err(message) => {
                                    errors.push(error(message));
                                    continue;
                                }
                            };
                            for (message, details) in found {
                                violations.push((
                                    index,
                                    Violation {
                                        constraint: c.id.clone(),
                                        action: c.action,
                                        object: review.id.clone(),
                                        message,
                                        details,
                                    },
                                ));
                            }
                        }
                        Err(e) => errors.push(error(format!("{e:#}"))),
                    }
                }
            }
        }
        violations.sort_by_key(|(index, _)| *index);
        errors.sort_by_key(|(index, _)| *index);
        Evaluation {
            violations: violations.into_iter().map(|(_, v)| v).collect(),
            errors: errors.into_iter().map(|(_, e)| e).collect(),
        }
    }
}

/// The `msg` and `details` of each result of a `violation` rule: a set, or undefined when nothing was found.
/// Rego v0's `violation[{"msg": msg}] if {...}` (with `future.keywords.if`) is a partial set in OPA; the
/// interpreter reads it as an object whose keys are the results, so an object's keys count as results too.
/// Anything else is an error, never an empty result.
fn results_of(results: &regorus::Value) -> Result<Vec<(String, Option<Value>)>, String> {
    let items: Vec<&regorus::Value> = match results {
        regorus::Value::Undefined | regorus::Value::Null => Vec::new(),
        regorus::Value::Set(s) => s.iter().collect(),
        regorus::Value::Array(a) => a.iter().collect(),
        regorus::Value::Object(o) => o
            .iter()
            .filter(|(_, v)| **v == regorus::Value::Bool(true))
            .map(|(k, _)| k)
            .collect(),
        other => {
            return Err(format!(
                "the violation rule must be a set of results, not {}",
                serde_json::to_string(other).unwrap_or_default()
            ));
        }
    };
    Ok(items
        .into_iter()
        .map(|r| {
            let json = serde_json::to_value(r).unwrap_or(Value::Null);
            let message = match json.get("msg") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => json.to_string(),
            };
            let details = json.get("details").cloned().filter(|d| !d.is_null());
            (message, details)
        })
        .collect())
}
