//! Argo CD `ApplicationSet` to Kedge `ApplicationSet` (`kedge.dev/v1alpha1`): the same spec, field by field.
//!
//! The template (and a generator's) is an Application's metadata and spec, converted as an Application is
//! (finalizers, annotations, sources, sync policy). Generators are checked key by key. What Kedge cannot run skips
//! the whole set, as a set Kedge refuses makes nothing and a set with a generator left out would make (and delete)
//! other Applications: generators Kedge does not implement (`scmProvider`, `pullRequest`, `clusterDecisionResource`,
//! `plugin`), `clusters.flatList`, Go template actions and functions Kedge's templates lack, a template rendered by a
//! config management plugin. What Kedge runs without (`ignoreApplicationDifferences`, a strategy field it does not
//! know, ...) is reported as not converted and left out. The result is read back through kedge-appset's own reading
//! of a set, so that nothing it would refuse is written.

use serde_json::{Map, Value, json};

use super::application::{self, AppConversion, entries, templated};
use super::located::{Seg, index, key};
use super::{Cx, SERVER_SET_METADATA, WRITTEN_BY_APPLIERS};

/// Argo CD's annotation asking its ApplicationSet controller to generate a set again now.
const ARGOCD_SET_REFRESH: &str = "argocd.argoproj.io/application-set-refresh";
/// Argo CD's generators that Kedge does not implement.
const REFUSED_GENERATORS: [&str; 4] = [
    "scmProvider",
    "pullRequest",
    "clusterDecisionResource",
    "plugin",
];

/// Converts the ApplicationSet of `cx`; `None` when it cannot be converted (reported).
pub(crate) fn convert(cx: &mut Cx<'_>) -> Option<Value> {
    let value = cx.value;
    let what = cx.describe();
    let mut set = SetConversion {
        skip: None,
        go_template: value["spec"]["goTemplate"].as_bool() == Some(true),
        namespace: value["metadata"]["namespace"].as_str().map(str::to_owned),
    };
    let (mut meta, mut spec) = (Map::new(), Map::new());
    for (k, v) in entries(value) {
        let p = key(&[], k);
        match k {
            "apiVersion" | "kind" => {}
            "metadata" => metadata(cx, &p, v, &mut meta),
            "spec" => set.spec(cx, &p, v, &mut spec),
            "status" => cx.note(&p, "observed state; Kedge writes its own"),
            _ => cx.lost(&p, "not a field of Argo CD's ApplicationSet"),
        }
    }
    if value.get("spec").is_none() {
        set.skip = Some("it has no spec".to_owned());
    }
    if let Some(reason) = set.skip {
        cx.skip_document(&what, &reason);
        return None;
    }
    let out = json!({ "apiVersion": "kedge.dev/v1alpha1", "kind": "ApplicationSet", "metadata": meta,
        "spec": spec });
    // What Kedge's reading of a set refuses is said here, never written.
    if let Err(e) = kedge_appset::parse_set(&out.to_string()) {
        cx.skip_document(
            &what,
            &format!("Kedge's ApplicationSet refuses what it converts to: {e}"),
        );
        return None;
    }
    Some(out)
}

/// The set's own metadata.
fn metadata(cx: &mut Cx<'_>, path: &[Seg], meta: &Value, out: &mut Map<String, Value>) {
    for (k, v) in entries(meta) {
        let p = key(path, k);
        match k {
            "name" | "generateName" | "labels" => {
                out.insert(k.to_owned(), v.clone());
            }
            "namespace" => {
                if let Some(ns) = cx.namespace(&p, v.as_str()) {
                    out.insert(k.to_owned(), Value::String(ns));
                }
            }
            "annotations" => {
                let mut kept = Map::new();
                for (name, value) in entries(v) {
                    set_annotation(cx, &key(&p, name), name, value, &mut kept);
                }
                if !kept.is_empty() {
                    out.insert(k.to_owned(), Value::Object(kept));
                }
            }
            "finalizers" => {
                let mut kept = Vec::new();
                for (i, f) in v.as_array().into_iter().flatten().enumerate() {
                    if f.as_str().is_some_and(|f| f.contains("argoproj.io")) {
                        cx.lost(
                            &index(&p, i),
                            "an Argo CD finalizer Kedge has no equivalent of",
                        );
                    } else {
                        kept.push(f.clone());
                    }
                }
                if !kept.is_empty() {
                    out.insert(k.to_owned(), Value::Array(kept));
                }
            }
            k if SERVER_SET_METADATA.contains(&k) => cx.note(&p, "set by the API server; left out"),
            "ownerReferences" => cx.lost(&p, "owners are not carried over"),
            _ => cx.lost(&p, "not a field of an object's metadata"),
        }
    }
    cx.default_namespace(out);
}

