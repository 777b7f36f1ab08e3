//! `POST /v1/mirror/litellm`: LiteLLM proxy's `generic_api` callback, which posts each call's
//! `StandardLoggingPayload` as a JSON array (`log_format: json_array`, the default), JSON lines
//! (`ndjson`) or one object per request (`single`). Failure events (`status: failure`) are
//! stored as failed calls.

use chrono::{TimeZone, Utc};
use evaltap_core::{Exchange, Usage};
use serde::Deserialize;
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
        crate::decode_each_typed(body, "each log must be a StandardLoggingPayload object", from_payload)
    }
}

/// The fields of a `StandardLoggingPayload` evaltap reads. A real payload is mostly other things
/// (key metadata, the model's cost map, guardrail and tool settings): those are skipped while
/// scanning, never built into trees. A JSON `null` reads as absent.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a StandardLoggingPayload object")]
struct Payload {
    id: Option<Value>,
    litellm_call_id: Option<Value>,
    status: Option<Value>,
    messages: Option<Value>,
    model_parameters: Option<Value>,
    model: Option<Value>,
    model_group: Option<Value>,
    response: Option<Value>,
    error_str: Option<Value>,
    error_information: Option<Value>,
    #[serde(rename = "startTime")]
    start_time: Option<Value>,
    #[serde(rename = "endTime")]
    end_time: Option<Value>,
    prompt_tokens: Option<Value>,
    completion_tokens: Option<Value>,
    response_cost: Option<Value>,
    request_tags: Option<Value>,
    end_user: Option<Value>,
    session_id: Option<Value>,
    trace_id: Option<Value>,
    custom_llm_provider: Option<Value>,
    model_id: Option<Value>,
    call_type: Option<Value>,
    cache_hit: Option<Value>,
    #[serde(deserialize_with = "lenient")]
    hidden_params: HiddenParams,
    #[serde(deserialize_with = "lenient")]
    metadata: Metadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HiddenParams {
    litellm_model_name: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    requester_metadata: Option<Value>,
    user_api_key_alias: Option<Value>,
}

/// A nested object read when it has the expected shape, and as empty otherwise: LiteLLM's
/// metadata is informational, and a change in it must not cost the exchange.
fn lenient<'de, D: serde::Deserializer<'de>, T: Default + serde::de::DeserializeOwned>(
    deserializer: D,
) -> Result<T, D::Error> {
    let raw = <&serde_json::value::RawValue>::deserialize(deserializer)?;
    Ok(serde_json::from_str(raw.get()).unwrap_or_default())
}

/// The tags copied from the payload, by name.
const TAG_FIELDS: [&str; 8] = [
    "request_tags",
    "end_user",
    "session_id",
    "trace_id",
    "custom_llm_provider",
    "model_id",
    "call_type",
    "cache_hit",
];

fn from_payload(payload: Payload) -> Result<Exchange, String> {
    let messages = match payload.messages {
        Some(Value::Array(list)) => normalize::messages(&list),
        Some(Value::String(prompt)) => vec![json!({"role": "user", "content": prompt})],
        Some(Value::Object(obj)) if obj.get("messages").is_some_and(Value::is_array) => {
            normalize::messages(obj["messages"].as_array().map(Vec::as_slice).unwrap_or_default())
        }
        Some(_) => return Err("`messages` must be a list of chat messages".into()),
        None => return Err("`messages` is missing (is `turn_off_message_logging` on?)".into()),
    };
    let params: Option<Map<String, Value>> = match payload.model_parameters {
        Some(Value::Object(params)) => Some(params),
        _ => None,
    };
    let model = text(payload.model_group.as_ref()).or_else(|| text(payload.model.as_ref()));
    let request = normalize::request(model.as_deref(), messages, params.as_ref());
    let failed = payload.status.as_ref().and_then(Value::as_str) == Some("failure");
    let response = match payload.response.as_ref().and_then(json_in_string) {
        Some(Value::Object(obj)) if !failed => normalize::response_body(&Value::Object(obj)),
        Some(Value::Object(_)) | Some(Value::Null) | None if failed => json!({"error": {
            "message": payload.error_str, "information": payload.error_information}}),
        Some(_) | None if failed => json!({"error": {"message": payload.error_str}}),
        Some(_) => return Err("`response` must be a chat completion object".into()),
        None => return Err("`response` is missing".into()),
    };
    let start = number(payload.start_time.as_ref());
    let end = number(payload.end_time.as_ref());
    let usage = Usage::from_openai(&response).or_else(|| {
        Some(Usage {
            input_tokens: number(payload.prompt_tokens.as_ref())? as u64,
            output_tokens: number(payload.completion_tokens.as_ref()).unwrap_or(0.0) as u64,
            ..Default::default()
        })
    });
    let user = text(payload.end_user.as_ref());
    let mut tags = Map::new();
    let tag_values = [
        payload.request_tags,
        payload.end_user,
        payload.session_id,
        payload.trace_id,
        payload.custom_llm_provider,
        payload.model_id,
        payload.call_type,
        payload.cache_hit,
    ];
    for (key, value) in TAG_FIELDS.iter().zip(tag_values) {
        if let Some(value) = value {
            tags.insert((*key).into(), value);
        }
    }
    if let Some(v) = payload.hidden_params.litellm_model_name {
        tags.insert("litellm_model_name".into(), v);
    }
    if let Some(v) = payload.metadata.requester_metadata {
        tags.insert("requester_metadata".into(), allowlisted_headers(v));
    }
    if let Some(v) = payload.metadata.user_api_key_alias {
        tags.insert("api_key_alias".into(), v);
    }
    if let Some(user) = user {
        tags.insert("user_id".into(), Value::String(user));
    }
    Ok(Exchange {
        external_id: text(payload.litellm_call_id.as_ref()).or_else(|| text(payload.id.as_ref())),
        occurred_at: start.and_then(|s| Utc.timestamp_millis_opt((s * 1000.0) as i64).single()),
        model: evaltap_core::chat::model_of(&request, &response),
        usage,
        cost_usd: number(payload.response_cost.as_ref()),
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
