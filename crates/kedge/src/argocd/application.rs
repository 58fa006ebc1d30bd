//! Argo CD `Application` to Kedge `Application`.

use serde_json::{Map, Value, json};

use kedge_appset::owned::SET_LABEL;
use kedge_controller::spec_check;

use super::located::{Path, Seg, index, key};
use super::{Cx, SERVER_SET_METADATA, WRITTEN_BY_APPLIERS};

/// Argo CD's finalizer that deletes an application's resources with it (in the foreground).
const ARGOCD_RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// Argo CD's annotation asking for a refresh.
const ARGOCD_REFRESH: &str = "argocd.argoproj.io/refresh";

/// Converts the document of `cx`; `None` when it cannot be converted at all (reported).
pub(crate) fn convert(cx: &mut Cx<'_>) -> Option<Value> {
    let value = cx.value;
    let what = cx.describe();
    let (mut meta, mut spec) = (Map::new(), Map::new());
    let mut conv = AppConversion::new(false);
    for (k, v) in entries(value) {
        let p = key(&[], k);
        match k {
            "apiVersion" | "kind" => {}
            "metadata" => metadata(cx, &p, v, &mut meta, &mut spec),
            "spec" => conv.spec(cx, &p, v, &mut spec),
            "status" => cx.note(&p, "observed state; Kedge writes its own"),
            "operation" => cx.lost(
                &p,
                "a requested operation is not carried over; ask for it again with kedge app sync",
            ),
            _ => cx.lost(&p, "not a field of Argo CD's Application"),
        }
    }
    if value.get("spec").is_none() {
        conv.skip = Some("it has no spec".to_owned());
    }
    if let Some(reason) = conv.skip {
        cx.skip_document(&what, &reason);
        return None;
    }
    let mut out = json!({"apiVersion": "kedge.dev/v1alpha1", "kind": "Application", "metadata": meta,
        "spec": spec});
    match read_back(&out) {
        Ok(back) => {
            conv.keep_what_kedge_reads(cx, &mut Vec::new(), &mut out, &back);
            conv.report_what_kedge_refuses(cx, &out);
            Some(out)
        }
        Err(e) => {
            cx.skip_document(
                &what,
                &format!("Kedge's Application refuses what it converts to: {e}"),
            );
            None
        }
    }
}

/// `out` read through Kedge's own `Application` type and written back: what that type does not hold is gone.
pub(crate) fn read_back(out: &Value) -> Result<Value, serde_json::Error> {
    let app: kedge_api::Application = serde_json::from_value(out.clone())?;
    serde_json::to_value(&app)
}

/// The entries of a mapping (none for anything else).
pub(crate) fn entries(v: &Value) -> impl Iterator<Item = (&str, &Value)> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
}

fn metadata(
    cx: &mut Cx<'_>,
    path: &[Seg],
    meta: &Value,
    out: &mut Map<String, Value>,
    spec: &mut Map<String, Value>,
) {
    let mut suspend = false;
    let mut owner_set = None;
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
                    annotation(cx, &key(&p, name), name, value, &mut kept, &mut suspend);
                }
                if !kept.is_empty() {
                    out.insert(k.to_owned(), Value::Object(kept));
                }
            }
            "finalizers" => {
                let mut kept = Vec::new();
                for (i, f) in v.as_array().into_iter().flatten().enumerate() {
                    finalizer(cx, &index(&p, i), f, &mut kept);
                }
                if !kept.is_empty() {
                    out.insert(k.to_owned(), Value::Array(kept));
                }
            }
            k if SERVER_SET_METADATA.contains(&k) => cx.note(&p, "set by the API server; left out"),
            "ownerReferences" => {
                for (i, owner) in v.as_array().into_iter().flatten().enumerate() {
                    let set = owner["kind"] == "ApplicationSet"
                        && owner["apiVersion"]
                            .as_str()
                            .is_some_and(|a| a.starts_with("argoproj.io/"));
                    match owner["name"].as_str() {
                        Some(name) if set => {
                            cx.note(
                                &index(&p, i),
                                format!(
                                    "written as label {SET_LABEL}: {name}: the ApplicationSet {name}, imported too, \
                                     manages this Application as one it made"
                                ),
                            );
                            owner_set = Some(name.to_owned());
                        }
                        _ => cx.lost(
                            &index(&p, i),
                            "owners other than an Argo CD ApplicationSet are not carried over",
                        ),
                    }
                }
            }
            _ => cx.lost(&p, "not a field of an object's metadata"),
        }
    }
    if let Some(set) = owner_set {
        let labels = out
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(SET_LABEL.to_owned(), Value::String(set));
        }
    }
    if suspend {
        spec.insert("suspend".to_owned(), Value::Bool(true));
    }
    cx.default_namespace(out);
}

