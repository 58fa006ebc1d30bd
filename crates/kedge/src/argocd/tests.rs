//! Conversions of whole documents, with the line and severity of every diagnostic.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn run(input: &str) -> Conversion {
    convert(input, &Options::default())
}

/// The diagnostics as `LINE FIELD SEVERITY` (reasons left out), for exact comparison.
fn summary(c: &Conversion) -> Vec<String> {
    c.diagnostics
        .iter()
        .map(|d| {
            let s = match d.severity {
                Severity::Note => "note",
                Severity::NotConverted => "LOST",
            };
            format!("{} {} {s}", d.line, d.field)
        })
        .collect()
}

const FULL: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: argocd
  labels: {team: web}
  annotations:
    argocd.argoproj.io/refresh: hard
    argocd.argoproj.io/sync-wave: "2"
    notifications.argoproj.io/subscribe.on-sync-succeeded.slack: deploys
    example.com/owner: web-team
  finalizers:
    - resources-finalizer.argocd.argoproj.io/background
    - example.com/keep
spec:
  project: default
  source:
    repoURL: https://git.example/apps.git
    targetRevision: v1.2.0
    path: guestbook
    kustomize:
      images: [gcr.io/heptio-images/ks-guestbook-demo:0.2]
      namePrefix: staging-
      commonLabels: {env: staging}
      version: v5.0.0
  destination:
    server: https://kubernetes.default.svc
    namespace: guestbook
  syncPolicy:
    automated: {prune: true, selfHeal: true, allowEmpty: false}
    syncOptions: [CreateNamespace=true, PruneLast=true]
    retry:
      limit: 3
      backoff: {duration: 10s, factor: 2, maxDuration: 2m}
  ignoreDifferences:
    - group: apps
      kind: Deployment
      jsonPointers: [/spec/replicas]
      jqPathExpressions: [.spec.template.spec.initContainers]
  info:
    - {name: docs, value: "https://docs.example"}
  revisionHistoryLimit: 10
status:
  sync: {status: Synced}
"#;

#[test]
fn an_application_field_by_field() {
    let c = run(FULL);
    assert_eq!(c.documents.len(), 1);
    let app = &c.documents[0];
    assert_eq!(
        *app,
        json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": {
                "name": "guestbook", "namespace": "argocd", "labels": {"team": "web"},
                "annotations": {"kedge.dev/refresh": "hard", "argocd.argoproj.io/sync-wave": "2",
                    "example.com/owner": "web-team"},
                "finalizers": ["kedge.dev/resources-finalizer", "example.com/keep"],
            },
            "spec": {
                "source": {"repoURL": "https://git.example/apps.git", "targetRevision": "v1.2.0", "path": "guestbook",
                    "kustomize": {"images": ["gcr.io/heptio-images/ks-guestbook-demo:0.2"], "namePrefix": "staging-",
                        "commonLabels": {"env": "staging"}, "version": "v5.0.0"}},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "guestbook"},
                "syncPolicy": {"automated": {"prune": true, "selfHeal": true, "allowEmpty": false},
                    "syncOptions": ["CreateNamespace=true", "PruneLast=true"],
                    "retry": {"limit": 3, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "2m"}}},
                "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}],
                "project": "default",
                "info": [{"name": "docs", "value": "https://docs.example"}],
                "revisionHistoryLimit": 10,
            }
        })
    );
    assert_eq!(
        summary(&c),
        [
            "8 metadata.annotations[argocd.argoproj.io/refresh] note",
            "9 metadata.annotations[argocd.argoproj.io/sync-wave] note",
            "10 metadata.annotations[notifications.argoproj.io/subscribe.on-sync-succeeded.slack] LOST",
            "13 metadata.finalizers[0] note",
            "25 spec.source.kustomize.version LOST",
            "39 spec.ignoreDifferences[0].jqPathExpressions LOST",
            "43 status note",
        ]
    );
    assert!(!c.complete());
    let jq = &c.diagnostics[5];
    assert!(jq.reason.contains("no such field"), "{jq}");
    assert_eq!(
        jq.to_string(),
        "39: spec.ignoreDifferences[0].jqPathExpressions: not converted: Kedge's Application has no such field yet"
    );
    // What is written reads as Kedge's Application.
    let typed: kedge_api::Application = serde_json::from_value(app.clone()).unwrap();
    assert_eq!(
        typed.spec.source.kustomize.unwrap().name_prefix.as_deref(),
        Some("staging-")
    );
}

