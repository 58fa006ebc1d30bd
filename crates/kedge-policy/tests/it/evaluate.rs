//! Policy sets through the public API: enforcement actions, `data.inventory`, namespace selectors, and the errors
//! that name what is wrong.

#![allow(clippy::unwrap_used)]

use kedge_policy::{EnforcementAction, Inventory, PolicyError, PolicySet, SyncRequirement};
use serde_json::{Value, json};

fn template(kind: &str, rego: &str) -> Value {
    json!({
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": kind.to_lowercase()},
        "spec": {
            "crd": {"spec": {"names": {"kind": kind}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "rego": rego}],
        },
    })
}

fn constraint(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn pod(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels}})
}

/// Denies every object it matches, naming it and echoing a parameter.
const DENY_ALL: &str = r#"
package k8sdenyall

violation[{"msg": msg}] {
  msg := sprintf("%v %v: %v", [input.review.kind.kind, input.review.object.metadata.name, input.parameters.reason])
}
"#;

#[test]
fn enforcement_actions() {
    let set = PolicySet::load(vec![
        template("K8sDenyAll", DENY_ALL),
        constraint(
            "K8sDenyAll",
            "a-deny",
            json!({"parameters": {"reason": "d"}}),
        ),
        constraint(
            "K8sDenyAll",
            "b-warn",
            json!({"enforcementAction": "warn", "parameters": {"reason": "w"}}),
        ),
        constraint(
            "K8sDenyAll",
            "c-dryrun",
            json!({"enforcementAction": "dryrun", "parameters": {"reason": "r"}}),
        ),
    ])
    .unwrap();
    let result = set.evaluate(&[pod("a", "web", json!({}))], &Inventory::new());
    let got: Vec<(EnforcementAction, String, String)> = result
        .violations
        .iter()
        .map(|v| (v.action, v.constraint.to_string(), v.message.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                EnforcementAction::Deny,
                "K8sDenyAll/a-deny".into(),
                "Pod web: d".into()
            ),
            (
                EnforcementAction::Warn,
                "K8sDenyAll/b-warn".into(),
                "Pod web: w".into()
            ),
            (
                EnforcementAction::Dryrun,
                "K8sDenyAll/c-dryrun".into(),
                "Pod web: r".into()
            ),
        ]
    );
    assert!(result.denied());
    assert_eq!(
        result.violations[0].to_string(),
        "deny K8sDenyAll/a-deny Pod a/web: Pod web: d"
    );

    // Without the deny constraint, nothing blocks.
    let report_only = PolicySet::load(vec![
        template("K8sDenyAll", DENY_ALL),
        constraint(
            "K8sDenyAll",
            "w",
            json!({"enforcementAction": "warn", "parameters": {"reason": "w"}}),
        ),
        constraint(
            "K8sDenyAll",
            "r",
            json!({"enforcementAction": "dryrun", "parameters": {"reason": "r"}}),
        ),
    ])
    .unwrap();
    let result = report_only.evaluate(&[pod("a", "web", json!({}))], &Inventory::new());
    assert_eq!(result.violations.len(), 2);
    assert!(!result.denied());

    for (action, expected) in [("scoped", "scoped"), ("Deny", "unknown enforcementAction")] {
        let err = PolicySet::load(vec![
            template("K8sDenyAll", DENY_ALL),
            constraint("K8sDenyAll", "x", json!({"enforcementAction": action})),
        ])
        .unwrap_err();
        assert!(matches!(err, PolicyError::InFile { .. }));
        let text = err.to_string();
        assert!(
            text.contains("K8sDenyAll/x") && text.contains(expected),
            "{text}"
        );
    }
}

#[test]
fn input_review_is_a_create_request() {
    let echo = r#"
package k8secho

violation[{"msg": msg}] {
  msg := json.marshal({"review": object.remove(input.review, ["object"]), "parameters": input.parameters})
}
"#;
    let set = PolicySet::load(vec![
        template("K8sEcho", echo),
        constraint("K8sEcho", "echo", json!({"parameters": {"n": 1}})),
    ])
    .unwrap()
    .with_user_info(json!({"username": "system:serviceaccount:kedge:kedge"}));
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}});
    let result = set.evaluate(&[deployment], &Inventory::new());
    let seen: Value = serde_json::from_str(&result.violations[0].message).unwrap();
    assert_eq!(
        seen,
        json!({
            "review": {
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "name": "web",
                "namespace": "a",
                "operation": "CREATE",
                "oldObject": null,
                "userInfo": {"username": "system:serviceaccount:kedge:kedge"},
            },
            "parameters": {"n": 1},
        })
    );
}

