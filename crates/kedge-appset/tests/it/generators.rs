//! Generator and template behaviour beyond Argo CD's examples: parameters, nesting, selectors, patches and every
//! refusal naming its field.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kedge_api::{Cluster, ClusterSpec};
use kedge_appset::{Error, GeneratedApp, Inputs, MemoryTree, NoGit, generate, parse_set};
use kedge_source::FileTree;

const REPO: &str = "https://git.example/platform.git";

fn repo() -> HashMap<String, Arc<dyn FileTree>> {
    let tree = MemoryTree::new([
        ("apps/Web_Front/kustomization.yaml", "resources: []"),
        ("apps/api/kustomization.yaml", "resources: []"),
        ("apps/api/base/deployment.yaml", "kind: Deployment"),
        (
            "envs/dev/config.yaml",
            "name: dev\nreplicas: 1\nregion: { code: eu }\n",
        ),
        (
            "envs/prod/config.yaml",
            "name: prod\nreplicas: 3\nregion: { code: us }\n",
        ),
        (
            "envs/prod/extra.json",
            "[{\"name\": \"prod-a\"}, {\"name\": \"prod-b\"}]",
        ),
    ]);
    HashMap::from([(REPO.to_owned(), Arc::new(tree) as Arc<dyn FileTree>)])
}

fn set(spec: &str) -> kedge_api::ApplicationSet {
    let doc = format!(
        "apiVersion: kedge.dev/v1alpha1\nkind: ApplicationSet\nmetadata: {{ name: s, namespace: kedge }}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    parse_set(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}")).set
}

fn gen_with(spec: &str, clusters: &[Cluster]) -> Result<Vec<GeneratedApp>, Error> {
    let git = repo();
    generate(&set(spec), &Inputs::new(clusters, &git))
}

