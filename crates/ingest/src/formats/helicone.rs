//! `POST /v1/mirror/helicone`: Helicone webhooks. Bodies arrive as JSON strings
//! (`request_body`, `response_body`); usage, cost and latency in `metadata`. When the source
//! has an HMAC secret, the `Helicone-Signature` header is checked by the server before this
//! adapter runs.

use evaltap_core::{Exchange, Usage};
use serde_json::{Map, Value, json};

use crate::normalize::{self, number, text};
use crate::{Adapter, Decoded, IngestError};

/// Helicone's webhook.
#[derive(Debug, Clone, Copy)]
pub struct Helicone;

/// The header carrying hex HMAC-SHA256 of the raw body.
pub const SIGNATURE_HEADER: &str = "helicone-signature";

impl Adapter for Helicone {
    fn name(&self) -> &'static str {
        "helicone"
    }

    fn decode(&self, body: &[u8], _headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        crate::decode_each(body, |item| from_webhook(&item))
    }
}

fn body_field(value: &Value, field: &str) -> Result<Value, String> {
    match value.get(field) {
        Some(Value::String(s)) if s.starts_with("Body too large") => Err(format!(
            "`{field}` was too large for the webhook (over 10 KB); Helicone only links it via `request_response_url`"
        )),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| format!("`{field}` is not JSON: {e}")),
        Some(Value::Object(obj)) => Ok(Value::Object(obj.clone())),
        Some(_) => Err(format!("`{field}` must be a JSON string")),
        None => Err(format!("`{field}` is missing")),
    }
}

fn from_webhook(value: &Value) -> Result<Exchange, String> {
    if !value.is_object() {
        return Err("each webhook must be a JSON object".into());
    }
    let mut request = body_field(value, "request_body")?;
    let list = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`request_body.messages` must be an array")?;
    request["messages"] = Value::Array(normalize::messages(list));
    if request.get("model").is_none()
        && let Some(model) = text(value.get("model"))
    {
        request["model"] = json!(model);
    }
    let response = normalize::response_body(&body_field(value, "response_body")?);
    let meta = value.get("metadata");
    let usage = Usage::from_openai(&response).or_else(|| {
        Some(Usage {
            input_tokens: number(meta?.get("promptTokens"))? as u64,
            output_tokens: number(meta?.get("completionTokens")).unwrap_or(0.0) as u64,
            ..Default::default()
        })
    });
    let mut tags = Map::new();
    for key in ["user_id", "provider"] {
        if let Some(v) = value.get(key).filter(|v| !v.is_null()) {
            tags.insert(key.into(), v.clone());
        }
    }
    Ok(Exchange {
        external_id: text(value.get("request_id")),
        occurred_at: None,
        model: evaltap_core::chat::model_of(&request, &response),
        usage,
        cost_usd: number(meta.and_then(|m| m.get("cost"))),
        latency_ms: number(meta.and_then(|m| m.get("latencyMs"))),
        succeeded: response.get("error").is_none(),
        tags: Value::Object(tags),
        request,
        response,
    })
}
