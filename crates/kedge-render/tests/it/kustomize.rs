//! Kustomize sources against the real kustomize (or `kubectl kustomize`).

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempTree;
use kedge_render::{
    KustomizeCommand, KustomizeConfig, RenderConfig, RenderError, RenderOptions, Renderer,
    SourceKind,
};
use serde_json::Value;

/// The reference build: `kubectl kustomize` when kubectl is installed, else `kustomize build`.
fn reference_build(dir: &Path) -> Vec<Value> {
    let kubectl = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file());
    let out = match kubectl {
        Some(k) => Command::new(k).arg("kustomize").arg(dir).output().unwrap(),
        None => {
            let cmd = KustomizeCommand::resolve(&KustomizeConfig::default())
                .expect("kustomize must be installed");
            let KustomizeCommand::Kustomize(bin) = cmd else {
                panic!("no kustomize");
            };
            Command::new(bin).arg("build").arg(dir).output().unwrap()
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Read with another YAML parser than the renderer's, so that a parsing mistake cannot hide on both sides.
    let text = String::from_utf8(out.stdout).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap()
        .iter()
        .filter(|d| !d.is_null())
        .map(to_json)
        .collect()
}

fn to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => Value::from(r.parse::<f64>().unwrap()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => panic!("non-string key {other:?} in the reference build"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        other => panic!("unexpected YAML node {other:?} in the reference build"),
    }
}

#[test]
fn overlay_with_parent_base_matches_the_reference_build() {
    let tree = TempTree::with_fixture("overlay", "");
    let r = Renderer::default();
    let set = r
        .render(&tree, "overlays/prod", &RenderOptions::default())
        .unwrap();
    assert_eq!(set.kind, SourceKind::Kustomize);
    let ours: Vec<Value> = set.objects.iter().map(|o| o.object.clone()).collect();
    let reference = reference_build(&tree.path("overlays/prod"));
    assert_eq!(ours, reference);
    let names: Vec<_> = set
        .objects
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str(), o.namespace.as_str()))
        .collect();
    assert!(
        names.contains(&("Deployment", "prod-web", "prod")),
        "{names:?}"
    );
    let d = set.objects.iter().find(|o| o.kind == "Deployment").unwrap();
    assert_eq!(d.object["spec"]["replicas"], 3);
    assert_eq!(d.source.file, "overlays/prod/kustomization.yaml");
    // The inputs are the overlay, the base and the component, not the unrelated directory.
    let dirs: Vec<_> = set.inputs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(dirs, ["base", "components/team", "overlays/prod"]);
}

#[test]
fn real_world_kustomizations_match_the_reference_build() {
    // pre-post-sync uses ../kustomize-guestbook as its base, as in the original repository.
    let tree = TempTree::new();
    for fixture in ["kustomize-guestbook", "sock-shop", "pre-post-sync"] {
        tree.copy_fixture(fixture, fixture);
    }
    for fixture in ["kustomize-guestbook", "sock-shop", "pre-post-sync"] {
        let set = Renderer::default()
            .render(&tree, fixture, &RenderOptions::default())
            .unwrap();
        let ours: Vec<Value> = set.objects.iter().map(|o| o.object.clone()).collect();
        assert_eq!(ours, reference_build(&tree.path(fixture)), "{fixture}");
        assert!(!ours.is_empty());
    }
}

