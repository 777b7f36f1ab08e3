//! `POST /v1/traces` (and `/v1/mirror/otlp`): OTLP/HTTP traces, JSON or protobuf, read with the
//! OpenTelemetry GenAI semantic conventions — `gen_ai.input.messages` /
//! `gen_ai.output.messages` (parts format), the details event, and the older or
//! gateway-specific content attributes: `gen_ai.prompt` / `gen_ai.completion` (OpenRouter),
//! `gen_ai.prompt_json` / `gen_ai.completion_json` (Cloudflare), `gen_ai.prompt.{i}.*`
//! (OpenLLMetry). Spans without content are skipped; a trace whose LLM spans all lack content
//! is rejected with the reason.

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use evaltap_core::{Exchange, Usage};
use serde_json::{Map, Value, json};

use super::otlp_wire::{self, Span};
use crate::normalize::{self, ResponseParts, json_in_string, number, text};
use crate::{Adapter, Decoded, IngestError};

/// OTLP traces.
#[derive(Debug, Clone, Copy)]
pub struct Otlp;

impl Adapter for Otlp {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn decode(&self, body: &[u8], headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        Ok(spans_to_exchanges(&read_spans(body, headers)?))
    }
}

/// The most spans one OTLP body may carry (SDK exporters send 512 at a time, the Collector's
/// batch processor 8,192 by default): each becomes a span and maybe an exchange, hundreds of
/// bytes each however small it was on the wire, so more is refused before any is built.
pub const MAX_SPANS_PER_BODY: usize = 20_000;

fn too_many_spans() -> IngestError {
    IngestError::TooManyItems { limit: MAX_SPANS_PER_BODY, what: "spans" }
}

/// Spans of an OTLP body, protobuf when the content type says so, else JSON.
pub fn read_spans(body: &[u8], headers: &http::HeaderMap) -> Result<Vec<Span>, IngestError> {
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("protobuf") {
        // Counted on the wire first: prost would build every span before we could count them.
        let spans = otlp_wire::protobuf_spans(body, usize::MAX).map_err(IngestError::Shape)?;
        if spans.is_some_and(|n| n > MAX_SPANS_PER_BODY) {
            return Err(too_many_spans());
        }
        return otlp_wire::from_protobuf(body).map_err(IngestError::Shape);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| IngestError::InvalidJson(e.to_string()))?;
    if otlp_wire::json_spans(&value) > MAX_SPANS_PER_BODY {
        return Err(too_many_spans());
    }
    otlp_wire::from_json(&value).map_err(IngestError::Shape)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.get(key).or_else(|| span.events.iter().find_map(|(_, attrs)| attrs.get(key)))
}

fn is_llm_span(span: &Span) -> bool {
    span.attributes.keys().any(|k| k.starts_with("gen_ai.") || k.starts_with("llm."))
}

/// OpenLLMetry's flattened `gen_ai.prompt.{i}.role` / `.content` attributes.
fn indexed_messages(span: &Span, prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0.. {
        let role = span.attributes.get(&format!("{prefix}.{i}.role"));
        let content = span.attributes.get(&format!("{prefix}.{i}.content"));
        if role.is_none() && content.is_none() {
            break;
        }
        out.push(json!({"role": role.cloned().unwrap_or(json!("user")), "content": content.cloned().unwrap_or(Value::Null)}));
    }
    out
}

fn message_list(value: &Value) -> Option<Vec<Value>> {
    match json_in_string(value)? {
        Value::Array(list) => Some(list),
        Value::Object(obj) => obj.get("messages").and_then(Value::as_array).cloned(),
        _ => None,
    }
}

