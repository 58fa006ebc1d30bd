//! `kedge render` end to end: the built binary on local directories and on a repository served by git daemon.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kedge-render/tests/fixtures")
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
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

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kedge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn items_of_yaml(text: &str) -> Vec<Value> {
    kedge_render::parse::parse_yaml("stdout", text.as_bytes())
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn items_of_json(text: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(text).unwrap();
    assert_eq!(list["kind"], "List");
    list["items"].as_array().unwrap().clone()
}

/// The same objects through `kubectl kustomize` (or `kustomize build` without kubectl).
fn reference(dir: &Path) -> Vec<Value> {
    let has_kubectl = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("kubectl").is_file());
    let out = if has_kubectl {
        Command::new("kubectl")
            .arg("kustomize")
            .arg(dir)
            .output()
            .unwrap()
    } else {
        let cmd = kedge_render::KustomizeCommand::resolve(&Default::default()).unwrap();
        let kedge_render::KustomizeCommand::Kustomize(bin) = cmd else {
            panic!("no kustomize installed");
        };
        Command::new(bin).arg("build").arg(dir).output().unwrap()
    };
    assert!(out.status.success());
    items_of_yaml(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn renders_a_kustomize_overlay_as_yaml_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("overlay"), tmp.path());
    // A Git work tree root is found automatically, so ../../base is inside the tree.
    std::fs::create_dir(tmp.path().join(".git")).unwrap();
    let prod = tmp.path().join("overlays/prod");
    let yaml = ok(&kedge([Path::new("render"), &prod]));
    let json = ok(&kedge([
        Path::new("render"),
        &prod,
        Path::new("-o"),
        Path::new("json"),
    ]));
    let from_yaml = items_of_yaml(&yaml);
    let from_json = items_of_json(&json);
    assert_eq!(from_yaml.len(), 3);
    assert_eq!(
        from_yaml, from_json,
        "YAML and JSON output carry the same values"
    );
    assert_eq!(from_yaml, reference(&prod));
    assert_eq!(yaml.matches("\n---\n").count(), 2, "{yaml}");
}

#[test]
fn outside_the_root_is_refused_and_an_explicit_root_fixes_it() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("overlay"), tmp.path());
    let prod = tmp.path().join("overlays/prod");
    // Without a .git above, the directory itself is the root, so ../../base leaves it.
    let out = kedge([Path::new("render"), &prod]);
    assert_outside(&out, &prod, "the directory itself");
    let out = kedge([Path::new("render"), &prod, Path::new("--root"), tmp.path()]);
    assert_eq!(items_of_yaml(&ok(&out)).len(), 3);
}

/// `out` failed because ../../base leaves the tree, and the message names the root and where it came from.
fn assert_outside(out: &Output, root: &Path, origin: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the repository"), "{err}");
    assert!(err.contains("../../base"), "{err}");
    let root = root.canonicalize().unwrap();
    let named = format!("tree root {} ({origin}", root.display());
    assert!(err.contains(&named), "{err}");
}

fn kedge_in(cwd: &Path, args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn outside_a_git_checkout_the_current_directory_is_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("overlay"), tmp.path());
    let prod = Path::new("overlays/prod");
    // As `kubectl kustomize overlays/prod` run from the directory holding the base.
    let out = kedge_in(tmp.path(), &[Path::new("render"), prod]);
    let items = items_of_yaml(&ok(&out));
    assert_eq!(items, reference(&tmp.path().join(prod)));
    // From a directory below the base, ../../base leaves the root, and the message names that root.
    let overlays = tmp.path().join("overlays");
    let out = kedge_in(&overlays, &[Path::new("render"), Path::new("prod")]);
    assert_outside(&out, &overlays, "the current directory");
    // --root still wins over the current directory.
    let out = kedge_in(
        &overlays,
        &[
            Path::new("render"),
            Path::new("prod"),
            Path::new("--root"),
            tmp.path(),
        ],
    );
    assert_eq!(items_of_yaml(&ok(&out)), items);
}

#[test]
fn directory_flags_and_yaml_round_trip_of_tricky_scalars() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("sub")).unwrap();
    std::fs::write(
        app.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tricky\ndata:\n  octal: '0644'\n  'yes': 'yes'\n  \
         num: '1.0'\n  empty: ''\n  multi: |\n    line one\n    line two\n  colon: 'a: b'\n  'null': 'null'\n  \
         star: '*x'\n",
    )
    .unwrap();
    std::fs::write(
        app.join("sub/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ntype: Opaque\n",
    )
    .unwrap();
    std::fs::write(
        app.join("sub/skip.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: skipped\n",
    )
    .unwrap();
    let yaml = ok(&kedge([Path::new("render"), &app]));
    let items = items_of_yaml(&yaml);
    assert_eq!(items.len(), 1);
    let json = ok(&kedge([
        Path::new("render"),
        &app,
        Path::new("-o"),
        Path::new("json"),
    ]));
    assert_eq!(items, items_of_json(&json), "{yaml}");
    assert_eq!(items[0]["data"]["octal"], "0644");
    assert_eq!(items[0]["data"]["yes"], "yes");
    assert_eq!(items[0]["data"]["null"], "null");
    let out = kedge([
        Path::new("render"),
        &app,
        Path::new("--recurse"),
        Path::new("--exclude"),
        Path::new("*/skip.yaml"),
    ]);
    let names: Vec<_> = items_of_yaml(&ok(&out))
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["tricky", "s"]);
}

#[test]
fn errors_exit_non_zero_with_every_problem_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n";
    std::fs::write(tmp.path().join("a.yaml"), cm).unwrap();
    std::fs::write(tmp.path().join("b.yaml"), cm).unwrap();
    std::fs::write(tmp.path().join("c.yaml"), "kind: ConfigMap\n").unwrap();
    let out = kedge([Path::new("render"), tmp.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 errors"), "{err}");
    assert!(
        err.contains("a.yaml") && err.contains("b.yaml"),
        "both files named: {err}"
    );
    assert!(err.contains("c.yaml document 0"), "{err}");
    assert!(err.contains("missing apiVersion, metadata.name"), "{err}");

    let out = kedge(["render", "/nonexistent/kedge-dir"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kedge-dir"));
}

#[test]
fn renders_a_path_of_a_remote_repository() {
    let root = kedge_testkit::RepoRoot::new().unwrap();
    root.create_bare_repo("apps.git").unwrap();
    let daemon = kedge_testkit::GitDaemon::start(&root).unwrap();
    let work = kedge_testkit::GitFixture::new().unwrap();
    copy_dir(&fixtures().join("overlay"), work.path());
    work.commit("overlay").unwrap();
    work.push(&daemon.url("apps.git"), "main").unwrap();

    let cache = tempfile::tempdir().unwrap();
    let url = daemon.url("apps.git");
    let out = kedge([
        "render",
        "--repo",
        &url,
        "--revision",
        "main",
        "--path",
        "overlays/prod",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    let items = items_of_json(&ok(&out));
    assert_eq!(items, reference(&work.path().join("overlays/prod")));

    let out = kedge([
        "render",
        "--repo",
        &url,
        "--revision",
        "main",
        "--path",
        "no/such/app",
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/app"));
}
