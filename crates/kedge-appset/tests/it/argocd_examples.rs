//! Argo CD's own ApplicationSet examples (tests/fixtures/, copied unchanged) produce the Applications Argo CD's
//! documentation says they do; the expectations are worked out by hand from that documentation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kedge_api::{Cluster, ClusterSpec};
use kedge_appset::{GeneratedApp, Inputs, MemoryTree, generate, parse_set};
use kedge_source::FileTree;

const ARGO_CD_REPO: &str = "https://github.com/argoproj/argo-cd.git";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The parts of Argo CD's repository the examples read.
fn argo_cd_repo() -> HashMap<String, Arc<dyn FileTree>> {
    let dev = r#"{"aws_account": "123456", "asset_id": "11223344",
        "cluster": {"owner": "cluster-admin@company.com", "name": "engineering-dev", "address": "http://1.2.3.4"}}"#;
    let prod = dev.replace("engineering-dev", "engineering-prod");
    let excludes = "applicationset/examples/git-generator-directory/excludes/cluster-addons";
    let tree = MemoryTree::new([
        // Argo CD's list-elementsYaml-example.yaml, copied beside the fixtures.
        (
            "applicationset/examples/list-generator/list-elementsYaml-example.yaml".to_owned(),
            fixture("list-elementsYaml-example.yaml"),
        ),
        (format!("{excludes}/exclude-helm-guestbook/Chart.yaml"), "name: helm-guestbook".to_owned()),
        (format!("{excludes}/exclude-helm-guestbook/templates/service.yaml"), "kind: Service".to_owned()),
        (format!("{excludes}/prometheus-operator/Chart.yaml"), "name: prometheus-operator".to_owned()),
        ("applicationset/examples/git-generator-directory/cluster-addons/argo-workflows/kustomization.yaml".to_owned(), "resources: []".to_owned()),
        (format!("{excludes}/README.md"), "a file, not a directory".to_owned()),
        ("applicationset/examples/git-generator-files-discovery/cluster-config/engineering/dev/config.json".to_owned(), dev.to_owned()),
        ("applicationset/examples/git-generator-files-discovery/cluster-config/engineering/prod/config.json".to_owned(), prod),
        ("applicationset/examples/git-generator-files-discovery/apps/guestbook/kustomization.yaml".to_owned(), "resources: []".to_owned()),
        ("applicationset/examples/matrix/cluster-addons/argo-workflows/kustomization.yaml".to_owned(), "resources: []".to_owned()),
        ("applicationset/examples/matrix/cluster-addons/prometheus-operator/Chart.yaml".to_owned(), "name: p".to_owned()),
        ("applicationset/examples/matrix/cluster-addons/prometheus-operator/values.yaml".to_owned(), "{}".to_owned()),
    ]);
    HashMap::from([(ARGO_CD_REPO.to_owned(), Arc::new(tree) as Arc<dyn FileTree>)])
}

fn cluster(name: &str, server: &str, labels: &[(&str, &str)]) -> Cluster {
    let mut c = Cluster::new(
        name,
        ClusterSpec {
            server: server.to_owned(),
            ..ClusterSpec::default()
        },
    );
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    );
    c
}

