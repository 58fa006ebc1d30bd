//! Rendering charts from a file tree with the real helm binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use kedge_api::{HelmParameter, KustomizePatch, KustomizePatchTarget};
use kedge_helm::{
    Capabilities, HelmConfig, HelmError, HelmOptions, HelmRenderer, ReleaseMode, ValuesLayer,
};
use kedge_render::{RenderedSet, SourceKind};
use kedge_source::{Limits, LocalTree};
use serde_json::{Value, json};

fn renderer() -> HelmRenderer {
    let cache = tempfile::tempdir().unwrap();
    HelmRenderer::new(HelmConfig {
        binary: Some(common::helm()),
        cache_dir: Some(cache.keep()),
        ..HelmConfig::default()
    })
}

fn tree() -> LocalTree {
    LocalTree::new(common::fixtures(), Limits::default()).unwrap()
}

fn options(release: &str) -> HelmOptions {
    HelmOptions {
        release_name: release.into(),
        namespace: "shop".into(),
        ..HelmOptions::default()
    }
}

fn caps() -> Capabilities {
    Capabilities {
        kube_version: Some("v1.36.0".into()),
        api_versions: vec![
            "v1".into(),
            "apps/v1".into(),
            "example.kedge.dev/v1".into(),
            "example.kedge.dev/v1/Widget".into(),
        ],
    }
}

fn find<'a>(set: &'a RenderedSet, kind: &str, name: &str) -> &'a Value {
    &set.objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| {
            let all: Vec<String> = set
                .objects
                .iter()
                .map(|o| format!("{} {}", o.kind, o.name))
                .collect();
            panic!("{kind} {name} not rendered; have {all:?}")
        })
        .object
}

#[test]
fn guestbook_renders_with_production_values() {
    let r = renderer();
    let mut opts = options("guestbook");
    let plain = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    assert_eq!(plain.rendered.kind, SourceKind::Helm);
    assert_eq!(plain.rendered.len(), 2);
    let svc = find(&plain.rendered, "Service", "guestbook-helm-guestbook");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let svc_obj = plain
        .rendered
        .objects
        .iter()
        .find(|o| o.kind == "Service")
        .unwrap();
    assert_eq!(svc_obj.source.file, "helm-guestbook/templates/service.yaml");

    opts.value_files = vec!["values-production.yaml".into()];
    let prod = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    let svc = find(&prod.rendered, "Service", "guestbook-helm-guestbook");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    let dep = find(&prod.rendered, "Deployment", "guestbook-helm-guestbook");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "gcr.io/google-samples/gb-frontend:v5"
    );
    assert_ne!(plain.values_digest, prod.values_digest);
    assert_eq!(plain.chart_digest, prod.chart_digest);
}

#[test]
fn values_merge_in_helm_order_and_parameters_win() {
    let r = renderer();
    let mut opts = options("web");
    opts.value_files = vec!["values-production.yaml".into()];
    opts.values = Some("greeting: from values\nimage: nginx:inline\n".into());
    opts.values_object = Some(json!({"greeting": "from object"}));
    opts.parameters = vec![
        HelmParameter {
            name: "replicaCount".into(),
            value: "5".into(),
            force_string: false,
        },
        HelmParameter {
            name: "image".into(),
            value: "nginx:a,b".into(),
            force_string: true,
        },
    ];
    let secret = ValuesLayer::secret(
        "Secret shop/web-values key values.yaml",
        "greeting: from secret\napiKey: s3cr3t-api-key\n",
    );
    let out = r
        .render_tree(&tree(), "webapp", &opts, &[secret], &caps())
        .unwrap();
    let cm = find(&out.rendered, "ConfigMap", "web-config");
    assert_eq!(cm["data"]["greeting"], "from secret");
    // A value read from a Secret and rendered into a ConfigMap is marked, so that diffs and views mask it.
    assert_eq!(
        kedge_render::object::SENSITIVE_ANNOTATION,
        kedge_engine::object::SENSITIVE_ANNOTATION
    );
    let marked = |obj: &Value| -> Vec<String> {
        obj["metadata"]["annotations"][kedge_render::object::SENSITIVE_ANNOTATION]
            .as_str()
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap_or_default()
    };
    assert_eq!(marked(cm), vec!["/data/greeting"]);
    assert_eq!(cm["data"]["replicas"], "5");
    assert_eq!(cm["data"]["namespace"], "shop");
    assert_eq!(cm["data"]["kubeVersion"], "v1.36.0");
    assert_eq!(cm["data"]["hasWidgets"], "true");
    assert_eq!(cm["data"]["install"], "true");
    let dep = find(&out.rendered, "Deployment", "web-web");
    assert_eq!(dep["spec"]["replicas"], 5);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:a,b"
    );
    let secret = find(&out.rendered, "Secret", "web-api");
    assert_eq!(secret["stringData"]["apiKey"], "s3cr3t-api-key");
    // CRDs are included unless skipped.
    find(
        &out.rendered,
        "CustomResourceDefinition",
        "widgets.example.kedge.dev",
    );
    opts.skip_crds = true;
    let out = r
        .render_tree(&tree(), "webapp", &opts, &[], &caps())
        .unwrap();
    assert!(
        !out.rendered
            .objects
            .iter()
            .any(|o| o.kind == "CustomResourceDefinition")
    );
    let cm = find(&out.rendered, "ConfigMap", "web-config");
    assert_eq!(cm["data"]["greeting"], "from object");
    assert!(marked(cm).is_empty(), "no Secret values, nothing marked");
}

