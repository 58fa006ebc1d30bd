//! Argo CD's `spec.source.kustomize` options, applied to a copy of the application's kustomization and built by
//! the real kustomize.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;

use common::TempTree;
use kedge_render::{KustomizeOptions, PatchOption, RenderError, RenderOptions, Renderer};
use serde_json::Value;

fn guestbook() -> TempTree {
    TempTree::with_fixture("kustomize-guestbook", "apps/guestbook")
}

fn render(tree: &TempTree, path: &str, k: &KustomizeOptions) -> Vec<Value> {
    Renderer::default()
        .render_with(tree, path, &RenderOptions::default(), Some(k))
        .unwrap()
        .objects
        .iter()
        .map(|o| o.object.clone())
        .collect()
}

fn render_err(tree: &TempTree, path: &str, k: &KustomizeOptions) -> RenderError {
    Renderer::default()
        .render_with(tree, path, &RenderOptions::default(), Some(k))
        .unwrap_err()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap()
}

fn image(objects: &[Value]) -> &str {
    of_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

#[test]
fn images_and_name_prefix_change_the_guestbook() {
    let tree = guestbook();
    let before = std::fs::read(tree.path("apps/guestbook/kustomization.yaml")).unwrap();
    let k = KustomizeOptions {
        images: vec![
            "gcr.io/google-samples/gb-frontend=gcr.io/heptio-images/ks-guestbook-demo:0.2".into(),
        ],
        name_prefix: Some("staging-".into()),
        ..Default::default()
    };
    let objects = render(&tree, "apps/guestbook", &k);
    assert_eq!(
        image(&objects),
        "gcr.io/heptio-images/ks-guestbook-demo:0.2"
    );
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    // The prefix replaces the kustomization's own (kustomize-), as `kustomize edit set nameprefix` does.
    assert_eq!(names, ["staging-guestbook-ui", "staging-guestbook-ui"]);
    assert_eq!(
        std::fs::read(tree.path("apps/guestbook/kustomization.yaml")).unwrap(),
        before,
        "the checkout is never written"
    );

    // An image override names the image it replaces: one the manifests do not use changes nothing.
    let k = KustomizeOptions {
        images: vec!["gcr.io/heptio-images/ks-guestbook-demo:0.2".into()],
        ..Default::default()
    };
    assert_eq!(
        image(&render(&tree, "apps/guestbook", &k)),
        "gcr.io/google-samples/gb-frontend:v5"
    );
    let k = KustomizeOptions {
        images: vec!["gcr.io/google-samples/gb-frontend:v6".into()],
        ..Default::default()
    };
    assert_eq!(
        image(&render(&tree, "apps/guestbook", &k)),
        "gcr.io/google-samples/gb-frontend:v6"
    );
}

#[test]
fn suffix_namespace_labels_annotations_and_replicas() {
    let tree = guestbook();
    let k = KustomizeOptions {
        name_suffix: Some("-blue".into()),
        namespace: Some("shop".into()),
        common_labels: BTreeMap::from([("env".into(), "staging".into())]),
        common_annotations: BTreeMap::from([("example.com/owner".into(), "web".into())]),
        replicas: vec![("guestbook-ui".into(), 4)],
        ..Default::default()
    };
    let objects = render(&tree, "apps/guestbook", &k);
    for o in &objects {
        assert_eq!(o["metadata"]["name"], "kustomize-guestbook-ui-blue");
        assert_eq!(o["metadata"]["namespace"], "shop");
        assert_eq!(o["metadata"]["labels"]["env"], "staging");
        assert_eq!(o["metadata"]["annotations"]["example.com/owner"], "web");
    }
    let d = of_kind(&objects, "Deployment");
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["env"], "staging");
    assert_eq!(
        of_kind(&objects, "Service")["spec"]["selector"]["env"],
        "staging"
    );

    let k = KustomizeOptions {
        common_labels: BTreeMap::from([("env".into(), "staging".into())]),
        label_without_selector: true,
        ..Default::default()
    };
    let objects = render(&tree, "apps/guestbook", &k);
    let d = of_kind(&objects, "Deployment");
    assert_eq!(d["metadata"]["labels"]["env"], "staging");
    assert!(d["spec"]["selector"]["matchLabels"].get("env").is_none());
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("env")
            .is_none()
    );
    let k = KustomizeOptions {
        label_include_templates: true,
        ..k
    };
    let objects = render(&tree, "apps/guestbook", &k);
    let d = of_kind(&objects, "Deployment");
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["env"],
        "staging"
    );
    assert!(d["spec"]["selector"]["matchLabels"].get("env").is_none());
}

