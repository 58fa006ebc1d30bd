//! Computes the Applications an `ApplicationSet` produces from its generators and template, without side effects.
//!
//! Start with [`parse_set`] (a YAML or JSON document, `kedge.dev` or Argo CD's `argoproj.io` apiVersion) and
//! [`generate`], which takes the registered Clusters and a [`GitFiles`] reader of repositories:
//!
//! ```
//! use kedge_appset::{Inputs, NoGit, generate, parse_set};
//! let set = parse_set(r#"
//! apiVersion: kedge.dev/v1alpha1
//! kind: ApplicationSet
//! metadata: { name: guestbook, namespace: kedge }
//! spec:
//!   generators:
//!     - list: { elements: [ { cluster: engineering-dev, url: "https://kubernetes.default.svc" } ] }
//!   template:
//!     metadata: { name: "{{cluster}}-guestbook" }
//!     spec:
//!       source: { repoURL: "https://example.test/apps.git", path: guestbook }
//!       destination: { server: "{{url}}", namespace: guestbook }
//! "#).expect("parses");
//! let apps = generate(&set.set, &Inputs::new(&[], &NoGit)).expect("generates");
//! assert_eq!(apps[0].application.metadata.name.as_deref(), Some("engineering-dev-guestbook"));
//! ```

mod generators;
pub mod gotmpl;
mod memory;
pub mod owned;
pub mod rollout;
pub mod template;

use std::collections::HashMap;
use std::sync::Arc;

use kedge_api::{ApplicationSet, Cluster};
use kedge_source::FileTree;
use serde_json::{Map, Value};

pub use generators::{Params, flatten_params, selector_matches};
pub use gotmpl::{GoTemplateError, MissingKey};
pub use memory::MemoryTree;
use template::Engine;

/// Why an ApplicationSet produces no Applications.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is not an ApplicationSet, or a field has the wrong shape.
    #[error("{path}: {message}")]
    Parse {
        /// Where (`spec.generators[0].list`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A field Argo CD knows that Kedge does not implement.
    #[error("{field}: {message}")]
    Unsupported {
        /// The field.
        field: String,
        /// What is missing.
        message: String,
    },
    /// A field whose value cannot work.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// A Go template failed.
    #[error("{field}: failed to render: {source}")]
    Template {
        /// The field whose template failed.
        field: String,
        /// The template error.
        #[source]
        source: GoTemplateError,
    },
    /// A repository of a Git generator could not be read.
    #[error("{field}: failed to read {repo} at {revision}: {message}")]
    Git {
        /// The generator.
        field: String,
        /// The repository URL.
        repo: String,
        /// The revision.
        revision: String,
        /// Why.
        message: String,
    },
    /// A file of a Git files generator is not usable.
    #[error("{field}: file {file} of {repo}: {message}")]
    GitFile {
        /// The generator.
        field: String,
        /// The repository URL.
        repo: String,
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// A generated Application is not valid.
    #[error("generated application {name:?}: {field}: {message} (parameters {params})")]
    Application {
        /// The generated name.
        name: String,
        /// The wrong field.
        field: String,
        /// Why.
        message: String,
        /// The parameter set it came from (JSON).
        params: String,
    },
    /// A generated Application would live in another namespace than its set.
    #[error(
        "application {name}: the set generates it into namespace {namespace}; a set's Applications live in the set's \
         namespace ({set_namespace})"
    )]
    Namespace {
        /// The generated name.
        name: String,
        /// The namespace the template gives it.
        namespace: String,
        /// The set's namespace.
        set_namespace: String,
    },
    /// Two parameter sets produce the same Application name.
    #[error(
        "duplicate application name {name:?}: generated from parameters {first} and from {second}"
    )]
    Duplicate {
        /// The name.
        name: String,
        /// The first parameter set (JSON).
        first: String,
        /// The second parameter set (JSON).
        second: String,
    },
}

/// Reads a repository at a revision: how Git generators see files. The controller and the CLI pass Kedge's
/// source cache; tests pass [`MemoryTree`]s.
pub trait GitFiles {
    /// The files of `repo_url` at `revision` (a branch, tag or commit; `HEAD` by default).
    fn tree(&self, repo_url: &str, revision: &str) -> Result<Arc<dyn FileTree>, String>;
}

/// A [`GitFiles`] that has no repository: Git generators fail with a clear message.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoGit;

impl GitFiles for NoGit {
    fn tree(&self, _: &str, _: &str) -> Result<Arc<dyn FileTree>, String> {
        Err("no Git access was given".into())
    }
}

/// Fixed repositories by URL (any revision), for tests and offline use.
impl GitFiles for HashMap<String, Arc<dyn FileTree>> {
    fn tree(&self, repo_url: &str, _revision: &str) -> Result<Arc<dyn FileTree>, String> {
        self.get(repo_url)
            .cloned()
            .ok_or_else(|| format!("repository {repo_url} is not known"))
    }
}