#[test]
fn a_plain_application_converts_with_notes_only() {
    let c = run(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a, namespace: argocd}\n\
                 spec:\n  source: {repoURL: 'https://git.example/a.git', path: a, directory: {recurse: true, \
                 jsonnet: {}}}\n  destination: {name: in-cluster, namespace: a}\n",
    );
    assert!(c.complete(), "{:?}", c.diagnostics);
    assert_eq!(summary(&c), ["5 spec.source.directory.jsonnet note"]);
    assert_eq!(
        c.documents[0]["spec"]["source"]["directory"],
        json!({"recurse": true})
    );
    assert_eq!(c.documents[0]["spec"]["destination"]["name"], "in-cluster");
}

#[test]
fn helm_sources_and_what_kedge_does_not_do() {
    let c = run(r#"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: shop, namespace: argocd}
spec:
  project: team-a
  source:
    repoURL: https://charts.example
    chart: shop
    targetRevision: 1.2.*
    helm:
      releaseName: shop
      valueFiles: [values-prod.yaml]
      values: "replicas: 2\n"
      valuesObject: {image: {tag: v2}}
      parameters: [{name: image.tag, value: "1.0", forceString: true}]
      version: v3
      skipTests: true
      passCredentials: true
      fileParameters: [{name: cert, path: files/cert.pem}]
  destination: {server: "https://10.0.0.1:6443", namespace: shop}
  syncPolicy:
    automated: {enabled: false, prune: true}
"#);
    assert_eq!(
        summary(&c),
        [
            "16 spec.source.helm.version note",
            "17 spec.source.helm.skipTests note",
            "18 spec.source.helm.passCredentials LOST",
            "19 spec.source.helm.fileParameters LOST",
            "20 spec.destination.server note",
            "22 spec.syncPolicy.automated.enabled note",
        ]
    );
    let app = &c.documents[0];
    let helm = &app["spec"]["source"]["helm"];
    assert_eq!(helm["valuesObject"]["image"]["tag"], "v2");
    assert_eq!(helm["parameters"][0]["forceString"], true);
    assert!(helm.get("version").is_none() && helm.get("fileParameters").is_none());
    // The other cluster is kept: Kedge deploys there once it is registered, and refuses the application until then.
    assert_eq!(
        app["spec"]["destination"]["server"],
        "https://10.0.0.1:6443"
    );
    assert!(app["spec"]["syncPolicy"].get("automated").is_none());
    // The project is carried over: Kedge enforces projects.
    assert_eq!(app["spec"]["project"], "team-a");
}

#[test]
fn one_of_several_sources_becomes_the_source() {
    let c = run(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec:\n  sources:\n    \
                 - {repoURL: 'https://git.example/a.git', path: a}\n  destination: {namespace: a}\n",
    );
    assert_eq!(summary(&c), ["5 spec.sources note"]);
    assert_eq!(c.documents[0]["spec"]["source"]["path"], "a");
    assert!(c.documents[0]["spec"].get("sources").is_none());
}

#[test]
fn applications_kedge_cannot_render_are_skipped() {
    let input = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: p}\nspec:\n  source:\n    \
                 repoURL: https://git.example/a.git\n    plugin: {name: nix}\n---\napiVersion: argoproj.io/v1alpha1\n\
                 kind: Application\nmetadata: {name: h}\nspec:\n  sourceHydrator: {drySource: {repoURL: x}}\n\
                 ---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: bare}\n";
    let c = run(input);
    assert!(c.documents.is_empty());
    assert_eq!(
        summary(&c),
        [
            "1 Application p LOST",
            "7 spec.source.plugin LOST",
            "9 Application h LOST",
            "13 spec.sourceHydrator LOST",
            "15 Application bare LOST",
        ]
    );
    assert!(c.diagnostics[0].reason.ends_with("; skipped"));
}

#[test]
fn a_set_without_a_spec_and_settings_are_skipped() {
    let input = "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: fleet}\n---\n\
                 apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  labels: {app.kubernetes.io/part-of: argocd}\n\
                 ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n";
    let c = run(input);
    let reasons: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "1: ApplicationSet fleet: not converted: it has no spec; skipped",
            "5: ConfigMap argocd-cm: not converted: Argo CD's own settings have no Kedge equivalent to convert to; \
             skipped",
            "11: ConfigMap plain: note: not an Argo CD resource; passed through unchanged",
        ]
    );
    assert_eq!(
        c.documents,
        [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}, "data": {"a": "b"}})
        ]
    );
}

