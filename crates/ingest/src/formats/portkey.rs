//! `POST /v1/mirror/portkey`: the Portkey gateway's `default.log` output guardrail, which posts
//! its hook context (`request.json`, `response.json`, `provider`, `metadata`). Its
//! `request.headers` include `x-portkey-config` with the provider key and every client header:
//! none of them is kept. Streaming calls log no response body and are rejected as such.

use evaltap_core::{Exchange, Usage};
use serde_json::{Map, Value};

use crate::normalize::{self, json_in_string, text};
use crate::{Adapter, Decoded, IngestError};

/// Portkey's log hook.
#[derive(Debug, Clone, Copy)]
pub struct Portkey;

impl Adapter for Portkey {
    fn name(&self) -> &'static str {
        "portkey"
    }

    fn decode(&self, body: &[u8], _headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        crate::decode_each(body, |item| from_context(&item))
    }
}

fn from_context(value: &Value) -> Result<Exchange, String> {
    let request =
        value.pointer("/request/json").and_then(json_in_string).ok_or("`request.json` is missing")?;
    if !request.get("messages").is_some_and(Value::is_array) {
        return Err("`request.json.messages` must be an array".into());
    }
    let streaming = value.pointer("/request/isStreamingRequest").and_then(Value::as_bool) == Some(true);
    let response = match value.pointer("/response/json").and_then(json_in_string) {
        Some(Value::Object(obj)) => normalize::response_body(&Value::Object(obj)),
        _ if streaming => {
            return Err(
                "`response.json` is null: Portkey's log hook carries no body for streaming calls".into()
            );
        }
        _ => return Err("`response.json` is missing".into()),
    };
    let status = value.pointer("/response/statusCode").and_then(Value::as_u64).unwrap_or(200);
    let mut request = request;
    if let Some(list) = request.get("messages").and_then(Value::as_array).map(|l| normalize::messages(l)) {
        request["messages"] = Value::Array(list);
    }
    let mut tags = Map::new();
    for key in ["provider", "requestType"] {
        if let Some(v) = value.get(key).filter(|v| !v.is_null()) {
            tags.insert(key.into(), v.clone());
        }
    }
    if let Some(Value::Object(meta)) = value.get("metadata") {
        for (k, v) in meta {
            tags.insert(k.clone(), v.clone());
        }
        if let Some(user) = meta.get("_user") {
            tags.insert("user_id".into(), user.clone());
        }
    }
    let trace_id =
        value.pointer("/request/headers/x-portkey-trace-id").and_then(Value::as_str).map(str::to_owned);
    if let Some(trace) = &trace_id {
        tags.insert("trace_id".into(), Value::String(trace.clone()));
    }
    Ok(Exchange {
        external_id: text(response.get("id")).or(trace_id),
        occurred_at: None,
        model: evaltap_core::chat::model_of(&request, &response),
        usage: Usage::from_openai(&response),
        cost_usd: None,
        latency_ms: None,
        tags: Value::Object(tags),
        request,
        response,
        succeeded: status < 400,
    })
}
