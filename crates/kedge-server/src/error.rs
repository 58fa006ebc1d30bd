//! Errors of the API: JSON bodies `{"message": "...", "code": 404}` with the matching HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to an API client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    code: u16,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 500, for failures talking to the cluster or the repository.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// 502, when the Kubernetes API refuses or fails a request.
    pub fn kube(action: &str, err: &kube::Error) -> Self {
        match err {
            kube::Error::Api(s) if s.code == 404 => {
                Self::not_found(format!("failed to {action}: not found"))
            }
            kube::Error::Api(s) if s.code == 409 => Self::new(
                StatusCode::CONFLICT,
                format!("failed to {action}: {}", s.message),
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                format!("failed to {action}: {err}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            message: &self.message,
            code: self.status.as_u16(),
        };
        (self.status, Json(body)).into_response()
    }
}