#[test]
fn install_and_upgrade_hooks_are_mapped() {
    let r = renderer();
    let mut opts = options("web");
    let install = r
        .render_tree(&tree(), "webapp", &opts, &[], &caps())
        .unwrap();
    let hook = |set: &RenderedSet, name: &str| {
        set.objects
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.object["metadata"]["annotations"].clone())
    };
    let pre = hook(&install.rendered, "web-pre-install").expect("pre-install hook");
    assert_eq!(pre["kedge.dev/hook"], "PreSync");
    assert_eq!(pre["kedge.dev/sync-wave"], "-1");
    assert_eq!(pre["kedge.dev/hook-delete-policy"], "BeforeHookCreation");
    assert_eq!(
        hook(&install.rendered, "web-post-install").unwrap()["kedge.dev/hook"],
        "PostSync"
    );
    assert!(hook(&install.rendered, "web-pre-upgrade").is_none());
    assert!(hook(&install.rendered, "web-post-upgrade").is_none());
    assert!(hook(&install.rendered, "web-pre-delete").is_none());
    assert!(
        hook(&install.rendered, "web-test").is_none(),
        "tests are skipped"
    );
    assert_eq!(install.delete_hooks.len(), 1);
    assert_eq!(install.delete_hooks[0].name, "web-pre-delete");

    opts.mode = ReleaseMode::Upgrade;
    let upgrade = r
        .render_tree(&tree(), "webapp", &opts, &[], &caps())
        .unwrap();
    assert!(hook(&upgrade.rendered, "web-pre-install").is_none());
    assert_eq!(
        hook(&upgrade.rendered, "web-pre-upgrade").unwrap()["kedge.dev/hook"],
        "PreSync"
    );
    assert_eq!(
        hook(&upgrade.rendered, "web-post-upgrade").unwrap()["kedge.dev/hook"],
        "PostSync"
    );
    // The objects themselves render the same way in both modes (`.Release.IsInstall` stays true): what is
    // deployed depends on chart and values only, so an upgrade never shows a difference that Git did not make.
    let cm = find(&upgrade.rendered, "ConfigMap", "web-config");
    assert_eq!(cm["data"]["install"], "true");
    assert_eq!(
        find(&install.rendered, "ConfigMap", "web-config"),
        cm,
        "install and upgrade render the same objects"
    );
}

#[test]
fn helm_hooks_example_maps_weights_and_policies() {
    let r = renderer();
    let out = r
        .render_tree(&tree(), "helm-hooks", &options("hooks"), &[], &caps())
        .unwrap();
    let set = &out.rendered;
    let ann = |name: &str| {
        set.objects
            .iter()
            .find(|o| o.name == name || o.generate_name() == Some(name))
            .unwrap()
            .object["metadata"]["annotations"]
            .clone()
    };
    // A hook named by generateName keeps it: the engine creates a new instance each time the hook runs.
    assert!(set.objects.iter().any(|o| o.kind == "Job"
        && o.name.is_empty()
        && o.generate_name() == Some("upgrade-sql-schema")));
    assert_eq!(ann("upgrade-sql-schema")["kedge.dev/hook"], "PreSync");
    assert_eq!(ann("upgrade-sql-schema")["kedge.dev/sync-wave"], "-2");
    assert_eq!(ann("maint-page-up")["kedge.dev/sync-wave"], "-1");
    assert_eq!(ann("maint-page-down")["kedge.dev/hook"], "PostSync");
    assert_eq!(ann("frontend")["kedge.dev/sync-wave"], "2");
    assert_eq!(set.len(), 5);
}

