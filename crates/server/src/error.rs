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

/// `Query` whose rejection is an [`ApiError`]: every error the API returns has one shape.
pub(crate) struct ApiQuery<T>(pub T);

/// `Path` whose rejection is an [`ApiError`].
pub(crate) struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::Client(e.status(), e.body_text()))
    }
}

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::Client(e.status(), e.body_text()))
    }
}

/// The JSON body of every error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Requests no route matches.
pub(crate) async fn no_route(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::not_found(format!("no such page or endpoint: {method} {}", uri.path()))
}

/// Requests with a method the route does not take.
pub(crate) async fn wrong_method(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::Client(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
}

impl From<crate::writer::WriteError> for ApiError {
    fn from(err: crate::writer::WriteError) -> Self {
        ApiError::Internal(err.to_string())
    }
}
