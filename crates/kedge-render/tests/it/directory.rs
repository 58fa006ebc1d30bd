//! Directory sources: parsing, errors, include/exclude, recursion and the cache.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::TempTree;
use kedge_render::{CacheConfig, RenderConfig, RenderError, RenderOptions, Renderer, SourceKind};

fn names(set: &kedge_render::RenderedSet) -> Vec<String> {
    set.objects
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect()
}

fn no_cache() -> Renderer {
    Renderer::new(RenderConfig {
        cache: CacheConfig {
            max_entries: 0,
            max_bytes: 0,
        },
        ..RenderConfig::default()
    })
}

#[test]
fn guestbook_renders_two_objects_with_sources() {
    let tree = TempTree::with_fixture("guestbook", "apps/guestbook");
    let set = Renderer::default()
        .render(&tree, "apps/guestbook", &RenderOptions::default())
        .unwrap();
    assert_eq!(set.kind, SourceKind::Directory);
    assert_eq!(
        names(&set),
        ["Deployment/guestbook-ui", "Service/guestbook-ui"]
    );
    let d = &set.objects[0];
    assert_eq!((d.group.as_str(), d.version.as_str()), ("apps", "v1"));
    assert_eq!(d.source.file, "apps/guestbook/guestbook-ui-deployment.yaml");
    assert_eq!(d.source.document, 0);
    assert_eq!(d.object["spec"]["replicas"], 1);
    let s = &set.objects[1];
    assert_eq!((s.group.as_str(), s.version.as_str()), ("", "v1"));
    assert_eq!(s.api_version(), "v1");
    assert_eq!(set.inputs.len(), 1);
    assert_eq!(set.inputs[0].0, "apps/guestbook");
}

#[test]
fn sync_waves_hooks_with_generate_name_are_accepted() {
    let tree = TempTree::with_fixture("sync-waves", "");
    let set = no_cache()
        .render(&tree, "", &RenderOptions::default())
        .unwrap();
    assert!(set.len() >= 5, "{:?}", names(&set));
    let hooks: Vec<_> = set.objects.iter().filter(|o| o.name.is_empty()).collect();
    assert!(!hooks.is_empty());
    assert!(hooks.iter().all(|h| h.generate_name().is_some()));
}

#[test]
fn multi_document_list_flattening_octal_and_ignored_files() {
    let tree = TempTree::new();
    tree.write(
        "app/all.yaml",
        "---\n# leading empty document\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ns\n---\n\
         ---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s1}\n\
         - apiVersion: v1\n  kind: Secret\n  metadata: {name: s2}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      volumes:\n      \
         - name: v\n        secret: {secretName: s1, defaultMode: 0644}\n",
    );
    tree.write("app/README.md", "not: [a manifest\n");
    tree.write("app/notes.txt", "kind: nothing\n");
    tree.write("app/values.YAML", "not: [parsed\n");
    tree.write(
        "app/z.json",
        r#"{"apiVersion": "v1", "kind": "ServiceList", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"}}]}"#,
    );
    let set = no_cache()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap();
    assert_eq!(
        names(&set),
        [
            "ConfigMap/a",
            "Secret/s1",
            "Secret/s2",
            "Deployment/d",
            "Service/j"
        ]
    );
    assert_eq!(set.objects[0].namespace, "ns");
    assert_eq!(set.objects[0].source.document, 0);
    assert_eq!(set.objects[0].source.line, 4);
    assert_eq!(set.objects[2].source.item, Some(1));
    assert_eq!(set.objects[2].source.document, 1);
    assert_eq!(
        set.objects[3].object["spec"]["template"]["spec"]["volumes"][0]["secret"]["defaultMode"],
        420
    );
    assert_eq!(set.objects[4].source.file, "app/z.json");
}

#[test]
fn all_errors_are_reported_at_once() {
    let tree = TempTree::new();
    tree.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n---\nkind: Secret\nmetadata: {name: x}\n",
    );
    tree.write("app/b.yaml", "a: 1\na: 2\n");
    tree.write("app/c.yaml", "just a string\n");
    tree.write(
        "app/d.yaml",
        "apiVersion: a/b/c\nkind: X\nmetadata: {name: why}\n",
    );
    tree.write("app/e.json", "{\"apiVersion\": ");
    let err = no_cache()
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    let all = err.errors();
    assert_eq!(all.len(), 6, "{err}");
    assert!(matches!(
        all[0],
        RenderError::MissingFields { source_ref, fields } if source_ref.file == "app/a.yaml" && source_ref.document == 0 && fields == &vec!["metadata.name"]
    ));
    assert!(matches!(
        all[1],
        RenderError::MissingFields { source_ref, fields } if source_ref.document == 1 && source_ref.line == 5 && fields == &vec!["apiVersion"]
    ));
    assert!(matches!(all[2], RenderError::Yaml { file, line: 2, .. } if file == "app/b.yaml"));
    assert!(matches!(
        all[3],
        RenderError::NotAnObject {
            found: "string",
            ..
        }
    ));
    assert!(
        matches!(all[4], RenderError::InvalidApiVersion { .. }),
        "{err}"
    );
    assert!(matches!(all[5], RenderError::Json { file, .. } if file == "app/e.json"));
    let text = err.to_string();
    assert!(text.contains("6 errors"), "{text}");
    eprintln!("{text}");
    assert!(
        text.contains("app/a.yaml document 1 (line 5): missing apiVersion"),
        "{text}"
    );
}