/// One annotation of the set itself.
fn set_annotation(
    cx: &mut Cx<'_>,
    path: &[Seg],
    name: &str,
    value: &Value,
    kept: &mut Map<String, Value>,
) {
    match name {
        ARGOCD_SET_REFRESH => cx.note(
            path,
            "left out: Kedge generates a set again when it changes, when a registered Cluster changes and every \
             requeueAfterSeconds of its Git generators",
        ),
        n if WRITTEN_BY_APPLIERS.contains(&n) => {
            cx.note(path, "written by the tool that applied it; left out")
        }
        n if application::RESOURCE_ANNOTATIONS.contains(&n) => {
            kept.insert(name.to_owned(), value.clone());
            cx.note(
                path,
                "kept: read by the application that applies this set, as Argo CD reads it",
            );
        }
        n if n.starts_with("notifications.argoproj.io/") => {
            cx.lost(path, "notifications are not supported yet (issue 19)")
        }
        n if n.starts_with("argocd.argoproj.io/") || n.ends_with(".argocd.argoproj.io") => {
            cx.lost(path, "an Argo CD annotation Kedge has no equivalent of")
        }
        _ => {
            kept.insert(name.to_owned(), value.clone());
        }
    }
}

/// What one set's conversion carries between its parts.
struct SetConversion {
    /// Why the whole set cannot be converted, if it cannot.
    skip: Option<String>,
    /// `spec.goTemplate`.
    go_template: bool,
    /// The set's namespace in the input.
    namespace: Option<String>,
}

impl SetConversion {
    /// Remembers the first reason the set cannot be converted.
    fn skip(&mut self, reason: impl Into<String>) {
        self.skip.get_or_insert_with(|| reason.into());
    }

    fn spec(&mut self, cx: &mut Cx<'_>, path: &[Seg], spec: &Value, out: &mut Map<String, Value>) {
        for (k, v) in entries(spec) {
            let p = key(path, k);
            match k {
                "goTemplate" => {
                    out.insert(k.to_owned(), v.clone());
                }
                "syncPolicy" => {
                    let known = ["applicationsSync", "preserveResourcesOnDeletion"];
                    known_fields(cx, &p, v, &known, "an ApplicationSet's sync policy");
                    out.insert(k.to_owned(), keep(v, &known));
                }
                "goTemplateOptions" => {
                    let mut kept = Vec::new();
                    for (i, o) in v.as_array().into_iter().flatten().enumerate() {
                        let option = o.as_str().unwrap_or_default().replace(' ', "");
                        if matches!(
                            option.as_str(),
                            "missingkey=error"
                                | "missingkey=default"
                                | "missingkey=zero"
                                | "missingkey=invalid"
                        ) {
                            kept.push(o.clone());
                        } else {
                            cx.lost(
                                &index(&p, i),
                                "Kedge's Go templates take only missingkey=error, missingkey=default, \
                                 missingkey=zero and missingkey=invalid",
                            );
                        }
                    }
                    out.insert(k.to_owned(), Value::Array(kept));
                }
                "generators" => {
                    let generators = self.generators(cx, &p, v, 1);
                    out.insert(k.to_owned(), generators);
                }
                "template" => {
                    let t = self.template(cx, &p, v);
                    out.insert(k.to_owned(), t);
                }
                "templatePatch" if self.go_template => {
                    cx.note(
                        &p,
                        "kept: Kedge merges what it renders over each Application as a JSON merge patch (objects \
                         merged, lists replaced), where Argo CD uses a strategic merge patch",
                    );
                    out.insert(k.to_owned(), v.clone());
                }
                "templatePatch" => cx.lost(
                    &p,
                    "a template patch needs goTemplate: true (as in Argo CD); left out",
                ),
                "strategy" => {
                    let strategy = self.strategy(cx, &p, v);
                    out.insert(k.to_owned(), strategy);
                }
                "preservedFields" => self.preserved_fields(cx, &p, v, spec),
                "ignoreApplicationDifferences" => cx.lost(
                    &p,
                    "Kedge's set writes every field its template sets and puts back what others change there \
                     (not supported yet); left out",
                ),
                "applyNestedSelectors" => {
                    if v.as_bool() == Some(false) && nested_selectors(spec) {
                        cx.lost(
                            &p,
                            "Kedge, as Argo CD from 3.0 on, applies the selectors of generators inside a matrix or \
                             merge, which Argo CD before 3.0 ignored with false: fewer Applications may be \
                             generated; left out",
                        );
                    } else {
                        cx.note(
                            &p,
                            "left out: Kedge always applies the selectors of generators inside a matrix or merge",
                        );
                    }
                }
                _ => cx.lost(&p, "not a field of Argo CD's ApplicationSet spec"),
            }
        }
        if self.go_template {
            self.check_go_templates(cx, path, spec);
        }
    }