/// A referential policy: a label value must be unique among the Pods of the inventory.
const UNIQUE_LABEL: &str = r#"
package k8suniquelabel

identical(obj, review) {
  obj.metadata.namespace == review.namespace
  obj.metadata.name == review.name
}

violation[{"msg": msg}] {
  key := input.parameters.key
  value := input.review.object.metadata.labels[key]
  other := data.inventory.namespace[ns]["v1"]["Pod"][name]
  other.metadata.labels[key] == value
  not identical(other, input.review)
  msg := sprintf("label %v=%v is also on Pod %v/%v", [key, value, ns, name])
}
"#;

/// A referential policy on cluster-scoped objects: a Pod's namespace must exist.
const NAMESPACE_EXISTS: &str = r#"
package k8snamespaceexists

violation[{"msg": msg}] {
  ns := input.review.object.metadata.namespace
  not data.inventory.cluster["v1"].Namespace[ns]
  msg := sprintf("namespace %v does not exist", [ns])
}
"#;

#[test]
fn inventory_for_referential_policies() {
    let mut unique = template("K8sUniqueLabel", UNIQUE_LABEL);
    unique["metadata"]["annotations"] = json!({
        "metadata.gatekeeper.sh/requires-sync-data": r#"[[{"groups": [""], "versions": ["v1"], "kinds": ["Pod"]}]]"#,
    });
    let set = PolicySet::load(vec![
        unique,
        template("K8sNamespaceExists", NAMESPACE_EXISTS),
        template("K8sDenyAll", DENY_ALL),
        constraint(
            "K8sUniqueLabel",
            "unique-app",
            json!({"parameters": {"key": "app"}}),
        ),
        constraint(
            "K8sNamespaceExists",
            "ns-exists",
            json!({"match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}}),
        ),
    ])
    .unwrap();
    // Only templates with constraints count; K8sDenyAll has none and is not referential anyway.
    assert_eq!(
        set.inventory_kinds(),
        [SyncRequirement {
            groups: vec![String::new()],
            versions: vec!["v1".into()],
            kinds: vec!["Pod".into()],
        }]
    );
    assert_eq!(set.referential_without_sync_data(), ["k8snamespaceexists"]);

    let rendered = vec![
        pod("a", "web", json!({"app": "web"})),
        pod("a", "db", json!({"app": "db"})),
    ];
    let live_namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}});
    let live_pod = pod("b", "old-web", json!({"app": "web"}));
    let mut inventory = Inventory::from_objects(&rendered);
    inventory.add(&live_namespace);
    inventory.add(&live_pod);
    let result = set.evaluate(&rendered, &inventory);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let got: Vec<String> = result.violations.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        ["deny K8sUniqueLabel/unique-app Pod a/web: label app=web is also on Pod b/old-web"]
    );

    // Without the live objects: the namespace is missing and the label is unique.
    let result = set.evaluate(&rendered, &Inventory::from_objects(&rendered));
    let got: Vec<String> = result
        .violations
        .iter()
        .map(|v| v.message.clone())
        .collect();
    assert_eq!(
        got,
        ["namespace a does not exist", "namespace a does not exist"]
    );
}

#[test]
fn namespace_selector_reads_namespaces_from_objects_and_inventory() {
    let set = PolicySet::load(vec![
        template("K8sDenyAll", DENY_ALL),
        constraint(
            "K8sDenyAll",
            "prod-only",
            json!({
                "match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}],
                          "namespaceSelector": {"matchLabels": {"env": "prod"}}},
                "parameters": {"reason": "prod"},
            }),
        ),
    ])
    .unwrap();
    let rendered_ns = json!({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": "shop", "labels": {"env": "prod"}}});
    let mut inventory = Inventory::new();
    inventory.set_namespace_labels("dev", [("env".to_owned(), "dev".to_owned())].into());
    let objects = [
        rendered_ns,
        pod("shop", "a", json!({})),
        pod("dev", "b", json!({})),
        pod("unknown", "c", json!({})),
    ];
    let result = set.evaluate(&objects, &inventory);
    let got: Vec<String> = result
        .violations
        .iter()
        .map(|v| v.object.to_string())
        .collect();
    assert_eq!(got, ["Pod shop/a"]);
    // A namespace nobody knows is an error of a deny constraint: the sync is blocked, not guessed.
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].object.to_string(), "Pod unknown/c");
    assert!(
        result.errors[0].message.contains("namespace unknown"),
        "{}",
        result.errors[0]
    );
    assert!(result.denied());
}

