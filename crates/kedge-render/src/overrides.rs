//! Argo CD's `spec.source.kustomize` options: applied to a private copy of an application's kustomization, as
//! `kustomize edit` would change it, before the build.
//!
//! The copy holds the directories the build reads (the application directory and every directory its
//! kustomizations reference), so that relative references keep working and the shared checkout is never written.
//! `namePrefix`, `nameSuffix` and `namespace` replace the kustomization's own; `images` and `replicas` replace the
//! entry of the same name or are added; `commonLabels` and `commonAnnotations` are added, and one the
//! kustomization already sets is an error unless forced; `patches` and `components` are appended.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::RenderError;

/// The kustomize options of an application (Argo CD's `spec.source.kustomize`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KustomizeOptions {
    /// Image overrides, as `kustomize edit set image` takes them (`name=newName:tag`, `name:tag`, `name@digest`).
    pub images: Vec<String>,
    /// Replaces the kustomization's `namePrefix`.
    pub name_prefix: Option<String>,
    /// Replaces the kustomization's `nameSuffix`.
    pub name_suffix: Option<String>,
    /// Replaces the kustomization's `namespace`.
    pub namespace: Option<String>,
    /// Labels added to every object.
    pub common_labels: BTreeMap<String, String>,
    /// Override labels the kustomization sets itself (else such a label is an error).
    pub force_common_labels: bool,
    /// Add the labels without touching selectors (kustomize's `labels` with `includeSelectors: false`).
    pub label_without_selector: bool,
    /// With `label_without_selector`, label pod templates too.
    pub label_include_templates: bool,
    /// Annotations added to every object.
    pub common_annotations: BTreeMap<String, String>,
    /// Override annotations the kustomization sets itself (else such an annotation is an error).
    pub force_common_annotations: bool,
    /// Replica counts by object name.
    pub replicas: Vec<(String, i64)>,
    /// Patches appended to the kustomization's `patches`.
    pub patches: Vec<PatchOption>,
    /// Components appended to the kustomization's `components`, relative to the application directory.
    pub components: Vec<String>,
    /// Leave out components that do not exist.
    pub ignore_missing_components: bool,
}

/// One patch of [`KustomizeOptions::patches`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PatchOption {
    /// The patch itself.
    pub patch: Option<String>,
    /// A file holding it, relative to the application directory.
    pub path: Option<String>,
    /// The target selector (`group`, `version`, `kind`, `name`, `namespace`, `labelSelector`,
    /// `annotationSelector`).
    pub target: BTreeMap<String, String>,
    /// kustomize's patch options.
    pub options: BTreeMap<String, bool>,
}

fn invalid(app: &str, message: String) -> RenderError {
    RenderError::KustomizeOption {
        path: app.to_owned(),
        message,
    }
}

/// One `images` entry of a kustomization for an override string, as `kustomize edit set image` reads it.
pub fn image_entry(spec: &str) -> Option<Value> {
    let spec = spec.trim();
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) => (Some(n.trim()), r.trim()),
        None => (None, spec),
    };
    let (image, digest) = match rest.split_once('@') {
        Some((i, d)) => (i, Some(d)),
        None => (rest, None),
    };
    // A ':' after the last '/' separates the tag (a registry port comes before a '/').
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    let (new_name, tag) = match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    };
    let name = name.unwrap_or(new_name);
    if name.is_empty() || new_name.is_empty() || tag == Some("") || digest == Some("") {
        return None;
    }
    let mut entry = json!({ "name": name });
    if new_name != name {
        entry["newName"] = json!(new_name);
    }
    if let Some(t) = tag {
        entry["newTag"] = json!(t);
    }
    if let Some(d) = digest {
        entry["digest"] = json!(d);
    }
    Some(entry)
}

/// Replaces the entry of `list` whose `name` equals the new entry's, or appends it.
fn upsert_named(doc: &mut Map<String, Value>, field: &str, entry: Value) {
    let list = doc.entry(field).or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut() {
        match items
            .iter_mut()
            .find(|i| i.get("name") == entry.get("name"))
        {
            Some(existing) => *existing = entry,
            None => items.push(entry),
        }
    }
}

fn add_pairs(
    app: &str,
    doc: &mut Map<String, Value>,
    field: &str,
    pairs: &BTreeMap<String, String>,
    force: bool,
    force_field: &str,
) -> Result<(), RenderError> {
    let map = doc.entry(field).or_insert_with(|| json!({}));
    if !map.is_object() {
        *map = json!({});
    }
    if let Some(map) = map.as_object_mut() {
        for (k, v) in pairs {
            if map.contains_key(k) && !force {
                return Err(invalid(
                    app,
                    format!(
                        "{field} {k:?} is already set by the kustomization; set {force_field} to override it"
                    ),
                ));
            }
            map.insert(k.clone(), json!(v));
        }
    }
    Ok(())
}