    fn strategy(&mut self, cx: &mut Cx<'_>, path: &[Seg], v: &Value) -> Value {
        let mut out = Map::new();
        for (k, f) in entries(v) {
            let p = key(path, k);
            match k {
                "type" => match f.as_str() {
                    Some("AllAtOnce" | "RollingSync" | "") => {
                        out.insert(k.to_owned(), f.clone());
                    }
                    _ => cx.lost(&p, format!("Kedge knows AllAtOnce and RollingSync, not {f}; left out")),
                },
                "rollingSync" => {
                    let mut steps = Vec::new();
                    for (sk, sv) in entries(f) {
                        let sp = key(&p, sk);
                        if sk != "steps" {
                            cx.lost(&sp, "not a field of Argo CD's rolling sync; left out");
                            continue;
                        }
                        for (i, step) in sv.as_array().into_iter().flatten().enumerate() {
                            known_fields(
                                cx,
                                &index(&sp, i),
                                step,
                                &["matchExpressions", "maxUpdate"],
                                "a rolling sync step",
                            );
                            steps.push(keep(step, &["matchExpressions", "maxUpdate"]));
                        }
                    }
                    out.insert(k.to_owned(), json!({ "steps": steps }));
                }
                "deletionOrder" => cx.lost(
                    &p,
                    "Kedge deletes a set's Applications in name order, whatever the steps (not supported yet); \
                     left out",
                ),
                _ => cx.lost(&p, "not a field of Argo CD's ApplicationSet strategy; left out"),
            }
        }
        Value::Object(out)
    }

