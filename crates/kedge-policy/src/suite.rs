//! Gatekeeper's policy test suites (`gator verify`): a `Suite` (`test.gatekeeper.sh/v1alpha1`) lists tests, each a
//! template and a constraint with cases: an object (and optional inventory objects) and assertions on the
//! violations it produces. Paths are relative to the suite file.
//!
//! An assertion holds `violations` (`yes`: at least one, `no`: none, `N`: exactly N; `yes` when absent) and an
//! optional `message`, a regular expression: then only violations whose message it matches are counted.
//! A case whose object is an `AdmissionReview` is reviewed as that request (its operation, user, old object).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::PolicyError;
use crate::files::{read_file, read_one};
use crate::inventory::Inventory;
use crate::object::ObjectRef;
use crate::set::{PolicyDocument, PolicySet, Review};

/// A suite that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The suite file cannot be read or parsed.
    #[error("failed to read suite {path}")]
    Read {
        /// The suite file.
        path: String,
        /// Why.
        #[source]
        source: Box<PolicyError>,
    },
    /// The suite file is not a valid Suite.
    #[error("invalid suite {path}: {message}")]
    Invalid {
        /// The suite file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
struct RawSuite {
    #[serde(default)]
    tests: Vec<RawTest>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawTest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    constraint: String,
    #[serde(default)]
    cases: Vec<RawCase>,
    #[serde(default)]
    skip: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct RawCase {
    #[serde(default)]
    name: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    inventory: Vec<String>,
    #[serde(default)]
    assertions: Vec<RawAssertion>,
    #[serde(default)]
    skip: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct RawAssertion {
    #[serde(default)]
    violations: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// How many violations an assertion expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Some,
    None,
    Exactly(u64),
}

impl Expected {
    fn parse(value: Option<&Value>) -> Result<Self, String> {
        match value {
            None | Some(Value::Null) => Ok(Self::Some),
            Some(Value::Bool(b)) => Ok(if *b { Self::Some } else { Self::None }),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Self::Exactly)
                .ok_or_else(|| format!("violations: {n} is not a count")),
            Some(Value::String(s)) => match s.as_str() {
                "yes" => Ok(Self::Some),
                "no" => Ok(Self::None),
                other => other
                    .parse()
                    .map(Self::Exactly)
                    .map_err(|_| format!("violations: {other:?} is not yes, no or a count")),
            },
            Some(other) => Err(format!("violations: {other} is not yes, no or a count")),
        }
    }

    fn holds(self, count: usize) -> bool {
        match self {
            Self::Some => count > 0,
            Self::None => count == 0,
            Self::Exactly(n) => count as u64 == n,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Some => f.write_str("at least 1"),
            Self::None => f.write_str("0"),
            Self::Exactly(n) => write!(f, "{n}"),
        }
    }
}

/// A loaded suite.
#[derive(Debug, Clone)]
pub struct Suite {
    path: PathBuf,
    tests: Vec<RawTest>,
}

/// How a case went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// Every assertion held.
    Pass,
    /// Why it failed: assertions that did not hold, files that could not be read, evaluation errors.
    Fail(Vec<String>),
    /// Marked `skip`.
    Skip,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The test's name.
    pub test: String,
    /// The case's name.
    pub case: String,
    /// How it went.
    pub outcome: CaseOutcome,
}

impl Suite {
    /// Reads a suite file.
    pub fn load(path: &Path) -> Result<Self, SuiteError> {
        let shown = path.display().to_string();
        let doc = read_one(path).map_err(|source| SuiteError::Read {
            path: shown.clone(),
            source: Box::new(source),
        })?;
        let invalid = |message: String| SuiteError::Invalid {
            path: shown.clone(),
            message,
        };
        if !is_suite(&doc) {
            return Err(invalid(format!(
                "expected kind Suite of test.gatekeeper.sh, found {}",
                ObjectRef::of(&doc)
            )));
        }
        let raw: RawSuite = serde_json::from_value(doc).map_err(|e| invalid(e.to_string()))?;
        for t in &raw.tests {
            if t.template.is_empty() || t.constraint.is_empty() {
                return Err(invalid(format!(
                    "test {:?} needs a template and a constraint",
                    t.name
                )));
            }
            for c in &t.cases {
                if c.object.is_empty() {
                    return Err(invalid(format!(
                        "case {:?} of test {:?} has no object",
                        c.name, t.name
                    )));
                }
                for a in &c.assertions {
                    Expected::parse(a.violations.as_ref()).map_err(|e| {
                        invalid(format!("case {:?} of test {:?}: {e}", c.name, t.name))
                    })?;
                    if let Some(m) = &a.message {
                        regex::Regex::new(m).map_err(|e| {
                            invalid(format!(
                                "case {:?} of test {:?}: message {m:?}: {e}",
                                c.name, t.name
                            ))
                        })?;
                    }
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            tests: raw.tests,
        })
    }

    /// The suite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs every case, in order. A test whose template or constraint cannot be loaded fails each of its cases
    /// with that error.
    pub fn run(&self) -> Vec<CaseResult> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        let mut results = Vec::new();
        for test in &self.tests {
            let result = |case: &RawCase, outcome| CaseResult {
                test: test.name.clone(),
                case: case.name.clone(),
                outcome,
            };
            if test.skip {
                results.extend(test.cases.iter().map(|c| result(c, CaseOutcome::Skip)));
                continue;
            }
            let policies = load_test(base, test);
            for case in &test.cases {
                let outcome = if case.skip {
                    CaseOutcome::Skip
                } else {
                    match &policies {
                        Err(e) => CaseOutcome::Fail(vec![e.clone()]),
                        Ok(p) => run_case(base, p, case),
                    }
                };
                results.push(result(case, outcome));
            }
        }
        results
    }
}

/// Whether a document is a `Suite`.
pub fn is_suite(doc: &Value) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some("Suite")
        && doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("test.gatekeeper.sh/"))
}