#[test]
fn patches_inline_and_from_files() {
    let tree = guestbook();
    tree.write(
        "apps/guestbook/patches/port.yaml",
        "- op: replace\n  path: /spec/ports/0/port\n  value: 8080\n",
    );
    let k = KustomizeOptions {
        patches: vec![
            PatchOption {
                patch: Some(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: guestbook-ui\n  annotations:\n    patched: \"yes\"\n"
                        .into(),
                ),
                ..Default::default()
            },
            PatchOption {
                path: Some("patches/port.yaml".into()),
                target: BTreeMap::from([("kind".into(), "Service".into())]),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let objects = render(&tree, "apps/guestbook", &k);
    assert_eq!(
        of_kind(&objects, "Deployment")["metadata"]["annotations"]["patched"],
        "yes"
    );
    assert_eq!(
        of_kind(&objects, "Service")["spec"]["ports"][0]["port"],
        8080
    );

    let escaping = KustomizeOptions {
        patches: vec![PatchOption {
            path: Some("../../../outside.yaml".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = render_err(&tree, "apps/guestbook", &escaping);
    assert!(err.to_string().contains("leaves the repository"), "{err}");
}

#[test]
fn components_are_added_and_missing_ones_refused_unless_ignored() {
    let tree = TempTree::with_fixture("overlay", "");
    tree.write(
        "components/owner/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonAnnotations:\n  example.com/owner: shop\n",
    );
    let k = KustomizeOptions {
        components: vec!["../../components/owner".into()],
        ..Default::default()
    };
    let r = Renderer::default();
    let set = r
        .render_with(&tree, "overlays/prod", &RenderOptions::default(), Some(&k))
        .unwrap();
    for o in &set.objects {
        assert_eq!(
            o.object["metadata"]["annotations"]["example.com/owner"],
            "shop"
        );
        assert_eq!(
            o.object["metadata"]["annotations"]["example.com/team"],
            "storefront"
        );
    }
    let dirs: Vec<_> = set.inputs.iter().map(|(d, _)| d.as_str()).collect();
    assert!(dirs.contains(&"components/owner"), "{dirs:?}");
    // A change to the added component is a new render.
    tree.write(
        "components/owner/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonAnnotations:\n  example.com/owner: web\n",
    );
    let set = r
        .render_with(&tree, "overlays/prod", &RenderOptions::default(), Some(&k))
        .unwrap();
    assert_eq!(
        set.objects[0].object["metadata"]["annotations"]["example.com/owner"],
        "web"
    );

    let missing = KustomizeOptions {
        components: vec!["../../components/none".into()],
        ..Default::default()
    };
    let err = render_err(&tree, "overlays/prod", &missing);
    assert!(err.to_string().contains("ignoreMissingComponents"), "{err}");
    let ignored = KustomizeOptions {
        ignore_missing_components: true,
        ..missing
    };
    assert!(
        r.render_with(
            &tree,
            "overlays/prod",
            &RenderOptions::default(),
            Some(&ignored)
        )
        .is_ok()
    );
    let remote = KustomizeOptions {
        components: vec!["https://example.test/components/x".into()],
        ..Default::default()
    };
    let err = render_err(&tree, "overlays/prod", &remote);
    assert!(err.to_string().contains("remote"), "{err}");
}

#[test]
fn options_on_a_plain_directory_are_refused() {
    let tree = TempTree::with_fixture("overlay", "");
    let k = KustomizeOptions {
        name_prefix: Some("x-".into()),
        ..Default::default()
    };
    let err = render_err(&tree, "unrelated", &k);
    assert!(
        matches!(err, RenderError::NotAKustomization { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("spec.source.kustomize"), "{err}");
}

#[test]
fn a_label_the_kustomization_sets_is_overridden_only_when_forced() {
    let tree = TempTree::with_fixture("kustomize-guestbook", "");
    tree.write(
        "kustomization.yaml",
        "namePrefix: kustomize-\ncommonLabels:\n  env: dev\nresources:\n- guestbook-ui-deployment.yaml\n- guestbook-ui-svc.yaml\n",
    );
    let k = KustomizeOptions {
        common_labels: BTreeMap::from([("env".into(), "prod".into())]),
        ..Default::default()
    };
    let err = render_err(&tree, "", &k);
    assert!(err.to_string().contains("forceCommonLabels"), "{err}");
    let forced = KustomizeOptions {
        force_common_labels: true,
        ..k
    };
    let objects = render(&tree, "", &forced);
    assert_eq!(
        of_kind(&objects, "Service")["metadata"]["labels"]["env"],
        "prod"
    );
}

#[test]
fn the_options_are_part_of_the_cache_key() {
    let tree = guestbook();
    let r = Renderer::default();
    let opts = RenderOptions::default();
    let plain = r.render(&tree, "apps/guestbook", &opts).unwrap();
    let staging = KustomizeOptions {
        name_prefix: Some("staging-".into()),
        ..Default::default()
    };
    let prefixed = r
        .render_with(&tree, "apps/guestbook", &opts, Some(&staging))
        .unwrap();
    assert_eq!(
        r.cache_stats().misses,
        2,
        "other options are another render"
    );
    assert_eq!(plain.objects[0].name, "kustomize-guestbook-ui");
    assert_eq!(prefixed.objects[0].name, "staging-guestbook-ui");
    r.render_with(&tree, "apps/guestbook", &opts, Some(&staging))
        .unwrap();
    r.render(&tree, "apps/guestbook", &opts).unwrap();
    assert_eq!(r.cache_stats().hits, 2, "the same options hit the cache");
}
