//! `kedge appset generate`: Argo CD's list example offline (YAML and JSON, the Argo CD note on stderr), refusals with
//! their field and a non-zero exit, and, on the test cluster, a matrix of a Git repository (served over HTTP with
//! basic auth, credentials from a repository Secret, as the controller reads it) and the Clusters registered in the
//! namespace, with the ApplicationSet CRD accepted by the API server.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use cli::kedge;
use common::*;
use kedge_api::{ApplicationSet, Cluster, ClusterSpec, LocalSecretReference};
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!(
        "{}/../kedge-appset/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn offline(args: &[&str]) -> Output {
    // No kubeconfig: a set without a clusters generator needs no cluster.
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap()
}

fn names(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[test]
fn a_list_generator_file_prints_its_applications() {
    let out = offline(&[
        "appset",
        "generate",
        "-f",
        &fixture("list-example.yaml"),
        "-n",
        "team",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: read an Argo CD ApplicationSet (argoproj.io/v1alpha1)"),
        "{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let items: Vec<Value> = stdout
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    assert_eq!(
        names(&items),
        ["engineering-dev-guestbook", "engineering-prod-guestbook"]
    );
    for i in &items {
        assert_eq!(i["apiVersion"], "kedge.dev/v1alpha1");
        assert_eq!(i["kind"], "Application");
        assert_eq!(i["metadata"]["namespace"], "team");
        assert_eq!(
            i["spec"]["destination"]["server"],
            "https://kubernetes.default.svc"
        );
    }
    assert_eq!(
        items[1]["spec"]["source"]["path"],
        "applicationset/examples/list-generator/guestbook/engineering-prod"
    );

    let out = offline(&[
        "appset",
        "generate",
        "-f",
        &fixture("list-example.yaml"),
        "-o",
        "json",
    ]);
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(
        names(list["items"].as_array().unwrap()),
        ["engineering-dev-guestbook", "engineering-prod-guestbook"]
    );
}

#[test]
fn refusals_name_the_field_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    std::fs::write(
        &file,
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: { name: prs }\nspec:\n  generators:\n    - pullRequest: { github: { owner: o, repo: r } }\n  template: { metadata: { name: x } }\n",
    )
    .unwrap();
    let out = offline(&["appset", "generate", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("spec.generators[0].pullRequest: the pullRequest generator is not supported by Kedge yet"),
        "{stderr}"
    );

    let out = offline(&["appset", "generate", "-f", "/nonexistent/set.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read /nonexistent/set.yaml"));

    // A clusters generator without a reachable cluster says why it needed one.
    let out = offline(&[
        "appset",
        "generate",
        "-f",
        &fixture("cluster-example-fasttemplate.yaml"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the set has a clusters generator"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_of_the_namespace_and_git_as_the_controller_reads_it() {
    let env = Env::with_auth(
        "cli-appset",
        kedge_testkit::HttpAuth::basic("kedge", "appset-secret-7"),
    )
    .await;
    // The CRD is accepted by the API server and an Argo CD-shaped set is stored as written.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.client.clone());
    crds.patch(
        "applicationsets.kedge.dev",
        &PatchParams::apply("kedge-tests").force(),
        &Patch::Apply(&ApplicationSet::crd()),
    )
    .await
    .expect("ApplicationSet CRD");

    env.write("addons/metrics/kustomization.yaml", "resources: []\n");
    env.write("addons/logging/kustomization.yaml", "resources: []\n");
    env.write("addons/README.md", "not an addon\n");
    env.commit_push("addons");

    let clusters: Api<Cluster> = Api::namespaced(env.client.clone(), env.ns());
    for (name, server, env_label) in [
        ("east", "https://east.example:6443", "prod"),
        ("west", "https://west.example:6443", "staging"),
    ] {
        let mut c = Cluster::new(
            name,
            ClusterSpec {
                server: server.into(),
                secret_ref: LocalSecretReference {
                    name: format!("{name}-creds"),
                },
                ..ClusterSpec::default()
            },
        );
        c.metadata.labels = Some(BTreeMap::from([("env".to_owned(), env_label.to_owned())]));
        clusters
            .create(&PostParams::default(), &c)
            .await
            .expect("cluster");
    }

    let text = format!(
        r#"apiVersion: kedge.dev/v1alpha1
kind: ApplicationSet
metadata: {{ name: addons }}
spec:
  goTemplate: true
  goTemplateOptions: ["missingkey=error"]
  generators:
    - matrix:
        generators:
          - git:
              repoURL: {repo}
              revision: main
              directories: [ {{ path: "addons/*" }} ]
          - clusters:
              selector: {{ matchExpressions: [ {{ key: env, operator: In, values: [prod, staging] }} ] }}
  template:
    metadata:
      name: '{{{{ .path.basename }}}}-{{{{ .name }}}}'
      labels: {{ env: '{{{{ .metadata.labels.env }}}}' }}
    spec:
      project: default
      source: {{ repoURL: {repo}, targetRevision: main, path: '{{{{ .path.path }}}}' }}
      destination: {{ name: '{{{{ .name }}}}', namespace: '{{{{ .path.basename }}}}' }}
"#,
        repo = env.servers.http.url("app.git")
    );
    let sets: Api<ApplicationSet> = Api::namespaced(env.client.clone(), env.ns());
    kedge_testkit::wait_for(STEP, POLL, || async {
        sets.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("ApplicationSet CRD served");
    let parsed = kedge_appset::parse_set(&text).expect("parses");
    let stored = sets
        .create(&PostParams::default(), &parsed.set)
        .await
        .expect("stored");
    assert_eq!(
        stored.spec.template, parsed.set.spec.template,
        "the free-form template is kept"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("addons.yaml");
    std::fs::write(&file, &text).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "appset",
        "generate",
        "-f",
        file.to_str().unwrap(),
        "-o",
        "json",
    ];

    // The repository needs credentials: without a repository Secret, the generator says which repository failed.
    let run = kedge(&env, cache.path(), &args).await;
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("spec.generators[0].matrix.generators[0].git: failed to read http://")
            && run.stderr.contains("AuthFailed"),
        "{}",
        run.stderr
    );

    // With the repository Secret the controller would use, in the set's namespace.
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "repo", "labels": { "kedge.dev/secret-type": "repository" } },
        "stringData": { "url": env.servers.http.url("app.git"), "username": "kedge", "password": "appset-secret-7" }
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), env.ns())
        .create(&PostParams::default(), &secret)
        .await
        .expect("repository Secret");
    let run = kedge(&env, cache.path(), &args).await;
    run.expect_code(0);
    assert!(!run.stdout.contains("appset-secret-7") && !run.stderr.contains("appset-secret-7"));
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    // Directories sorted, then the clusters as listed (by name); the local cluster is left out by the selector.
    assert_eq!(
        names(items),
        [
            "logging-east",
            "logging-west",
            "metrics-east",
            "metrics-west"
        ]
    );
    assert_eq!(items[0]["metadata"]["namespace"], env.ns());
    assert_eq!(items[0]["metadata"]["labels"]["env"], "prod");
    assert_eq!(items[3]["spec"]["destination"]["name"], "west");
    assert_eq!(items[3]["spec"]["source"]["path"], "addons/metrics");
}