/// Argo CD's own ApplicationSet examples, unchanged (kedge-appset's test fixtures).
const ARGOCD_SETS: [(&str, &str); 9] = [
    (
        "cluster-example-fasttemplate",
        include_str!("../../../kedge-appset/tests/fixtures/cluster-example-fasttemplate.yaml"),
    ),
    (
        "git-directories-exclude-example",
        include_str!("../../../kedge-appset/tests/fixtures/git-directories-exclude-example.yaml"),
    ),
    (
        "git-generator-files",
        include_str!("../../../kedge-appset/tests/fixtures/git-generator-files.yaml"),
    ),
    (
        "list-elementsYaml-matrix",
        include_str!("../../../kedge-appset/tests/fixtures/list-elementsYaml-matrix.yaml"),
    ),
    (
        "list-example",
        include_str!("../../../kedge-appset/tests/fixtures/list-example.yaml"),
    ),
    (
        "matrix-cluster-and-git",
        include_str!("../../../kedge-appset/tests/fixtures/matrix-cluster-and-git.yaml"),
    ),
    (
        "matrix-list-and-git",
        include_str!("../../../kedge-appset/tests/fixtures/matrix-list-and-git.yaml"),
    ),
    (
        "merge-clusters-and-list-fasttemplate",
        include_str!(
            "../../../kedge-appset/tests/fixtures/merge-clusters-and-list-fasttemplate.yaml"
        ),
    ),
    (
        "template-overrides-example-fasttemplate",
        include_str!(
            "../../../kedge-appset/tests/fixtures/template-overrides-example-fasttemplate.yaml"
        ),
    ),
];

