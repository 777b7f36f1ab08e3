//! `POST /v1/mirror/cloudflare`: Cloudflare AI Gateway. Its OTel exporter (OTLP JSON or
//! protobuf with `gen_ai.prompt_json` / `gen_ai.completion_json`) is read as OTLP; Logpush
//! records (`ai_gateway_events`, NDJSON) are read field by field. Logpush encrypts bodies with
//! the gateway's public key: such records are rejected with the reason, since evaltap does not
//! hold the private key.

use chrono::{DateTime, Utc};
use evaltap_core::{Exchange, Usage};
use serde_json::{Map, Value, json};

use super::otlp;
use crate::normalize::{self, number, text};
use crate::{Adapter, Decoded, IngestError};

/// Cloudflare AI Gateway.
#[derive(Debug, Clone, Copy)]
pub struct Cloudflare;

impl Adapter for Cloudflare {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    fn decode(&self, body: &[u8], headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        let content_type =
            headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let looks_otlp = content_type.contains("protobuf")
            || body.windows(15).take(4096).any(|w| w == b"\"resourceSpans\"");
        if looks_otlp {
            return otlp::Otlp.decode(body, headers);
        }
        crate::decode_each(body, |item| from_logpush(&item))
    }
}

fn body(record: &Value, field: &str) -> Result<Value, String> {
    match record.get(field) {
        Some(Value::Object(obj)) if obj.get("type").and_then(Value::as_str) == Some("encrypted") => {
            Err(format!(
                "`{field}` is encrypted with the gateway's Logpush key; use the OTel exporter or send decrypted records"
            ))
        }
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| format!("`{field}` is not JSON: {e}")),
        Some(Value::Object(obj)) => Ok(Value::Object(obj.clone())),
        _ => Err(format!("`{field}` is missing")),
    }
}

fn from_logpush(record: &Value) -> Result<Exchange, String> {
    if !record.is_object() {
        return Err("each Logpush record must be a JSON object".into());
    }
    let mut request = body(record, "RequestBody")?;
    let list =
        request.get("messages").and_then(Value::as_array).ok_or("`RequestBody.messages` must be an array")?;
    request["messages"] = Value::Array(normalize::messages(list));
    if request.get("model").is_none()
        && let Some(model) = text(record.get("RequestedModel"))
    {
        request["model"] = json!(model);
    }
    let status = record.get("StatusCode").and_then(Value::as_u64).unwrap_or(200);
    let response = match body(record, "ResponseBody") {
        Ok(r) => normalize::response_body(&r),
        Err(_) if status >= 400 => json!({"error": {"status": status}}),
        Err(e) => return Err(e),
    };
    let mut tags = Map::new();
    for key in ["Gateway", "Provider", "Endpoint", "Cached"] {
        if let Some(v) = record.get(key).filter(|v| !v.is_null()) {
            tags.insert(key.to_lowercase(), v.clone());
        }
    }
    if let Some(Value::Object(meta)) = record.get("Metadata") {
        for (k, v) in meta {
            tags.insert(k.clone(), v.clone());
        }
    }
    let metrics = record.get("Metrics");
    Ok(Exchange {
        external_id: text(record.get("RoutingDecisionID")).or_else(|| text(record.get("id"))),
        occurred_at: record
            .get("Timestamp")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        model: evaltap_core::chat::model_of(&request, &response).or_else(|| text(record.get("Model"))),
        usage: Usage::from_openai(&response),
        cost_usd: number(metrics.and_then(|m| m.get("cost"))),
        latency_ms: number(metrics.and_then(|m| m.get("durationMs"))),
        tags: Value::Object(tags),
        request,
        response,
        succeeded: status < 400,
    })
}