    /// `preservedFields`: Kedge writes the set's Applications with server-side apply, so what others add to their
    /// labels and annotations stays; only keys the template itself sets are Kedge's to write back.
    fn preserved_fields(&mut self, cx: &mut Cx<'_>, path: &[Seg], v: &Value, spec: &Value) {
        for (k, keys) in entries(v) {
            let p = key(path, k);
            if !matches!(k, "annotations" | "labels") {
                cx.lost(&p, "not a field of Argo CD's preservedFields; left out");
                continue;
            }
            let set_by_template: Vec<&str> = keys
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|name| spec["template"]["metadata"][k].get(*name).is_some())
                .collect();
            if set_by_template.is_empty() {
                cx.note(
                    &p,
                    format!(
                        "left out: Kedge writes only the {k} the template sets (server-side apply), so those \
                         others add to the Applications stay"
                    ),
                );
            } else {
                cx.lost(
                    &p,
                    format!(
                        "the template sets {}, which Kedge writes back when someone changes it (not supported \
                         yet); left out",
                        set_by_template.join(", ")
                    ),
                );
            }
        }
    }

    fn generators(&mut self, cx: &mut Cx<'_>, path: &[Seg], v: &Value, depth: usize) -> Value {
        let list: Vec<Value> = v
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, g)| self.generator(cx, &index(path, i), g, depth))
            .collect();
        Value::Array(list)
    }

    /// One generator (`depth` 1 at the top of `spec.generators`, 2 inside a matrix or merge, ...).
    fn generator(&mut self, cx: &mut Cx<'_>, path: &[Seg], g: &Value, depth: usize) -> Value {
        let mut out = Map::new();
        for (k, v) in entries(g) {
            let p = key(path, k);
            let known: &[&str] = match k {
                "list" => &["elements", "elementsYaml"],
                "clusters" => &["selector", "values"],
                "git" => &[
                    "repoURL",
                    "revision",
                    "pathParamPrefix",
                    "values",
                    "requeueAfterSeconds",
                ],
                "matrix" => &[],
                "merge" => &["mergeKeys"],
                "selector" => {
                    out.insert(k.to_owned(), v.clone());
                    continue;
                }
                k if REFUSED_GENERATORS.contains(&k) => {
                    cx.lost(
                        &p,
                        format!("the {k} generator is not supported by Kedge yet"),
                    );
                    self.skip(format!(
                        "its generators include {k}, which Kedge does not run"
                    ));
                    continue;
                }
                _ => {
                    cx.lost(&p, "not a kind of Argo CD generator; left out");
                    continue;
                }
            };
            let mut kind = Map::new();
            for (f, fv) in entries(v) {
                let fp = key(&p, f);
                match f {
                    f if known.contains(&f) => {
                        kind.insert(f.to_owned(), fv.clone());
                    }
                    "directories" | "files" if k == "git" => {
                        let mut globs = Vec::new();
                        for (i, glob) in fv.as_array().into_iter().flatten().enumerate() {
                            known_fields(
                                cx,
                                &index(&fp, i),
                                glob,
                                &["path", "exclude"],
                                "a Git generator's path",
                            );
                            globs.push(keep(glob, &["path", "exclude"]));
                        }
                        kind.insert(f.to_owned(), Value::Array(globs));
                    }
                    "generators" if matches!(k, "matrix" | "merge") => {
                        let nested = self.generators(cx, &fp, fv, depth + 1);
                        kind.insert(f.to_owned(), nested);
                    }
                    "template" if depth > 1 => cx.note(
                        &fp,
                        "left out: Argo CD does not use the template of a generator inside a matrix or merge",
                    ),
                    "template" => {
                        let t = self.template(cx, &fp, fv);
                        kind.insert(f.to_owned(), t);
                    }
                    "flatList" if k == "clusters" && fv.as_bool() != Some(true) => {
                        cx.note(&fp, "false: left out")
                    }
                    "flatList" if k == "clusters" => {
                        cx.lost(
                            &fp,
                            "Kedge gives one parameter set per cluster, not all clusters in one (not supported yet)",
                        );
                        self.skip("its clusters generator gives all clusters as one list (flatList), which Kedge does not");
                    }
                    _ => cx.lost(&fp, format!("not a field of Argo CD's {k} generator; left out")),
                }
            }
            out.insert(k.to_owned(), Value::Object(kind));
        }
        Value::Object(out)
    }

    /// A template (the set's, or a generator's that overrides it): an Application's metadata and spec, converted
    /// as an Application is.
    fn template(&mut self, cx: &mut Cx<'_>, at: &[Seg], tmpl: &Value) -> Value {
        let mut root = cx.root.clone();
        root.extend_from_slice(at);
        // The template read as an Application document: the diagnostics name its fields under `at`.
        let mut sub = Cx {
            doc: cx.doc,
            value: tmpl,
            root,
            options: cx.options,
            diagnostics: &mut *cx.diagnostics,
        };
        let mut conv = AppConversion::new(true);
        let (mut meta, mut spec) = (Map::new(), Map::new());
        let mut suspend = false;
        for (k, v) in entries(tmpl) {
            let p = key(&[], k);
            match k {
                "metadata" => self.template_metadata(&mut sub, &p, v, &mut meta, &mut suspend),
                "spec" => conv.spec(&mut sub, &p, v, &mut spec),
                _ => sub.lost(&p, "not a field of Argo CD's ApplicationSet template"),
            }
        }
        if let Some(reason) = conv.skip.take() {
            self.skip(format!(
                "its template cannot be rendered by Kedge: {reason}"
            ));
        }
        if suspend {
            spec.insert("suspend".to_owned(), Value::Bool(true));
        }
        let mut out = json!({ "apiVersion": "kedge.dev/v1alpha1", "kind": "Application", "metadata": meta,
            "spec": spec });
        // Values with `{{...}}` in fields that are not strings only read once rendered: then only what the
        // field-by-field conversion said stands.
        if let Ok(back) = application::read_back(&out) {
            conv.keep_what_kedge_reads(&mut sub, &mut Vec::new(), &mut out, &back);
            conv.report_what_kedge_refuses(&mut sub, &out);
        }
        let mut t = Map::new();
        for part in ["metadata", "spec"] {
            if tmpl.get(part).is_some() {
                t.insert(part.to_owned(), out[part].take());
            }
        }
        Value::Object(t)
    }

    fn template_metadata(
        &self,
        cx: &mut Cx<'_>,
        path: &[Seg],
        meta: &Value,
        out: &mut Map<String, Value>,
        suspend: &mut bool,
    ) {
        for (k, v) in entries(meta) {
            let p = key(path, k);
            match k {
                "name" | "labels" => {
                    out.insert(k.to_owned(), v.clone());
                }
                "namespace" => {
                    let ns = v.as_str().unwrap_or_default();
                    let the_sets = [self.namespace.as_deref(), cx.options.namespace.as_deref()]
                        .contains(&Some(ns));
                    if ns.is_empty() || the_sets {
                        cx.note(
                            &p,
                            "left out: a set's Applications live in the set's namespace",
                        );
                    } else {
                        cx.lost(
                            &p,
                            format!(
                                "Kedge makes a set's Applications in the set's namespace, not in {ns}; left out"
                            ),
                        );
                    }
                }
                "annotations" => {
                    let mut kept = Map::new();
                    for (name, value) in entries(v) {
                        application::annotation(
                            cx,
                            &key(&p, name),
                            name,
                            value,
                            &mut kept,
                            suspend,
                        );
                    }
                    if !kept.is_empty() {
                        out.insert(k.to_owned(), Value::Object(kept));
                    }
                }
                "finalizers" => {
                    let mut kept = Vec::new();
                    for (i, f) in v.as_array().into_iter().flatten().enumerate() {
                        application::finalizer(cx, &index(&p, i), f, &mut kept);
                    }
                    if !kept.is_empty() {
                        out.insert(k.to_owned(), Value::Array(kept));
                    }
                }
                _ => cx.lost(
                    &p,
                    "not a field of an ApplicationSet template's metadata; left out",
                ),
            }
        }
    }

    /// With `goTemplate: true`, parses every template of the input (the templates, the template patch, the
    /// generators' strings but their `elements`, which are data) as Kedge's Go templates do: what they cannot run
    /// is reported, and skips the set.
    fn check_go_templates(&mut self, cx: &mut Cx<'_>, path: &[Seg], spec: &Value) {
        fn walk(v: &Value, at: &mut Vec<Seg>, found: &mut Vec<(Vec<Seg>, String)>) {
            match v {
                Value::String(s) if templated(s) => {
                    if let Err(e) =
                        kedge_appset::gotmpl::Template::parse(s, kedge_appset::MissingKey::Default)
                    {
                        found.push((at.clone(), e.to_string()));
                    }
                }
                Value::Object(m) => {
                    for (k, v) in m {
                        if k == "elements" {
                            continue;
                        }
                        at.push(Seg::Key(k.clone()));
                        walk(v, at, found);
                        at.pop();
                    }
                }
                Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        at.push(Seg::Index(i));
                        walk(v, at, found);
                        at.pop();
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for part in ["template", "templatePatch", "generators"] {
            if let Some(v) = spec.get(part) {
                let mut at = key(path, part);
                walk(v, &mut at, &mut found);
            }
        }
        for (at, message) in &found {
            cx.lost(at, format!("Kedge's Go templates cannot run it: {message}"));
        }
        if !found.is_empty() {
            self.skip("its Go templates use what Kedge's do not implement");
        }
    }
}

/// The fields `known` of the mapping `v` (`v` itself when it is not a mapping).
fn keep(v: &Value, known: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| known.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a generator inside a matrix or merge has a selector.
fn nested_selectors(spec: &Value) -> bool {
    fn nested(g: &Value) -> bool {
        ["matrix", "merge"].iter().any(|kind| {
            g[*kind]["generators"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n.get("selector").is_some() || nested(n))
        })
    }
    spec["generators"]
        .as_array()
        .into_iter()
        .flatten()
        .any(nested)
}

/// Reports the fields of `v` other than `known` (`what`: "an ApplicationSet's sync policy").
fn known_fields(cx: &mut Cx<'_>, path: &[Seg], v: &Value, known: &[&str], what: &str) {
    for (k, _) in entries(v) {
        if !known.contains(&k) {
            cx.lost(&key(path, k), format!("not a field of {what}; left out"));
        }
    }
}
