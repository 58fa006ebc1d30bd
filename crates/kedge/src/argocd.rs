//! Argo CD's resources as Kedge's, field by field (`kedge import argocd`).
//!
//! [`convert`] reads a YAML stream and returns Kedge's resources with a [`Diagnostic`] for every field that has
//! no exact equivalent: a *note* when it is converted to what does the same in Kedge (or left out because Kedge
//! does it anyway), *not converted* when what it asked for is lost. What each Argo CD field becomes is in
//! docs/argocd-migration.md.
//!
//! - `Application` (argoproj.io) becomes Kedge's `Application` (kedge.dev/v1alpha1). A field Kedge's
//!   Application does not hold is reported, never written: the output is read back through Kedge's own types
//!   and whatever they drop is reported as not converted.
//! - Repository and repo-creds Secrets (`argocd.argoproj.io/secret-type`) become Kedge's repository credential
//!   Secrets (`kedge.dev/secret-type`); values are copied, never shown in diagnostics.
//! - Cluster Secrets become a Kedge `Cluster` (kedge.dev/v1alpha1) and a Secret holding a kubeconfig written
//!   from Argo CD's connection settings (the cluster Kedge runs in needs none).
//! - `AppProject` becomes a `Project` with what Kedge enforces (fields it does not, such as roles, are reported).
//! - `ApplicationSet` becomes Kedge's `ApplicationSet` (the same spec): its template is converted as an Application
//!   is, its generators key by key; a set using what Kedge does not run (an `scmProvider` generator, say) is
//!   reported and skipped, since leaving a generator out would make other Applications. An Application an Argo CD
//!   ApplicationSet owns gets the label by which the imported set knows it as its own.
//! - Any other document is passed through unchanged (with a note), except Argo CD's own settings, which are
//!   skipped. A `List` (as `kubectl get -o yaml` writes) is read item by item.
//!
//! ```
//! use kedge::argocd::{Options, convert};
//! let input = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web, namespace: argocd}\n\
//!              spec:\n  project: default\n  source: {repoURL: 'https://git.example/web.git', path: deploy}\n\
//!              \x20 destination: {server: 'https://kubernetes.default.svc', namespace: web}\n";
//! let conversion = convert(input, &Options::default());
//! assert!(conversion.complete());
//! assert_eq!(conversion.documents[0]["apiVersion"], "kedge.dev/v1alpha1");
//! assert_eq!(conversion.documents[0]["spec"]["source"]["path"], "deploy");
//! ```

mod application;
mod appset;
mod cluster;
pub mod located;
mod project;
mod secret;

use std::fmt;

use serde_json::Value;

use located::{Document, Path, Seg, show};

/// Options of a conversion.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The namespace every converted resource is written to (Kedge reads an application's credentials from its
    /// own namespace); default: the namespace each resource has.
    pub namespace: Option<String>,
}

/// Whether a field's meaning survives the conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Converted to what does the same in Kedge, or left out because Kedge does it anyway.
    Note,
    /// Lost: Kedge has no equivalent (yet), or the whole document was skipped.
    NotConverted,
}

/// What happened to one field (or a whole document) without an exact equivalent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line in the input.
    pub line: u64,
    /// The field (`spec.source.plugin`), or the document (`AppProject team-a`).
    pub field: String,
    /// Note or not converted.
    pub severity: Severity,
    /// Why, and what Kedge does instead.
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    /// `LINE: FIELD: note: REASON` or `LINE: FIELD: not converted: REASON`; the caller prefixes the file name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.severity {
            Severity::Note => "note",
            Severity::NotConverted => "not converted",
        };
        write!(f, "{}: {}: {what}: {}", self.line, self.field, self.reason)
    }
}

/// The result of [`convert`].
#[derive(Clone, Debug, Default)]
pub struct Conversion {
    /// Kedge's resources, in input order.
    pub documents: Vec<Value>,
    /// Every field or document without an exact equivalent, in input order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Conversion {
    /// Whether everything was converted (notes only).
    pub fn complete(&self) -> bool {
        self.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Note)
    }

    /// The documents as one YAML stream, separated by `---`.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        let mut text = String::new();
        for (i, doc) in self.documents.iter().enumerate() {
            if i > 0 {
                text.push_str("---\n");
            }
            let yaml = serde_saphyr::to_string(doc)?;
            text.push_str(&yaml);
            if !yaml.ends_with('\n') {
                text.push('\n');
            }
        }
        Ok(text)
    }
}

/// The label (or annotation) by which Argo CD tells its Secrets apart.
pub const ARGOCD_SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

/// Converts a YAML stream of Argo CD resources into Kedge's.
pub fn convert(input: &str, options: &Options) -> Conversion {
    let mut out = Conversion::default();
    let docs = match located::parse(input) {
        Ok(docs) => docs,
        Err(e) => {
            out.diagnostics.push(Diagnostic {
                line: e.line,
                field: "input".to_owned(),
                severity: Severity::NotConverted,
                reason: format!("not valid YAML: {}", e.message),
            });
            return out;
        }
    };
    for doc in &docs {
        // `kubectl get -o yaml` writes a List: its items are converted one by one.
        let items = match doc.value["items"].as_array() {
            Some(items)
                if doc.value["kind"]
                    .as_str()
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (item, located::index(&located::key(&[], "items"), i)))
                    .collect()
            }
            _ => vec![(&doc.value, Path::new())],
        };
        for (value, root) in items {
            let mut cx = Cx {
                doc,
                value,
                root,
                options,
                diagnostics: &mut out.diagnostics,
            };
            let converted = cx.document();
            out.documents.extend(converted);
        }
    }
    // Fields are visited in key order; report them in input order (a document's own diagnostic first).
    out.diagnostics.sort_by_key(|d| d.line);
    out
}