/// Annotations Argo CD reads on the objects an application applies (here: on this Application, as applied by an
/// app of apps); Kedge's engine reads them the same way.
pub(crate) const RESOURCE_ANNOTATIONS: &[&str] = &[
    "argocd.argoproj.io/sync-wave",
    "argocd.argoproj.io/hook",
    "argocd.argoproj.io/hook-delete-policy",
    "argocd.argoproj.io/sync-options",
    "argocd.argoproj.io/compare-options",
];

/// One annotation of an Application (or of an ApplicationSet's template): kept, rewritten or reported; `suspend` is
/// set when it asks for `spec.suspend`.
pub(crate) fn annotation(
    cx: &mut Cx<'_>,
    path: &[Seg],
    name: &str,
    value: &Value,
    kept: &mut Map<String, Value>,
    suspend: &mut bool,
) {
    let text = value.as_str().unwrap_or("");
    match name {
        ARGOCD_REFRESH if matches!(text, "normal" | "hard") => {
            kept.insert(kedge_api::REFRESH_ANNOTATION.to_owned(), value.clone());
            cx.note(path, format!("written as {}", kedge_api::REFRESH_ANNOTATION));
        }
        ARGOCD_REFRESH => cx.lost(path, format!("refresh {text:?} is neither normal nor hard")),
        "argocd.argoproj.io/skip-reconcile" if text == "true" => {
            *suspend = true;
            cx.note(
                path,
                "written as spec.suspend: true, which stops syncing but keeps comparing and reporting status \
                 (Argo CD stops reconciling altogether)",
            );
        }
        "argocd.argoproj.io/skip-reconcile" => cx.note(path, "not true: left out"),
        "argocd.argoproj.io/manifest-generate-paths" => cx.note(
            path,
            "left out: Kedge keeps renders by the content of the directories they read, so a change elsewhere \
             in the repository renders nothing again",
        ),
        n if WRITTEN_BY_APPLIERS.contains(&n) => {
            cx.note(path, "written by the tool that applied it; left out")
        }
        n if RESOURCE_ANNOTATIONS.contains(&n) => {
            kept.insert(name.to_owned(), value.clone());
            cx.note(
                path,
                "kept: read by the application that applies this one, as Argo CD reads it",
            );
        }
        n if n.starts_with("notifications.argoproj.io/") => {
            cx.lost(path, "notifications are not supported yet (issue 19)")
        }
        n if n.starts_with("link.argocd.argoproj.io/") => {
            cx.lost(path, "Kedge's UI shows no external links")
        }
        n if n.starts_with("argocd.argoproj.io/") || n.ends_with(".argocd.argoproj.io") => {
            cx.lost(path, "an Argo CD annotation Kedge has no equivalent of")
        }
        _ => {
            kept.insert(name.to_owned(), value.clone());
        }
    }
}

