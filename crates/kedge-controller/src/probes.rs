//! The controller's own HTTP endpoints: the probes `/livez`, `/healthz` and `/readyz` (served with the UI routes on
//! `--listen`) and `/metrics` (served alone on `--metrics-listen`, so that the UI port does not expose it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Latches that together make the controller ready: its caches are synced and the first source check finished.
#[derive(Default, Debug)]
pub struct Readiness {
    caches_synced: AtomicBool,
    first_check_done: AtomicBool,
}

impl Readiness {
    /// Marks the watch caches as synced.
    pub fn set_caches_synced(&self) {
        self.caches_synced.store(true, Ordering::Release);
    }
    /// Marks the first round of source checks as done.
    pub fn set_first_check_done(&self) {
        self.first_check_done.store(true, Ordering::Release);
    }
    /// Whether every latch is set.
    pub fn is_ready(&self) -> bool {
        self.caches_synced.load(Ordering::Acquire) && self.first_check_done.load(Ordering::Acquire)
    }
}

/// The probe routes, to be merged with other routes (API, UI) by the caller.
pub fn probe_routes(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// The metrics route, for a listener of its own.
pub fn metrics_routes(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics)
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches or first source check pending",
        )
    }
}

async fn metrics_handler(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Serves `router` on `listen` until `shutdown` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "serving HTTP");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    async fn status_of(router: Router, path: &str) -> StatusCode {
        let req = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request");
        tokio::time::timeout(Duration::from_secs(5), router.oneshot(req))
            .await
            .expect("in time")
            .expect("served")
            .status()
    }

    #[tokio::test]
    async fn readyz_waits_for_every_latch() {
        let readiness = Arc::new(Readiness::default());
        let router = probe_routes(readiness.clone());
        assert_eq!(status_of(router.clone(), "/livez").await, StatusCode::OK);
        assert_eq!(
            status_of(router.clone(), "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_caches_synced();
        assert_eq!(
            status_of(router.clone(), "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_first_check_done();
        assert_eq!(status_of(router.clone(), "/readyz").await, StatusCode::OK);
        // Metrics are not among the probes (they have a listener of their own).
        assert_eq!(status_of(router, "/metrics").await, StatusCode::NOT_FOUND);
        let metrics = metrics_routes(Metrics::new());
        assert_eq!(status_of(metrics.clone(), "/metrics").await, StatusCode::OK);
        assert_eq!(status_of(metrics, "/readyz").await, StatusCode::NOT_FOUND);
    }
}
