//! Errors of a render. A render reports every problem it finds at once through [`RenderError::Multiple`].

use std::fmt::Write as _;
use std::time::Duration;

use kedge_source::TreeError;

use crate::object::SourceRef;

/// Failure to render an application path into objects.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Reading the tree failed.
    #[error("failed to read {path} from the source tree")]
    Tree {
        /// The path being read, relative to the tree root.
        path: String,
        /// The cause.
        #[source]
        source: TreeError,
    },
    /// A YAML file is not valid YAML, has a duplicate key, or exceeds a parser budget (alias bombs, depth).
    #[error("failed to parse YAML in {file}{}: {message}", fmt_line(*line, *column))]
    Yaml {
        /// The file, relative to the tree root (or the kustomization that produced the stream).
        file: String,
        /// 1-based line of the problem, 0 when unknown.
        line: u64,
        /// 1-based column of the problem, 0 when unknown.
        column: u64,
        /// What the parser reported.
        message: String,
    },
    /// A JSON file is not valid JSON.
    #[error("failed to parse JSON in {file}{}: {message}", fmt_line(*line, *column))]
    Json {
        /// The file, relative to the tree root.
        file: String,
        /// 1-based line of the problem.
        line: u64,
        /// 1-based column of the problem.
        column: u64,
        /// What the parser reported.
        message: String,
    },
    /// A document is not a mapping (for example a bare string or a sequence).
    #[error("failed to read an object from {source_ref}: the document is a {found}, not a mapping")]
    NotAnObject {
        /// Where the document is.
        source_ref: SourceRef,
        /// What the document is instead ("string", "sequence", ...).
        found: &'static str,
    },
    /// A document lacks fields every Kubernetes object needs.
    #[error("failed to read an object from {source_ref}: missing {}", fields.join(", "))]
    MissingFields {
        /// Where the document is.
        source_ref: SourceRef,
        /// The missing fields, e.g. `apiVersion`, `kind`, `metadata.name`.
        fields: Vec<&'static str>,
    },
    /// `apiVersion` is not `version` or `group/version`.
    #[error("failed to read an object from {source_ref}: invalid apiVersion {api_version:?}")]
    InvalidApiVersion {
        /// Where the document is.
        source_ref: SourceRef,
        /// The value found.
        api_version: String,
    },
    /// A SOPS-encrypted document could not be decrypted (no keys, keys that do not fit, an altered document).
    #[error("failed to decrypt document {} of {file}: {message}", document + 1)]
    Decrypt {
        /// The file, relative to the tree root (or the kustomization that produced the stream).
        file: String,
        /// 0-based index of the document in the file.
        document: usize,
        /// Why (never a secret value).
        message: String,
    },
    /// Two documents describe the same object.
    #[error("duplicate object {id}: defined in {first} and in {second}")]
    DuplicateObject {
        /// The object identity (group, kind, namespace, name).
        id: String,
        /// Where it is defined first.
        first: Box<SourceRef>,
        /// Where it is defined again.
        second: Box<SourceRef>,
    },
    /// An include or exclude pattern is not a valid glob.
    #[error("failed to compile the {which} pattern {pattern:?}")]
    Glob {
        /// "include" or "exclude".
        which: &'static str,
        /// The pattern as given.
        pattern: String,
        /// The cause.
        #[source]
        source: globset::Error,
    },
    /// A kustomization refers to a path outside the repository (absolute, or `..` past the root).
    #[error(
        "kustomization {kustomization} refers to {reference:?}, which is outside the repository"
    )]
    OutsideRepository {
        /// The kustomization file, relative to the tree root.
        kustomization: String,
        /// The offending reference.
        reference: String,
    },
    /// A kustomization names something kustomize would fetch from the network, and remote bases are not allowed.
    #[error(
        "kustomization {kustomization}: {field} entry {reference:?} is a remote base ({why}); remote bases are \
         refused unless kedge run is started with --allow-remote-bases"
    )]
    RemoteBase {
        /// The kustomization file, relative to the tree root.
        kustomization: String,
        /// The field that names it (`resources`, `components`, `helmCharts[].repo`, ...).
        field: String,
        /// The entry as written.
        reference: String,
        /// Why it counts as remote.
        why: String,
    },
    /// A kustomization could not be checked for remote bases (it does not parse, or there are too many).
    #[error("cannot check kustomization {kustomization} for remote bases: {reason}")]
    UncheckedKustomization {
        /// The kustomization file, relative to the tree root.
        kustomization: String,
        /// Why.
        reason: String,
    },
    /// The path is a Helm chart, which this renderer does not render.
    #[error(
        "{path:?} is a Helm chart (it holds Chart.yaml); charts render with Helm, not as a directory"
    )]
    HelmChart {
        /// The application path.
        path: String,
    },
    /// An option of `spec.source.kustomize` cannot be applied.
    #[error("spec.source.kustomize of {}: {message}", fmt_path(path))]
    KustomizeOption {
        /// The application path.
        path: String,
        /// What is wrong, naming the option.
        message: String,
    },
    /// Kustomize options were given for a path that is not a kustomization.
    #[error(
        "spec.source.kustomize is set but {} is not a kustomization (no kustomization.yaml): kustomize options apply \
         only to kustomize sources, as in Argo CD",
        fmt_path(path)
    )]
    NotAKustomization {
        /// The application path.
        path: String,
    },
    /// No kustomize binary and no kubectl was found.
    #[error("failed to find kustomize: tried {tried}")]
    KustomizeNotFound {
        /// The locations searched, for the message.
        tried: String,
    },
    /// Starting kustomize (or reading its output) failed.
    #[error("failed to run {program} for {dir}")]
    KustomizeIo {
        /// The program that was started.
        program: String,
        /// The application directory, relative to the tree root.
        dir: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Kustomize exited with an error.
    #[error("failed to build kustomization {dir} ({status}): {stderr}")]
    KustomizeFailed {
        /// The application directory, relative to the tree root.
        dir: String,
        /// The exit status, as text.
        status: String,
        /// What kustomize printed on stderr (trimmed, at most a few KiB).
        stderr: String,
    },
    /// Kustomize ran longer than the configured timeout and was killed.
    #[error(
        "failed to build kustomization {dir}: kustomize did not finish within {timeout:?} and was killed"
    )]
    KustomizeTimeout {
        /// The application directory, relative to the tree root.
        dir: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Kustomize printed more than the configured maximum and was killed.
    #[error("failed to build kustomization {dir}: output exceeds {limit} bytes")]
    KustomizeOutputTooLarge {
        /// The application directory, relative to the tree root.
        dir: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Several problems; each is listed.
    #[error("failed to render {}: {} errors{}", fmt_path(path), errors.len(), fmt_list(errors))]
    Multiple {
        /// The application path, relative to the tree root.
        path: String,
        /// Every problem found, in source order.
        errors: Vec<RenderError>,
    },
}

impl RenderError {
    /// Every individual error: the list of a [`RenderError::Multiple`], or this error alone.
    pub fn errors(&self) -> Vec<&RenderError> {
        match self {
            RenderError::Multiple { errors, .. } => {
                errors.iter().flat_map(|e| e.errors()).collect()
            }
            other => vec![other],
        }
    }

    /// Folds a list of errors into one: the error itself when there is one, [`RenderError::Multiple`] otherwise.
    pub fn from_list(path: &str, mut errors: Vec<RenderError>) -> RenderError {
        if errors.len() == 1
            && let Some(e) = errors.pop()
        {
            return e;
        }
        RenderError::Multiple {
            path: path.to_owned(),
            errors,
        }
    }
}

fn fmt_path(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

fn fmt_line(line: u64, column: u64) -> String {
    match (line, column) {
        (0, _) => String::new(),
        (l, 0) => format!(" at line {l}"),
        (l, c) => format!(" at line {l} column {c}"),
    }
}

fn fmt_list(errors: &[RenderError]) -> String {
    let mut out = String::new();
    for e in errors {
        let _ = write!(out, "\n  - {e}");
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let _ = write!(out, ": {s}");
            src = s.source();
        }
    }
    out
}
