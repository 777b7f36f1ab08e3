//! The providers' batch interfaces, simulated: OpenAI's (`POST /v1/files` with
//! `purpose=batch`, then `/v1/batches`) and Anthropic's Message Batches
//! (`/v1/messages/batches`). A batch's requests are answered by the same handlers that answer
//! one call at a time — same answers, same token counts, each counted in the call log — after a
//! completion delay, and billed at the batch discount. A batch can be made to expire instead
//! (the completion window passing with nothing run), for tests of what a caller does then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{CallLog, SimState, apis, chat, openai_error};

mod anthropic;
pub(crate) use anthropic::{
    anthropic_results, cancel_anthropic_batch, create_anthropic_batch, get_anthropic_batch,
    list_anthropic_batches,
};

/// The discount OpenAI and Anthropic give batched calls.
pub const BATCH_DISCOUNT: f64 = 0.5;

/// Which interface a batch came in by (its answers and status are shaped after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interface {
    OpenAi,
    Anthropic,
}

/// One batch: its requests (custom id, endpoint path, body), and once run, its result lines.
#[derive(Debug, Clone)]
struct SimBatch {
    id: String,
    interface: Interface,
    endpoint: String,
    input_file_id: String,
    metadata: Value,
    requests: Vec<(String, String, Value)>,
    /// `in_progress`, `completed`, `expired` or `cancelled`.
    status: &'static str,
    created_at: i64,
    ended_at: Option<i64>,
    /// (custom id, succeeded, the line as the interface writes it).
    results: Vec<(String, bool, Value)>,
}

/// How batches behave, set over `/control/batches`.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    delay: Duration,
    expire: bool,
}

#[derive(Debug)]
struct Book {
    files: HashMap<String, Vec<u8>>,
    batches: Vec<SimBatch>,
    behaviour: Behaviour,
}

/// The simulated batches and uploaded files, shared by the handlers.
#[derive(Debug, Clone)]
pub struct Batches(Arc<Mutex<Book>>);

impl Default for Batches {
    fn default() -> Self {
        Batches(Arc::new(Mutex::new(Book {
            files: HashMap::new(),
            batches: Vec::new(),
            behaviour: Behaviour { delay: Duration::from_millis(200), expire: false },
        })))
    }
}

impl Batches {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long a batch takes to complete from its creation.
    pub fn set_delay(&self, delay: Duration) {
        self.book().behaviour.delay = delay;
    }

    /// Whether batches created from now on expire unrun at the end of their delay.
    pub fn set_expire(&self, expire: bool) {
        self.book().behaviour.expire = expire;
    }

    /// Batches created so far, over both interfaces.
    pub fn created(&self) -> usize {
        self.book().batches.len()
    }

    /// Requests submitted in all batches so far.
    pub fn requests(&self) -> usize {
        self.book().batches.iter().map(|b| b.requests.len()).sum()
    }

    /// Batches by status.
    pub fn by_status(&self) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for batch in &self.book().batches {
            *counts.entry(batch.status).or_insert(0) += 1;
        }
        counts
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `POST /v1/files` (multipart: `purpose`, `file`).
pub(crate) async fn upload_file(State(state): State<SimState>, mut form: Multipart) -> Response {
    let (mut purpose, mut file) = (None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let filename = field.file_name().map(str::to_string);
                match field.bytes().await {
                    Ok(bytes) if name == "purpose" => {
                        purpose = Some(String::from_utf8_lossy(&bytes).to_string())
                    }
                    Ok(bytes) if name == "file" => file = Some((filename.unwrap_or_default(), bytes)),
                    Ok(_) => {}
                    Err(err) => {
                        return openai_error(StatusCode::BAD_REQUEST, err.to_string(), "invalid_upload");
                    }
                }
            }
            Ok(None) => break,
            Err(err) => return openai_error(StatusCode::BAD_REQUEST, err.to_string(), "invalid_upload"),
        }
    }
    let (Some(purpose), Some((filename, bytes))) = (purpose, file) else {
        return openai_error(StatusCode::BAD_REQUEST, "send `purpose` and `file`", "invalid_upload");
    };
    let mut book = state.batches.book();
    let id = format!("file-sim-{}", book.files.len() + 1);
    let size = bytes.len();
    book.files.insert(id.clone(), bytes.to_vec());
    Json(json!({"id": id, "object": "file", "bytes": size, "created_at": now_secs(), "filename": filename,
                "purpose": purpose}))
    .into_response()
}