#[test]
fn rego_v1_and_libraries_from_code() {
    let doc = json!({
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": "k8snolatest"},
        "spec": {
            "crd": {"spec": {"names": {"kind": "K8sNoLatest"}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "code": [
                {"engine": "K8sNativeValidation", "source": {"validations": [{"expression": "true"}]}},
                {"engine": "Rego", "source": {"version": "v1", "rego": r#"
package k8snolatest

import data.lib.images.latest

violation contains {"msg": msg} if {
  some c in input.review.object.spec.containers
  latest(c.image)
  msg := sprintf("container %v uses a latest image", [c.name])
}
"#, "libs": [r#"
package lib.images

latest(image) if endswith(image, ":latest")
latest(image) if not contains(image, ":")
"#]}},
            ]}],
        },
    });
    let set =
        PolicySet::load(vec![doc, constraint("K8sNoLatest", "no-latest", json!({}))]).unwrap();
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
                   "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27"},
                                           {"name": "c", "image": "nginx:latest"}]}});
    let result = set.evaluate(&[p], &Inventory::new());
    let got: Vec<&str> = result
        .violations
        .iter()
        .map(|v| v.message.as_str())
        .collect();
    assert_eq!(
        got,
        [
            "container a uses a latest image",
            "container c uses a latest image"
        ]
    );
}

#[test]
fn runtime_errors_are_reported_per_object() {
    let conflicting = r#"
package k8sconflict

f(x) = 1 { true }
f(x) = 2 { true }

violation[{"msg": "never"}] {
  f(input.review.object) == 3
}
"#;
    let set = PolicySet::load(vec![
        template("K8sConflict", conflicting),
        constraint("K8sConflict", "c", json!({"enforcementAction": "warn"})),
    ])
    .unwrap();
    let result = set.evaluate(&[pod("a", "p", json!({}))], &Inventory::new());
    assert!(result.violations.is_empty());
    assert_eq!(result.errors.len(), 1, "{result:?}");
    assert_eq!(result.errors[0].constraint.to_string(), "K8sConflict/c");
    // A warn constraint that fails does not block.
    assert!(!result.denied());
}

fn load_err(docs: Vec<Value>) -> String {
    let err = PolicySet::load(docs).unwrap_err();
    err.to_string()
}

#[test]
fn errors_name_the_template_or_constraint() {
    let syntax = load_err(vec![template(
        "K8sBroken",
        "package k8sbroken\n\nviolation[{\"msg\": msg}] {\n  msg := \n}\n",
    )]);
    assert!(
        syntax.contains("ConstraintTemplate k8sbroken (rego)"),
        "{syntax}"
    );
    assert!(syntax.contains("document #1"), "{syntax}");

    let unknown = load_err(vec![
        template("K8sDenyAll", DENY_ALL),
        constraint("K8sMissing", "orphan", json!({})),
    ]);
    assert!(
        unknown.contains("K8sMissing/orphan") && unknown.contains("known: K8sDenyAll"),
        "{unknown}"
    );

    let mut misnamed = template("K8sDenyAll", DENY_ALL);
    misnamed["metadata"]["name"] = json!("deny-all");
    let misnamed = load_err(vec![misnamed]);
    assert!(
        misnamed.contains("deny-all") && misnamed.contains("lowercase"),
        "{misnamed}"
    );

    let mut cel = template("K8sCel", "");
    cel["spec"]["targets"][0] = json!({"target": "admission.k8s.gatekeeper.sh", "code": [
        {"engine": "K8sNativeValidation", "source": {"validations": [{"expression": "true"}]}}]});
    let cel = load_err(vec![cel]);
    assert!(
        cel.contains("k8scel") && cel.contains("K8sNativeValidation"),
        "{cel}"
    );

    let mut bad_lib = template("K8sDenyAll", DENY_ALL);
    bad_lib["spec"]["targets"][0]["libs"] = json!(["package helpers\nx := 1\n"]);
    let bad_lib = load_err(vec![bad_lib]);
    assert!(
        bad_lib.contains("libs[0]") && bad_lib.contains("data.lib"),
        "{bad_lib}"
    );

    let no_violation = load_err(vec![template(
        "K8sNothing",
        "package k8snothing\n\nallow { true }\n",
    )]);
    assert!(
        no_violation.contains("k8snothing") && no_violation.contains("no violation rule"),
        "{no_violation}"
    );

    let unsafe_var = load_err(vec![template(
        "K8sUnsafe",
        "package k8sunsafe\n\nviolation[{\"msg\": msg}] {\n  not input.x\n}\n",
    )]);
    assert!(unsafe_var.contains("k8sunsafe"), "{unsafe_var}");

    let twice = load_err(vec![
        template("K8sDenyAll", DENY_ALL),
        constraint("K8sDenyAll", "x", json!({})),
        constraint("K8sDenyAll", "x", json!({})),
    ]);
    assert!(twice.contains("K8sDenyAll/x is defined twice"), "{twice}");

    let bad_match = load_err(vec![
        template("K8sDenyAll", DENY_ALL),
        constraint("K8sDenyAll", "x", json!({"match": {"scope": "Somewhere"}})),
    ]);
    assert!(
        bad_match.contains("K8sDenyAll/x") && bad_match.contains("scope"),
        "{bad_match}"
    );
}