#[test]
fn argocd_example_sets_convert_as_they_are() {
    for (name, input) in ARGOCD_SETS {
        let c = run(input);
        assert!(c.complete(), "{name}: {:?}", c.diagnostics);
        assert_eq!(c.documents.len(), 1, "{name}");
        let out = &c.documents[0];
        assert_eq!(out["apiVersion"], "kedge.dev/v1alpha1", "{name}");
        assert_eq!(out["kind"], "ApplicationSet", "{name}");
        let original: serde_json::Value = serde_saphyr::from_str(input).unwrap();
        assert_eq!(out["metadata"], original["metadata"], "{name}");
        let mut spec = original["spec"].clone();
        if name == "list-elementsYaml-matrix" {
            // Its one source is written as `source`, as for an Application.
            assert_eq!(summary(&c), ["33 spec.template.spec.sources note"]);
            let sources = spec["template"]["spec"]
                .as_object_mut()
                .unwrap()
                .remove("sources")
                .unwrap();
            spec["template"]["spec"]["source"] = sources[0].clone();
        } else {
            assert_eq!(summary(&c), Vec::<String>::new(), "{name}");
        }
        assert_eq!(out["spec"], spec, "{name}");
        // What Kedge reads of it.
        let text = serde_json::to_string(out).unwrap();
        kedge_appset::parse_set(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn converted_sets_generate_the_applications_the_originals_do() {
    for (name, input) in ARGOCD_SETS {
        // The sets that need no repository: list and clusters generators (the local cluster only).
        if input.contains("git:") {
            continue;
        }
        let converted = run(input).documents[0].clone();
        let converted = kedge_appset::parse_set(&serde_json::to_string(&converted).unwrap())
            .unwrap()
            .set;
        let original = kedge_appset::parse_set(input).unwrap().set;
        let inputs = kedge_appset::Inputs::new(&[], &kedge_appset::NoGit);
        let apps = |set| -> Vec<serde_json::Value> {
            kedge_appset::generate(set, &inputs)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .into_iter()
                .map(|g| serde_json::to_value(g.application).unwrap())
                .collect()
        };
        let (want, have) = (apps(&original), apps(&converted));
        assert!(!want.is_empty(), "{name}");
        assert_eq!(have, want, "{name}");
    }
}

#[test]
fn a_set_with_a_generator_kedge_does_not_run_is_skipped_and_says_which() {
    // Argo CD's SCM provider and pull request examples, inside a matrix.
    let input = r#"apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: myapps
  namespace: argocd
spec:
  goTemplate: true
  generators:
  - matrix:
      generators:
      - scmProvider:
          github:
            organization: myorg
            tokenRef: {secretName: github-token, key: token}
      - pullRequest:
          github: {owner: myorg, repo: myrepository}
          requeueAfterSeconds: 1800
  template:
    metadata:
      name: '{{ .repository }}-{{ .number }}'
    spec:
      source:
        repoURL: '{{ .url }}'
        targetRevision: '{{ .head_sha }}'
        path: kubernetes/
      project: default
      destination:
        server: https://kubernetes.default.svc
        namespace: default
"#;
    let c = run(input);
    assert!(c.documents.is_empty());
    assert!(!c.complete());
    let reasons: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "1: ApplicationSet myapps: not converted: its generators include scmProvider, which Kedge does not run; \
             skipped",
            "11: spec.generators[0].matrix.generators[0].scmProvider: not converted: the scmProvider generator is \
             not supported by Kedge yet",
            "15: spec.generators[0].matrix.generators[1].pullRequest: not converted: the pullRequest generator is \
             not supported by Kedge yet",
        ]
    );
}

#[test]
fn what_kedge_does_not_run_skips_a_set_naming_the_field() {
    let set = |spec: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: s}}\nspec:\n{spec}"
        )
    };
    let template = "  template:\n    metadata: {name: '{{.name}}'}\n    spec:\n      source: {repoURL: \
                    'https://git.example/a.git', path: a}\n      destination: {namespace: a}\n";
    // All clusters as one parameter set.
    let c = run(&set(&format!(
        "  generators:\n  - clusters: {{flatList: true}}\n{template}"
    )));
    assert!(c.documents.is_empty());
    assert_eq!(
        summary(&c),
        [
            "1 ApplicationSet s LOST",
            "6 spec.generators[0].clusters.flatList LOST"
        ]
    );
    // A Go template function Kedge's templates lack.
    let c = run(&set(
        "  goTemplate: true\n  generators:\n  - list: {elements: [{name: a}]}\n  template:\n    metadata:\n      \
         name: '{{ regexReplaceAll \"a\" .name \"b\" }}'\n    spec:\n      source: {repoURL: \
         'https://git.example/a.git', path: a}\n      destination: {namespace: a}\n",
    ));
    assert!(c.documents.is_empty());
    assert_eq!(
        summary(&c),
        [
            "1 ApplicationSet s LOST",
            "10 spec.template.metadata.name LOST"
        ]
    );
    assert!(
        c.diagnostics[1]
            .reason
            .contains("function \"regexReplaceAll\" not defined"),
        "{}",
        c.diagnostics[1].reason
    );
    // A template rendered by a config management plugin.
    let c = run(&set(
        "  generators:\n  - list: {elements: [{name: a}]}\n  template:\n    metadata: {name: '{{name}}'}\n    \
         spec:\n      source: {repoURL: 'https://git.example/a.git', plugin: {name: nix}}\n      destination: \
         {namespace: a}\n",
    ));
    assert!(c.documents.is_empty());
    assert_eq!(
        summary(&c),
        [
            "1 ApplicationSet s LOST",
            "10 spec.template.spec.source.plugin LOST"
        ]
    );
}