#[test]
fn duplicate_identity_names_both_files() {
    let tree = TempTree::new();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n  namespace: x\n";
    tree.write("app/one.yaml", cm);
    tree.write(
        "app/sub/two.yaml",
        &cm.replace("apiVersion: v1", "apiVersion: v1\ndata: {a: b}"),
    );
    // Without recursion the second file is not read.
    assert!(
        no_cache()
            .render(&tree, "app", &RenderOptions::default())
            .is_ok()
    );
    let opts = RenderOptions {
        recurse: true,
        ..Default::default()
    };
    let err = no_cache().render(&tree, "app", &opts).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RenderError::DuplicateObject { .. }),
        "{err:?}"
    );
    assert!(text.contains("app/one.yaml"), "{text}");
    assert!(text.contains("app/sub/two.yaml"), "{text}");
    assert!(text.contains("ConfigMap x/same"), "{text}");
    // Same name in another namespace or another kind is a different object.
    tree.write(
        "app/sub/two.yaml",
        &cm.replace("namespace: x", "namespace: y"),
    );
    assert_eq!(no_cache().render(&tree, "app", &opts).unwrap().len(), 2);
}

#[test]
fn recurse_include_exclude_follow_argo_semantics() {
    let tree = TempTree::new();
    let obj = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    tree.write("app/a.yaml", &obj("a"));
    tree.write(
        "app/config.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"}}"#,
    );
    tree.write("app/env-usw2/b.yaml", &obj("b"));
    tree.write("app/env-use1/c.yml", &obj("c"));
    tree.write("app/env-use1/deep/d.yaml", &obj("d"));
    let r = no_cache();
    let render = |recurse: bool, include: Option<&str>, exclude: Option<&str>| {
        let opts = RenderOptions {
            recurse,
            include: include.map(str::to_owned),
            exclude: exclude.map(str::to_owned),
            ..Default::default()
        };
        let set = r.render(&tree, "app", &opts).unwrap();
        set.objects
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(render(false, None, None), ["a", "cfg"]);
    assert_eq!(render(true, None, None), ["a", "cfg", "c", "d", "b"]);
    assert_eq!(render(true, Some("*.yaml"), None), ["a", "d", "b"]);
    assert_eq!(
        render(true, None, Some("{config.json,env-usw2/*}")),
        ["a", "c", "d"]
    );
    assert_eq!(
        render(true, None, Some("config.json,env-usw2/*")),
        ["a", "c", "d"]
    );
    assert_eq!(render(true, Some("env-use1/*"), Some("*/deep/*")), ["c"]);
    let err = r
        .render(
            &tree,
            "app",
            &RenderOptions {
                include: Some("[".into()),
                exclude: Some("{".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.errors().len(), 2, "{err}");
}

#[test]
fn missing_path_and_escapes_are_errors() {
    let tree = TempTree::new();
    tree.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    let r = no_cache();
    let err = r
        .render(&tree, "nope", &RenderOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RenderError::Tree { ref path, .. } if path == "nope"),
        "{err:?}"
    );
    let err = r
        .render(&tree, "../x", &RenderOptions::default())
        .unwrap_err();
    assert!(matches!(err, RenderError::Tree { .. }), "{err:?}");
    assert_eq!(
        r.render(&tree, "./app/", &RenderOptions::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn cache_hits_when_inputs_are_unchanged_and_misses_when_they_change() {
    let tree = TempTree::new();
    tree.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    tree.write(
        "other/b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    );
    let r = Renderer::default();
    let opts = RenderOptions::default();
    let first = r.render(&tree, "app", &opts).unwrap();
    assert_eq!(r.cache_stats().misses, 1);
    // A change elsewhere in the repository does not touch the app's inputs.
    tree.write(
        "other/b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b2}\n",
    );
    let second = r.render(&tree, "app", &opts).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(r.cache_stats().hits, 1);
    // Other options are another key.
    let recurse = RenderOptions {
        recurse: true,
        ..Default::default()
    };
    r.render(&tree, "app", &recurse).unwrap();
    assert_eq!(r.cache_stats().misses, 2);
    // A change of the app's content is a miss and the new content is rendered.
    tree.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a2}\n",
    );
    let third = r.render(&tree, "app", &opts).unwrap();
    assert_eq!(third.objects[0].name, "a2");
    assert_eq!(r.cache_stats().misses, 3);
    // Failures are not cached.
    tree.write("app/a.yaml", "apiVersion: v1\nkind: ConfigMap\n");
    assert!(r.render(&tree, "app", &opts).is_err());
    assert!(r.render(&tree, "app", &opts).is_err());
    assert_eq!(r.cache_stats().misses, 5);
}