/// Changes a parsed kustomization (`doc`, of the application at `app`) as the options ask. `components` are the
/// components to add (those that exist, when missing ones are ignored).
pub(crate) fn edit(
    app: &str,
    doc: &mut Value,
    options: &KustomizeOptions,
    components: &[String],
) -> Result<(), RenderError> {
    if doc.is_null() {
        *doc = json!({});
    }
    let Some(doc) = doc.as_object_mut() else {
        return Err(invalid(app, "the kustomization is not a mapping".into()));
    };
    let non_empty = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(p) = non_empty(&options.name_prefix) {
        doc.insert("namePrefix".into(), json!(p));
    }
    if let Some(s) = non_empty(&options.name_suffix) {
        doc.insert("nameSuffix".into(), json!(s));
    }
    if let Some(n) = non_empty(&options.namespace) {
        doc.insert("namespace".into(), json!(n));
    }
    for image in &options.images {
        let entry = image_entry(image).ok_or_else(|| {
            invalid(
                app,
                format!(
                    "image {image:?} is not name=newName:tag, name:tag, name@digest or name=newName"
                ),
            )
        })?;
        upsert_named(doc, "images", entry);
    }
    for (name, count) in &options.replicas {
        upsert_named(doc, "replicas", json!({ "name": name, "count": count }));
    }
    if !options.common_labels.is_empty() {
        if options.label_without_selector {
            let mut entry = json!({ "pairs": options.common_labels, "includeSelectors": false });
            if options.label_include_templates {
                entry["includeTemplates"] = json!(true);
            }
            let labels = doc.entry("labels").or_insert_with(|| json!([]));
            if !labels.is_array() {
                *labels = json!([]);
            }
            if let Some(l) = labels.as_array_mut() {
                l.push(entry);
            }
        } else {
            add_pairs(
                app,
                doc,
                "commonLabels",
                &options.common_labels,
                options.force_common_labels,
                "forceCommonLabels",
            )?;
        }
    }
    add_pairs(
        app,
        doc,
        "commonAnnotations",
        &options.common_annotations,
        options.force_common_annotations,
        "forceCommonAnnotations",
    )?;
    if doc
        .get("commonAnnotations")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        doc.remove("commonAnnotations");
    }
    append(doc, "components", components.iter().map(|c| json!(c)));
    let patches = options.patches.iter().map(|p| {
        let mut entry = Map::new();
        if let Some(patch) = &p.patch {
            entry.insert("patch".into(), json!(patch));
        }
        if let Some(path) = &p.path {
            entry.insert("path".into(), json!(path));
        }
        if !p.target.is_empty() {
            entry.insert("target".into(), json!(p.target));
        }
        if !p.options.is_empty() {
            entry.insert("options".into(), json!(p.options));
        }
        Value::Object(entry)
    });
    append(doc, "patches", patches);
    Ok(())
}

fn append(doc: &mut Map<String, Value>, field: &str, items: impl Iterator<Item = Value>) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        return;
    }
    let list = doc.entry(field).or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(l) = list.as_array_mut() {
        l.extend(items);
    }
}

/// Checks the patches before anything runs: each has a patch or a path (not both), and a path stays inside the
/// repository.
pub(crate) fn check_patches(app: &str, options: &KustomizeOptions) -> Result<(), RenderError> {
    for (i, p) in options.patches.iter().enumerate() {
        match (&p.patch, &p.path) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid(
                    app,
                    format!("patches[{i}] needs exactly one of patch and path"),
                ));
            }
            (None, Some(path)) => {
                let joined = if app.is_empty() {
                    path.clone()
                } else {
                    format!("{app}/{path}")
                };
                if path.starts_with('/') || kedge_source::tree::clean_relative(&joined).is_err() {
                    return Err(invalid(
                        app,
                        format!("patches[{i}].path {path:?} leaves the repository"),
                    ));
                }
            }
            (Some(_), None) => {}
        }
    }
    Ok(())
}