/// Kedge's source cache, anonymous access: fetches the revision into the shared mirror, as the controller does.
impl GitFiles for kedge_source::Source {
    fn tree(&self, repo_url: &str, revision: &str) -> Result<Arc<dyn FileTree>, String> {
        let repo = kedge_source::RepoSpec::new(repo_url).map_err(|e| e.to_string())?;
        fetch_tree(self, repo, revision)
    }
}

/// Fetches `revision` of `repo` (with its credentials) into the source cache and returns its tree; the error is
/// the whole chain of causes.
pub fn fetch_tree(
    source: &kedge_source::Source,
    repo: kedge_source::RepoSpec,
    revision: &str,
) -> Result<Arc<dyn FileTree>, String> {
    let snapshot = source
        .fetch(&kedge_source::FetchRequest::new(repo, revision))
        .map_err(|e| kedge_source::error::error_chain(&e))?;
    Ok(Arc::new(snapshot))
}

/// What generators read from outside the set.
pub struct Inputs<'a> {
    /// The registered Clusters (Kedge's namespace).
    pub clusters: &'a [Cluster],
    /// Whether the local cluster (`in-cluster`) takes part in clusters generators without a selector (default true,
    /// as in Argo CD).
    pub local_cluster: bool,
    /// How repositories are read.
    pub git: &'a dyn GitFiles,
}

impl<'a> Inputs<'a> {
    /// Inputs with these clusters and Git reader, the local cluster included.
    pub fn new(clusters: &'a [Cluster], git: &'a dyn GitFiles) -> Self {
        Self {
            clusters,
            local_cluster: true,
            git,
        }
    }
}

/// A parsed ApplicationSet document.
#[derive(Debug, Clone)]
pub struct ParsedSet {
    /// The set, as a Kedge ApplicationSet.
    pub set: ApplicationSet,
    /// Remarks for people (e.g. that an Argo CD apiVersion was read as Kedge's).
    pub notes: Vec<String>,
}

/// Reads one ApplicationSet document (YAML or JSON), naming the field that does not fit.
pub fn parse_set(text: &str) -> Result<ParsedSet, Error> {
    let parse = |path: &str, message: String| Error::Parse {
        path: path.to_owned(),
        message,
    };
    let mut doc: Value =
        serde_saphyr::from_str(text).map_err(|e| parse("(document)", format!("not YAML: {e}")))?;
    let mut notes = Vec::new();
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match api_version.as_str() {
        "kedge.dev/v1alpha1" => {}
        "argoproj.io/v1alpha1" => {
            notes.push(
                "read an Argo CD ApplicationSet (argoproj.io/v1alpha1) as kedge.dev/v1alpha1"
                    .to_owned(),
            );
            doc["apiVersion"] = Value::String("kedge.dev/v1alpha1".into());
        }
        other => {
            return Err(parse(
                "apiVersion",
                format!("expected kedge.dev/v1alpha1 (or argoproj.io/v1alpha1), got {other:?}"),
            ));
        }
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "ApplicationSet" {
        return Err(parse(
            "kind",
            format!("expected ApplicationSet, got {kind:?}"),
        ));
    }
    if let Some(m) = doc.as_object_mut() {
        m.remove("status");
    }
    let set: ApplicationSet = serde_path_to_error::deserialize(&doc)
        .map_err(|e| parse(&e.path().to_string(), e.inner().to_string()))?;
    Ok(ParsedSet { set, notes })
}

/// One generated Application and the parameters it was rendered from.
#[derive(Debug, Clone)]
pub struct GeneratedApp {
    /// The Application (metadata and spec; no status).
    pub application: kedge_api::Application,
    /// The parameter set.
    pub params: Params,
}

/// The Applications `set` produces now, in generator order; an error names the field or the generated
/// Application that fails.
pub fn generate(set: &ApplicationSet, inputs: &Inputs<'_>) -> Result<Vec<GeneratedApp>, Error> {
    let spec = &set.spec;
    let engine = engine(spec)?;
    refuse_unsupported(spec)?;
    let namespace = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let base = serde_json::to_value(&spec.template).map_err(|e| Error::Invalid {
        field: "spec.template".into(),
        message: e.to_string(),
    })?;
    let mut ctx = generators::Ctx {
        inputs,
        engine,
        trees: HashMap::new(),
    };
    let mut out: Vec<GeneratedApp> = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, g) in spec.generators.iter().enumerate() {
        let field = format!("spec.generators[{i}]");
        let generated = generators::top(&mut ctx, g, &field)?;
        let mut tmpl = base.clone();
        if let Some(over) = &generated.template {
            let over = serde_json::to_value(over).map_err(|e| Error::Invalid {
                field: format!("{field}.template"),
                message: e.to_string(),
            })?;
            template::override_template(&mut tmpl, &over);
        }
        for params in generated.params {
            let mut rendered =
                template::render_value(&tmpl, &params, engine).map_err(|source| {
                    Error::Template {
                        field: format!("spec.template (parameters {})", params_text(&params)),
                        source,
                    }
                })?;
            if let Some(patch) = &spec.template_patch {
                let text = template::render_str(patch, &params, engine).map_err(|source| {
                    Error::Template {
                        field: format!("spec.templatePatch (parameters {})", params_text(&params)),
                        source,
                    }
                })?;
                let patch: Value = serde_saphyr::from_str(&text).map_err(|e| Error::Invalid {
                    field: "spec.templatePatch".into(),
                    message: format!("the rendered patch is not YAML: {e}"),
                })?;
                match patch {
                    // A patch that renders to nothing (`{{ if }}` false) changes nothing.
                    Value::Null => {}
                    Value::Object(_) => template::merge_patch(&mut rendered, &patch),
                    _ => {
                        return Err(Error::Invalid {
                            field: "spec.templatePatch".into(),
                            message: format!("the rendered patch is not an object: {text:?}"),
                        });
                    }
                }
            }
            let application = template::to_application(&rendered, &namespace, &params)?;
            let name = application.metadata.name.clone().unwrap_or_default();
            if let Some(&first) = names.get(&name) {
                return Err(Error::Duplicate {
                    name,
                    first: params_text(&out[first].params),
                    second: params_text(&params),
                });
            }
            names.insert(name, out.len());
            out.push(GeneratedApp {
                application,
                params,
            });
        }
    }
    Ok(out)
}