#[test]
fn cache_follows_the_kustomize_inputs() {
    let tree = TempTree::with_fixture("overlay", "");
    let r = Renderer::default();
    let opts = RenderOptions::default();
    r.render(&tree, "overlays/prod", &opts).unwrap();
    assert_eq!(
        tree.materialized.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    tree.write(
        "unrelated/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: changed}\n",
    );
    r.render(&tree, "overlays/prod", &opts).unwrap();
    assert_eq!(
        r.cache_stats().hits,
        1,
        "an unrelated change keeps the cached render"
    );
    assert_eq!(
        tree.materialized.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let base = std::fs::read_to_string(tree.path("base/deployment.yaml")).unwrap();
    tree.write(
        "base/deployment.yaml",
        &base.replace("containerPort: 8080", "containerPort: 9090"),
    );
    let set = r.render(&tree, "overlays/prod", &opts).unwrap();
    assert_eq!(r.cache_stats().misses, 2, "a change in the base is a miss");
    let d = set.objects.iter().find(|o| o.kind == "Deployment").unwrap();
    assert_eq!(
        d.object["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        9090
    );
    tree.write("components/team/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonAnnotations:\n  example.com/team: payments\n");
    let set = r.render(&tree, "overlays/prod", &opts).unwrap();
    assert_eq!(
        r.cache_stats().misses,
        3,
        "a change in a component is a miss"
    );
    assert_eq!(
        set.objects[0].object["metadata"]["annotations"]["example.com/team"],
        "payments"
    );
}

#[test]
fn kustomize_failure_carries_its_message() {
    let tree = TempTree::new();
    tree.write(
        "app/kustomization.yaml",
        "resources:\n  - missing-deployment.yaml\n",
    );
    let err = Renderer::default()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    let RenderError::KustomizeFailed { dir, stderr, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(dir, "app");
    assert!(stderr.contains("missing-deployment.yaml"), "{stderr}");
    assert!(err.to_string().contains("missing-deployment.yaml"));
}

#[test]
fn kustomize_output_is_checked_like_files() {
    let tree = TempTree::new();
    tree.write(
        "app/kustomization.yaml",
        "resources:\n  - a.yaml\n  - b.yaml\n",
    );
    tree.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    tree.write(
        "app/b.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n",
    );
    let set = Renderer::default()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.objects[1].source.document, 1);
}

#[test]
fn references_outside_the_repository_are_refused() {
    let tree = TempTree::new();
    tree.write("app/kustomization.yaml", "resources:\n  - ../../outside\n");
    let err = Renderer::default()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RenderError::OutsideRepository { .. }),
        "{err:?}"
    );
    tree.write(
        "app/kustomization.yaml",
        "resources:\n  - /etc/kubernetes\n",
    );
    let err = Renderer::default()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("/etc/kubernetes"), "{err}");
    assert_eq!(
        tree.materialized.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "kustomize never ran"
    );
}