#[test]
fn a_set_field_by_field() {
    let input = r#"apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: fleet
  namespace: argocd
  annotations:
    argocd.argoproj.io/application-set-refresh: "true"
    example.com/owner: platform
spec:
  goTemplate: true
  goTemplateOptions: ["missingkey=error", "somethingelse"]
  applyNestedSelectors: false
  generators:
  - matrix:
      generators:
      - list:
          elements: [{env: dev}, {env: prod}]
          template: {metadata: {labels: {x: y}}}
      - clusters: {}
  template:
    metadata:
      name: '{{.env}}-{{.name}}'
      namespace: argocd
      labels: {env: '{{.env}}'}
      annotations:
        notifications.argoproj.io/subscribe.on-sync-failed.slack: team
        argocd.argoproj.io/skip-reconcile: "true"
      finalizers: [resources-finalizer.argocd.argoproj.io]
    spec:
      project: default
      source: {repoURL: https://git.example/apps.git, targetRevision: HEAD, path: '{{.env}}'}
      destination: {server: '{{.server}}', namespace: web}
      syncPolicy:
        automated: {prune: true, enabled: true}
        syncOptions: [CreateNamespace=true, NotAnOption=true]
  syncPolicy:
    applicationsSync: create-update
    preserveResourcesOnDeletion: true
  strategy:
    type: RollingSync
    deletionOrder: Reverse
    rollingSync:
      steps:
      - matchExpressions: [{key: env, operator: In, values: [dev]}]
      - matchExpressions: [{key: env, operator: In, values: [prod]}]
        maxUpdate: 50%
  preservedFields:
    annotations: [example.com/touched-by]
  ignoreApplicationDifferences:
  - jsonPointers: [/spec/source/targetRevision]
"#;
    let c = convert(
        input,
        &Options {
            namespace: Some("kedge".into()),
        },
    );
    assert_eq!(
        summary(&c),
        [
            "5 metadata.namespace note",
            "7 metadata.annotations[argocd.argoproj.io/application-set-refresh] note",
            "11 spec.goTemplateOptions[1] LOST",
            "12 spec.applyNestedSelectors note",
            "18 spec.generators[0].matrix.generators[0].list.template note",
            "23 spec.template.metadata.namespace note",
            "26 spec.template.metadata.annotations[notifications.argoproj.io/subscribe.on-sync-failed.slack] LOST",
            "27 spec.template.metadata.annotations[argocd.argoproj.io/skip-reconcile] note",
            "28 spec.template.metadata.finalizers[0] note",
            "34 spec.template.spec.syncPolicy.automated.enabled note",
            "35 spec.template.spec.syncPolicy.syncOptions[1] LOST",
            "41 spec.strategy.deletionOrder LOST",
            "48 spec.preservedFields.annotations note",
            "49 spec.ignoreApplicationDifferences LOST",
        ]
    );
    let out = &c.documents[0];
    assert_eq!(
        out["metadata"],
        json!({"name": "fleet", "namespace": "kedge", "annotations": {"example.com/owner": "platform"}})
    );
    let spec = &out["spec"];
    assert_eq!(spec["goTemplateOptions"], json!(["missingkey=error"]));
    assert!(spec.get("applyNestedSelectors").is_none());
    assert!(
        spec.get("preservedFields").is_none() && spec.get("ignoreApplicationDifferences").is_none()
    );
    assert_eq!(
        spec["generators"][0]["matrix"]["generators"][0],
        json!({"list": {"elements": [{"env": "dev"}, {"env": "prod"}]}})
    );
    let template = &spec["template"];
    assert_eq!(
        template["metadata"],
        json!({"name": "{{.env}}-{{.name}}", "labels": {"env": "{{.env}}"},
               "finalizers": ["kedge.dev/resources-finalizer"]})
    );
    assert_eq!(template["spec"]["suspend"], true);
    assert_eq!(template["spec"]["destination"]["server"], "{{.server}}");
    assert_eq!(
        template["spec"]["syncPolicy"],
        json!({"automated": {"prune": true}, "syncOptions": ["CreateNamespace=true"]})
    );
    assert_eq!(
        spec["syncPolicy"],
        json!({"applicationsSync": "create-update", "preserveResourcesOnDeletion": true})
    );
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingSync", "rollingSync": {"steps": [
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]},
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}], "maxUpdate": "50%"},
        ]}})
    );
    // Kedge reads what was written.
    let parsed = kedge_appset::parse_set(&serde_json::to_string(out).unwrap()).unwrap();
    assert_eq!(parsed.set.metadata.namespace.as_deref(), Some("kedge"));
}

#[test]
fn an_application_an_argocd_set_owns_is_labelled_for_the_imported_set() {
    let input = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: dev-web\n  \
                 ownerReferences:\n  - {apiVersion: argoproj.io/v1alpha1, kind: ApplicationSet, name: fleet, uid: u1}\n  \
                 - {apiVersion: v1, kind: ConfigMap, name: other, uid: u2}\nspec:\n  source: {repoURL: \
                 'https://git.example/a.git', path: a}\n  destination: {namespace: a}\n";
    let c = run(input);
    assert_eq!(
        summary(&c),
        [
            "6 metadata.ownerReferences[0] note",
            "7 metadata.ownerReferences[1] LOST",
        ]
    );
    assert_eq!(
        c.documents[0]["metadata"]["labels"],
        json!({"kedge.dev/application-set": "fleet"})
    );
}