/// `GET /v1/files/{id}/content`.
pub(crate) async fn file_content(State(state): State<SimState>, Path(id): Path<String>) -> Response {
    match state.batches.book().files.get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => openai_error(StatusCode::NOT_FOUND, format!("no file `{id}`"), "file_not_found"),
    }
}

/// `POST /v1/batches`: the input file's lines are the requests.
pub(crate) async fn create_openai_batch(State(state): State<SimState>, body: Bytes) -> Response {
    let Ok(asked) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(StatusCode::BAD_REQUEST, "send JSON", "invalid_json");
    };
    let (Some(file_id), Some(endpoint)) =
        (asked.get("input_file_id").and_then(Value::as_str), asked.get("endpoint").and_then(Value::as_str))
    else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "`input_file_id` and `endpoint` are required",
            "missing_field",
        );
    };
    let Some(content) = state.batches.book().files.get(file_id).cloned() else {
        return openai_error(StatusCode::NOT_FOUND, format!("no file `{file_id}`"), "file_not_found");
    };
    let mut requests = Vec::new();
    for (n, line) in String::from_utf8_lossy(&content).lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("line {} is not JSON", n + 1),
                "invalid_file",
            );
        };
        let (Some(custom_id), Some(url), Some(body)) = (
            line.get("custom_id").and_then(Value::as_str),
            line.get("url").and_then(Value::as_str),
            line.get("body"),
        ) else {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("line {} needs `custom_id`, `url` and `body`", n + 1),
                "invalid_file",
            );
        };
        if url != endpoint {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("line {} is for {url}", n + 1),
                "invalid_file",
            );
        }
        requests.push((custom_id.to_string(), url.to_string(), body.clone()));
    }
    let metadata = asked.get("metadata").cloned().unwrap_or(Value::Null);
    let batch = start(&state, Interface::OpenAi, endpoint, file_id, metadata, requests);
    Json(openai_batch(&batch)).into_response()
}

/// Records a new batch and runs it in the background after the configured delay.
fn start(
    state: &SimState,
    interface: Interface,
    endpoint: &str,
    input_file_id: &str,
    metadata: Value,
    requests: Vec<(String, String, Value)>,
) -> SimBatch {
    let mut book = state.batches.book();
    let prefix = if interface == Interface::OpenAi { "batch_sim_" } else { "msgbatch_sim_" };
    let batch = SimBatch {
        id: format!("{prefix}{}", book.batches.len() + 1),
        interface,
        endpoint: endpoint.into(),
        input_file_id: input_file_id.into(),
        metadata,
        requests,
        status: "in_progress",
        created_at: now_secs(),
        ended_at: None,
        results: Vec::new(),
    };
    book.batches.push(batch.clone());
    let behaviour = book.behaviour;
    drop(book);
    let (state, id) = (state.clone(), batch.id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(behaviour.delay).await;
        run(&state, &id, behaviour.expire).await;
    });
    batch
}