#[test]
fn a_hanging_kustomize_is_killed_at_the_timeout() {
    let tools = tempfile::tempdir().unwrap();
    let fake = tools.path().join("kustomize");
    std::fs::write(&fake, "#!/bin/sh\necho started >&2\nexec sleep 300\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tree = TempTree::new();
    tree.write("app/kustomization.yaml", "resources: []\n");
    let r = Renderer::new(RenderConfig {
        kustomize: KustomizeConfig {
            binary: Some(fake),
            timeout: Duration::from_millis(500),
            ..KustomizeConfig::default()
        },
        ..RenderConfig::default()
    });
    let start = Instant::now();
    let err = r
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RenderError::KustomizeTimeout { .. }),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_missing_binary_is_a_clear_error() {
    let tree = TempTree::new();
    tree.write("app/kustomization.yaml", "resources: []\n");
    let r = Renderer::new(RenderConfig {
        kustomize: KustomizeConfig {
            binary: Some("/nonexistent/kustomize".into()),
            ..KustomizeConfig::default()
        },
        ..RenderConfig::default()
    });
    let err = r
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(matches!(err, RenderError::KustomizeIo { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/kustomize"), "{err}");
}

fn fake_kustomize(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("kustomize");
    std::fs::write(&fake, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

const ONE_CONFIGMAP: &str =
    "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: from-fake\\n'\n";

#[test]
fn remote_bases_are_refused_naming_the_base_and_the_kustomization() {
    let remote = [
        ("resources", "github.com/org/repo/deploy?ref=v1.2.3"),
        ("resources", "https://example.invalid/team/app.yaml"),
        (
            "resources",
            "git::https://example.invalid/team/app.git//deploy",
        ),
        ("resources", "git@example.invalid:team/app.git"),
        ("components", "example.invalid/team/components/x"),
        ("bases", "ssh://git@example.invalid/team/app"),
    ];
    for (field, base) in remote {
        let tree = TempTree::new();
        // The remote base sits in a local base of the overlay: every kustomization the build reads is checked.
        tree.write(
            "overlay/kustomization.yaml",
            "resources:\n  - ../base\n  - cm.yaml\n",
        );
        tree.write(
            "overlay/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n",
        );
        tree.write(
            "base/kustomization.yaml",
            &format!("{field}:\n  - {base}\n"),
        );
        let err = Renderer::default()
            .render(&tree, "overlay", &RenderOptions::default())
            .unwrap_err();
        assert!(
            matches!(err, RenderError::RemoteBase { .. }),
            "{base}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(base), "{msg}");
        assert!(msg.contains("base/kustomization.yaml"), "{msg}");
        assert!(msg.contains(field), "{msg}");
        assert!(msg.contains("--allow-remote-bases"), "{msg}");
        assert_eq!(
            tree.materialized.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "kustomize never ran for {base}"
        );
    }

    let tree = TempTree::new();
    tree.write(
        "app/kustomization.yaml",
        "helmCharts:\n  - name: web\n    repo: https://charts.example.invalid\n    version: 1.0.0\n",
    );
    let err = Renderer::default()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("charts.example.invalid"), "{err}");
}

#[test]
fn remote_bases_pass_to_kustomize_when_allowed() {
    let tools = tempfile::tempdir().unwrap();
    let fake = fake_kustomize(tools.path(), ONE_CONFIGMAP);
    let tree = TempTree::new();
    tree.write(
        "app/kustomization.yaml",
        "resources:\n  - github.com/org/repo/deploy?ref=v1\n",
    );
    let renderer = |allow| {
        Renderer::new(RenderConfig {
            kustomize: KustomizeConfig {
                binary: Some(fake.clone()),
                allow_remote_bases: allow,
                ..KustomizeConfig::default()
            },
            ..RenderConfig::default()
        })
    };
    let err = renderer(false)
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(matches!(err, RenderError::RemoteBase { .. }), "{err:?}");
    let set = renderer(true)
        .render(&tree, "app", &RenderOptions::default())
        .unwrap();
    assert_eq!(set.objects[0].name, "from-fake");
}

/// Set in the child test process by [`kustomize_sees_none_of_the_callers_environment`]: the fake kustomize.
const ENV_PROBE: &str = "KEDGE_TEST_ENV_PROBE_KUSTOMIZE";

#[test]
fn kustomize_sees_none_of_the_callers_environment() {
    if let Some(fake) = std::env::var_os(ENV_PROBE) {
        // The child: render with the fake kustomize, in a process whose environment holds the variables below.
        let tree = TempTree::new();
        tree.write("app/kustomization.yaml", "resources: []\n");
        let r = Renderer::new(RenderConfig {
            kustomize: KustomizeConfig {
                binary: Some(fake.into()),
                ..KustomizeConfig::default()
            },
            ..RenderConfig::default()
        });
        let set = r.render(&tree, "app", &RenderOptions::default()).unwrap();
        assert_eq!(set.objects[0].name, "from-fake");
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    let dump = tools.path().join("env.txt");
    let fake = fake_kustomize(
        tools.path(),
        &format!("env > '{}'\n{ONE_CONFIGMAP}", dump.display()),
    );
    let secret = "s3cret-db-password-4711";
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kustomize::kustomize_sees_none_of_the_callers_environment",
            "--nocapture",
        ])
        .env(ENV_PROBE, &fake)
        .env("HTTPS_PROXY", "http://proxy.example.invalid:3128")
        .env("https_proxy", "http://proxy.example.invalid:3128")
        .env("KUSTOMIZE_PLUGIN_HOME", tools.path())
        .env("KEDGE_DB_PASSWORD", secret)
        .env("HOME", tools.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(&dump).expect("the fake kustomize ran");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(names.contains(&"PATH"), "{env}");
    for leaked in [
        "HTTPS_PROXY",
        "https_proxy",
        "KUSTOMIZE_PLUGIN_HOME",
        "KEDGE_DB_PASSWORD",
        ENV_PROBE,
    ] {
        assert!(
            !names.contains(&leaked),
            "{leaked} reached kustomize:\n{env}"
        );
    }
    assert!(!env.contains(secret));
    // HOME is a private scratch directory, not the caller's.
    assert!(
        !env.contains(&format!("HOME={}\n", tools.path().display())),
        "{env}"
    );
}

#[test]
fn source_kind_decides_between_chart_kustomization_and_directory() {
    let tree = TempTree::new();
    tree.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    );
    tree.write("chart/templates/cm.yaml", "kind: ConfigMap\n");
    tree.write("overlay/kustomization.yaml", "resources: []\n");
    tree.write(
        "plain/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    assert_eq!(
        kedge_render::source_kind(&tree, "chart").unwrap(),
        SourceKind::Helm
    );
    assert_eq!(
        kedge_render::source_kind(&tree, "overlay").unwrap(),
        SourceKind::Kustomize
    );
    assert_eq!(
        kedge_render::source_kind(&tree, "plain").unwrap(),
        SourceKind::Directory
    );
    assert!(kedge_render::source_kind(&tree, "missing").is_err());
    // The renderer does not read a chart's templates as plain manifests.
    let err = Renderer::default()
        .render(&tree, "chart", &RenderOptions::default())
        .unwrap_err();
    assert!(matches!(err, RenderError::HelmChart { .. }), "{err:?}");
}