/// One finalizer of an Application (or of an ApplicationSet's template): kept, rewritten or reported.
pub(crate) fn finalizer(cx: &mut Cx<'_>, path: &[Seg], f: &Value, kept: &mut Vec<Value>) {
    let name = f.as_str().unwrap_or("");
    let kedge = Value::String(kedge_api::RESOURCES_FINALIZER.to_owned());
    match name {
        ARGOCD_RESOURCES_FINALIZER => {
            kept.push(kedge);
            cx.note(
                path,
                format!("written as {}", kedge_api::RESOURCES_FINALIZER),
            );
        }
        "resources-finalizer.argocd.argoproj.io/foreground" => {
            kept.push(kedge);
            cx.note(
                path,
                format!(
                    "written as {} (which deletes in the foreground too)",
                    kedge_api::RESOURCES_FINALIZER
                ),
            );
        }
        "resources-finalizer.argocd.argoproj.io/background" => {
            kept.push(kedge);
            cx.note(
                path,
                format!(
                    "written as {}, which deletes in the foreground: the application goes once its objects' \
                     dependents are gone",
                    kedge_api::RESOURCES_FINALIZER
                ),
            );
        }
        n if n.contains("argocd.argoproj.io") => cx.lost(
            path,
            "an Argo CD finalizer Kedge has no equivalent of (post-delete hooks are not supported)",
        ),
        _ => kept.push(f.clone()),
    }
}

/// What one Application's conversion carries between its parts.
pub(crate) struct AppConversion {
    /// Why the whole application cannot be converted, if it cannot.
    pub(crate) skip: Option<String>,
    /// Paths of the output that stand for other paths of the input (`spec.source` for `spec.sources[0]`).
    renamed: Vec<(Path, Path)>,
    /// Whether this is an ApplicationSet's template: it may be partial (a generator's template overrides some
    /// fields only), and its `{{...}}` values are only known once rendered.
    template: bool,
}

impl AppConversion {
    /// The conversion of an Application (`template`: of an ApplicationSet's template).
    pub(crate) fn new(template: bool) -> Self {
        Self {
            skip: None,
            renamed: Vec::new(),
            template,
        }
    }

    pub(crate) fn spec(
        &mut self,
        cx: &mut Cx<'_>,
        path: &[Seg],
        spec: &Value,
        out: &mut Map<String, Value>,
    ) {
        let mut has_source = false;
        for (k, v) in entries(spec) {
            let p = key(path, k);
            match k {
                // Fields Kedge's Application holds as Argo CD's does: what Kedge's types drop or its check
                // refuses of them (another project, say) is reported after.
                "project" | "ignoreDifferences" | "info" | "revisionHistoryLimit" => {
                    out.insert(k.to_owned(), v.clone());
                }
                "source" => {
                    has_source = true;
                    let src = self.source(cx, &p, v);
                    out.insert(k.to_owned(), src);
                }
                "sources" => {
                    has_source = true;
                    self.sources(cx, &p, v, out);
                }
                "destination" => destination(cx, &p, v, out),
                "syncPolicy" => {
                    if let Some(policy) = sync_policy(cx, &p, v) {
                        out.insert(k.to_owned(), policy);
                    }
                }
                "sourceHydrator" => {
                    cx.lost(&p, "rendered-manifest hydration is not supported");
                    self.skip =
                        Some("its source is a hydrator, which Kedge cannot render".to_owned());
                }
                _ => cx.lost(&p, "not a field of Argo CD's Application spec"),
            }
        }
        if !has_source && self.skip.is_none() && !self.template {
            self.skip = Some("it has neither spec.source nor spec.sources".to_owned());
        }
    }

    fn sources(&mut self, cx: &mut Cx<'_>, path: &[Seg], v: &Value, out: &mut Map<String, Value>) {
        let list: Vec<&Value> = v.as_array().into_iter().flatten().collect();
        let single = list.len() == 1 && list[0].get("ref").is_none();
        let mut converted = Vec::new();
        for (i, s) in list.iter().enumerate() {
            converted.push(self.source(cx, &index(path, i), s));
        }
        if single {
            cx.note(path, "a single source: written as spec.source");
            self.renamed
                .push((crate::argocd::path(&["spec", "source"]), index(path, 0)));
            out.insert("source".to_owned(), converted.remove(0));
        } else {
            out.insert("sources".to_owned(), Value::Array(converted));
        }
    }

