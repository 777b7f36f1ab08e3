//! `POST /v1/mirror/litellm`: LiteLLM proxy's `generic_api` callback, which posts each call's
//! `StandardLoggingPayload` as a JSON array (`log_format: json_array`, the default), JSON lines
//! (`ndjson`) or one object per request (`single`). Failure events (`status: failure`) are
//! stored as failed calls.

use chrono::{TimeZone, Utc};
use evaltap_core::{Exchange, Usage};
use serde_json::{Map, Value, json};

use crate::normalize::{self, json_in_string, number, text};
use crate::{Adapter, Decoded, IngestError};

/// LiteLLM's generic API logger.
#[derive(Debug, Clone, Copy)]
pub struct LiteLlm;

impl Adapter for LiteLlm {
    fn name(&self) -> &'static str {
        "litellm"
    }

    fn decode(&self, body: &[u8], _headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        crate::decode_each(body, from_payload)
    }
}

fn from_payload(value: &Value) -> Result<Exchange, String> {
    let payload = value.as_object().ok_or("each log must be a StandardLoggingPayload object")?;
    let messages = match payload.get("messages") {
        Some(Value::Array(list)) => normalize::messages(list),
        Some(Value::String(prompt)) => vec![json!({"role": "user", "content": prompt})],
        Some(Value::Object(obj)) if obj.get("messages").is_some_and(Value::is_array) => {
            normalize::messages(obj["messages"].as_array().map(Vec::as_slice).unwrap_or_default())
        }
        Some(_) => return Err("`messages` must be a list of chat messages".into()),
        None => return Err("`messages` is missing (is `turn_off_message_logging` on?)".into()),
    };
    let params: Option<Map<String, Value>> =
        payload.get("model_parameters").and_then(Value::as_object).cloned();
    let model = text(payload.get("model_group")).or_else(|| text(payload.get("model")));
    let request = normalize::request(model.as_deref(), messages, params.as_ref());
    let failed = payload.get("status").and_then(Value::as_str) == Some("failure");
    let response = match payload.get("response").and_then(json_in_string) {
        Some(Value::Object(obj)) if !failed => normalize::response_body(&Value::Object(obj)),
        Some(Value::Object(_)) | Some(Value::Null) | None if failed => json!({"error": {
            "message": payload.get("error_str"), "information": payload.get("error_information")}}),
        Some(_) | None if failed => json!({"error": {"message": payload.get("error_str")}}),
        Some(_) => return Err("`response` must be a chat completion object".into()),
        None => return Err("`response` is missing".into()),
    };
    let start = number(payload.get("startTime"));
    let end = number(payload.get("endTime"));
    let usage = Usage::from_openai(&response).or_else(|| {
        Some(Usage {
            input_tokens: number(payload.get("prompt_tokens"))? as u64,
            output_tokens: number(payload.get("completion_tokens")).unwrap_or(0.0) as u64,
        })
    });
    let mut tags = Map::new();
    for key in [
        "request_tags",
        "end_user",
        "session_id",
        "trace_id",
        "custom_llm_provider",
        "model_id",
        "call_type",
        "cache_hit",
    ] {
        if let Some(v) = payload.get(key).filter(|v| !v.is_null()) {
            tags.insert(key.into(), v.clone());
        }
    }
    if let Some(v) = value.pointer("/hidden_params/litellm_model_name") {
        tags.insert("litellm_model_name".into(), v.clone());
    }
    if let Some(v) = value.pointer("/metadata/requester_metadata").filter(|v| !v.is_null()) {
        tags.insert("requester_metadata".into(), allowlisted_headers(v.clone()));
    }
    if let Some(v) = value.pointer("/metadata/user_api_key_alias").filter(|v| !v.is_null()) {
        tags.insert("api_key_alias".into(), v.clone());
    }
    if let Some(user) = text(payload.get("end_user")) {
        tags.insert("user_id".into(), Value::String(user));
    }
    Ok(Exchange {
        external_id: text(payload.get("litellm_call_id")).or_else(|| text(payload.get("id"))),
        occurred_at: start.and_then(|s| Utc.timestamp_millis_opt((s * 1000.0) as i64).single()),
        model: evaltap_core::chat::model_of(&request, &response),
        usage,
        cost_usd: number(payload.get("response_cost")),
        // `response_time` is time to first token for streams; the span is end − start.
        latency_ms: start.zip(end).map(|(s, e)| (e - s) * 1000.0),
        tags: Value::Object(tags),
        request,
        response,
        succeeded: !failed,
    })
}

/// Client headers evaltap keeps when a gateway copies them into its log (the rest, which may
/// carry anyone's credentials, are dropped).
pub const KEPT_CLIENT_HEADERS: [&str; 8] = [
    "user-agent",
    "content-type",
    "accept",
    "x-request-id",
    "x-correlation-id",
    "x-session-id",
    "x-user-id",
    "x-app-name",
];

/// Keeps only allowlisted entries of every `headers` object in `value`.
fn allowlisted_headers(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if key.eq_ignore_ascii_case("headers")
                        && let Value::Object(headers) = inner
                    {
                        headers.retain(|name, _| {
                            KEPT_CLIENT_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(name))
                        });
                    } else {
                        walk(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}
