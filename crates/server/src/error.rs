use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error as the API shows it: a status and a message. Internal failures are logged in full
/// and shown without their details.
#[derive(Debug)]
pub enum ApiError {
    /// The client sent something wrong (4xx).
    Client(StatusCode, String),
    /// Over capacity: 503 with `Retry-After`.
    Unavailable {
        /// Seconds to wait.
        retry_after_secs: u64,
        /// Why.
        message: String,
    },
    /// Something failed on our side (500).
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::Client(StatusCode::BAD_REQUEST, msg.into())
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::Client(StatusCode::NOT_FOUND, msg.into())
    }
}

impl From<evaltap_store::StoreError> for ApiError {
    fn from(err: evaltap_store::StoreError) -> Self {
        match err {
            evaltap_store::StoreError::NotFound(msg) => ApiError::not_found(msg),
            evaltap_store::StoreError::Conflict(msg) => ApiError::Client(StatusCode::CONFLICT, msg),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client(status, message) => (status, Json(json!({"error": message}))).into_response(),
            ApiError::Unavailable { retry_after_secs, message } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())],
                Json(json!({"error": message})),
            )
                .into_response(),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal error; see the server log"})),
                )
                    .into_response()
            }
        }
    }
}

impl From<crate::writer::WriteError> for ApiError {
    fn from(err: crate::writer::WriteError) -> Self {
        ApiError::Internal(err.to_string())
    }
}