    /// One source: its fields that Kedge reads as Argo CD does are copied; what Kedge's types do not hold is
    /// reported by [`keep_what_kedge_reads`](Self::keep_what_kedge_reads).
    fn source(&mut self, cx: &mut Cx<'_>, path: &[Seg], src: &Value) -> Value {
        let mut out = Map::new();
        for (k, v) in entries(src) {
            let p = key(path, k);
            match k {
                "repoURL" | "targetRevision" | "path" | "chart" | "ref" | "name" => {
                    out.insert(k.to_owned(), v.clone());
                }
                "directory" => {
                    out.insert(k.to_owned(), directory(cx, &p, v));
                }
                "helm" => {
                    out.insert(k.to_owned(), helm(cx, &p, v));
                }
                // Kedge's Application has every field of Argo CD's; what Kedge refuses of them is reported by
                // its own check (report_what_kedge_refuses).
                "kustomize" => {
                    out.insert(k.to_owned(), v.clone());
                }
                "plugin" => {
                    cx.lost(&p, "config management plugins are not supported");
                    self.skip = Some(
                        "its source is rendered by a config management plugin, which Kedge does not run"
                            .to_owned(),
                    );
                }
                _ => cx.lost(&p, "not a field of Argo CD's application source"),
            }
        }
        Value::Object(out)
    }

    /// Removes from `out` what Kedge's types dropped or read differently (`back`), reporting each at the input
    /// field it came from.
    pub(crate) fn keep_what_kedge_reads(
        &self,
        cx: &mut Cx<'_>,
        at: &mut Path,
        out: &mut Value,
        back: &Value,
    ) {
        match (out, back) {
            (Value::Object(map), Value::Object(kept)) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    at.push(Seg::Key(k.clone()));
                    match (map.get_mut(&k), kept.get(&k)) {
                        (Some(v), Some(b)) if !b.is_null() || v.is_null() => {
                            self.keep_what_kedge_reads(cx, at, v, b)
                        }
                        (Some(v), _) if is_default(v) => {}
                        _ => {
                            let from = self.input_path(at);
                            cx.lost(&from, "Kedge's Application has no such field yet");
                            map.remove(&k);
                        }
                    }
                    at.pop();
                }
            }
            (Value::Array(items), Value::Array(kept)) if items.len() == kept.len() => {
                for (i, (v, b)) in items.iter_mut().zip(kept).enumerate() {
                    at.push(Seg::Index(i));
                    self.keep_what_kedge_reads(cx, at, v, b);
                    at.pop();
                }
            }
            (v, b) if v == b => {}
            (v, b) => {
                let from = self.input_path(at);
                cx.lost(&from, format!("Kedge reads {v} as {b}"));
            }
        }
    }

    /// Reports what Kedge's own check of an application spec refuses (an application Kedge refuses applies
    /// nothing): each sync option on its own, then the spec again without each field it names, until it passes.
    pub(crate) fn report_what_kedge_refuses(&self, cx: &mut Cx<'_>, out: &Value) {
        let options_path = crate::argocd::path(&["spec", "syncPolicy", "syncOptions"]);
        let options = out["spec"]["syncPolicy"]["syncOptions"].as_array();
        for (i, option) in options.into_iter().flatten().enumerate() {
            if self.template && option.as_str().is_some_and(templated) {
                continue;
            }
            let policy = kedge_api::SyncPolicy {
                sync_options: vec![option.as_str().unwrap_or_default().to_owned()],
                ..Default::default()
            };
            if let Err(message) = spec_check::sync_options(Some(&policy)) {
                cx.lost(&index(&options_path, i), refusal(&message));
            }
        }
        let mut probe = out.clone();
        if let Some(policy) = probe["spec"]["syncPolicy"].as_object_mut() {
            policy.remove("syncOptions");
        }
        // Each round removes the field the check named; a spec has far fewer fields than this.
        for _ in 0..16 {
            let Ok(app) = serde_json::from_value::<kedge_api::Application>(probe.clone()) else {
                return;
            };
            let Err(e) = spec_check::check(&app) else {
                return;
            };
            let message = e.to_string();
            let field = message
                .split(['(', ' ', ':', '"', ','])
                .find(|w| w.starts_with("spec."))
                .map(parse_field)
                .unwrap_or_else(|| crate::argocd::path(&["spec"]));
            // A template's `{{...}}` is only known once rendered: a refusal of it says nothing yet.
            if !(self.template && templated(&message)) {
                cx.lost(&self.input_path(&field), refusal(&message));
            }
            if !remove(&mut probe, &field) {
                return;
            }
        }
    }

    /// The input path an output path came from.
    fn input_path(&self, at: &[Seg]) -> Path {
        for (out, input) in &self.renamed {
            if let Some(rest) = at.strip_prefix(out.as_slice()) {
                let mut p = input.clone();
                p.extend_from_slice(rest);
                return p;
            }
        }
        at.to_vec()
    }
}

