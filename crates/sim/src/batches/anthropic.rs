//! Anthropic's Message Batches (`/v1/messages/batches`), simulated: the requests come in the
//! create call itself, and the results are read as JSON lines once the batch has ended.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Interface, SimBatch, cancel, find, jsonl, listed, not_found, start};
use crate::{SimState, openai_error};

/// `POST /v1/messages/batches`: `requests` of `custom_id` and `params`.
pub(crate) async fn create_anthropic_batch(State(state): State<SimState>, body: Bytes) -> Response {
    let Some(asked) = serde_json::from_slice::<Value>(&body).ok() else {
        return openai_error(StatusCode::BAD_REQUEST, "send JSON", "invalid_json");
    };
    let Some(list) = asked.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty()) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "`requests` must be a non-empty array",
            "missing_field",
        );
    };
    let mut requests = Vec::new();
    for (n, request) in list.iter().enumerate() {
        let (Some(custom_id), Some(params)) =
            (request.get("custom_id").and_then(Value::as_str), request.get("params"))
        else {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("request {n} needs `custom_id` and `params`"),
                "invalid_request",
            );
        };
        requests.push((custom_id.to_string(), "/v1/messages".to_string(), params.clone()));
    }
    let batch = start(&state, Interface::Anthropic, "/v1/messages", "", Value::Null, requests);
    Json(anthropic_batch(&batch)).into_response()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339()
}

/// The batch as Anthropic shows it.
fn anthropic_batch(batch: &SimBatch) -> Value {
    let ended = batch.status != "in_progress";
    let count = |kind: &str| {
        batch
            .results
            .iter()
            .filter(|(_, _, line)| line.pointer("/result/type").and_then(Value::as_str) == Some(kind))
            .count()
    };
    json!({"id": batch.id, "type": "message_batch",
        "processing_status": if ended { "ended" } else { "in_progress" },
        "request_counts": {"processing": if ended { 0 } else { batch.requests.len() }, "succeeded": count("succeeded"),
                           "errored": count("errored"), "canceled": count("canceled"), "expired": count("expired")},
        "ended_at": batch.ended_at.map(rfc3339), "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.created_at + 86_400), "cancel_initiated_at": null,
        "results_url": if ended { json!(format!("/v1/messages/batches/{}/results", batch.id)) } else { Value::Null }})
}

/// `GET /v1/messages/batches/{id}`.
pub(crate) async fn get_anthropic_batch(State(state): State<SimState>, Path(id): Path<String>) -> Response {
    match find(&state, &id, Interface::Anthropic) {
        Some(batch) => Json(anthropic_batch(&batch)).into_response(),
        None => not_found(&id),
    }
}

/// `GET /v1/messages/batches` (newest first).
pub(crate) async fn list_anthropic_batches(State(state): State<SimState>) -> Response {
    let data = listed(&state, Interface::Anthropic, anthropic_batch);
    Json(json!({"data": data, "has_more": false})).into_response()
}

/// `GET /v1/messages/batches/{id}/results` (JSON lines, once the batch has ended).
pub(crate) async fn anthropic_results(State(state): State<SimState>, Path(id): Path<String>) -> Response {
    match find(&state, &id, Interface::Anthropic) {
        Some(batch) if batch.status == "in_progress" => {
            openai_error(StatusCode::BAD_REQUEST, "the batch has not ended", "batch_in_progress")
        }
        Some(batch) => jsonl(batch.results.iter().map(|(_, _, l)| l)).into_response(),
        None => not_found(&id),
    }
}

/// `POST /v1/messages/batches/{id}/cancel`.
pub(crate) async fn cancel_anthropic_batch(
    State(state): State<SimState>,
    Path(id): Path<String>,
) -> Response {
    match cancel(&state, &id, Interface::Anthropic) {
        Some(batch) => Json(anthropic_batch(&batch)).into_response(),
        None => not_found(&id),
    }
}
