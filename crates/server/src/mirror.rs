//! `POST /v1/mirror[/{format}]`: authenticate the source, decode, sample, store, and answer 202
//! with counts only once the accepted rows are committed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evaltap_core::sampling;
use evaltap_ingest::{Adapter, Rejection};
use serde::Serialize;

use crate::{ApiError, AppState, SourceAuth};

/// The answer to a mirror request.
#[derive(Debug, Serialize)]
struct MirrorReply {
    accepted: usize,
    sampled_out: usize,
    duplicates: usize,
    rejected: Vec<Rejection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<SourceAuth, ApiError> {
    let unauthorized = |msg: &str| ApiError::Client(StatusCode::UNAUTHORIZED, msg.into());
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <source key>` header"))?;
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <source key>`"))?;
    state.sources_by_key.get(key).cloned().ok_or_else(|| unauthorized("unknown source key"))
}

fn body_or_limit(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::Client(status, format!("body larger than the {limit}-byte limit; send smaller batches"))
        } else {
            ApiError::Client(status, rejection.body_text())
        }
    })
}

pub(crate) async fn native(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(&state, &evaltap_ingest::formats::native::Native, &headers, body).await.into_response()
}

pub(crate) async fn with_format(
    State(state): State<AppState>,
    Path(format): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(adapter) = evaltap_ingest::adapter(&format) else {
        let known: Vec<&str> = evaltap_ingest::ADAPTERS.iter().map(|a| a.name()).collect();
        return ApiError::not_found(format!("unknown format `{format}` (known: {})", known.join(", ")))
            .into_response();
    };
    ingest(&state, adapter, &headers, body).await.into_response()
}

async fn ingest(
    state: &AppState,
    adapter: &dyn Adapter,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let source = authenticate(state, headers)?;
    let body = body_or_limit(body, state.config.max_body_bytes)?;
    let decoded = adapter.decode(&body, headers).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (kept, sampled_out): (Vec<_>, Vec<_>) = decoded
        .exchanges
        .into_iter()
        .map(|(_, exchange)| exchange)
        .partition(|exchange| sampling::keep(&source.name, &exchange.dedup_key(), source.sample_rate));
    let stored = state.store.insert_exchanges(&source.name, &kept).await?;
    let mut reply = MirrorReply {
        accepted: stored.inserted,
        sampled_out: sampled_out.len(),
        duplicates: stored.duplicates,
        rejected: decoded.rejected,
        error: None,
    };
    let nothing_taken = reply.accepted + reply.sampled_out + reply.duplicates == 0;
    let status = if nothing_taken && !reply.rejected.is_empty() {
        reply.error = Some(match reply.rejected.as_slice() {
            [only] => only.reason.clone(),
            many => format!("all {} items were rejected", many.len()),
        });
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(reply)).into_response())
}