/// The request messages and any request parameters a span logged.
fn request_of(span: &Span) -> Option<(Vec<Value>, Map<String, Value>)> {
    let mut params = Map::new();
    let mut messages = if let Some(list) = attr(span, "gen_ai.input.messages").and_then(message_list) {
        list
    } else if let Some(v) = attr(span, "gen_ai.prompt_json").and_then(json_in_string) {
        if let Value::Object(obj) = &v {
            params.extend(obj.iter().filter(|(k, _)| *k != "messages").map(|(k, v)| (k.clone(), v.clone())));
        }
        message_list(&v)?
    } else if let Some(list) = attr(span, "gen_ai.prompt").and_then(message_list) {
        list
    } else {
        let list = indexed_messages(span, "gen_ai.prompt");
        if list.is_empty() {
            return None;
        }
        list
    };
    if let Some(system) = attr(span, "gen_ai.system_instructions").and_then(json_in_string) {
        let text = match &system {
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        if !text.is_empty() {
            messages.insert(0, json!({"role": "system", "content": text}));
        }
    }
    // OpenRouter logs the original request beside the completion.
    if let Some(raw) =
        attr(span, "gen_ai.completion").and_then(json_in_string).and_then(|c| c.get("rawRequest").cloned())
        && let Value::Object(raw) = raw
    {
        params.extend(raw.into_iter().filter(|(k, _)| k != "messages"));
    }
    for (attribute, param) in [
        ("gen_ai.request.max_tokens", "max_tokens"),
        ("gen_ai.request.temperature", "temperature"),
        ("gen_ai.request.top_p", "top_p"),
        ("gen_ai.request.seed", "seed"),
        ("gen_ai.request.stop_sequences", "stop"),
        ("gen_ai.request.frequency_penalty", "frequency_penalty"),
        ("gen_ai.request.presence_penalty", "presence_penalty"),
    ] {
        if let Some(v) = span.attributes.get(attribute) {
            params.entry(param).or_insert_with(|| v.clone());
        }
    }
    if let Some(tools) = attr(span, "gen_ai.tool.definitions").and_then(json_in_string) {
        params.entry("tools").or_insert(tools);
    }
    Some((normalize::messages(&messages), params))
}

fn finish_reason(span: &Span) -> Option<String> {
    match span
        .attributes
        .get("gen_ai.response.finish_reasons")
        .or_else(|| span.attributes.get("gen_ai.response.finish_reason"))?
    {
        Value::Array(list) => list.first().and_then(Value::as_str).map(str::to_owned),
        Value::String(s) => json_in_string(&Value::String(s.clone()))
            .and_then(|v| v.as_array().and_then(|l| l.first()).and_then(Value::as_str).map(str::to_owned))
            .or_else(|| Some(s.clone())),
        _ => None,
    }
}

fn usage_of(span: &Span) -> Option<(u64, u64)> {
    let input = number(
        span.attributes
            .get("gen_ai.usage.input_tokens")
            .or_else(|| span.attributes.get("gen_ai.usage.prompt_tokens")),
    )?;
    let output = number(
        span.attributes
            .get("gen_ai.usage.output_tokens")
            .or_else(|| span.attributes.get("gen_ai.usage.completion_tokens")),
    )
    .unwrap_or(0.0);
    Some((input as u64, output as u64))
}

/// The response a span logged.
fn response_of(span: &Span) -> Option<Value> {
    let mut parts = ResponseParts {
        id: text(span.attributes.get("gen_ai.response.id")),
        model: text(span.attributes.get("gen_ai.response.model"))
            .or_else(|| text(span.attributes.get("gen_ai.request.model"))),
        finish_reason: finish_reason(span),
        usage: usage_of(span),
        ..ResponseParts::default()
    };
    if let Some(list) = attr(span, "gen_ai.output.messages").and_then(message_list) {
        let messages = normalize::messages(&list);
        let first = messages.first().cloned().unwrap_or(Value::Null);
        parts.content = first.get("content").and_then(Value::as_str).map(str::to_owned);
        parts.tool_calls = first.get("tool_calls").and_then(Value::as_array).cloned().unwrap_or_default();
        if parts.finish_reason.is_none() {
            parts.finish_reason = list.first().and_then(|m| text(m.get("finish_reason")));
        }
    } else if let Some(body) = attr(span, "gen_ai.completion_json").and_then(json_in_string) {
        let mut body = normalize::response_body(&body);
        if body.get("usage").is_none()
            && let Some((i, o)) = parts.usage
        {
            body["usage"] = json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o});
        }
        return Some(body);
    } else if let Some(completion) = attr(span, "gen_ai.completion").and_then(json_in_string) {
        // OpenRouter: {"completion", "reasoning", "toolCalls", "rawRequest"}
        match &completion {
            Value::Object(obj) => {
                parts.content = text(obj.get("completion"));
                parts.tool_calls = obj
                    .get("toolCalls")
                    .and_then(Value::as_array)
                    .map(|calls| {
                        calls
                            .iter()
                            .map(|c| {
                                if c.get("function").is_some() {
                                    c.clone()
                                } else {
                                    json!({"id": c.get("id"), "type": "function", "function": {"name": c.get("name"),
                                        "arguments": match c.get("arguments") { Some(Value::String(s)) => Value::String(s.clone()), Some(v) => Value::String(v.to_string()), None => json!("{}") }}})
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Value::String(s) => parts.content = Some(s.clone()),
            _ => {}
        }
    } else {
        let list = indexed_messages(span, "gen_ai.completion");
        let first = list.first()?;
        parts.content = text(first.get("content"));
    }
    if parts.content.is_none() && parts.tool_calls.is_empty() {
        return None;
    }
    Some(normalize::response(parts))
}

fn cost_of(span: &Span) -> Option<f64> {
    ["gen_ai.usage.total_cost", "gen_ai.usage.cost", "gen_ai.cost.total_cost", "llm.usage.cost"]
        .iter()
        .find_map(|k| number(span.attributes.get(*k)))
}

fn tags_of(span: &Span) -> Value {
    let mut tags = Map::new();
    for (key, value) in &span.attributes {
        let keep = matches!(
            key.as_str(),
            "session.id"
                | "user.id"
                | "gen_ai.conversation.id"
                | "gen_ai.provider.name"
                | "gen_ai.system"
                | "gen_ai.model.provider"
        ) || key.starts_with("metadata.")
            || key.starts_with("trace.metadata.")
            || key.starts_with("cf-aig-")
            || key.starts_with("langfuse.trace.");
        if keep {
            tags.insert(key.clone(), value.clone());
        }
    }
    if let Some(service) = span.resource.get("service.name") {
        tags.insert("service.name".into(), service.clone());
    }
    // Cluster keys for the statistics.
    for (from, to) in
        [("session.id", "session_id"), ("gen_ai.conversation.id", "conversation_id"), ("user.id", "user_id")]
    {
        if let Some(v) = span.attributes.get(from) {
            tags.entry(to).or_insert(v.clone());
        }
    }
    Value::Object(tags)
}

fn span_to_exchange(span: &Span) -> Option<Exchange> {
    let (messages, params) = request_of(span)?;
    let model = text(span.attributes.get("gen_ai.request.model")).or_else(|| text(params.get("model")));
    let request = normalize::request(model.as_deref(), messages, Some(&params));
    let failed = span.status_code == 2;
    let response = match response_of(span) {
        Some(r) => r,
        None if failed => {
            // The span's status description is the error for most SDKs; attributes otherwise.
            let message = Some(&span.status_message)
                .filter(|m| !m.is_empty())
                .map(|m| Value::String(m.clone()))
                .or_else(|| span.attributes.get("error.message").cloned())
                .or_else(|| span.attributes.get("exception.message").cloned());
            json!({"error": {"message": message}})
        }
        None => return None,
    };
    let external_id = text(span.attributes.get("gen_ai.response.id"))
        .or_else(|| text(span.attributes.get("litellm.call_id")))
        .or_else(|| (!span.span_id.is_empty()).then(|| format!("{}:{}", span.trace_id, span.span_id)));
    Some(Exchange {
        external_id,
        occurred_at: span.start_ns.map(|ns| Utc.timestamp_nanos(ns as i64)),
        model: evaltap_core::chat::model_of(&request, &response),
        usage: Usage::from_openai(&response),
        cost_usd: cost_of(span),
        latency_ms: span.start_ns.zip(span.end_ns).map(|(s, e)| e.saturating_sub(s) as f64 / 1e6),
        tags: tags_of(span),
        request,
        response,
        succeeded: !failed,
    })
}

/// Exchanges from spans; LLM traces that carry no content at all are rejected with a reason.
pub fn spans_to_exchanges(spans: &[Span]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut traces_with_content = HashSet::new();
    for (index, span) in spans.iter().enumerate() {
        if let Some(exchange) = span_to_exchange(span) {
            traces_with_content.insert(span.trace_id.clone());
            decoded.exchanges.push((index, exchange));
        }
    }
    let mut reported = HashSet::new();
    for (index, span) in spans.iter().enumerate() {
        if is_llm_span(span)
            && !traces_with_content.contains(&span.trace_id)
            && reported.insert(span.trace_id.clone())
        {
            decoded.push(
                index,
                Err(format!(
                    "span `{}` has no prompt or completion content (no `gen_ai.input.messages`, `gen_ai.prompt`, `gen_ai.prompt_json`); enable message content capture in the gateway",
                    span.name
                )),
            );
        }
    }
    decoded
}
