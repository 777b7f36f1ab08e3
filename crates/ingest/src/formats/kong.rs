//! `POST /v1/mirror/kong`: Kong's `http-log` plugin with the AI proxy's `logging.log_payloads`
//! and `log_statistics` on (`ai.proxy.payload.*`, `ai.proxy.usage.*`, `ai.proxy.meta.*`). One
//! object per POST with `queue.max_batch_size: 1`, a JSON array above that. Request headers
//! are not kept.

use chrono::{TimeZone, Utc};
use evaltap_core::{Exchange, Usage};
use serde_json::{Map, Value, json};

use crate::normalize::{self, json_in_string, number, text};
use crate::{Adapter, Decoded, IngestError};

/// Kong's http-log.
#[derive(Debug, Clone, Copy)]
pub struct Kong;

impl Adapter for Kong {
    fn name(&self) -> &'static str {
        "kong"
    }

    fn decode(&self, body: &[u8], _headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        crate::decode_each(body, |item| from_log(&item))
    }
}

fn from_log(value: &Value) -> Result<Exchange, String> {
    // Kong 3.x logs the AI proxy under `ai.proxy`; some versions key it by plugin name.
    let ai = value
        .pointer("/ai/proxy")
        .or_else(|| value.pointer("/ai/ai-proxy"))
        .ok_or("`ai.proxy` is missing: enable `logging.log_statistics` and `log_payloads` on ai-proxy")?;
    let mut request = ai
        .pointer("/payload/request")
        .and_then(json_in_string)
        .ok_or("`ai.proxy.payload.request` is missing: enable `logging.log_payloads`")?;
    let list = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`ai.proxy.payload.request.messages` must be an array")?;
    request["messages"] = Value::Array(normalize::messages(list));
    let meta = ai.get("meta");
    if request.get("model").is_none()
        && let Some(model) = text(meta.and_then(|m| m.get("request_model")))
    {
        request["model"] = json!(model);
    }
    let mut response = ai
        .pointer("/payload/response")
        .and_then(json_in_string)
        .map(|r| normalize::response_body(&r))
        .ok_or("`ai.proxy.payload.response` is missing")?;
    let usage = ai.get("usage");
    if response.get("model").is_none()
        && let Some(model) = text(meta.and_then(|m| m.get("response_model")))
    {
        response["model"] = json!(model);
    }
    let status = value.pointer("/response/status").and_then(Value::as_u64).unwrap_or(200);
    let mut tags = Map::new();
    for (tag, pointer) in [
        ("route", "/route/name"),
        ("service", "/service/name"),
        ("consumer", "/consumer/username"),
        ("provider", "/ai/proxy/meta/provider_name"),
    ] {
        if let Some(v) = value.pointer(pointer).filter(|v| !v.is_null()) {
            tags.insert(tag.into(), v.clone());
        }
    }
    if let Some(consumer) = value.pointer("/consumer/username").and_then(Value::as_str) {
        tags.insert("user_id".into(), json!(consumer));
    }
    Ok(Exchange {
        external_id: text(value.pointer("/request/id")),
        occurred_at: number(value.get("started_at"))
            .and_then(|ms| Utc.timestamp_millis_opt(ms as i64).single()),
        model: evaltap_core::chat::model_of(&request, &response),
        usage: Usage::from_openai(&response).or_else(|| {
            Some(Usage {
                input_tokens: number(usage?.get("prompt_tokens"))? as u64,
                output_tokens: number(usage?.get("completion_tokens")).unwrap_or(0.0) as u64,
                ..Default::default()
            })
        }),
        cost_usd: number(usage.and_then(|u| u.get("cost"))).filter(|c| *c > 0.0),
        latency_ms: number(meta.and_then(|m| m.get("llm_latency")))
            .or_else(|| number(value.pointer("/latencies/request"))),
        tags: Value::Object(tags),
        request,
        response,
        succeeded: status < 400,
    })
}
