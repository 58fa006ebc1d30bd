//! `kedge import argocd` end to end: the built binary between `kedge render` and `kubectl apply`, against the test
//! cluster, on an app of apps from argoproj/argocd-example-apps; and its exit codes and messages on files.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kedge_api::Application;
use kedge_testkit::TestCluster;
use kube::api::Api;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn kedge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kedge render APPS | kedge -n NS import argocd -f - | kubectl apply -f -`, each stage's output kept.
fn pipeline(kubeconfig: &Path, ns: &str) -> (Output, Output, Output) {
    let mut render = kedge()
        .arg("render")
        .arg(fixture("argocd-apps"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut import = kedge()
        .args(["-n", ns, "import", "argocd", "-f", "-"])
        .stdin(render.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let apply = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(import.stdout.take().unwrap())
        .output()
        .unwrap();
    (
        render.wait_with_output().unwrap(),
        import.wait_with_output().unwrap(),
        apply,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_apps_renders_imports_and_applies() {
    let cluster = TestCluster::from_env().await.unwrap();
    let out = kedge()
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["install", "--crd-only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ns = cluster.namespace("import").await.unwrap();
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let ns_name = ns.name().to_owned();
    let (render, import, apply) =
        tokio::task::spawn_blocking(move || pipeline(&kubeconfig, &ns_name))
            .await
            .unwrap();

    assert!(render.status.success(), "{}", text(&render.stderr));
    // The same render again, to read the lines the import names.
    let again = kedge()
        .arg("render")
        .arg(fixture("argocd-apps"))
        .output()
        .unwrap();
    let rendered = text(&again.stdout);
    assert_eq!(rendered.matches("kind: Application\n").count(), 14);
    // Three examples use config management plugins: reported where they stand, skipped, exit code 1.
    let report = text(&import.stderr);
    assert_eq!(import.status.code(), Some(1), "{report}");
    let lost: Vec<&str> = report
        .lines()
        .filter(|l| l.contains(": not converted: "))
        .collect();
    assert_eq!(lost.len(), 6, "{report}");
    let lines: Vec<&str> = rendered.lines().collect();
    for name in ["plugin-kasane", "plugin-kustomized-helm", "plugin-nix"] {
        let skipped = format!(": Application example.{name}: not converted: ");
        assert!(
            lost.iter()
                .any(|l| l.starts_with("-:") && l.contains(&skipped) && l.ends_with("; skipped")),
            "{report}"
        );
    }
    for l in lost.iter().filter(|l| l.contains(": spec.source.plugin: ")) {
        // `-:LINE: ...`: the line of the rendered stream that holds the field.
        let line: usize = l.split(':').nth(1).unwrap().parse().unwrap();
        assert_eq!(lines[line - 1].trim(), "plugin:", "{l}");
    }
    assert!(apply.status.success(), "{}", text(&apply.stderr));
    assert!(
        text(&apply.stdout).contains("application.kedge.dev/example.guestbook created"),
        "{}",
        text(&apply.stdout)
    );

    let apps: Api<Application> = Api::namespaced(cluster.client(), ns.name());
    let list = apps.list(&Default::default()).await.unwrap();
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    names.sort();
    let examples = [
        "blue-green",
        "guestbook",
        "helm-dependency",
        "helm-guestbook",
        "helm-hooks",
        "jsonnet-guestbook",
        "jsonnet-guestbook-tla",
        "kustomize-guestbook",
        "pre-post-sync",
        "sock-shop",
        "sync-waves",
    ];
    let want: Vec<String> = examples.iter().map(|e| format!("example.{e}")).collect();
    assert_eq!(names, want);
    // A cluster Secret becomes a Cluster and its kubeconfig Secret, which the API server takes as they are.
    let cluster_secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cluster-east\n  labels:\n    \
                          argocd.argoproj.io/secret-type: cluster\nstringData:\n  name: east\n  \
                          server: https://east.example:6443\n  config: '{\"bearerToken\": \"t\"}'\n";
    let imported = kedge()
        .args(["-n", ns.name(), "import", "argocd", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let imported = {
        let mut child = imported;
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), cluster_secret.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        text(&imported.stderr)
    );
    let applied = cluster
        .kubectl_stdin(["apply", "-f", "-"], &text(&imported.stdout))
        .await
        .unwrap();
    assert!(applied.success, "{applied:?}");
    let clusters: Api<kedge_api::Cluster> = Api::namespaced(cluster.client(), ns.name());
    let east = clusters.get("east").await.unwrap();
    assert_eq!(east.spec.server, "https://east.example:6443");
    assert_eq!(east.spec.secret_ref.name, "cluster-east");

    let helm = apps.get("example.helm-guestbook").await.unwrap();
    let source = &helm.spec.source;
    assert_eq!(
        source.repo_url,
        "https://github.com/argoproj/argocd-example-apps"
    );
    assert_eq!(
        (source.path.as_str(), source.target_revision.as_str()),
        ("helm-guestbook", "master")
    );
    assert_eq!(
        source.helm.as_ref().unwrap().release_name.as_deref(),
        Some("helm-guestbook")
    );
    assert_eq!(
        helm.spec.destination.namespace.as_deref(),
        Some("helm-guestbook")
    );
    let policy = helm.spec.sync_policy.as_ref().unwrap();
    let automated = policy.automated.as_ref().unwrap();
    assert!(automated.prune && automated.self_heal);
    assert!(policy.flag("CreateNamespace"));
    assert_eq!(
        helm.metadata.finalizers.as_deref(),
        Some(&[kedge_api::RESOURCES_FINALIZER.to_owned()][..])
    );
}

#[test]
fn a_file_converts_with_notes_and_exits_zero_or_names_what_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = tmp.path().join("ok.yaml");
    std::fs::write(
        &ok,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: repo\n  labels: {argocd.argoproj.io/secret-type: repository}\n\
         stringData: {type: git, url: 'https://git.example/a.git', password: hunter2}\n",
    )
    .unwrap();
    let out = kedge()
        .args(["import", "argocd", "-f"])
        .arg(&ok)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("kedge.dev/secret-type: repository"),
        "{stdout}"
    );
    assert!(stdout.contains("hunter2"), "values are copied: {stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:6: stringData.type: note: ", ok.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let lost = tmp.path().join("project.yaml");
    std::fs::write(
        &lost,
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: team-a}\nspec:\n  sourceRepos: ['*']\n  \
         signatureKeys: [{keyID: 4AEE18F83AFDEB23}]\n",
    )
    .unwrap();
    let out = kedge()
        .args(["import", "argocd", "-f"])
        .arg(&lost)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:6: spec.signatureKeys: not converted: Kedge verifies signatures per application (spec.source.verify), not per project\n",
            lost.display()
        )
    );
    // The rest is a Project.
    assert!(
        text(&out.stdout).contains("kind: Project"),
        "{}",
        text(&out.stdout)
    );
}

/// Runs `kedge ARGS` with `input` on its standard input.
fn kedge_stdin(args: &[&str], input: &str) -> Output {
    let mut child = kedge()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argocd_set_imports_applies_and_previews_its_applications() {
    let cluster = TestCluster::from_env().await.unwrap();
    let out = kedge()
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["install", "--crd-only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ns = cluster.namespace("import-set").await.unwrap();
    // Argo CD's list generator example, unchanged: converted with notes only.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../kedge-appset/tests/fixtures/list-example.yaml"),
    )
    .unwrap();
    let import = kedge_stdin(&["-n", ns.name(), "import", "argocd", "-f", "-"], &example);
    assert_eq!(import.status.code(), Some(0), "{}", text(&import.stderr));
    let converted = text(&import.stdout);
    assert!(
        converted.contains("apiVersion: kedge.dev/v1alpha1\nkind: ApplicationSet\n"),
        "{converted}"
    );
    // The API server takes it as written, and the diff names the Applications the controller would make.
    let applied = cluster
        .kubectl_stdin(["apply", "-f", "-"], &converted)
        .await
        .unwrap();
    assert!(applied.success, "{applied:?}");
    let diff = kedge()
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["-n", ns.name(), "appset", "diff", "guestbook"])
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff.stderr));
    assert_eq!(
        text(&diff.stdout),
        "created: engineering-dev-guestbook\ncreated: engineering-prod-guestbook\n\
         application set guestbook: 2 to create, 0 to change, 0 to delete, 0 unchanged\n"
    );

    // A set with a generator Kedge does not run: named with its line, nothing written, exit code 1.
    let prs = "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: previews}\nspec:\n  \
               generators:\n  - pullRequest:\n      gitea: {owner: team, repo: web, api: 'https://gitea.example/'}\n  \
               template:\n    metadata: {name: 'web-{{branch}}-{{number}}'}\n    spec:\n      source: {repoURL: \
               'https://gitea.example/team/web.git', targetRevision: '{{head_sha}}', path: deploy}\n      \
               destination: {namespace: 'web-{{number}}'}\n";
    let import = kedge_stdin(&["import", "argocd", "-f", "-"], prs);
    assert_eq!(import.status.code(), Some(1));
    assert!(import.stdout.is_empty(), "{}", text(&import.stdout));
    assert_eq!(
        text(&import.stderr),
        "-:1: ApplicationSet previews: not converted: its generators include pullRequest, which Kedge does not run; \
         skipped\n-:6: spec.generators[0].pullRequest: not converted: the pullRequest generator is not supported by \
         Kedge yet\n"
    );
}