#[test]
fn cluster_secrets_become_a_cluster_and_a_kubeconfig() {
    let input = r#"apiVersion: v1
kind: Secret
metadata:
  name: cluster-prod
  namespace: argocd
  labels:
    argocd.argoproj.io/secret-type: cluster
    env: prod
type: Opaque
stringData:
  name: prod
  server: https://prod.example:6443
  namespaces: web, api
  clusterResources: "false"
  project: team-a
  config: |
    {"bearerToken": "t0ken-value", "tlsClientConfig": {"insecure": false, "caData": "Q0EtREFUQQ==",
     "serverName": "prod.internal"}, "awsAuthConfig": {"clusterName": "prod"}}
---
apiVersion: v1
kind: Secret
metadata:
  name: in-cluster
  labels: {argocd.argoproj.io/secret-type: cluster}
data:
  server: aHR0cHM6Ly9rdWJlcm5ldGVzLmRlZmF1bHQuc3Zj
  name: aW4tY2x1c3Rlcg==
"#;
    let c = convert(
        input,
        &Options {
            namespace: Some("kedge".into()),
        },
    );
    assert_eq!(
        summary(&c),
        [
            "5 metadata.namespace note",
            "7 metadata.labels[argocd.argoproj.io/secret-type] note",
            "14 stringData.clusterResources LOST",
            "15 stringData.project LOST",
            "16 stringData.config.awsAuthConfig LOST",
            "20 Secret in-cluster note",
            "24 metadata.labels[argocd.argoproj.io/secret-type] note",
        ]
    );
    assert_eq!(
        c.documents.len(),
        2,
        "the cluster Kedge runs in is not registered"
    );
    let (secret, cluster) = (&c.documents[0], &c.documents[1]);
    assert_eq!(
        *cluster,
        json!({"apiVersion": "kedge.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "prod", "namespace": "kedge", "labels": {"env": "prod"}},
            "spec": {"server": "https://prod.example:6443", "secretRef": {"name": "cluster-prod"},
                "namespaces": ["web", "api"]}})
    );
    let typed: kedge_api::Cluster = serde_json::from_value(cluster.clone()).unwrap();
    assert_eq!(typed.spec.secret_ref.name, "cluster-prod");
    assert_eq!(
        secret["metadata"],
        json!({"name": "cluster-prod", "namespace": "kedge"})
    );
    // The Secret holds a kubeconfig Kedge reads: the token, the CA as Argo CD had it, the server name.
    let kubeconfig = secret["stringData"]["kubeconfig"].as_str().unwrap();
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://prod.example:6443"));
    assert_eq!(
        cluster.certificate_authority_data.as_deref(),
        Some("Q0EtREFUQQ==")
    );
    assert_eq!(cluster.tls_server_name.as_deref(), Some("prod.internal"));
    let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
    assert!(user.token.is_some());
    let data: std::collections::BTreeMap<String, Vec<u8>> =
        [("kubeconfig".to_owned(), kubeconfig.as_bytes().to_vec())].into();
    assert!(matches!(
        kedge_api::ClusterCredentials::from_secret("cluster-prod", &data),
        Ok(kedge_api::ClusterCredentials::Kubeconfig(_))
    ));
    let all: String = c.diagnostics.iter().map(|d| format!("{d}\n")).collect();
    assert!(
        !all.contains("t0ken-value") && !all.contains("Q0EtREFUQQ"),
        "{all}"
    );
}

