//! The simulated models behind the other two APIs candidates are called over: Anthropic
//! Messages (`POST /v1/messages`) and OpenAI Responses (`POST /v1/responses`). The same models
//! answer the same way as on `/v1/chat/completions` — same tasks, tool calls, token counts,
//! output limits and bill — in each API's own shapes.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_64;

use crate::chat::{assistant_reply, tool_call, within_limit};
use crate::models::{self, Role, SimModel};
use crate::{SimState, count_tokens, judge, openai_error};

/// What a request to either API asks, read into one shape.
struct Asked {
    model: &'static SimModel,
    /// Every text of the prompt (system, turns, tool results), for token counts and the judge.
    texts: Vec<String>,
    /// The last user turn's text.
    last_user: String,
    limit: Option<u64>,
}

/// The answer a simulated model gives, before it is put in an API's shape.
enum Answer {
    Text { text: String, cut: bool },
    Call { name: String, arguments: Value },
}

fn block_texts(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| {
                b.get("text").and_then(Value::as_str).map(str::to_string).or_else(|| match b.get("content") {
                    Some(inner) => Some(block_texts(Some(inner))),
                    None => b.get("output").and_then(Value::as_str).map(str::to_string),
                })
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A request refused: status, message and error code.
type Refusal = (StatusCode, String, &'static str);

fn refused((status, message, code): Refusal) -> Response {
    openai_error(status, message, code)
}

fn read(
    request: &Value,
    items: &[Value],
    system: Option<&Value>,
    limit_field: &str,
) -> Result<Asked, Refusal> {
    let Some(model_id) = request.get("model").and_then(Value::as_str) else {
        return Err((StatusCode::BAD_REQUEST, "`model` is required".into(), "missing_model"));
    };
    let Some(model) = models::find(model_id) else {
        return Err((StatusCode::NOT_FOUND, format!("model `{model_id}` does not exist"), "model_not_found"));
    };
    let mut texts: Vec<String> =
        system.map(|s| block_texts(Some(s))).into_iter().filter(|s| !s.is_empty()).collect();
    let mut last_user = String::new();
    for item in items {
        let text = block_texts(item.get("content")).to_string();
        let text = if text.is_empty() { block_texts(item.get("output")) } else { text };
        if item.get("role").and_then(Value::as_str) == Some("user") && !text.is_empty() {
            last_user = text.clone();
        }
        texts.push(text);
    }
    let limit = request.get(limit_field).and_then(Value::as_u64);
    Ok(Asked { model, texts, last_user, limit })
}

/// What the model answers, billed.
async fn answer(state: &SimState, asked: &Asked, request: &Value) -> (Answer, u64, u64) {
    let accuracy = state.accuracy.get(asked.model);
    let answer = match asked.model.role {
        Role::Judge => {
            let (text, cut) = within_limit(
                judge::judge(asked.model.id, &asked.texts.join("\n"), state.config.judge),
                asked.limit,
            );
            Answer::Text { text, cut }
        }
        Role::Assistant => match tool_call(asked.model, accuracy, request, &asked.last_user) {
            Some((name, arguments)) => Answer::Call { name, arguments },
            None => {
                let (text, cut) =
                    within_limit(assistant_reply(asked.model, accuracy, &asked.last_user), asked.limit);
                Answer::Text { text, cut }
            }
        },
    };
    let input: u64 = asked.texts.iter().map(|t| count_tokens(t) + 3).sum();
    let output = match &answer {
        Answer::Text { text, .. } => count_tokens(text),
        Answer::Call { .. } => 10,
    };
    state.calls.bill(asked.model, input, output);
    let delay = Duration::from_secs_f64(asked.model.latency_ms as f64 * state.config.latency_scale / 1000.0);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (answer, input, output)
}

fn parse(state: &SimState, body: &[u8]) -> Result<Value, Refusal> {
    state.calls.record(body);
    serde_json::from_slice(body)
        .map_err(|err| (StatusCode::BAD_REQUEST, format!("invalid JSON body: {err}"), "invalid_json"))
}

fn digest(model: &SimModel, texts: &[String]) -> u64 {
    xxh3_64(format!("{}{}", model.id, texts.join("\u{0}")).as_bytes())
}

/// `POST /v1/messages`, as Anthropic answers it.
pub(crate) async fn anthropic_messages(State(state): State<SimState>, body: axum::body::Bytes) -> Response {
    let request = match parse(&state, &body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "`messages` must be a non-empty array",
            "missing_messages",
        );
    };
    if request.get("max_tokens").and_then(Value::as_u64).is_none() {
        return openai_error(StatusCode::BAD_REQUEST, "`max_tokens` is required", "missing_max_tokens");
    }
    let asked = match read(&request, messages, request.get("system"), "max_tokens") {
        Ok(asked) => asked,
        Err(refusal) => return refused(refusal),
    };
    let (answer, input, output) = answer(&state, &asked, &request).await;
    let id = digest(asked.model, &asked.texts);
    let (content, stop_reason) = match answer {
        Answer::Text { text, cut } => {
            (json!([{"type": "text", "text": text}]), if cut { "max_tokens" } else { "end_turn" })
        }
        Answer::Call { name, arguments } => (
            json!([{"type": "tool_use", "id": format!("toolu_{:012x}", id % 0xffff_ffff_ffff), "name": name, "input": arguments}]),
            "tool_use",
        ),
    };
    Json(json!({"id": format!("msg_sim_{id:016x}"), "type": "message", "role": "assistant", "model": asked.model.id,
                "content": content, "stop_reason": stop_reason, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output}}))
    .into_response()
}

/// `POST /v1/responses`, as OpenAI answers it.
pub(crate) async fn responses(State(state): State<SimState>, body: axum::body::Bytes) -> Response {
    let request = match parse(&state, &body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let items = match request.get("input") {
        Some(Value::String(text)) => vec![json!({"role": "user", "content": text})],
        Some(Value::Array(items)) if !items.is_empty() => items.clone(),
        _ => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "`input` must be text or a non-empty array",
                "missing_input",
            );
        }
    };
    let asked = match read(&request, &items, request.get("instructions"), "max_output_tokens") {
        Ok(asked) => asked,
        Err(refusal) => return refused(refusal),
    };
    let (answer, input, output) = answer(&state, &asked, &request).await;
    let id = digest(asked.model, &asked.texts);
    let (items, status) = match answer {
        Answer::Text { text, cut } => (
            json!([{"type": "message", "id": format!("msg_{id:016x}"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}]),
            if cut { "incomplete" } else { "completed" },
        ),
        Answer::Call { name, arguments } => (
            json!([{"type": "function_call", "id": format!("fc_{id:016x}"), "call_id": format!("call_{:08x}", id % 0xffff_ffff),
                    "name": name, "arguments": arguments.to_string(), "status": "completed"}]),
            "completed",
        ),
    };
    let mut reply = json!({"id": format!("resp_sim_{id:016x}"), "object": "response", "created_at": 1_700_000_000 + id % 100_000_000,
        "status": status, "model": asked.model.id, "output": items,
        "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}});
    if status == "incomplete" {
        reply["incomplete_details"] = json!({"reason": "max_output_tokens"});
    }
    Json(reply).into_response()
}
