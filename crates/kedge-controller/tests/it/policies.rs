//! Project policies end to end: Gatekeeper templates and constraints from a Git repository or a ConfigMap are
//! evaluated against every rendered object before anything is planned. A `deny` violation refuses the sync with no
//! request about the objects (checked in the API server's audit log); `warn` reports and syncs; a referential
//! policy sees the destination's live objects in `data.inventory`; a policy that cannot be read refuses the sync.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge_testkit::GitFixture;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The Gatekeeper library's `requiredlabels` template, as kedge-policy's fixtures hold it.
fn required_labels_template() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kedge-policy/tests/fixtures/gatekeeper-library/requiredlabels/template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `K8sRequiredLabels` constraint on Deployments and ConfigMaps.
fn required_labels(name: &str, label: &str, action: &str) -> String {
    format!(
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: {name}\n\
         spec:\n  enforcementAction: {action}\n  match:\n    kinds:\n      - apiGroups: [\"\", \"apps\"]\n        \
         kinds: [\"Deployment\", \"ConfigMap\"]\n  parameters:\n    labels:\n      - key: {label}\n"
    )
}

/// A ConfigMap manifest with labels.
fn labelled_config_map(name: &str, labels: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        s.push_str("  labels:\n");
        for (k, v) in labels {
            s.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    s.push_str("data:\n  k: v\n");
    s
}

/// A project allowing everything in the test's namespace, with these policy sources.
fn project_with(env: &Env, policies: Value) -> Value {
    json!({
        "sourceRepos": ["*"],
        "destinations": [{ "name": "in-cluster", "namespace": env.ns() }],
        "policies": policies,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_from_git_refuses_the_sync_before_anything_is_sent_and_warn_reports() {
    let env = Env::audited("pol").await;
    let ns = env.ns().to_owned();
    // The policies: a repository of their own on the same git servers.
    env.servers
        .root
        .create_bare_repo("policies.git")
        .expect("policies repo");
    let policies_url = env.servers.daemon.url("policies.git");
    let policies = GitFixture::new().expect("policies work tree");
    policies
        .write(
            "library/requiredlabels/template.yaml",
            required_labels_template(),
        )
        .expect("write");
    policies
        .write(
            "library/requiredlabels/constraint.yaml",
            required_labels("must-have-owner", "owner", "deny"),
        )
        .expect("write");
    policies
        .write("README.md", "not a policy\n")
        .expect("write");
    policies.commit("policies").expect("commit");
    policies.push(&policies_url, "main").expect("push");
    apply_project(
        &env,
        "team-a",
        project_with(
            &env,
            json!([{ "repoURL": policies_url, "targetRevision": "main", "path": "library" }]),
        ),
    )
    .await;

    env.write("app/cm.yaml", &labelled_config_map("settings", &[]));
    env.commit_push("no owner");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "web",
        "app",
        automated(true, true),
        json!({ "project": "team-a", "destination": { "namespace": ns } }),
        json!({}),
    )
    .await;
    let message = wait_refused(&env, "web", "PolicyDenied", "you must provide labels").await;
    assert!(
        message.contains(&format!(
            "K8sRequiredLabels/must-have-owner on ConfigMap {ns}/settings: you must provide labels: {{\"owner\"}}"
        )),
        "{message}"
    );
    assert!(message.contains("nothing was applied"), "{message}");
    env.wait_event("web", "PolicyDenied", |m| m.contains("must-have-owner"))
        .await;
    assert!(env.config_map_data("settings").await.is_none());
    assert!(
        requests_about(&env, &ns, "settings").is_empty(),
        "requests were sent about an object a policy denied: {:?}",
        requests_about(&env, &ns, "settings")
    );

    // The manifest fixed in a new commit: synced.
    env.write(
        "app/cm.yaml",
        &labelled_config_map("settings", &[("owner", "team-a")]),
    );
    let fixed = env.commit_push("an owner");
    let app = env.wait_synced("web", &fixed).await;
    assert!(condition(&app, "Stalled").is_none_or(|c| c.status != "True"));
    env.wait_config_map("settings", "k", "v").await;

    // A warn constraint: reported in an Event, and the sync goes on.
    policies
        .write(
            "library/requiredlabels/team.yaml",
            required_labels("should-have-team", "team", "warn"),
        )
        .expect("write");
    policies.commit("warn about teams").expect("commit");
    policies.push(&policies_url, "main").expect("push");
    env.write(
        "app/extra.yaml",
        &labelled_config_map("extra", &[("owner", "team-a")]),
    );
    let with_extra = env.commit_push("another config map");
    env.wait_synced("web", &with_extra).await;
    env.wait_config_map("extra", "k", "v").await;
    let warning = env
        .wait_event("web", "PolicyWarning", |m| {
            m.contains(&format!(
                "warn K8sRequiredLabels/should-have-team on ConfigMap {ns}/extra: you must provide labels: {{\"team\"}}"
            ))
        })
        .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    // Once per set of warnings, not at every pass: a refresh compares again and reports nothing new.
    env.patch_app(
        "web",
        json!({ "metadata": { "annotations": { kedge_api::REFRESH_ANNOTATION: "normal" } } }),
    )
    .await;
    env.wait_app("web", "the refresh ran", |a| {
        !a.metadata
            .annotations
            .as_ref()
            .is_some_and(|m| m.contains_key(kedge_api::REFRESH_ANNOTATION))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.count_events("web", "PolicyWarning").await, 1);
}

/// A referential template (the shape of the library's `uniquelabel`): a label's value must be unique among the
/// objects of `data.inventory`, which Gatekeeper fills from the cluster.
const UNIQUE_LABEL: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8suniquelabel
  annotations:
    metadata.gatekeeper.sh/requires-sync-data: |
      "[[{"groups": [""], "versions": ["v1"], "kinds": ["ConfigMap"]}]]"
spec:
  crd:
    spec:
      names:
        kind: K8sUniqueLabel
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8suniquelabel

        make_apiversion(kind) = apiVersion {
          g := kind.group
          v := kind.version
          g != ""
          apiVersion = sprintf("%v/%v", [g, v])
        }

        make_apiversion(kind) = apiVersion {
          kind.group == ""
          apiVersion = kind.version
        }

        identical(obj, review) {
          obj.metadata.namespace == review.namespace
          obj.metadata.name == review.name
          obj.kind == review.kind.kind
          obj.apiVersion == make_apiversion(review.kind)
        }

        violation[{"msg": msg}] {
          label := input.parameters.label
          val := input.review.object.metadata.labels[label]
          others := [o | o = data.inventory.namespace[_][_][_][_]; not identical(o, input.review)]
          values := {v | v = others[_].metadata.labels[label]}
          count({val} - values) == 0
          msg := sprintf("label %v has duplicate value %v", [label, val])
        }
"#;

fn unique_label_constraint(label: &str) -> String {
    format!(
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sUniqueLabel\nmetadata:\n  name: unique-slot\n\
         spec:\n  match:\n    kinds:\n      - apiGroups: [\"\"]\n        kinds: [\"ConfigMap\"]\n  parameters:\n    \
         label: {label}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_policies_see_live_objects_and_a_broken_source_refuses_the_sync() {
    let env = Env::new("pol-cm").await;
    let ns = env.ns().to_owned();
    let label = "policies.kedge.dev/slot";
    let taken = format!("{ns}-a");
    // A live object the application does not manage, holding the label value.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns);
    let existing: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "existing", "labels": { label: taken } },
        "data": { "k": "v" },
    }))
    .expect("config map");
    cms.create(&PostParams::default(), &existing)
        .await
        .expect("create the live config map");
    // The policies in a ConfigMap, first with a template that does not compile.
    let broken = UNIQUE_LABEL.replace("count({val} - values) == 0", "count({val} - values) ==");
    let policies = |template: &str| -> ConfigMap {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "policies", "namespace": ns },
            "data": { "template.yaml": template, "constraint.yaml": unique_label_constraint(label) },
        }))
        .expect("policies")
    };
    cms.patch(
        "policies",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&policies(&broken)),
    )
    .await
    .expect("policies config map");
    apply_project(
        &env,
        "team-a",
        project_with(&env, json!([{ "configMapRef": { "name": "policies" } }])),
    )
    .await;
    env.write(
        "app/cm.yaml",
        &labelled_config_map("claim", &[(label, taken.as_str())]),
    );
    env.commit_push("a taken value");
    let _controller = env.start_controller("c1");
    env.create_app_with(
        "web",
        "app",
        automated(true, true),
        json!({ "project": "team-a", "destination": { "namespace": ns } }),
        json!({}),
    )
    .await;
    // A policy that cannot be compiled refuses the sync, naming the source and the file.
    let message = wait_refused(
        &env,
        "web",
        "PolicyFailed",
        "ConfigMap policies key template.yaml",
    )
    .await;
    assert!(
        message.contains("failed to compile Rego of ConstraintTemplate k8suniquelabel"),
        "{message}"
    );
    assert!(env.config_map_data("claim").await.is_none());

    // Fixed: the value the live object holds is denied.
    cms.patch(
        "policies",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&policies(UNIQUE_LABEL)),
    )
    .await
    .expect("policies config map");
    let message = wait_refused(&env, "web", "PolicyDenied", "has duplicate value").await;
    assert!(
        message.contains(&format!(
            "K8sUniqueLabel/unique-slot on ConfigMap {ns}/claim: label {label} has duplicate value {taken}"
        )),
        "{message}"
    );
    assert!(env.config_map_data("claim").await.is_none());

    // A value of its own: synced.
    env.write(
        "app/cm.yaml",
        &labelled_config_map("claim", &[(label, &format!("{ns}-b"))]),
    );
    let fixed = env.commit_push("a free value");
    env.wait_synced("web", &fixed).await;
    env.wait_config_map("claim", "k", "v").await;
}
