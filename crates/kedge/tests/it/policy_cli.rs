//! `kedge policy verify` on the Gatekeeper library's suites and `kedge policy check` on rendered directories, with
//! the built binary.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kedge-policy/tests/fixtures/gatekeeper-library")
}

fn kedge<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8(out.stdout.clone()).unwrap(),
        String::from_utf8(out.stderr.clone()).unwrap(),
    )
}

#[test]
fn verify_runs_the_library_suites() {
    let out = kedge([
        "policy".as_ref(),
        "verify".as_ref(),
        library().join("requiredlabels/suite.yaml").as_os_str(),
        library().join("containerlimits").as_os_str(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{stdout}");
    assert!(
        lines[..9].iter().all(|l| l.starts_with("ok   ")),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("requiredlabels/suite.yaml must-have-owner/example-disallowed-label-value\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "containerlimits/suite.yaml container-limits-ignore-cpu/example-disallowed\n"
        ),
        "{stdout}"
    );
    assert_eq!(lines[9], "9 passed, 0 failed, 0 skipped");
}

#[test]
fn verify_fails_on_a_wrong_assertion_and_on_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library().join("requiredlabels");
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"kind: Suite
apiVersion: test.gatekeeper.sh/v1alpha1
tests:
- name: owner
  template: {lib}/template.yaml
  constraint: {lib}/samples/all-must-have-owner/constraint.yaml
  cases:
  - name: allowed-said-disallowed
    object: {lib}/samples/all-must-have-owner/example_allowed.yaml
    assertions:
    - violations: yes
  - name: right
    object: {lib}/samples/all-must-have-owner/example_disallowed.yaml
    assertions:
    - violations: 1
      message: "`owner` label"
  - name: missing-object
    object: nowhere.yaml
"#,
            lib = lib.display()
        ),
    )
    .unwrap();
    let out = kedge(["policy".as_ref(), "verify".as_ref(), suite.as_os_str()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("FAIL ")
            && stdout
                .contains("owner/allowed-said-disallowed: expected at least 1 violations, got 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   ") && stdout.contains("owner/right\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("owner/missing-object: object: failed to read ")
            && stdout.contains("nowhere.yaml"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("1 passed, 2 failed, 0 skipped\n"),
        "{stdout}"
    );

    // A file that is not a suite, and one that does not exist: named, no panic.
    let not_suite = dir.path().join("pod.yaml");
    std::fs::write(
        &not_suite,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.yaml");
    let out = kedge([
        "policy".as_ref(),
        "verify".as_ref(),
        not_suite.as_os_str(),
        missing.as_os_str(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("FAIL {}: invalid suite", not_suite.display()))
            && stdout.contains("expected kind Suite"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("FAIL {}: failed to read suite", missing.display())),
        "{stdout}"
    );
}

/// Policies: the library's K8sRequiredLabels, denying Deployments without `owner` and warning on Services
/// without `team`; an unrelated document beside them.
fn policies(dir: &Path) -> PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::copy(
        library().join("requiredlabels/template.yaml"),
        p.join("template.yaml"),
    )
    .unwrap();
    std::fs::write(
        p.join("constraints.yaml"),
        r#"apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata:
  name: deployments-need-owner
spec:
  match:
    kinds:
      - apiGroups: ["apps"]
        kinds: ["Deployment"]
    excludedNamespaces: ["kube-*"]
  parameters:
    labels:
      - key: owner
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata:
  name: services-should-have-team
spec:
  enforcementAction: warn
  match:
    kinds:
      - apiGroups: [""]
        kinds: ["Service"]
  parameters:
    labels:
      - key: team
"#,
    )
    .unwrap();
    std::fs::write(
        p.join("kustomization.yaml"),
        "resources:\n  - template.yaml\n",
    )
    .unwrap();
    p
}

fn app(dir: &Path, name: &str, deployment_labels: &str) -> PathBuf {
    let a = dir.join(name);
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(
        a.join("app.yaml"),
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {deployment_labels}
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dns
  namespace: kube-system
spec:
  selector:
    matchLabels: {{app: dns}}
  template:
    metadata:
      labels: {{app: dns}}
    spec:
      containers:
        - name: dns
          image: coredns:1.11
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
    - port: 80
"#
        ),
    )
    .unwrap();
    a
}

#[test]
fn check_denies_a_violating_application() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    let bad = app(dir.path(), "bad", "{app: web}");
    let out = kedge([
        "policy".as_ref(),
        "check".as_ref(),
        "--policies".as_ref(),
        policies.as_os_str(),
        bad.as_os_str(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "deny K8sRequiredLabels/deployments-need-owner Deployment.apps shop/web: you must provide labels: {\"owner\"}\n\
         warn K8sRequiredLabels/services-should-have-team Service shop/web: you must provide labels: {\"team\"}\n"
    );
    assert!(stderr.contains("left out 1 documents"), "{stderr}");
    assert!(
        stderr.contains("3 objects, 2 constraints: 1 deny, 1 warn, 0 dryrun, 0 errors"),
        "{stderr}"
    );
}

#[test]
fn check_passes_a_clean_application_and_reports_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    let good = app(dir.path(), "good", "{app: web, owner: shop-team}");
    let out = kedge([
        "policy".as_ref(),
        "check".as_ref(),
        "--policies".as_ref(),
        policies.as_os_str(),
        good.as_os_str(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "warn K8sRequiredLabels/services-should-have-team Service shop/web: you must provide labels: {\"team\"}\n"
    );
}

#[test]
fn check_names_a_broken_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    std::fs::write(
        policies.join("orphan.yaml"),
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sNoSuchThing\nmetadata:\n  name: orphan\n",
    )
    .unwrap();
    let good = app(dir.path(), "good", "{owner: x}");
    let out = kedge([
        "policy".as_ref(),
        "check".as_ref(),
        "--policies".as_ref(),
        policies.as_os_str(),
        good.as_os_str(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("orphan.yaml: constraint K8sNoSuchThing/orphan: no ConstraintTemplate defines kind K8sNoSuchThing"),
        "{stderr}"
    );
}