#[test]
fn post_render_patch_applies() {
    let r = renderer();
    let mut opts = options("guestbook");
    opts.patches = vec![
        KustomizePatch {
            patch: "- op: add\n  path: /metadata/labels/patched\n  value: \"yes\"\n".into(),
            target: Some(KustomizePatchTarget {
                kind: Some("Deployment".into()),
                ..Default::default()
            }),
        },
        KustomizePatch {
            patch: "apiVersion: v1\nkind: Service\nmetadata:\n  name: guestbook-helm-guestbook\nspec:\n  type: NodePort\n".into(),
            target: None,
        },
    ];
    let out = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    let dep = find(&out.rendered, "Deployment", "guestbook-helm-guestbook");
    assert_eq!(dep["metadata"]["labels"]["patched"], "yes");
    let svc = find(&out.rendered, "Service", "guestbook-helm-guestbook");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert!(svc["metadata"]["labels"].get("patched").is_none());
    let svc_obj = out
        .rendered
        .objects
        .iter()
        .find(|o| o.kind == "Service")
        .unwrap();
    assert_eq!(svc_obj.source.file, "helm-guestbook/templates/service.yaml");
}

#[test]
fn template_error_reports_helms_message_without_secret_values() {
    let r = renderer();
    let opts = options("b");
    let err = r
        .render_tree(&tree(), "broken", &opts, &[], &caps())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HelmError::HelmFailed { .. }), "{err:?}");
    assert!(text.contains("a password is required"), "{text}");
    assert_eq!(err.reason(), "RenderFailed");
    assert!(!err.is_retryable());

    let secret = ValuesLayer::secret(
        "Secret ns/s key values.yaml",
        "password: hunter2-topsecret\n",
    );
    let err = r
        .render_tree(&tree(), "broken", &opts, &[secret], &caps())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("is not accepted"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn cache_hits_for_same_inputs_and_misses_for_new_values() {
    let r = renderer();
    let mut opts = options("guestbook");
    let a = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    let b = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    opts.values = Some("replicaCount: 2\n".into());
    let c = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    let stats = r.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 2));
}

#[test]
fn value_files_cannot_leave_the_tree() {
    let r = renderer();
    let mut opts = options("guestbook");
    opts.value_files = vec!["../../../../etc/passwd".into()];
    let err = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap_err();
    assert!(
        matches!(
            err,
            HelmError::Tree {
                source: kedge_source::TreeError::PathEscape { .. },
                ..
            }
        ),
        "{err:?}"
    );
    opts.value_files = vec!["https://example.test/values.yaml".into()];
    let err = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap_err();
    assert!(matches!(err, HelmError::InvalidSpec { .. }), "{err:?}");
}

#[test]
fn missing_helm_is_reported_clearly() {
    let cache = tempfile::tempdir().unwrap();
    let r = HelmRenderer::new(HelmConfig {
        binary: Some("/nonexistent/helm".into()),
        cache_dir: Some(cache.path().to_path_buf()),
        ..HelmConfig::default()
    });
    let err = r
        .render_tree(&tree(), "helm-guestbook", &options("g"), &[], &caps())
        .unwrap_err();
    assert!(matches!(err, HelmError::HelmNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("install Helm"), "{err}");
}

#[test]
fn missing_value_files_fail_naming_the_file_unless_ignored() {
    let r = renderer();
    let mut opts = options("guestbook");
    opts.value_files = vec![
        "values-production.yaml".into(),
        "values-staging.yaml".into(),
    ];
    let err = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap_err();
    assert!(matches!(err, HelmError::InvalidSpec { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("\"values-staging.yaml\" not found")
            && message.contains("ignoreMissingValueFiles"),
        "{message}"
    );

    // ignoreMissingValueFiles: the missing file is left out, the others still apply.
    let missing = opts
        .skip_missing_value_files(|f| kedge_helm::value_file_in_tree(&tree(), "helm-guestbook", f));
    assert_eq!(missing, ["values-staging.yaml"]);
    assert_eq!(opts.value_files, ["values-production.yaml"]);
    let out = r
        .render_tree(&tree(), "helm-guestbook", &opts, &[], &caps())
        .unwrap();
    let with_production = r
        .render_tree(
            &tree(),
            "helm-guestbook",
            &HelmOptions {
                value_files: vec!["values-production.yaml".into()],
                ..options("guestbook")
            },
            &[],
            &caps(),
        )
        .unwrap();
    assert_eq!(out.rendered.objects, with_production.rendered.objects);
    // Paths that leave the tree are not "missing": reading them reports the escape.
    assert!(kedge_helm::value_file_in_tree(
        &tree(),
        "helm-guestbook",
        "../../../../etc/passwd"
    ));
}

#[test]
fn a_chart_with_helm2_crd_install_hooks_is_refused_not_rendered_without_them() {
    let err = renderer()
        .render_tree(&tree(), "crd-install", &options("old"), &[], &caps())
        .unwrap_err();
    assert!(matches!(err, HelmError::CrdInstallHook { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("crd-install") && message.contains("crds/"),
        "{message}"
    );
}
