//! Errors of resolving and rendering charts. Messages never hold values read from Secrets nor credentials.

use std::path::PathBuf;
use std::time::Duration;

/// Failure to resolve or render a chart.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The cluster the application deploys to could not be resolved (its `.Capabilities` are read there).
    #[error("cannot resolve the destination cluster: {0}")]
    Destination(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The application's spec cannot be acted on.
    #[error("invalid Helm source: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// No helm binary was found.
    #[error(
        "failed to find the helm binary (tried {tried}); install Helm or set the helm path (KEDGE_HELM)"
    )]
    HelmNotFound {
        /// The places looked at.
        tried: String,
    },
    /// Starting or talking to helm failed.
    #[error("failed to run {program}")]
    HelmIo {
        /// The binary.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `helm template` failed; `stderr` is Helm's message with Secret values masked.
    #[error("helm template of chart {chart} failed ({status}): {stderr}")]
    HelmFailed {
        /// The chart (name and version, or path).
        chart: String,
        /// The exit status.
        status: String,
        /// The end of Helm's error output.
        stderr: String,
    },
    /// The chart declares Helm 2 `crd-install` hooks, which `helm template` (Helm 3) leaves out of its output.
    #[error(
        "chart {chart} declares helm.sh/hook: crd-install (Helm 2), which Helm 3 leaves out of the render: \
         move those CustomResourceDefinitions to the chart's crds/ directory or drop the annotation"
    )]
    CrdInstallHook {
        /// The chart.
        chart: String,
    },
    /// `helm template` ran longer than allowed.
    #[error("helm template of chart {chart} did not finish within {timeout:?}")]
    HelmTimeout {
        /// The chart.
        chart: String,
        /// The limit.
        timeout: Duration,
    },
    /// `helm template` produced more output than allowed.
    #[error("helm template of chart {chart} produced more than {limit} bytes")]
    OutputTooLarge {
        /// The chart.
        chart: String,
        /// The limit.
        limit: usize,
    },
    /// A values file, `values` or a `valuesFrom` document is not a YAML mapping.
    #[error("failed to read values from {origin}: {reason}")]
    Values {
        /// Where the values come from (a file name, `values`, `Secret ns/name key`); never the content.
        origin: String,
        /// Why.
        reason: String,
    },
    /// A `valuesFrom` object or key is missing and not optional.
    #[error("failed to read values from {kind} {namespace}/{name} key {key:?}: {reason}")]
    ValuesFrom {
        /// Secret or ConfigMap.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Reading a Secret, ConfigMap or discovery from the cluster failed.
    #[error("failed to {action}")]
    Kube {
        /// What was attempted.
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The chart repository or registry could not be read.
    #[error("failed to {action} from {url}: {reason}")]
    Repository {
        /// What was attempted (e.g. `read the index`, `download chart x 1.2.3`).
        action: String,
        /// The URL, without credentials.
        url: String,
        /// Why.
        reason: String,
        /// Whether retrying later may succeed (network trouble, 5xx).
        retryable: bool,
    },
    /// No chart version satisfies the constraint.
    #[error("failed to resolve chart {chart} {constraint:?} in {url}: {reason}")]
    NoVersion {
        /// The chart.
        chart: String,
        /// The version constraint.
        constraint: String,
        /// The repository, without credentials.
        url: String,
        /// Why (no match, and which versions exist).
        reason: String,
    },
    /// The downloaded chart does not have the digest the repository announced.
    #[error("chart {chart} from {url} has digest {actual}, the repository announced {expected}")]
    DigestMismatch {
        /// The chart and version.
        chart: String,
        /// Where it came from, without credentials.
        url: String,
        /// The announced digest.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A local file or directory operation failed.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the Git tree (or fetching it) failed.
    #[error(transparent)]
    Source(#[from] kedge_source::SourceError),
    /// Reading a file of the source tree failed.
    #[error("failed to read {path} from the source tree")]
    Tree {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: kedge_source::TreeError,
    },
    /// Parsing Helm's output or post-rendering it failed.
    #[error(transparent)]
    Render(#[from] kedge_render::RenderError),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl HelmError {
    /// The condition reason for this error, in the controller's vocabulary.
    pub fn reason(&self) -> &'static str {
        match self {
            HelmError::InvalidSpec { .. } => "InvalidSpec",
            HelmError::Repository { .. }
            | HelmError::NoVersion { .. }
            | HelmError::DigestMismatch { .. }
            | HelmError::Source(_)
            | HelmError::Tree { .. } => "SourceFailed",
            HelmError::Kube { .. } => "ComparisonFailed",
            HelmError::Task(_) => "InternalError",
            _ => "RenderFailed",
        }
    }

    /// Whether the same input may succeed later (network trouble, a missing Secret that may appear) rather than
    /// needing a new chart, commit or spec.
    pub fn is_retryable(&self) -> bool {
        match self {
            HelmError::Repository { retryable, .. } => *retryable,
            HelmError::Source(e) => e.is_retryable(),
            HelmError::Kube { .. }
            | HelmError::ValuesFrom { .. }
            | HelmError::NoVersion { .. }
            | HelmError::HelmTimeout { .. }
            | HelmError::HelmIo { .. }
            | HelmError::Io { .. }
            | HelmError::Task(_) => true,
            _ => false,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        HelmError::InvalidSpec {
            reason: reason.into(),
        }
    }
}
