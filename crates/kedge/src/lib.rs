//! The library part of the `kedge` binary: the conversions its commands offer and the telemetry of `kedge run`, kept
//! apart from the command line so that they are tested on their own.
//!
//! - [`argocd`]: Argo CD's resources (Applications, repository Secrets) as Kedge's, field by field, with every
//!   field that has no equivalent reported by the line it came from (`kedge import argocd`).
//! - [`telemetry`]: the logs and OpenTelemetry traces of `kedge run` (`--otlp-endpoint`).

pub mod argocd;
pub mod telemetry;