#[test]
fn repository_secrets_become_kedge_credentials_without_showing_values() {
    let input = r#"apiVersion: v1
kind: Secret
metadata:
  name: private-repo
  namespace: argocd
  labels:
    argocd.argoproj.io/secret-type: repository
    team: web
  annotations:
    managed-by: argocd.argoproj.io
type: Opaque
stringData:
  type: git
  url: https://git.example/private.git
  username: deploy
  password: s3cr3t-value
  project: team-a
data:
  sshPrivateKey: LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K
  githubAppPrivateKey: c2VjcmV0LWFwcC1rZXk=
---
apiVersion: v1
kind: Secret
metadata:
  name: org-creds
  labels: {argocd.argoproj.io/secret-type: repo-creds}
stringData: {url: "https://git.example/org", username: x, password: y, enableOCI: "true"}
"#;
    let c = convert(
        input,
        &Options {
            namespace: Some("apps".into()),
        },
    );
    assert_eq!(
        c.documents[0],
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "private-repo", "namespace": "apps",
                "labels": {"kedge.dev/secret-type": "repository", "team": "web"}},
            "stringData": {"url": "https://git.example/private.git", "username": "deploy",
                "password": "s3cr3t-value"},
            "data": {"sshPrivateKey": "LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K"}})
    );
    assert_eq!(
        c.documents[1]["metadata"]["labels"],
        json!({"kedge.dev/secret-type": "repo-creds"})
    );
    assert_eq!(c.documents[1]["metadata"]["namespace"], "apps");
    assert!(c.documents[1]["stringData"].get("enableOCI").is_none());
    assert_eq!(
        summary(&c),
        [
            "5 metadata.namespace note",
            "7 metadata.labels[argocd.argoproj.io/secret-type] note",
            "10 metadata.annotations.managed-by note",
            "13 stringData.type note",
            "17 stringData.project LOST",
            "19 data.sshPrivateKey note",
            "20 data.githubAppPrivateKey LOST",
            "26 metadata.labels[argocd.argoproj.io/secret-type] note",
            "27 stringData.enableOCI note",
        ]
    );
    let all: String = c.diagnostics.iter().map(|d| format!("{d}\n")).collect();
    for value in ["s3cr3t-value", "LS0tLS1", "c2VjcmV0", "team-a\""] {
        assert!(!all.contains(value), "{value} shown in:\n{all}");
    }
    // Kedge's own reader picks the converted Secret for the repository.
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(c.documents[0].clone()).unwrap();
    let found =
        kedge_api::select_repository_secret([&secret], "https://git.example/private.git").unwrap();
    assert_eq!(found["username"], "deploy");
}

#[test]
fn annotations_on_an_application_keep_or_say_what_they_become() {
    let c = run(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: a\n  annotations:\n    \
                 argocd.argoproj.io/skip-reconcile: 'true'\n    argocd.argoproj.io/manifest-generate-paths: .\n    \
                 argocd.argoproj.io/refresh: soon\n    link.argocd.argoproj.io/external-link: https://x\n\
                 spec:\n  source: {repoURL: 'https://git.example/a.git'}\n",
    );
    assert_eq!(
        summary(&c),
        [
            "6 metadata.annotations[argocd.argoproj.io/skip-reconcile] note",
            "7 metadata.annotations[argocd.argoproj.io/manifest-generate-paths] note",
            "8 metadata.annotations[argocd.argoproj.io/refresh] LOST",
            "9 metadata.annotations[link.argocd.argoproj.io/external-link] LOST",
        ]
    );
    assert_eq!(c.documents[0]["spec"]["suspend"], true);
    assert!(c.documents[0]["metadata"].get("annotations").is_none());
}

#[test]
fn unknown_fields_and_broken_input_are_reported() {
    let c = run(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec:\n  \
                 source: {repoURL: 'https://git.example/a.git', pathh: a}\n  colour: blue\n",
    );
    assert_eq!(
        summary(&c),
        ["5 spec.source.pathh LOST", "6 spec.colour LOST"]
    );
    let c = run("apiVersion: v1\nkind: [\n");
    assert!(c.documents.is_empty());
    assert_eq!(c.diagnostics[0].field, "input");
    assert!(!c.complete());
    let yaml = run(FULL).to_yaml().unwrap();
    assert!(
        yaml.starts_with("apiVersion: kedge.dev/v1alpha1\n"),
        "{yaml}"
    );
}