/// The suite files under a path: the path itself when it is a file, else every YAML file under the directory
/// that holds a `Suite`, in path order.
pub fn find_suites(path: &Path) -> Result<Vec<PathBuf>, SuiteError> {
    let read_err = |source| SuiteError::Read {
        path: path.display().to_string(),
        source: Box::new(source),
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let docs = crate::files::read_dir(path).map_err(read_err)?;
    let mut out: Vec<PathBuf> = docs
        .iter()
        .filter(|d| is_suite(&d.value))
        .map(|d| PathBuf::from(&d.origin))
        .collect();
    out.dedup();
    Ok(out)
}

fn load_test(base: &Path, test: &RawTest) -> Result<PolicySet, String> {
    let mut docs: Vec<PolicyDocument> = Vec::new();
    for (what, file) in [
        ("template", &test.template),
        ("constraint", &test.constraint),
    ] {
        let path = base.join(file);
        let value = read_one(&path).map_err(|e| format!("{what}: {}", chain(&e)))?;
        docs.push(PolicyDocument {
            origin: path.display().to_string(),
            value,
        });
    }
    let set = PolicySet::load_documents(docs).map_err(|e| chain(&e))?;
    if set.constraints().count() != 1 {
        return Err(format!(
            "constraint {} is not a constraint of the template",
            test.constraint
        ));
    }
    Ok(set)
}

fn run_case(base: &Path, policies: &PolicySet, case: &RawCase) -> CaseOutcome {
    let mut inventory = Inventory::new();
    for file in &case.inventory {
        match read_file(&base.join(file)) {
            Ok(docs) => docs.iter().for_each(|d| {
                inventory.add(&d.value);
            }),
            Err(e) => return CaseOutcome::Fail(vec![format!("inventory: {}", chain(&e))]),
        }
    }
    let object = match read_one(&base.join(&case.object)) {
        Ok(o) => o,
        Err(e) => return CaseOutcome::Fail(vec![format!("object: {}", chain(&e))]),
    };
    let review = review_of(&object);
    let result = policies.evaluate_reviews(&[review], &inventory);
    if !result.errors.is_empty() {
        return CaseOutcome::Fail(result.errors.iter().map(ToString::to_string).collect());
    }
    let mut failures = Vec::new();
    for a in &case.assertions {
        // Checked when the suite was loaded.
        let Ok(expected) = Expected::parse(a.violations.as_ref()) else {
            continue;
        };
        let pattern = a.message.as_deref().and_then(|m| regex::Regex::new(m).ok());
        let matching: Vec<&str> = result
            .violations
            .iter()
            .map(|v| v.message.as_str())
            .filter(|m| pattern.as_ref().is_none_or(|p| p.is_match(m)))
            .collect();
        if !expected.holds(matching.len()) {
            let about = match &a.message {
                Some(m) => format!(" matching {m:?}"),
                None => String::new(),
            };
            let got: Vec<String> = result
                .violations
                .iter()
                .map(|v| format!("{:?}", v.message))
                .collect();
            failures.push(format!(
                "expected {expected} violations{about}, got {}{}",
                matching.len(),
                if got.is_empty() {
                    String::new()
                } else {
                    format!(" (messages: {})", got.join(", "))
                }
            ));
        }
    }
    if failures.is_empty() {
        CaseOutcome::Pass
    } else {
        CaseOutcome::Fail(failures)
    }
}

/// The review of a case's object: an `AdmissionReview`'s request as it is, any other object as its creation.
fn review_of(object: &Value) -> Review {
    let is_admission_review = object.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
        && object
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("admission.k8s.io/"));
    match object.get("request") {
        Some(request) if is_admission_review => {
            let reviewed = match request.get("object") {
                Some(o) if !o.is_null() => o.clone(),
                _ => request.get("oldObject").cloned().unwrap_or(Value::Null),
            };
            let mut id = ObjectRef::of(&reviewed);
            if id.namespace.is_none() {
                id.namespace = request
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned);
            }
            Review {
                id,
                object: reviewed,
                review: request.clone(),
            }
        }
        _ => Review::create(object, &Value::Object(Default::default())),
    }
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
