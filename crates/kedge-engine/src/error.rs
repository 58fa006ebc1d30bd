//! Error types of the engine.

/// A desired or live object is malformed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// A required field is absent.
    #[error("failed to read object: missing {field}")]
    MissingField {
        /// Dotted path of the missing field.
        field: &'static str,
    },
    /// A Kedge annotation has a value that cannot be parsed.
    #[error("failed to read annotation {annotation}: invalid value {value:?}")]
    InvalidAnnotation {
        /// The annotation key.
        annotation: &'static str,
        /// The offending value.
        value: String,
    },
    /// Kedge's annotation and Argo CD's equivalent are both set and say different things.
    #[error(
        "failed to read annotations: {kedge}={kedge_value:?} and {argocd}={argocd_value:?} disagree; \
         set one of them, or both to the same value"
    )]
    ConflictingAnnotations {
        /// Kedge's annotation key.
        kedge: &'static str,
        /// Its value.
        kedge_value: String,
        /// Argo CD's annotation key.
        argocd: &'static str,
        /// Its value.
        argocd_value: String,
    },
    /// An option Kedge recognises but cannot honour.
    #[error("failed to read annotation {annotation}: {option} is not supported: {reason}")]
    UnsupportedOption {
        /// The annotation key.
        annotation: &'static str,
        /// The option as written, e.g. `ServerSideApply=false`.
        option: String,
        /// Why Kedge refuses it.
        reason: &'static str,
    },
}

/// Errors that stop a whole plan or sync (per-object failures are reported in the results instead).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// API discovery failed.
    #[error("failed to discover the cluster's API resources")]
    Discovery {
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A health rule's CEL expression does not compile.
    #[error("failed to compile health rule for {group}/{kind}: {message}")]
    HealthRule {
        /// API group the rule applies to.
        group: String,
        /// Kind the rule applies to.
        kind: String,
        /// Parser message.
        message: String,
    },
    /// An ignoreDifferences JSON pointer is malformed.
    #[error("failed to parse ignoreDifferences pointer {pointer:?}: it must start with '/'")]
    IgnorePointer {
        /// The offending pointer.
        pointer: String,
    },
}