#[test]
fn what_kedge_refuses_is_kept_and_reported_field_by_field() {
    let c = run(r#"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: multi}
spec:
  sources:
    - {repoURL: "https://charts.example", chart: web, targetRevision: 1.0.0}
    - {repoURL: "https://git.example/values.git", ref: values}
  destination: {name: prod, namespace: web}
  syncPolicy:
    syncOptions:
      - CreateNamespace=true
      - ServerSideApply=false
      - Prune=confirm
      - Colour=blue
"#);
    // What Kedge refuses of several sources depends on what it combines so far; whatever it refuses is reported.
    let lines = summary(&c);
    let (sources, rest): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.contains(" spec.sources"));
    assert!(sources.iter().all(|l| l.ends_with(" LOST")), "{lines:?}");
    assert_eq!(
        rest,
        [
            "8 spec.destination.name note",
            "12 spec.syncPolicy.syncOptions[1] LOST",
            "13 spec.syncPolicy.syncOptions[2] LOST",
            "14 spec.syncPolicy.syncOptions[3] LOST",
        ]
    );
    // Kept, so that Kedge refuses the application and applies nothing (without Prune=confirm, it would prune at
    // once); an option Argo CD does not document is left out (the CRD refuses it).
    let spec = &c.documents[0]["spec"];
    assert_eq!(spec["sources"].as_array().unwrap().len(), 2);
    assert_eq!(spec["destination"]["name"], "prod");
    assert_eq!(
        spec["syncPolicy"]["syncOptions"],
        json!([
            "CreateNamespace=true",
            "ServerSideApply=false",
            "Prune=confirm"
        ])
    );
    let ssa = c.diagnostics.iter().find(|d| d.line == 12).unwrap();
    assert!(
        ssa.reason
            .starts_with("Kedge refuses it, applying nothing: ")
            && ssa.reason.contains("ServerSideApply=false"),
        "{ssa}"
    );
}

#[test]
fn a_list_from_kubectl_get_is_converted_item_by_item() {
    let input = r#"apiVersion: v1
kind: List
items:
- apiVersion: argoproj.io/v1alpha1
  kind: Application
  metadata:
    name: a
    namespace: argocd
    uid: 0b7f
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: '{"spec":{}}'
  spec:
    source: {repoURL: "https://git.example/a.git", plugin: {name: x}}
- apiVersion: v1
  kind: Secret
  metadata:
    name: repo
    labels: {argocd.argoproj.io/secret-type: repo-creds}
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"in-the-copy"}}'
  stringData: {url: "https://git.example", password: p}
"#;
    let c = run(input);
    assert_eq!(
        summary(&c),
        [
            "4 Application a LOST",
            "9 items[0].metadata.uid note",
            "11 items[0].metadata.annotations[kubectl.kubernetes.io/last-applied-configuration] note",
            "13 items[0].spec.source.plugin LOST",
            "18 items[1].metadata.labels[argocd.argoproj.io/secret-type] note",
            "20 items[1].metadata.annotations[kubectl.kubernetes.io/last-applied-configuration] note",
        ]
    );
    assert_eq!(c.documents.len(), 1);
    let yaml = c.to_yaml().unwrap();
    assert!(!yaml.contains("in-the-copy"), "{yaml}");
    assert_eq!(
        c.documents[0]["metadata"]["labels"]["kedge.dev/secret-type"],
        "repo-creds"
    );
}

#[test]
fn app_projects_become_projects_with_what_kedge_enforces() {
    let input = "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team-a\n  namespace: argocd\n\
                 spec:\n  description: Team A\n  sourceRepos: ['https://github.com/acme/*']\n  destinations:\n\
                 \x20 - {server: 'https://kubernetes.default.svc', namespace: 'team-a-*'}\n\
                 \x20 clusterResourceWhitelist: [{group: '', kind: Namespace}]\n  sourceNamespaces: [team-a]\n\
                 \x20 roles:\n  - {name: ci, policies: ['p, proj:team-a:ci, applications, sync, team-a/*, allow',\
                 \x20 'p, proj:team-a:ci, applications, delete, team-a/*, allow'], groups: [team-a-ci],\
                 \x20 jwtTokens: [{iat: 1, id: x}]}\n";
    let c = run(input);
    assert_eq!(
        c.documents,
        [json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Project",
            "metadata": { "name": "team-a", "namespace": "argocd" },
            "spec": {
                "description": "Team A",
                "sourceRepos": ["https://github.com/acme/*"],
                "destinations": [{ "server": "https://kubernetes.default.svc", "namespace": "team-a-*" }],
                "clusterResourceWhitelist": [{ "group": "", "kind": "Namespace" }],
                "sourceNamespaces": ["team-a"],
                "roles": [{
                    "name": "ci",
                    "policies": ["p, proj:team-a:ci, applications, sync, team-a/*, allow"],
                    "groups": ["team-a-ci"],
                }],
            }
        })]
    );
    let reasons: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[1].contains("spec.roles[0].policies[1]: not converted: action \"delete\""),
        "{reasons:?}"
    );
    assert!(
        reasons[0].contains("spec.roles[0].jwtTokens: not converted: tokens Argo CD signed"),
        "{reasons:?}"
    );
}