fn engine(spec: &kedge_api::ApplicationSetSpec) -> Result<Engine, Error> {
    if !spec.go_template {
        if !spec.go_template_options.is_empty() {
            return Err(Error::Invalid {
                field: "spec.goTemplateOptions".into(),
                message: "needs goTemplate: true".into(),
            });
        }
        if spec.template_patch.is_some() {
            return Err(Error::Invalid {
                field: "spec.templatePatch".into(),
                message: "needs goTemplate: true (as in Argo CD)".into(),
            });
        }
        return Ok(Engine::Plain);
    }
    let mut missing = MissingKey::Default;
    for (i, o) in spec.go_template_options.iter().enumerate() {
        missing = match o.replace(' ', "").as_str() {
            "missingkey=error" => MissingKey::Error,
            "missingkey=default" | "missingkey=invalid" | "missingkey=zero" => MissingKey::Default,
            other => {
                return Err(Error::Unsupported {
                    field: format!("spec.goTemplateOptions[{i}]"),
                    message: format!(
                        "unknown option {other:?} (missingkey=error, missingkey=default)"
                    ),
                });
            }
        };
    }
    Ok(Engine::Go(missing))
}

fn refuse_unsupported(spec: &kedge_api::ApplicationSetSpec) -> Result<(), Error> {
    let refuse = |field: &str, what: &str| Error::Unsupported {
        field: field.into(),
        message: format!("{what} is not supported by Kedge yet"),
    };
    if spec.preserved_fields.is_some() {
        return Err(refuse("spec.preservedFields", "preservedFields"));
    }
    if spec.ignore_application_differences.is_some() {
        return Err(refuse(
            "spec.ignoreApplicationDifferences",
            "ignoreApplicationDifferences",
        ));
    }
    if spec.apply_nested_selectors == Some(false) {
        return Err(Error::Unsupported {
            field: "spec.applyNestedSelectors".into(),
            message: "selectors of nested generators always apply in Kedge; remove the field or set it to true".into(),
        });
    }
    if let Some(strategy) = &spec.strategy
        && !matches!(strategy.type_.as_str(), "" | "AllAtOnce" | "RollingSync")
    {
        return Err(Error::Invalid {
            field: "spec.strategy.type".into(),
            message: format!(
                "unknown strategy {:?} (AllAtOnce, RollingSync)",
                strategy.type_
            ),
        });
    }
    if let Some(strategy) = &spec.strategy {
        match (strategy.type_.as_str(), &strategy.rolling_sync) {
            ("RollingSync", None) => {
                return Err(Error::Invalid {
                    field: "spec.strategy.rollingSync".into(),
                    message: "a RollingSync strategy needs its steps".into(),
                });
            }
            ("RollingSync", Some(rolling)) => {
                rollout::validate(&rolling.steps).map_err(|e| Error::Invalid {
                    field: "spec.strategy.rollingSync".into(),
                    message: e.to_string(),
                })?;
            }
            (_, Some(_)) => {
                return Err(Error::Invalid {
                    field: "spec.strategy.rollingSync".into(),
                    message: format!(
                        "steps are read only with type RollingSync, not {:?}",
                        strategy.type_
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The parameters of a generated Application as JSON text (for messages).
pub(crate) fn params_text(params: &Params) -> String {
    Value::Object(Map::clone(params)).to_string()
}