fn names(apps: &[GeneratedApp]) -> Vec<String> {
    apps.iter()
        .map(|a| a.application.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn err(spec: &str) -> String {
    gen_with(spec, &[])
        .map(|a| names(&a).join(","))
        .expect_err("refused")
        .to_string()
}

const TEMPLATE: &str = r#"
template:
  metadata: { name: "{{name}}" }
  spec:
    source: { repoURL: "https://git.example/apps.git", path: "{{path}}" }
    destination: { server: "https://kubernetes.default.svc", namespace: default }
"#;

#[test]
fn plain_path_parameters_segments_and_normalized_names() {
    let spec = r#"
generators:
  - git:
      repoURL: https://git.example/platform.git
      directories: [ { path: "apps/*" } ]
template:
  metadata: { name: "{{path.basenameNormalized}}-{{path[0]}}" }
  spec:
    source: { repoURL: "https://git.example/platform.git", path: "{{ path }}" }
    destination: { name: in-cluster, namespace: "{{path.basename}}" }
"#;
    let apps = gen_with(spec, &[]).expect("generates");
    assert_eq!(names(&apps), ["web-front-apps", "api-apps"]);
    assert_eq!(apps[0].application.spec.source.path, "apps/Web_Front");
    assert_eq!(
        apps[0].application.spec.destination.namespace.as_deref(),
        Some("Web_Front")
    );
    assert_eq!(
        apps[0].application.metadata.namespace.as_deref(),
        Some("kedge")
    );
}

#[test]
fn git_files_yaml_lists_flattened_keys_and_path_param_prefix() {
    let spec = r#"
generators:
  - git:
      repoURL: https://git.example/platform.git
      revision: main
      pathParamPrefix: cfg
      files: [ { path: "envs/**/*.yaml" }, { path: "envs/prod/*.json" }, { path: "envs/dev/*", exclude: true } ]
template:
  metadata: { name: "{{name}}-{{cfg.path.basename}}" }
  spec:
    source: { repoURL: "https://git.example/apps.git", path: "{{cfg.path}}/{{cfg.path.filename}}", targetRevision: "{{region.code}}" }
    destination: { server: "https://kubernetes.default.svc", namespace: "r{{replicas}}" }
"#;
    let apps = gen_with(spec, &[]).expect("generates");
    assert_eq!(names(&apps), ["prod-prod", "prod-a-prod", "prod-b-prod"]);
    let prod = &apps[0].application.spec;
    assert_eq!(prod.source.path, "envs/prod/config.yaml");
    assert_eq!(prod.source.target_revision, "us");
    assert_eq!(prod.destination.namespace.as_deref(), Some("r3"));
    // A key the file lacks stays as written (plain templates), as in Argo CD.
    assert_eq!(
        apps[1].application.spec.source.target_revision,
        "{{region.code}}"
    );
}

#[test]
fn go_path_param_prefix_nests_the_path_object() {
    let spec = r#"
goTemplate: true
goTemplateOptions: ["missingkey=error"]
generators:
  - git:
      repoURL: https://git.example/platform.git
      pathParamPrefix: app
      directories: [ { path: "apps/*" } ]
template:
  metadata: { name: "{{ .app.path.basename | lower | replace \"_\" \"-\" }}" }
  spec:
    source: { repoURL: "https://git.example/platform.git", path: "{{ .app.path.path }}" }
    destination: { name: in-cluster, namespace: "{{ index .app.path.segments 0 }}" }
"#;
    let apps = gen_with(spec, &[]).expect("generates");
    assert_eq!(names(&apps), ["web-front", "api"]);
    assert_eq!(
        apps[1].application.spec.destination.namespace.as_deref(),
        Some("apps")
    );
}

#[test]
fn nested_matrix_and_merge_with_the_second_generator_using_the_first() {
    // The outer matrix: a merge of two lists (the second overrides `region` of `dev`), times a nested matrix of the
    // env's config files (path from the first generator's parameter) and a list.
    let spec = r#"
goTemplate: true
goTemplateOptions: ["missingkey=error"]
generators:
  - matrix:
      generators:
        - merge:
            mergeKeys: [env]
            generators:
              - list: { elements: [ { env: dev, zone: eu }, { env: prod, zone: us } ] }
              - list: { elements: [ { env: dev, zone: asia }, { env: qa, zone: none } ] }
        - matrix:
            generators:
              - git:
                  repoURL: https://git.example/platform.git
                  files: [ { path: "envs/{{ .env }}/config.yaml" } ]
              - list: { elements: [ { tier: a }, { tier: b } ] }
template:
  metadata: { name: "{{ .env }}-{{ .tier }}-{{ .zone }}-{{ .region.code }}-r{{ .replicas }}" }
  spec:
    source: { repoURL: "https://git.example/apps.git", path: "{{ .path.path }}" }
    destination: { name: in-cluster, namespace: "{{ .name }}" }
"#;
    let apps = gen_with(spec, &[]).expect("generates");
    assert_eq!(
        names(&apps),
        [
            "dev-a-asia-eu-r1",
            "dev-b-asia-eu-r1",
            "prod-a-us-us-r3",
            "prod-b-us-us-r3"
        ]
    );
    assert_eq!(apps[2].application.spec.source.path, "envs/prod");
}

#[test]
fn matrix_plain_parameters_that_differ_are_refused() {
    let spec = format!(
        "generators:\n  - matrix:\n      generators:\n        - list: {{ elements: [ {{ name: a, path: x }} ] }}\n        - list: {{ elements: [ {{ name: b }} ] }}\n{TEMPLATE}"
    );
    let e = err(&spec);
    assert!(
        e.contains("spec.generators[0].matrix: both generators give parameter \"name\""),
        "{e}"
    );
}

#[test]
fn nesting_deeper_than_argo_cd_allows_is_refused() {
    let spec = format!(
        "generators:\n  - matrix:\n      generators:\n        - matrix:\n            generators:\n              - matrix: {{ generators: [] }}\n              - list: {{ elements: [] }}\n        - list: {{ elements: [] }}\n{TEMPLATE}"
    );
    let e = err(&spec);
    assert!(
        e.contains("spec.generators[0].matrix.generators[0].matrix.generators[0].matrix: matrix and merge generators nest one level deep"),
        "{e}"
    );
}

#[test]
fn selectors_filter_any_generator_by_its_parameters() {
    let spec = format!(
        r#"generators:
  - list:
      elements: [ {{ name: a, path: xa, tier: web }}, {{ name: b, path: ya, tier: db }}, {{ name: c, path: za }} ]
    selector:
      matchExpressions: [ {{ key: tier, operator: In, values: [web, db] }} ]
      matchLabels: {{ path: ya }}
{TEMPLATE}"#
    );
    assert_eq!(names(&gen_with(&spec, &[]).expect("generates")), ["b"]);
    let bad = spec.replace("operator: In", "operator: Near");
    assert!(err(&bad).contains(
        "spec.generators[0].selector.matchExpressions[0].operator: unknown operator \"Near\""
    ));
}

#[test]
fn duplicate_names_name_both_parameter_sets() {
    let spec = format!(
        "generators:\n  - list: {{ elements: [ {{ name: a, path: xa }}, {{ name: a, path: ya }} ] }}\n{TEMPLATE}"
    );
    let e = err(&spec);
    assert!(e.contains("duplicate application name \"a\""), "{e}");
    assert!(
        e.contains(r#"{"name":"a","path":"xa"}"#) && e.contains(r#"{"name":"a","path":"ya"}"#),
        "{e}"
    );
}

#[test]
fn clusters_give_labels_annotations_and_values() {
    let mut east = Cluster::new(
        "East_1",
        ClusterSpec {
            server: "https://east.example:6443".into(),
            ..ClusterSpec::default()
        },
    );
    east.metadata.labels = Some(BTreeMap::from([("env".to_owned(), "prod".to_owned())]));
    east.metadata.annotations = Some(BTreeMap::from([("team".to_owned(), "payments".to_owned())]));
    let spec = r#"
generators:
  - clusters:
      selector: { matchLabels: { env: prod } }
      values: { ns: "{{nameNormalized}}-{{metadata.annotations.team}}" }
template:
  metadata: { name: "{{nameNormalized}}", labels: { env: "{{metadata.labels.env}}" } }
  spec:
    source: { repoURL: "https://git.example/apps.git" }
    destination: { server: "{{server}}", namespace: "{{values.ns}}" }
"#;
    let apps = gen_with(spec, &[east]).expect("generates");
    assert_eq!(names(&apps), ["east-1"]);
    let app = &apps[0].application;
    assert_eq!(
        app.spec.destination.namespace.as_deref(),
        Some("east-1-payments")
    );
    assert_eq!(
        app.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("env"))
            .map(String::as_str),
        Some("prod")
    );
}

#[test]
fn template_patch_sets_fields_that_are_not_strings() {
    let spec = r#"
goTemplate: true
generators:
  - list: { elements: [ { name: a, auto: true }, { name: b, auto: false } ] }
template:
  metadata: { name: "{{ .name }}" }
  spec:
    source: { repoURL: "https://git.example/apps.git" }
    destination: { name: in-cluster }
templatePatch: |
  {{- if .auto }}
  spec:
    syncPolicy:
      automated: { prune: true }
  {{- end }}
"#;
    let apps = gen_with(spec, &[]).expect("generates");
    let auto = |i: usize| {
        apps[i]
            .application
            .spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automated.as_ref())
            .map(|a| a.prune)
    };
    assert_eq!(auto(0), Some(true));
    assert_eq!(auto(1), None);
}

#[test]
fn elements_yaml_from_the_first_generator_of_a_matrix() {
    let spec = r#"
goTemplate: true
generators:
  - matrix:
      generators:
        - list: { elements: [ { team: pay, components: [ { name: api }, { name: ui } ] } ] }
        - list: { elementsYaml: "{{ .components | toJson }}" }
template:
  metadata: { name: "{{ .team }}-{{ .name }}" }
  spec:
    source: { repoURL: "https://git.example/apps.git" }
    destination: { name: in-cluster }
"#;
    assert_eq!(
        names(&gen_with(spec, &[]).expect("generates")),
        ["pay-api", "pay-ui"]
    );
}

#[test]
fn missing_keys_unknown_functions_and_wrong_fields_are_named() {
    let base = r#"
goTemplate: true
goTemplateOptions: ["missingkey=error"]
generators:
  - list: { elements: [ { name: a } ] }
template:
  metadata: { name: "NAME" }
  spec:
    source: { repoURL: "https://git.example/apps.git" }
    destination: { name: in-cluster, namespace: "NS" }
"#;
    let e = err(&base
        .replace("NAME", "{{ .name }}")
        .replace("NS", "{{ .namespace }}"));
    assert!(
        e.contains("spec.template (parameters {\"name\":\"a\"}): failed to render")
            && e.contains("map has no entry for key \"namespace\""),
        "{e}"
    );
    let e = err(&base.replace("NAME", "{{ .name | shout }}"));
    assert!(e.contains("function \"shout\" not defined"), "{e}");
    let e = err(&base
        .replace("NAME", "{{ .name }}")
        .replace("namespace: \"NS\"", "namespace: x, port: 3"));
    assert!(
        e.contains(
            "generated application \"a\": spec.destination.port: not a field of a Kedge Application"
        ) && e.contains(r#"{"name":"a"}"#),
        "{e}"
    );
    let e = err(&base
        .replace("NAME", "{{ .name }}")
        .replace("namespace: \"NS\"", "namespace: [x]"));
    assert!(
        e.contains("generated application \"a\": spec.destination.namespace: invalid type"),
        "{e}"
    );
}

#[test]
fn what_kedge_does_not_implement_is_refused_by_name() {
    let list = "  - list: { elements: [ { name: a, path: p } ] }\n";
    let cases = [
        (
            "generators:\n  - scmProvider: { github: { organization: x } }\n",
            "spec.generators[0].scmProvider: the scmProvider generator is not supported",
        ),
        (
            "generators:\n  - pullRequest: { github: {} }\n",
            "spec.generators[0].pullRequest: the pullRequest generator is not supported",
        ),
        (
            "generators:\n  - clusterDecisionResource: { configMapRef: x }\n",
            "spec.generators[0].clusterDecisionResource: the clusterDecisionResource",
        ),
        (
            "generators:\n  - plugin: { configMapRef: { name: x } }\n",
            "spec.generators[0].plugin: the plugin generator",
        ),
        (
            "generators:\n  - clusters: { flatList: true }\n",
            "spec.generators[0].clusters.flatList: flatList is not supported",
        ),
        (
            &format!("preservedFields: {{ annotations: [a] }}\ngenerators:\n{list}"),
            "spec.preservedFields: preservedFields is not supported",
        ),
        (
            &format!(
                "ignoreApplicationDifferences: [ {{ jsonPointers: [/spec] }} ]\ngenerators:\n{list}"
            ),
            "spec.ignoreApplicationDifferences",
        ),
        (
            &format!("applyNestedSelectors: false\ngenerators:\n{list}"),
            "spec.applyNestedSelectors",
        ),
        (
            &format!(
                "goTemplate: true\ngoTemplateOptions: [\"missingkey=panic\"]\ngenerators:\n{list}"
            ),
            "spec.goTemplateOptions[0]: unknown option",
        ),
        (
            &format!("templatePatch: \"spec: {{}}\"\ngenerators:\n{list}"),
            "spec.templatePatch: needs goTemplate: true",
        ),
        (
            "generators:\n  - matrix: { generators: [ { list: { elements: [] } } ] }\n",
            "a matrix combines exactly two generators (found 1)",
        ),
        (
            "generators:\n  - matrix: { generators: [ { list: { elements: [], template: { metadata: { name: x } } } }, { list: { elements: [] } } ] }\n",
            "spec.generators[0].matrix.generators[0].template: templates of generators inside matrix",
        ),
        (
            "generators:\n  - list: { elements: [] }\n    clusters: {}\n",
            "spec.generators[0]: a generator has exactly one of",
        ),
        (
            "generators:\n  - git: { repoURL: https://git.example/platform.git }\n",
            "spec.generators[0].git: give directories or files",
        ),
        (
            "generators:\n  - git: { repoURL: https://git.example/other.git, directories: [ { path: '*' } ] }\n",
            "spec.generators[0].git: failed to read https://git.example/other.git at HEAD: repository https://git.example/other.git is not known",
        ),
    ];
    for (spec, want) in cases {
        let e = err(&format!("{spec}{TEMPLATE}"));
        assert!(e.contains(want), "{spec}\n  got: {e}\n want: {want}");
    }
    // Fields Argo CD does not have either (a typo, or the old `union`) are refused when the set is read.
    let doc = "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: { name: s }\nspec:\n  generators:\n    - matrix:\n        generators:\n          - union: { mergeKeys: [a] }\n";
    let e = parse_set(doc).expect_err("unknown field").to_string();
    assert!(
        e.contains("spec.generators[0].matrix.generators[0].union: unknown field `union`"),
        "{e}"
    );
    let e = parse_set("apiVersion: v1\nkind: ConfigMap\n")
        .expect_err("not a set")
        .to_string();
    assert!(e.contains("apiVersion: expected kedge.dev/v1alpha1"), "{e}");
}

#[test]
fn sync_policy_and_strategy_are_typed() {
    let s = set(&format!(
        "syncPolicy: {{ preserveResourcesOnDeletion: true, applicationsSync: create-update }}\nstrategy:\n  type: RollingSync\n  rollingSync:\n    steps:\n      - matchExpressions: [ {{ key: env, operator: In, values: [dev] }} ]\n        maxUpdate: 25%\ngenerators:\n  - list: {{ elements: [ {{ name: a, path: p }} ] }}\n{TEMPLATE}"
    ));
    let policy = s.spec.sync_policy.as_ref().expect("policy");
    assert!(policy.preserve_resources_on_deletion);
    assert_eq!(
        policy.applications_sync,
        Some(kedge_api::ApplicationsSync::CreateUpdate)
    );
    let steps = &s
        .spec
        .strategy
        .as_ref()
        .and_then(|x| x.rolling_sync.as_ref())
        .expect("rolling")
        .steps;
    assert_eq!(steps[0].max_update, Some(serde_json::json!("25%")));
    assert_eq!(
        names(&generate(&s, &Inputs::new(&[], &NoGit)).expect("generates")),
        ["a"]
    );
}

#[test]
fn go_merge_keys_may_name_nested_parameters() {
    let spec = r#"
goTemplate: true
generators:
  - merge:
      mergeKeys: [values.region]
      generators:
        - list: { elements: [ { name: a, values: { region: eu, size: s } }, { name: b, values: { region: us, size: s } } ] }
        - list: { elements: [ { values: { region: us, size: xl } } ] }
template:
  metadata: { name: "{{ .name }}-{{ .values.size }}" }
  spec:
    source: { repoURL: "https://git.example/apps.git" }
    destination: { name: in-cluster }
"#;
    assert_eq!(
        names(&gen_with(spec, &[]).expect("generates")),
        ["a-s", "b-xl"]
    );
}

#[test]
fn rolling_sync_steps_are_checked_before_anything_is_generated() {
    let gens = "generators:\n  - list: { elements: [ { name: a, path: p } ] }\n";
    let cases = [
        (
            "strategy:\n  type: RollingSync\n  rollingSync:\n    steps:\n      - maxUpdate: 120%\n",
            "spec.strategy.rollingSync: spec.strategy.rollingSync.steps[0].maxUpdate: \"120%\" is not a percentage from 0% to 100%",
        ),
        (
            "strategy:\n  type: RollingSync\n  rollingSync:\n    steps:\n      - matchExpressions: [ { key: env, operator: Near, values: [a] } ]\n",
            "matchExpressions[0].operator: unknown operator \"Near\"",
        ),
        (
            "strategy:\n  type: RollingSync\n",
            "a RollingSync strategy needs its steps",
        ),
        (
            "strategy:\n  type: AllAtOnce\n  rollingSync: { steps: [] }\n",
            "steps are read only with type RollingSync",
        ),
    ];
    for (strategy, want) in cases {
        let e = err(&format!("{strategy}{gens}{TEMPLATE}"));
        assert!(e.contains(want), "{strategy}\n  got: {e}\n want: {want}");
    }
}

#[test]
fn a_registered_local_cluster_is_not_listed_twice() {
    let local = Cluster::new(
        "local",
        ClusterSpec {
            server: "https://kubernetes.default.svc/".into(),
            ..ClusterSpec::default()
        },
    );
    let spec = r#"
generators:
  - clusters: {}
template:
  metadata: { name: "{{name}}" }
  spec:
    source: { repoURL: "https://git.example/apps.git" }
    destination: { server: "{{server}}" }
"#;
    assert_eq!(
        names(&gen_with(spec, &[local]).expect("generates")),
        ["local"]
    );
}
