//! The spans of a reconcile pass, for trace backends (`kedge run --otlp-endpoint`, see docs/tracing.md).
//!
//! A pass is one trace: a root span `reconcile` and a child per phase that does work (`fetch`, `verify`, `render`,
//! `plan`, `apply`, `health`), a fixed handful per pass whatever the application's size. Each carries the
//! application (`kedge.application`, namespace/name), its destination (`kedge.cluster`) and, once resolved, the commit
//! (`kedge.revision`), so that a backend filtering spans by any of them finds every phase. A phase that fails has the
//! error status with the message the Application's status shows (never a secret value: those are masked before they
//! reach any message).
//!
//! These spans have a target of their own, [`TARGET`]: the log output leaves them out (the `reconcile{app=...}` span
//! of the logs is unchanged), so that without a trace exporter no layer wants them and they cost one cached check per
//! call site.

use tracing::Span;

/// The target of every span of this module; logs turn it off, only the trace exporter enables it.
pub const TARGET: &str = "kedge_trace";

/// Longest error message kept on a span (the status keeps the whole message).
const MAX_MESSAGE: usize = 1024;

/// A span of a pass phase named `$name` for the application `$app` (a `&Application`), with the common attributes
/// declared; `parent: $p` sets its parent (the pass span, from a thread of its own), `root` makes it a trace of its
/// own. Extra fields follow the application.
macro_rules! phase_span {
    (root $name:literal, $app:expr $(, $($fields:tt)*)?) => {
        ::tracing::info_span!(
            target: $crate::trace::TARGET,
            parent: None,
            $name,
            kedge.application = %$crate::trace::application_of($app),
            kedge.cluster = %$app.spec.cluster(),
            kedge.revision = ::tracing::field::Empty,
            otel.status_description = ::tracing::field::Empty,
            $($($fields)*)?
        )
    };
    (parent: $parent:expr, $name:literal, $app:expr $(, $($fields:tt)*)?) => {
        ::tracing::info_span!(
            target: $crate::trace::TARGET,
            parent: $parent,
            $name,
            kedge.application = %$crate::trace::application_of($app),
            kedge.cluster = %$app.spec.cluster(),
            kedge.revision = ::tracing::field::Empty,
            otel.status_description = ::tracing::field::Empty,
            $($($fields)*)?
        )
    };
    ($name:literal, $app:expr $(, $($fields:tt)*)?) => {
        ::tracing::info_span!(
            target: $crate::trace::TARGET,
            $name,
            kedge.application = %$crate::trace::application_of($app),
            kedge.cluster = %$app.spec.cluster(),
            kedge.revision = ::tracing::field::Empty,
            otel.status_description = ::tracing::field::Empty,
            $($($fields)*)?
        )
    };
}

pub(crate) use phase_span;

/// `namespace/name` of an application, as the spans name it.
pub fn application_of(app: &kedge_api::Application) -> String {
    crate::reconcile::key_of(app)
}

/// Records the commit a phase works on (a no-op on a span that is disabled or has no such field).
pub fn revision(span: &Span, sha: &str) {
    if !span.is_disabled() {
        span.record("kedge.revision", sha);
    }
}

/// Marks a span failed with `error`'s message (bounded).
pub fn fail(span: &Span, error: &dyn std::fmt::Display) {
    if span.is_disabled() {
        return;
    }
    let mut message = error.to_string();
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    span.record("otel.status_description", message.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_off_without_a_subscriber_that_wants_them() {
        // No subscriber: the span is disabled and recording on it does nothing (and does not panic).
        let app = kedge_api::Application::new("web", Default::default());
        let span = phase_span!(root "reconcile", &app, kedge.decision = ::tracing::field::Empty);
        assert!(span.is_disabled());
        revision(&span, "abc");
        fail(&span, &"failed");
    }
}