/// Copies the directories `dirs` (relative to `root`, `""` for all of it) into `dest` at the same relative places.
/// Symbolic links are copied as links; `.git` is left out.
pub(crate) fn copy_dirs(root: &Path, dirs: &[String], dest: &Path) -> std::io::Result<()> {
    for d in dirs {
        let from = if d.is_empty() {
            root.to_path_buf()
        } else {
            root.join(d)
        };
        let to = if d.is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(d)
        };
        copy_tree(&from, &to)?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if target.symlink_metadata().is_ok() {
            continue;
        }
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_overrides_read_as_kustomize_edit_set_image() {
        assert_eq!(
            image_entry("gcr.io/heptio-images/ks-guestbook-demo:0.2"),
            Some(json!({"name": "gcr.io/heptio-images/ks-guestbook-demo", "newTag": "0.2"}))
        );
        assert_eq!(
            image_entry("nginx=registry.test:5000/web/nginx:1.25"),
            Some(
                json!({"name": "nginx", "newName": "registry.test:5000/web/nginx", "newTag": "1.25"})
            )
        );
        assert_eq!(
            image_entry("registry.test:5000/web"),
            Some(json!({"name": "registry.test:5000/web"}))
        );
        assert_eq!(
            image_entry("app@sha256:abc"),
            Some(json!({"name": "app", "digest": "sha256:abc"}))
        );
        assert_eq!(
            image_entry("app=other"),
            Some(json!({"name": "app", "newName": "other"}))
        );
        assert_eq!(image_entry("app:"), None);
        assert_eq!(image_entry("=x:1"), None);
    }

    #[test]
    fn edits_replace_or_add_as_kustomize_edit_does() {
        let mut doc = json!({
            "namePrefix": "kustomize-",
            "images": [{"name": "web", "newTag": "1"}],
            "commonLabels": {"team": "a"},
            "resources": ["a.yaml"],
        });
        let options = KustomizeOptions {
            name_prefix: Some("staging-".into()),
            name_suffix: Some("-x".into()),
            namespace: Some("ns".into()),
            images: vec!["web:2".into(), "db:5".into()],
            replicas: vec![("web".into(), 3)],
            common_labels: BTreeMap::from([("env".into(), "staging".into())]),
            common_annotations: BTreeMap::from([("note".into(), "n".into())]),
            ..Default::default()
        };
        edit("app", &mut doc, &options, &["../comp".into()]).unwrap();
        assert_eq!(doc["namePrefix"], "staging-");
        assert_eq!(doc["nameSuffix"], "-x");
        assert_eq!(doc["namespace"], "ns");
        assert_eq!(
            doc["images"],
            json!([{"name": "web", "newTag": "2"}, {"name": "db", "newTag": "5"}])
        );
        assert_eq!(doc["replicas"], json!([{"name": "web", "count": 3}]));
        assert_eq!(doc["commonLabels"], json!({"team": "a", "env": "staging"}));
        assert_eq!(doc["commonAnnotations"], json!({"note": "n"}));
        assert_eq!(doc["components"], json!(["../comp"]));
        assert_eq!(doc["resources"], json!(["a.yaml"]));
    }

    #[test]
    fn a_label_the_kustomization_sets_needs_force() {
        let base = json!({"commonLabels": {"team": "a"}, "commonAnnotations": {"owner": "x"}});
        let mut options = KustomizeOptions {
            common_labels: BTreeMap::from([("team".into(), "b".into())]),
            ..Default::default()
        };
        let err = edit("app", &mut base.clone(), &options, &[]).unwrap_err();
        assert!(err.to_string().contains("forceCommonLabels"), "{err}");
        options.force_common_labels = true;
        let mut doc = base.clone();
        edit("app", &mut doc, &options, &[]).unwrap();
        assert_eq!(doc["commonLabels"]["team"], "b");

        let mut options = KustomizeOptions {
            common_annotations: BTreeMap::from([("owner".into(), "y".into())]),
            ..Default::default()
        };
        let err = edit("app", &mut base.clone(), &options, &[]).unwrap_err();
        assert!(err.to_string().contains("forceCommonAnnotations"), "{err}");
        options.force_common_annotations = true;
        let mut doc = base;
        edit("app", &mut doc, &options, &[]).unwrap();
        assert_eq!(doc["commonAnnotations"]["owner"], "y");
    }

    #[test]
    fn labels_without_selector_go_to_labels() {
        let mut doc = json!({});
        let options = KustomizeOptions {
            common_labels: BTreeMap::from([("env".into(), "s".into())]),
            label_without_selector: true,
            label_include_templates: true,
            ..Default::default()
        };
        edit("", &mut doc, &options, &[]).unwrap();
        assert_eq!(
            doc["labels"],
            json!([{"pairs": {"env": "s"}, "includeSelectors": false, "includeTemplates": true}])
        );
        assert!(doc.get("commonLabels").is_none());
    }

    #[test]
    fn patches_need_one_of_patch_and_path_inside_the_repository() {
        let with = |patch: Option<&str>, path: Option<&str>| KustomizeOptions {
            patches: vec![PatchOption {
                patch: patch.map(str::to_owned),
                path: path.map(str::to_owned),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(check_patches("app", &with(Some("x"), None)).is_ok());
        assert!(check_patches("app", &with(None, Some("p.yaml"))).is_ok());
        assert!(check_patches("app", &with(None, None)).is_err());
        assert!(check_patches("app", &with(Some("x"), Some("p.yaml"))).is_err());
        assert!(check_patches("app", &with(None, Some("../../p.yaml"))).is_err());
        assert!(check_patches("app", &with(None, Some("/etc/p.yaml"))).is_err());
    }
}
