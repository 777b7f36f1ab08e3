//! `POST /v1/mirror[/{format}]` and `POST /v1/traces`: the door. In order: capacity (503 with
//! `Retry-After` when full), body limit (413), gzip, source authentication (bearer key, or a
//! valid signature for sources that sign), decoding, redaction, sampling, and storage — the
//! reply (202 with counts) is sent only once the accepted rows are committed.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evaltap_ingest::{Adapter, Rejection};
use serde::Serialize;

use crate::sources::Source;
use crate::{ApiError, AppState};

/// The answer to a mirror request.
#[derive(Debug, Serialize)]
struct MirrorReply {
    accepted: usize,
    sampled_out: usize,
    duplicates: usize,
    rejected: Vec<Rejection>,
    /// All rejections, of which `rejected` lists the first [`MAX_LISTED_REJECTIONS`].
    rejected_total: usize,
    redactions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Longest a delivery waits for the database before it is told to retry.
const STORE_TIMEOUT: Duration = Duration::from_secs(15);

/// The source a request claims to be, from its headers and query alone — before any of its
/// body is read.
fn identify(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Arc<Source>, ApiError> {
    let unauthorized = |msg: &str| ApiError::Client(StatusCode::UNAUTHORIZED, msg.into());
    match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <source key>`"))?;
            state.sources.by_key(key).ok_or_else(|| unauthorized("unknown source key"))
        }
        // Gateways that sign but cannot send headers name their source in the URL.
        None => match query.get("source").and_then(|name| state.sources.by_name(name)) {
            Some(source) if source.requires_signature() => Ok(source),
            _ => Err(unauthorized("missing `Authorization: Bearer <source key>` header")),
        },
    }
}

/// The source of a request whose body has been read: its key, and its signature when the
/// source signs.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Arc<Source>, ApiError> {
    let unauthorized = |msg: &str| ApiError::Client(StatusCode::UNAUTHORIZED, msg.into());
    let source = identify(state, headers, query)?;
    if source.requires_signature() {
        let signature = ["helicone-signature", "x-evaltap-signature"]
            .iter()
            .find_map(|h| headers.get(*h))
            .and_then(|v| v.to_str().ok());
        if !source.signature_valid(body, signature) {
            return Err(unauthorized(
                "missing or invalid signature (Helicone-Signature or X-Evaltap-Signature: hex HMAC-SHA256 of the body)",
            ));
        }
    }
    Ok(source)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::Client(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body larger than the {limit}-byte limit; send smaller batches"),
    )
}

fn body_or_limit(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(limit)
        } else {
            ApiError::Client(rejection.status(), rejection.body_text())
        }
    })
}

/// Inflates a gzip body (`Content-Encoding: gzip`), holding the same size limit.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

pub(crate) async fn native(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(&state, &evaltap_ingest::formats::native::Native, &headers, &query, body)
        .await
        .map_or_else(IntoResponse::into_response, |(s, r)| (s, Json(r)).into_response())
}

pub(crate) async fn with_format(
    State(state): State<AppState>,
    Path(format): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(adapter) = evaltap_ingest::adapter(&format) else {
        let known: Vec<&str> = evaltap_ingest::ADAPTERS.iter().map(|a| a.name()).collect();
        return ApiError::not_found(format!("unknown format `{format}` (known: {})", known.join(", ")))
            .into_response();
    };
    ingest(&state, adapter, &headers, &query, body)
        .await
        .map_or_else(IntoResponse::into_response, |(s, r)| (s, Json(r)).into_response())
}

/// `POST /v1/traces`: OTLP/HTTP answers 200 with an `ExportTraceServiceResponse` (empty for
/// protobuf; JSON with `partialSuccess` plus evaltap's counts).
pub(crate) async fn otlp_traces(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("protobuf"));
    match ingest(&state, &evaltap_ingest::formats::otlp::Otlp, &headers, &query, body).await {
        Ok((status, _)) if protobuf && status.is_success() => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], Vec::new()).into_response()
        }
        Ok((status, reply)) if status.is_success() => {
            let partial = serde_json::json!({"rejectedSpans": reply.rejected_total,
                "errorMessage": reply.rejected.first().map(|r| r.reason.clone()).unwrap_or_default()});
            let mut body = serde_json::to_value(&reply).unwrap_or_default();
            body["partialSuccess"] = partial;
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok((status, reply)) => (status, Json(reply)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Rejections a reply lists (the rest are counted in `rejected_total`).
pub const MAX_LISTED_REJECTIONS: usize = 100;

async fn ingest(
    state: &AppState,
    adapter: &'static dyn Adapter,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, MirrorReply), ApiError> {
    let limit = state.config.max_body_bytes;
    let body = decompress(headers, body_or_limit(body, limit)?, limit)?;
    let source = authenticate(state, headers, query, &body)?;
    // Bounded before decoding: a body of millions of tiny items would decode into structures
    // many times its size.
    if let Err(err) = evaltap_ingest::within_value_limit(&body, headers, state.config.max_body_values) {
        let status = if err.too_large() { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
        return Err(ApiError::Client(status, err.to_string()));
    }
    let mut decoded = match adapter.decode(&body, headers) {
        Ok(decoded) => decoded,
        Err(err) if err.too_large() => {
            return Err(ApiError::Client(StatusCode::PAYLOAD_TOO_LARGE, err.to_string()));
        }
        Err(err) => {
            let reason = err.to_string();
            record_rejections(state, &source.config.name, std::slice::from_ref(&reason)).await;
            return Err(ApiError::bad_request(reason));
        }
    };
    // Anything stored must read back: refuse what nests too deep, with the reason.
    let (fit, too_deep): (Vec<_>, Vec<_>) =
        decoded.exchanges.drain(..).partition(|(_, e)| e.too_deep().is_none());
    for (index, exchange) in too_deep {
        let reason = exchange.too_deep().unwrap_or_default();
        decoded.rejected.push(Rejection { index, reason });
    }
    decoded.rejected.sort_by_key(|r| r.index);
    let (kept, counts) = source.admit(fit.into_iter().map(|(_, e)| e), decoded.rejected.len());
    let (stored, counts) = tokio::time::timeout(
        STORE_TIMEOUT,
        state.writer.deliver(&source.config.name, kept, counts, source.config.max_per_minute),
    )
    .await
    .map_err(|_| ApiError::Unavailable {
        retry_after_secs: 5,
        message: "storage is busy; retry shortly".into(),
    })??;
    if !decoded.rejected.is_empty() {
        let reasons: Vec<String> = decoded.rejected.iter().map(|r| r.reason.clone()).collect();
        record_rejections(state, &source.config.name, &reasons).await;
    }
    // A reply lists the first rejections and counts them all: a batch of garbage must not turn
    // into a reply many times its size.
    let rejected_total = decoded.rejected_total();
    decoded.rejected.truncate(MAX_LISTED_REJECTIONS);
    let mut reply = MirrorReply {
        accepted: stored.inserted,
        sampled_out: counts.sampled_out,
        duplicates: stored.duplicates,
        rejected: decoded.rejected,
        rejected_total,
        redactions: counts.redactions,
        error: None,
    };
    let nothing_taken = reply.accepted + reply.sampled_out + reply.duplicates == 0;
    let status = if nothing_taken && !reply.rejected.is_empty() {
        reply.error = Some(match reply.rejected.as_slice() {
            [only] => only.reason.clone(),
            _ => format!("all {rejected_total} items were rejected"),
        });
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, reply))
}

/// Longest refusal reason kept for the sources page.
const MAX_REASON_CHARS: usize = 200;

/// Counts why items were refused, for the sources page. The sender already has its answer, so
/// a failure here is logged, not returned.
async fn record_rejections(state: &AppState, source: &str, reasons: &[String]) {
    let reasons: Vec<String> = reasons.iter().map(|r| r.chars().take(MAX_REASON_CHARS).collect()).collect();
    if let Err(err) = state.store.record_rejections(source, &reasons).await {
        tracing::warn!(%err, source, "recording rejection reasons failed");
    }
}

/// The door, before a handler reads anything: the source is identified from the headers
/// (unknown callers get 401 without a byte of their body read), then takes one of its own slots
/// (a source may use at most half the server's when several send) and one of the server's; a
/// full server answers 503 with `Retry-After` at once. The body must then arrive within the
/// deadline (408 otherwise; signed deliveries, which are authenticated only by their body, get a
/// third of it and a 2 MiB limit).
pub(crate) async fn admit(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let source = match identify(&state, &parts.headers, &query) {
        Ok(source) => source,
        Err(err) => return err.into_response(),
    };
    let busy = || {
        ApiError::Unavailable { retry_after_secs: 1, message: "ingest is at capacity; retry shortly".into() }
            .into_response()
    };
    let Some(_source_slot) =
        state.source_slots.get(&source.config.name).and_then(|s| s.clone().try_acquire_owned().ok())
    else {
        return busy();
    };
    let Ok(_slot) = state.ingest_slots.clone().try_acquire_owned() else {
        return busy();
    };
    let signed_only = parts.headers.get(header::AUTHORIZATION).is_none();
    let deadline = Duration::from_secs(state.config.ingest_body_timeout_secs.max(1));
    let (deadline, limit) = if signed_only {
        (deadline / 3, state.config.max_body_bytes.min(2 << 20))
    } else {
        (deadline, state.config.max_body_bytes)
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = match tokio::time::timeout(deadline, read_body(body, declared, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => return too_large(limit).into_response(),
        Ok(Err(BodyError::Read(err))) => {
            return ApiError::bad_request(format!("reading the body: {err}")).into_response();
        }
        Err(_) => {
            return ApiError::Client(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", deadline.as_secs_f64()),
            )
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads a body of at most `limit` bytes into one buffer, sized from `Content-Length` when it
/// is declared. Each chunk is copied in and dropped as it arrives, so a 16 MB body is held once,
/// not once as chunks and again as their concatenation.
async fn read_body(
    body: axum::body::Body,
    declared: Option<usize>,
    limit: usize,
) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt as _;
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = body;
    let mut buffer = bytes::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(BodyError::Read)?.into_data() else { continue };
        if buffer.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}