/// Answers a batch's requests (unless it expires or was cancelled meanwhile), billing them at
/// the batch discount.
async fn run(state: &SimState, id: &str, expire: bool) {
    let Some(batch) = state.batches.book().batches.iter().find(|b| b.id == id).cloned() else { return };
    if batch.status != "in_progress" {
        return;
    }
    let ended = if expire { "expired" } else { "completed" };
    let results = if expire {
        batch.requests.iter().map(|(custom_id, _, _)| unrun(batch.interface, custom_id, "expired")).collect()
    } else {
        // The batch's calls share the call log's counts but keep their own bill, added at the
        // discount.
        let mut inner = state.clone();
        inner.calls = CallLog(state.calls.0.clone(), Arc::default());
        let answers = futures::future::join_all(
            batch
                .requests
                .iter()
                .map(|(custom_id, url, body)| answer(&inner, batch.interface, custom_id, url, body)),
        )
        .await;
        let billed = inner.calls.billed_usd() * (1.0 - BATCH_DISCOUNT);
        *state.calls.1.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += billed;
        answers
    };
    let mut book = state.batches.book();
    if let Some(stored) = book.batches.iter_mut().find(|b| b.id == id && b.status == "in_progress") {
        stored.status = ended;
        stored.ended_at = Some(now_secs());
        stored.results = results;
    }
}

/// A request's result line, answered by the handler its URL names.
async fn answer(
    state: &SimState,
    interface: Interface,
    custom_id: &str,
    url: &str,
    body: &Value,
) -> (String, bool, Value) {
    let bytes = Bytes::from(body.to_string());
    let response = match url {
        "/v1/chat/completions" => chat::chat_completions(State(state.clone()), bytes).await,
        "/v1/responses" => apis::responses(State(state.clone()), bytes).await,
        "/v1/messages" => apis::anthropic_messages(State(state.clone()), bytes).await,
        other => openai_error(StatusCode::NOT_FOUND, format!("no endpoint {other}"), "unknown_endpoint"),
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
    let body: Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&body)}));
    let ok = status.is_success();
    let line = match interface {
        Interface::OpenAi => json!({"id": format!("batch_req_{custom_id}"), "custom_id": custom_id,
            "response": {"status_code": status.as_u16(), "request_id": format!("req_{custom_id}"), "body": body},
            "error": null}),
        Interface::Anthropic if ok => {
            json!({"custom_id": custom_id, "result": {"type": "succeeded", "message": body}})
        }
        Interface::Anthropic => json!({"custom_id": custom_id, "result": {"type": "errored",
            "error": {"type": "error", "error": {"type": "invalid_request_error", "message": body.to_string()}}}}),
    };
    (custom_id.to_string(), ok, line)
}

/// The line of a request the batch never ran (`expired` or `canceled`).
fn unrun(interface: Interface, custom_id: &str, why: &str) -> (String, bool, Value) {
    let line = match interface {
        Interface::OpenAi => {
            json!({"id": format!("batch_req_{custom_id}"), "custom_id": custom_id, "response": null,
            "error": {"code": format!("batch_{why}"), "message": format!("This request could not be executed before the batch was {why}.")}})
        }
        Interface::Anthropic => {
            let kind = if why == "cancelled" { "canceled" } else { why };
            json!({"custom_id": custom_id, "result": {"type": kind}})
        }
    };
    (custom_id.to_string(), false, line)
}

fn jsonl<'a>(lines: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The batch as OpenAI shows it; its output and error files are written once it has ended.
fn openai_batch(batch: &SimBatch) -> Value {
    let ended = batch.status != "in_progress";
    let failed = batch.results.iter().filter(|(_, ok, _)| !ok).count();
    let completed = batch.results.len() - failed;
    let file = |kind: &str, any: bool| {
        if ended && any { json!(format!("file-{}-{kind}", batch.id)) } else { Value::Null }
    };
    json!({"id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors": null,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": batch.status,
        "output_file_id": file("output", completed > 0), "error_file_id": file("errors", failed > 0),
        "created_at": batch.created_at, "in_progress_at": batch.created_at, "expires_at": batch.created_at + 86_400,
        "completed_at": if batch.status == "completed" { json!(batch.ended_at) } else { Value::Null },
        "expired_at": if batch.status == "expired" { json!(batch.ended_at) } else { Value::Null },
        "cancelled_at": if batch.status == "cancelled" { json!(batch.ended_at) } else { Value::Null },
        "request_counts": {"total": batch.requests.len(), "completed": completed, "failed": failed},
        "metadata": batch.metadata})
}