fn run(name: &str, clusters: &[Cluster]) -> Vec<GeneratedApp> {
    let parsed = parse_set(&fixture(name)).expect("parses");
    assert_eq!(
        parsed.notes,
        ["read an Argo CD ApplicationSet (argoproj.io/v1alpha1) as kedge.dev/v1alpha1"]
    );
    let git = argo_cd_repo();
    generate(&parsed.set, &Inputs::new(clusters, &git)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (name, destination server, destination namespace, source path, project) of each Application.
fn summary(apps: &[GeneratedApp]) -> Vec<(String, String, String, String, String)> {
    apps.iter()
        .map(|g| {
            let a = &g.application;
            (
                a.metadata.name.clone().unwrap_or_default(),
                a.spec.destination.server.clone().unwrap_or_default(),
                a.spec.destination.namespace.clone().unwrap_or_default(),
                a.spec.source.path.clone(),
                a.spec.project.clone(),
            )
        })
        .collect()
}

fn row(
    name: &str,
    server: &str,
    ns: &str,
    path: &str,
    project: &str,
) -> (String, String, String, String, String) {
    (
        name.into(),
        server.into(),
        ns.into(),
        path.into(),
        project.into(),
    )
}

const IN_CLUSTER: &str = "https://kubernetes.default.svc";

#[test]
fn list_generator_gives_one_application_per_element() {
    let apps = run("list-example.yaml", &[]);
    let p = "applicationset/examples/list-generator/guestbook";
    assert_eq!(
        summary(&apps),
        [
            row(
                "engineering-dev-guestbook",
                IN_CLUSTER,
                "guestbook",
                &format!("{p}/engineering-dev"),
                "default"
            ),
            row(
                "engineering-prod-guestbook",
                IN_CLUSTER,
                "guestbook",
                &format!("{p}/engineering-prod"),
                "default"
            ),
        ]
    );
    let app = &apps[0].application;
    assert_eq!(app.spec.source.repo_url, ARGO_CD_REPO);
    assert_eq!(app.spec.source.target_revision, "HEAD");
    // No namespace in the set or the template: the set's namespace default.
    assert_eq!(app.metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn git_directories_with_an_exclusion() {
    let apps = run("git-directories-exclude-example.yaml", &[]);
    let base = "applicationset/examples/git-generator-directory/excludes/cluster-addons";
    // `*` matches one path segment: `exclude-helm-guestbook/templates` is not a match, and the excluded
    // directory is left out.
    assert_eq!(
        summary(&apps),
        [row(
            "prometheus-operator",
            IN_CLUSTER,
            "prometheus-operator",
            &format!("{base}/prometheus-operator"),
            "default"
        )]
    );
}

#[test]
fn git_files_give_their_keys_as_parameters() {
    let apps = run("git-generator-files.yaml", &[]);
    let path = "applicationset/examples/git-generator-files-discovery/apps/guestbook";
    assert_eq!(
        summary(&apps),
        [
            row(
                "engineering-dev-guestbook",
                IN_CLUSTER,
                "guestbook",
                path,
                "default"
            ),
            row(
                "engineering-prod-guestbook",
                IN_CLUSTER,
                "guestbook",
                path,
                "default"
            ),
        ]
    );
    let p = &apps[0].params;
    assert_eq!(p["cluster"]["address"], "http://1.2.3.4");
    assert_eq!(
        p["path"]["path"],
        "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/dev"
    );
    assert_eq!(p["path"]["basename"], "dev");
    assert_eq!(p["path"]["filename"], "config.json");
    assert_eq!(p["path"]["filenameNormalized"], "config.json");
    assert_eq!(p["path"]["segments"][3], "cluster-config");
    assert_eq!(p["path"]["segments"][5], "dev");
}

#[test]
fn matrix_of_git_directories_and_a_list() {
    let apps = run("matrix-list-and-git.yaml", &[]);
    let base = "applicationset/examples/matrix/cluster-addons";
    assert_eq!(
        summary(&apps),
        [
            row(
                "argo-workflows-engineering-dev",
                "https://1.2.3.4",
                "argo-workflows",
                &format!("{base}/argo-workflows"),
                "dev"
            ),
            row(
                "argo-workflows-engineering-prod",
                "https://2.4.6.8",
                "argo-workflows",
                &format!("{base}/argo-workflows"),
                "prod"
            ),
            row(
                "prometheus-operator-engineering-dev",
                "https://1.2.3.4",
                "prometheus-operator",
                &format!("{base}/prometheus-operator"),
                "dev"
            ),
            row(
                "prometheus-operator-engineering-prod",
                "https://2.4.6.8",
                "prometheus-operator",
                &format!("{base}/prometheus-operator"),
                "prod"
            ),
        ]
    );
}

#[test]
fn matrix_of_git_directories_and_labelled_clusters() {
    let clusters = [
        cluster(
            "staging",
            "https://staging.example:6443",
            &[
                ("argocd.argoproj.io/secret-type", "cluster"),
                ("environment", "staging"),
            ],
        ),
        cluster(
            "production",
            "https://prod.example:6443",
            &[
                ("argocd.argoproj.io/secret-type", "cluster"),
                ("environment", "production"),
            ],
        ),
        cluster("unlabelled", "https://other.example:6443", &[]),
    ];
    let apps = run("matrix-cluster-and-git.yaml", &clusters);
    let base = "applicationset/examples/matrix/cluster-addons";
    // The selector leaves out the unlabelled cluster and the local one.
    assert_eq!(
        summary(&apps),
        [
            row(
                "argo-workflows-staging",
                "https://staging.example:6443",
                "argo-workflows",
                &format!("{base}/argo-workflows"),
                "staging"
            ),
            row(
                "argo-workflows-production",
                "https://prod.example:6443",
                "argo-workflows",
                &format!("{base}/argo-workflows"),
                "production"
            ),
            row(
                "prometheus-operator-staging",
                "https://staging.example:6443",
                "prometheus-operator",
                &format!("{base}/prometheus-operator"),
                "staging"
            ),
            row(
                "prometheus-operator-production",
                "https://prod.example:6443",
                "prometheus-operator",
                &format!("{base}/prometheus-operator"),
                "production"
            ),
        ]
    );
}

#[test]
fn merge_of_clusters_and_a_list_overrides_values_by_server() {
    let clusters = [
        cluster(
            "staging",
            "https://staging.example:6443",
            &[("use-kafka", "false")],
        ),
        cluster("some-specific", "https://some-specific-cluster", &[]),
    ];
    let apps = run("merge-clusters-and-list-fasttemplate.yaml", &clusters);
    let got: Vec<(String, String, String, String)> = apps
        .iter()
        .map(|g| {
            let a = &g.application;
            let helm = a.spec.source.helm.as_ref().expect("helm");
            (
                a.metadata.name.clone().unwrap_or_default(),
                a.spec.destination.server.clone().unwrap_or_default(),
                helm.parameters[0].value.clone(),
                helm.parameters[1].value.clone(),
            )
        })
        .collect();
    let r = |n: &str, s: &str, kafka: &str, redis: &str| {
        (
            n.to_owned(),
            s.to_owned(),
            kafka.to_owned(),
            redis.to_owned(),
        )
    };
    assert_eq!(
        got,
        [
            // The local cluster comes first, as Argo CD lists it; no selector on the base generator includes it.
            r("in-cluster", IN_CLUSTER, "true", "false"),
            r("staging", "https://staging.example:6443", "false", "false"),
            r(
                "some-specific",
                "https://some-specific-cluster",
                "true",
                "true"
            ),
        ]
    );
}

#[test]
fn a_generator_template_overrides_the_set_template() {
    let apps = run("template-overrides-example-fasttemplate.yaml", &[]);
    assert_eq!(
        summary(&apps),
        [row(
            "engineering-dev-guestbook",
            IN_CLUSTER,
            "guestbook",
            "applicationset/examples/template-override/engineering-dev-override",
            "default"
        )]
    );
}

#[test]
fn clusters_generator_without_selector_includes_the_local_cluster() {
    let clusters = [cluster("east", "https://east.example:6443", &[])];
    let apps = run("cluster-example-fasttemplate.yaml", &clusters);
    assert_eq!(
        summary(&apps),
        [
            row(
                "in-cluster-guestbook",
                IN_CLUSTER,
                "guestbook",
                "guestbook",
                "default"
            ),
            row(
                "east-guestbook",
                "https://east.example:6443",
                "guestbook",
                "guestbook",
                "default"
            ),
        ]
    );
}

#[test]
fn list_elements_yaml_from_a_git_file_in_a_matrix() {
    let apps = run("list-elementsYaml-matrix.yaml", &[]);
    let got: Vec<(String, String, String, String, String, String)> = apps
        .iter()
        .map(|g| {
            let a = &g.application;
            let source = &a.spec.sources[0];
            (
                a.metadata.name.clone().unwrap_or_default(),
                a.metadata.namespace.clone().unwrap_or_default(),
                source.chart.clone().unwrap_or_default(),
                source.repo_url.clone(),
                source.target_revision.clone(),
                a.spec.destination.namespace.clone().unwrap_or_default(),
            )
        })
        .collect();
    let r = |n: &str, repo: &str, v: &str| {
        (
            n.to_owned(),
            "argocd".to_owned(),
            "podinfo".to_owned(),
            repo.to_owned(),
            v.to_owned(),
            n.to_owned(),
        )
    };
    assert_eq!(
        got,
        [
            r(
                "component1",
                "https://stefanprodan.github.io/podinfo",
                "6.3.2"
            ),
            r("component2", "ghcr.io/stefanprodan/charts", "6.3.3"),
        ]
    );
    let spec = &apps[1].application.spec;
    assert_eq!(
        spec.sources[0]
            .helm
            .as_ref()
            .and_then(|h| h.release_name.as_deref()),
        Some("component2")
    );
    let policy = spec.sync_policy.as_ref().expect("syncPolicy");
    assert!(policy.automated.as_ref().is_some_and(|a| a.self_heal));
    assert_eq!(policy.sync_options, ["CreateNamespace=true"]);
}