/// The conversion of one resource: its input (a document, or an item of a List) and where diagnostics go.
pub(crate) struct Cx<'a> {
    doc: &'a Document,
    /// The resource.
    value: &'a Value,
    /// Where the resource stands in its document (`items[3]` in a List, else the root).
    root: Path,
    options: &'a Options,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn push(&mut self, path: &[Seg], severity: Severity, reason: String) {
        let mut full = self.root.clone();
        full.extend_from_slice(path);
        self.diagnostics.push(Diagnostic {
            line: self.doc.line_of(&full),
            field: show(&full),
            severity,
            reason,
        });
    }

    /// A field converted to what does the same, or left out because Kedge does it anyway.
    pub(crate) fn note(&mut self, path: &[Seg], reason: impl Into<String>) {
        self.push(path, Severity::Note, reason.into());
    }

    /// A field whose meaning is lost.
    pub(crate) fn lost(&mut self, path: &[Seg], reason: impl Into<String>) {
        self.push(path, Severity::NotConverted, reason.into());
    }

    /// A diagnostic about the whole document (`what`: its kind and name).
    fn about_document(&mut self, what: &str, severity: Severity, reason: String) {
        self.diagnostics.push(Diagnostic {
            line: self.doc.line_of(&self.root),
            field: what.to_owned(),
            severity,
            reason,
        });
    }

    /// A whole document left out.
    fn skip_document(&mut self, what: &str, reason: &str) {
        self.about_document(what, Severity::NotConverted, format!("{reason}; skipped"));
    }

    /// `Kind name` of the document, for messages.
    fn describe(&self) -> String {
        let v = self.value;
        let kind = v["kind"].as_str().unwrap_or("document");
        match v["metadata"]["name"].as_str() {
            Some(name) => format!("{kind} {name}"),
            None => kind.to_owned(),
        }
    }

    /// Sets `metadata.namespace` of a converted resource from `--namespace` when its input had none.
    pub(crate) fn default_namespace(&self, meta: &mut serde_json::Map<String, Value>) {
        if let Some(ns) = &self.options.namespace {
            meta.entry("namespace")
                .or_insert_with(|| Value::String(ns.clone()));
        }
    }

    /// The namespace a converted resource goes to: `--namespace`, else its own (with a note when it changes).
    pub(crate) fn namespace(&mut self, path: &[Seg], own: Option<&str>) -> Option<String> {
        match (&self.options.namespace, own) {
            (Some(wanted), Some(own)) if wanted != own => {
                let wanted = wanted.clone();
                self.note(
                    path,
                    format!("written to namespace {wanted} instead of {own}"),
                );
                Some(wanted)
            }
            (Some(wanted), _) => Some(wanted.clone()),
            (None, own) => own.map(str::to_owned),
        }
    }

    /// The resources one input resource becomes (none when it is skipped).
    fn document(&mut self) -> Vec<Value> {
        let v = self.value;
        let api_version = v["apiVersion"].as_str().unwrap_or("");
        let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        let kind = v["kind"].as_str().unwrap_or("");
        let what = self.describe();
        match (group, kind) {
            ("argoproj.io", "Application") => application::convert(self).into_iter().collect(),
            ("argoproj.io", "AppProject") => project::convert(self).into_iter().collect(),
            ("argoproj.io", "ApplicationSet") => appset::convert(self).into_iter().collect(),
            ("", "Secret") if secret::argocd_type(v) == Some("cluster") => {
                cluster::convert(self).unwrap_or_default()
            }
            ("", "Secret") if secret::argocd_type(v).is_some() => {
                secret::convert(self).into_iter().collect()
            }
            _ if is_argocd_settings(v) => {
                self.skip_document(
                    &what,
                    "Argo CD's own settings have no Kedge equivalent to convert to",
                );
                Vec::new()
            }
            _ => {
                self.about_document(
                    &what,
                    Severity::Note,
                    "not an Argo CD resource; passed through unchanged".to_owned(),
                );
                vec![v.clone()]
            }
        }
    }
}

/// Argo CD's settings ConfigMaps and Secrets (`argocd-cm`, `argocd-rbac-cm`, `argocd-secret`, ...), which
/// configure an Argo CD installation rather than describe what it deploys.
fn is_argocd_settings(v: &Value) -> bool {
    let kind = v["kind"].as_str().unwrap_or("");
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let part_of = v["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str();
    matches!(kind, "ConfigMap" | "Secret")
        && (name.starts_with("argocd-") && part_of == Some("argocd"))
}

/// Metadata the API server sets: left out of what is converted.
pub(crate) const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Annotations that the tool which applied an object wrote (`kubectl apply`'s copy of the object, which holds a
/// Secret's values; Argo CD's tracking): left out of what is converted.
pub(crate) const WRITTEN_BY_APPLIERS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "argocd.argoproj.io/tracking-id",
];

/// The path of the document's root plus `keys`.
pub(crate) fn path(keys: &[&str]) -> Path {
    keys.iter().map(|k| Seg::Key((*k).to_owned())).collect()
}

#[cfg(test)]
mod tests;
