//! The errors of loading policies: every one names the template, constraint or document it is about.

/// A policy source that cannot be loaded: an invalid template, Rego that does not compile, an invalid or unknown
/// constraint.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A document is neither a valid template nor a valid constraint in the shape Gatekeeper takes.
    #[error("invalid document {document}: {message}")]
    Document {
        /// Which document (`#3`, or the template or constraint it claims to be).
        document: String,
        /// What is wrong with it.
        message: String,
    },
    /// A ConstraintTemplate that Kedge cannot use.
    #[error("invalid ConstraintTemplate {template}: {message}")]
    Template {
        /// The template's `metadata.name`.
        template: String,
        /// What is wrong with it.
        message: String,
    },
    /// A Rego module of a template that does not parse or compile.
    #[error("failed to compile Rego of ConstraintTemplate {template} ({module}): {message}")]
    Rego {
        /// The template's `metadata.name`.
        template: String,
        /// `rego` or `libs[N]`.
        module: String,
        /// The interpreter's message, with the line and column.
        message: String,
    },
    /// A constraint that Kedge cannot use (invalid `match`, unsupported enforcement action, ...).
    #[error("invalid constraint {kind}/{name}: {message}")]
    Constraint {
        /// The constraint's kind.
        kind: String,
        /// The constraint's `metadata.name`.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A constraint whose kind no loaded template defines.
    #[error("constraint {kind}/{name}: no ConstraintTemplate defines kind {kind} (known: {known})")]
    UnknownKind {
        /// The constraint's kind.
        kind: String,
        /// The constraint's `metadata.name`.
        name: String,
        /// The kinds the loaded templates define, comma-separated.
        known: String,
    },
    /// Two documents define the same template or the same constraint.
    #[error("{what} is defined twice")]
    Duplicate {
        /// `ConstraintTemplate k8srequiredlabels` or `constraint K8sRequiredLabels/must-have-owner`.
        what: String,
    },
    /// A file or directory of policies that cannot be read.
    #[error("failed to read {path}")]
    Read {
        /// The file or directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of policies that is not valid YAML or JSON.
    #[error("failed to parse {path}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kedge_render::RenderError,
    },
    /// An error about a document of a file: the file, then the error.
    #[error("{path}: {error}")]
    InFile {
        /// The file the document came from.
        path: String,
        /// The error (shown in this one's message, not as a cause).
        error: Box<PolicyError>,
    },
}
