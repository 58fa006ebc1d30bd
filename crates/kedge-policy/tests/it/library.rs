//! The Gatekeeper policy library's own suites and samples, through the library API: every case passes, and the
//! disallowed samples produce the library's messages.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kedge_policy::{CaseOutcome, EnforcementAction, Inventory, PolicySet, Suite, files};
use serde_json::Value;

fn library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gatekeeper-library")
}

fn doc(path: &str) -> Value {
    let mut docs = files::read_file(&library().join(path)).unwrap();
    assert_eq!(docs.len(), 1, "{path}");
    docs.remove(0).value
}

/// The messages a template and constraint give for a sample.
fn messages(template: &str, constraint: &str, object: &str) -> Vec<String> {
    let set = PolicySet::load(vec![doc(template), doc(constraint)]).unwrap();
    let result = set.evaluate(&[doc(object)], &Inventory::new());
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert!(
        result
            .violations
            .iter()
            .all(|v| v.action == EnforcementAction::Deny)
    );
    result.violations.into_iter().map(|v| v.message).collect()
}

#[test]
fn library_suites_pass() {
    for suite in ["requiredlabels/suite.yaml", "containerlimits/suite.yaml"] {
        let suite = Suite::load(&library().join(suite)).unwrap();
        let results = suite.run();
        assert!(results.len() >= 4, "{results:?}");
        for r in &results {
            assert_eq!(
                r.outcome,
                CaseOutcome::Pass,
                "{} {}/{}",
                suite.path().display(),
                r.test,
                r.case
            );
        }
    }
}

#[test]
fn required_labels_messages() {
    let t = "requiredlabels/template.yaml";
    let owner = "requiredlabels/samples/all-must-have-owner";
    let msg = "All namespaces must have an `owner` label that points to your company username";
    assert_eq!(
        messages(
            t,
            &format!("{owner}/constraint.yaml"),
            &format!("{owner}/example_disallowed.yaml")
        ),
        [msg]
    );
    assert_eq!(
        messages(
            t,
            &format!("{owner}/constraint.yaml"),
            &format!("{owner}/example_disallowed_label_value.yaml")
        ),
        [msg]
    );
    assert!(
        messages(
            t,
            &format!("{owner}/constraint.yaml"),
            &format!("{owner}/example_allowed.yaml")
        )
        .is_empty()
    );
    let key = "requiredlabels/samples/verify-label-key-only";
    assert_eq!(
        messages(
            t,
            &format!("{key}/constraint.yaml"),
            &format!("{key}/example_disallowed.yaml")
        ),
        ["All pods must have label of key `pizza` regardless of the label's value"]
    );
    // The constraint matches Pods only: a Namespace without the label passes.
    assert!(
        messages(
            t,
            &format!("{key}/constraint.yaml"),
            &format!("{owner}/example_disallowed.yaml")
        )
        .is_empty()
    );
}

#[test]
fn required_labels_default_messages_and_details_as_opa() {
    let mut constraint = doc("requiredlabels/samples/all-must-have-owner/constraint.yaml");
    constraint["spec"]["parameters"]
        .as_object_mut()
        .unwrap()
        .remove("message");
    let set = PolicySet::load(vec![doc("requiredlabels/template.yaml"), constraint]).unwrap();
    let missing = doc("requiredlabels/samples/all-must-have-owner/example_disallowed.yaml");
    let wrong =
        doc("requiredlabels/samples/all-must-have-owner/example_disallowed_label_value.yaml");
    let result = set.evaluate(&[missing, wrong], &Inventory::new());
    let got: Vec<(String, String)> = result
        .violations
        .iter()
        .map(|v| (v.object.to_string(), v.message.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "Namespace disallowed-namespace".to_owned(),
                r#"you must provide labels: {"owner"}"#.to_owned()
            ),
            (
                "Namespace disallowed-namespace".to_owned(),
                "Label <owner: user> does not satisfy allowed regex: ^[a-zA-Z]+.agilebank.demo$"
                    .to_owned()
            ),
        ]
    );
    assert_eq!(
        result.violations[0].details,
        Some(serde_json::json!({"missing_labels": ["owner"]}))
    );
}

#[test]
fn container_limits_messages() {
    let t = "containerlimits/template.yaml";
    for sample in ["container-must-have-limits", "container-ignore-cpu-limits"] {
        let dir = format!("containerlimits/samples/{sample}");
        assert_eq!(
            messages(
                t,
                &format!("{dir}/constraint.yaml"),
                &format!("{dir}/example_disallowed.yaml")
            ),
            ["container <opa> memory limit <2Gi> is higher than the maximum allowed of <1Gi>"],
            "{sample}"
        );
        assert!(
            messages(
                t,
                &format!("{dir}/constraint.yaml"),
                &format!("{dir}/example_allowed.yaml")
            )
            .is_empty(),
            "{sample}"
        );
    }
    // The allowed sample of the cpu-ignoring constraint has no cpu limit: the stricter constraint finds that.
    assert_eq!(
        messages(
            t,
            "containerlimits/samples/container-must-have-limits/constraint.yaml",
            "containerlimits/samples/container-ignore-cpu-limits/example_allowed.yaml"
        ),
        ["container <opa> has no cpu limit"]
    );
}

#[test]
fn a_wrong_assertion_fails_its_case() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library().join("containerlimits");
    let suite = format!(
        r#"kind: Suite
apiVersion: test.gatekeeper.sh/v1alpha1
tests:
- name: limits
  template: {lib}/template.yaml
  constraint: {lib}/samples/container-must-have-limits/constraint.yaml
  cases:
  - name: wrong-count
    object: {lib}/samples/container-must-have-limits/example_disallowed.yaml
    assertions:
    - violations: 2
  - name: wrong-message
    object: {lib}/samples/container-must-have-limits/example_disallowed.yaml
    assertions:
    - violations: yes
      message: cpu limit
  - name: right-message
    object: {lib}/samples/container-must-have-limits/example_disallowed.yaml
    assertions:
    - violations: 1
      message: memory limit <2Gi>
    - violations: no
      message: cpu
  - name: skipped
    skip: true
    object: {lib}/samples/container-must-have-limits/example_disallowed.yaml
    assertions:
    - violations: no
"#,
        lib = lib.display()
    );
    let path = dir.path().join("suite.yaml");
    std::fs::write(&path, suite).unwrap();
    let results = Suite::load(&path).unwrap().run();
    let outcomes: Vec<_> = results
        .iter()
        .map(|r| (r.case.as_str(), &r.outcome))
        .collect();
    match outcomes.as_slice() {
        [
            ("wrong-count", CaseOutcome::Fail(a)),
            ("wrong-message", CaseOutcome::Fail(b)),
            ("right-message", CaseOutcome::Pass),
            ("skipped", CaseOutcome::Skip),
        ] => {
            assert!(a[0].contains("expected 2 violations, got 1"), "{a:?}");
            assert!(b[0].contains(r#"matching "cpu limit", got 0"#), "{b:?}");
        }
        other => panic!("{other:?}"),
    }
}