/// Whether a value (or a message quoting one) holds a template expression, known only once rendered.
pub(crate) fn templated(text: &str) -> bool {
    text.contains("{{")
}

/// A field as messages name it (`spec.sources[0].chart`) as a path.
fn parse_field(text: &str) -> Path {
    let mut path = Path::new();
    for part in text.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            path.push(Seg::Key(name.to_owned()));
        }
        for piece in pieces {
            match piece.trim_end_matches(']').parse() {
                Ok(i) => path.push(Seg::Index(i)),
                Err(_) => path.push(Seg::Key(piece.trim_end_matches(']').to_owned())),
            }
        }
    }
    path
}

/// Kedge's refusal of a field, for a diagnostic.
fn refusal(message: &str) -> String {
    format!("Kedge refuses it, applying nothing: {message}")
}

/// Removes the field (or item) at `path` from `v`; false when there is none.
fn remove(v: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut cur = v;
    for seg in parent {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (cur, last) {
        (Value::Object(m), Seg::Key(k)) => m.remove(k).is_some(),
        (Value::Array(a), Seg::Index(i)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Values that mean "not set": Kedge's types leave them out when written back.
fn is_default(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

fn destination(cx: &mut Cx<'_>, path: &[Seg], dest: &Value, out: &mut Map<String, Value>) {
    let mut kept = Map::new();
    for (k, v) in entries(dest) {
        let p = key(path, k);
        let text = v.as_str().unwrap_or_default();
        match k {
            "namespace" => {
                kept.insert(k.to_owned(), v.clone());
            }
            "server" | "name" => {
                let local = if k == "server" {
                    text.trim_end_matches('/') == kedge_api::IN_CLUSTER_SERVER
                } else {
                    text == kedge_api::IN_CLUSTER_NAME
                };
                if !local && !templated(text) {
                    cx.note(
                        &p,
                        "another cluster: Kedge deploys there once it is registered as a Cluster (kedge cluster \
                         add, or import its Argo CD cluster Secret); until then it refuses the application",
                    );
                }
                kept.insert(k.to_owned(), v.clone());
            }
            _ => cx.lost(&p, "not a field of Argo CD's application destination"),
        }
    }
    out.insert("destination".to_owned(), Value::Object(kept));
}

fn sync_policy(cx: &mut Cx<'_>, path: &[Seg], policy: &Value) -> Option<Value> {
    let mut kept = Map::new();
    for (k, v) in entries(policy) {
        let p = key(path, k);
        match k {
            "automated" => {
                if let Some(a) = automated(cx, &p, v) {
                    kept.insert(k.to_owned(), a);
                }
            }
            "syncOptions" => {
                let mut options = Vec::new();
                for (i, o) in v.as_array().into_iter().flatten().enumerate() {
                    let name = o
                        .as_str()
                        .and_then(|o| o.split_once('='))
                        .map(|(n, _)| n.trim());
                    if name.is_some_and(|n| kedge_api::SYNC_OPTION_NAMES.contains(&n)) {
                        options.push(o.clone());
                    } else {
                        cx.lost(&index(&p, i), "not a sync option Argo CD documents");
                    }
                }
                kept.insert(k.to_owned(), Value::Array(options));
            }
            "managedNamespaceMetadata" => {
                kept.insert(k.to_owned(), v.clone());
            }
            "retry" => {
                let mut retry = Map::new();
                for (rk, rv) in entries(v) {
                    match rk {
                        "limit" | "backoff" => {
                            retry.insert(rk.to_owned(), rv.clone());
                        }
                        "refresh" if !rv.as_bool().unwrap_or(false) => {}
                        "refresh" => cx.lost(
                            &key(&p, rk),
                            "Kedge retries the revision that failed; it does not move to a newer one meanwhile",
                        ),
                        _ => cx.lost(&key(&p, rk), "not a field of Argo CD's retry strategy"),
                    }
                }
                kept.insert(k.to_owned(), Value::Object(retry));
            }
            _ => cx.lost(&p, "not a field of Argo CD's sync policy"),
        }
    }
    Some(Value::Object(kept))
}

fn automated(cx: &mut Cx<'_>, path: &[Seg], a: &Value) -> Option<Value> {
    let mut kept = Map::new();
    for (k, v) in entries(a) {
        let p = key(path, k);
        match k {
            "prune" | "selfHeal" | "allowEmpty" => {
                kept.insert(k.to_owned(), v.clone());
            }
            "enabled" if v.as_bool() == Some(false) => {
                cx.note(
                    &p,
                    "automated sync is off: written without syncPolicy.automated",
                );
                return None;
            }
            "enabled" => cx.note(
                &p,
                "automated sync is on when syncPolicy.automated is set; left out",
            ),
            _ => cx.lost(&p, "not a field of Argo CD's automated sync"),
        }
    }
    Some(Value::Object(kept))
}

fn directory(cx: &mut Cx<'_>, path: &[Seg], dir: &Value) -> Value {
    let mut kept = Map::new();
    for (k, v) in entries(dir) {
        let p = key(path, k);
        match k {
            "recurse" | "include" | "exclude" => {
                kept.insert(k.to_owned(), v.clone());
            }
            "jsonnet" if jsonnet_is_empty(v) => cx.note(&p, "empty; left out"),
            "jsonnet" => cx.lost(&p, "Jsonnet is not supported"),
            _ => cx.lost(&p, "not a field of Argo CD's directory options"),
        }
    }
    Value::Object(kept)
}

fn jsonnet_is_empty(v: &Value) -> bool {
    entries(v).all(|(_, x)| is_default(x))
}

fn helm(cx: &mut Cx<'_>, path: &[Seg], h: &Value) -> Value {
    let mut kept = Map::new();
    for (k, v) in entries(h) {
        let p = key(path, k);
        let on = v.as_bool().unwrap_or(false);
        match k {
            "releaseName"
            | "valueFiles"
            | "values"
            | "valuesObject"
            | "parameters"
            | "ignoreMissingValueFiles"
            | "skipCrds"
            | "kubeVersion"
            | "apiVersions"
            | "namespace" => {
                kept.insert(k.to_owned(), v.clone());
            }
            "version" if matches!(v.as_str(), Some("v3" | "3" | "")) => {
                cx.note(&p, "Kedge renders with Helm 3; left out")
            }
            "version" => cx.lost(&p, "only Helm 3 is supported"),
            "passCredentials" if !on => {}
            "passCredentials" => cx.lost(
                &p,
                "Kedge never sends a chart repository's credentials to another host",
            ),
            "skipTests" => cx.note(
                &p,
                "left out: a Kedge sync never applies Helm test hooks (skipTests is always on)",
            ),
            "skipSchemaValidation" if !on => {}
            "skipSchemaValidation" => cx.lost(
                &p,
                "Kedge always validates values against the chart's schema",
            ),
            "fileParameters" => cx.lost(&p, "Helm file parameters are not supported"),
            _ => cx.lost(&p, "not a field of Argo CD's Helm options"),
        }
    }
    Value::Object(kept)
}