#[test]
fn other_documents_are_listed_not_loaded() {
    let set = PolicySet::load(vec![
        template("K8sDenyAll", DENY_ALL),
        pod("a", "p", json!({})),
    ])
    .unwrap();
    assert_eq!(set.ignored(), ["document #2 (Pod a/p)"]);
    assert_eq!(set.templates().collect::<Vec<_>>(), ["k8sdenyall"]);
    assert_eq!(set.constraints().count(), 0);
}

#[test]
fn policy_sets_are_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<PolicySet>();
}

#[test]
fn v0_templates_may_import_future_keywords_and_rego_v1() {
    for import in [
        "import future.keywords.if\nimport future.keywords.in",
        "import future.keywords",
        "import future.keywords.in\nimport future.keywords.if\nimport future.keywords.contains",
        "import rego.v1",
    ] {
        let head =
            if import.contains("contains") || import.ends_with("keywords") || import.contains("v1")
            {
                "violation contains {\"msg\": msg} if"
            } else {
                // OPA v0 reads this as a partial set too.
                "violation[{\"msg\": msg}] if"
            };
        let rego = format!(
            "package k8sfuture\n\n{import}\n\n{head} {{\n  some c in input.review.object.spec.containers\n  msg := c.name\n}}\n"
        );
        let set = PolicySet::load(vec![
            template("K8sFuture", &rego),
            constraint("K8sFuture", "f", json!({})),
        ])
        .unwrap();
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "a"}]}});
        let result = set.evaluate(&[p], &Inventory::new());
        assert_eq!(result.violations.len(), 1, "{import}: {result:?}");
        assert_eq!(result.violations[0].message, "a");
    }
}

#[test]
fn suites_review_admission_requests_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "template.yaml",
        r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8snoupdates
spec:
  crd:
    spec:
      names:
        kind: K8sNoUpdates
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8snoupdates
        violation[{"msg": msg}] {
          input.review.operation == "UPDATE"
          msg := sprintf("%v may not update %v", [input.review.userInfo.username, input.review.object.metadata.name])
        }
"#,
    );
    write(
        "constraint.yaml",
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sNoUpdates\nmetadata:\n  name: c\nspec:\n  match:\n    namespaces: [shop]\n",
    );
    write(
        "update.yaml",
        r#"apiVersion: admission.k8s.io/v1
kind: AdmissionReview
request:
  operation: UPDATE
  namespace: shop
  userInfo:
    username: alice
  kind: {group: "", version: v1, kind: ConfigMap}
  object:
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings, namespace: shop}
  oldObject:
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings, namespace: shop}
"#,
    );
    write(
        "create.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n",
    );
    write(
        "suite.yaml",
        r#"kind: Suite
apiVersion: test.gatekeeper.sh/v1alpha1
tests:
- name: t
  template: template.yaml
  constraint: constraint.yaml
  cases:
  - name: update
    object: update.yaml
    assertions:
    - violations: 1
      message: ^alice may not update settings$
  - name: create
    object: create.yaml
    assertions:
    - violations: no
"#,
    );
    let results = kedge_policy::Suite::load(&dir.path().join("suite.yaml"))
        .unwrap()
        .run();
    for r in &results {
        assert_eq!(r.outcome, kedge_policy::CaseOutcome::Pass, "{r:?}");
    }
    assert_eq!(results.len(), 2);
}