fn not_found(id: &str) -> Response {
    openai_error(StatusCode::NOT_FOUND, format!("no batch `{id}`"), "batch_not_found")
}

fn find(state: &SimState, id: &str, interface: Interface) -> Option<SimBatch> {
    state.batches.book().batches.iter().find(|b| b.id == id && b.interface == interface).cloned()
}

/// `GET /v1/batches/{id}`.
pub(crate) async fn get_openai_batch(State(state): State<SimState>, Path(id): Path<String>) -> Response {
    match find(&state, &id, Interface::OpenAi) {
        Some(batch) => {
            // Writes the output and error files the batch object names.
            if batch.status != "in_progress" {
                let mut book = state.batches.book();
                let output = jsonl(batch.results.iter().filter(|(_, ok, _)| *ok).map(|(_, _, l)| l));
                let errors = jsonl(batch.results.iter().filter(|(_, ok, _)| !ok).map(|(_, _, l)| l));
                book.files.insert(format!("file-{}-output", batch.id), output);
                book.files.insert(format!("file-{}-errors", batch.id), errors);
            }
            Json(openai_batch(&batch)).into_response()
        }
        None => not_found(&id),
    }
}

/// `GET /v1/batches` (newest first, all of them).
pub(crate) async fn list_openai_batches(State(state): State<SimState>) -> Response {
    let data = listed(&state, Interface::OpenAi, openai_batch);
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

/// The batches that came in by `interface`, newest first, each as `shape` shows it.
fn listed(state: &SimState, interface: Interface, shape: fn(&SimBatch) -> Value) -> Vec<Value> {
    state.batches.book().batches.iter().rev().filter(|b| b.interface == interface).map(shape).collect()
}

/// Cancels a batch still in progress: its requests are never run.
fn cancel(state: &SimState, id: &str, interface: Interface) -> Option<SimBatch> {
    let mut book = state.batches.book();
    let batch = book.batches.iter_mut().find(|b| b.id == id && b.interface == interface)?;
    if batch.status == "in_progress" {
        batch.status = "cancelled";
        batch.ended_at = Some(now_secs());
        batch.results =
            batch.requests.iter().map(|(custom_id, _, _)| unrun(interface, custom_id, "cancelled")).collect();
    }
    Some(batch.clone())
}

/// `POST /v1/batches/{id}/cancel`.
pub(crate) async fn cancel_openai_batch(State(state): State<SimState>, Path(id): Path<String>) -> Response {
    match cancel(&state, &id, Interface::OpenAi) {
        Some(batch) => Json(openai_batch(&batch)).into_response(),
        None => not_found(&id),
    }
}

/// `POST /control/batches {"delay_ms", "expire"}` sets how batches behave; `GET` counts them.
pub(crate) async fn control(State(state): State<SimState>, body: Bytes) -> Response {
    if !body.is_empty() {
        let Ok(asked) = serde_json::from_slice::<Value>(&body) else {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "send JSON: {\"delay_ms\", \"expire\"}",
                "bad_control",
            );
        };
        if let Some(ms) = asked.get("delay_ms").and_then(Value::as_u64) {
            state.batches.set_delay(Duration::from_millis(ms));
        }
        if let Some(expire) = asked.get("expire").and_then(Value::as_bool) {
            state.batches.set_expire(expire);
        }
    }
    batch_counts(State(state)).await
}

/// `GET /control/batches`: batches created, requests submitted, batches by status.
pub(crate) async fn batch_counts(State(state): State<SimState>) -> Response {
    let batches = &state.batches;
    Json(json!({"created": batches.created(), "requests": batches.requests(), "by_status": batches.by_status()}))
        .into_response()
}
