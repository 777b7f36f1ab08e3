//! Building the normalized chat-completions request and response from the pieces gateways
//! log, including Anthropic-shaped messages and OpenTelemetry's "parts" messages.

use serde_json::{Map, Value, json};

/// Decodes JSON that arrived as a string (many gateways log bodies that way); other values are
/// returned as they are.
pub fn json_in_string(value: &Value) -> Option<Value> {
    match value {
        Value::String(text) => serde_json::from_str(text).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

/// A number given as a JSON number or as a numeric string.
pub fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string or number as text.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Normalizes a list of messages to the OpenAI chat shape: OpenAI messages pass through;
/// Anthropic content blocks (`tool_use`, `tool_result`) and OpenTelemetry parts
/// (`tool_call`, `tool_call_response`) become `tool_calls` and `tool` messages.
pub fn messages(list: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for message in list {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        if let Some(parts) = message.get("parts").and_then(Value::as_array) {
            out.extend(from_parts(role, parts));
        } else if let Some(blocks) =
            message.get("content").and_then(Value::as_array).filter(|b| is_anthropic(b))
        {
            out.extend(from_anthropic(role, blocks));
        } else {
            out.push(message.clone());
        }
    }
    out
}

fn is_anthropic(blocks: &[Value]) -> bool {
    blocks.iter().any(|b| matches!(b.get("type").and_then(Value::as_str), Some("tool_use" | "tool_result")))
}

fn tool_call(id: &Value, name: &Value, arguments: &Value) -> Value {
    let arguments = match arguments {
        Value::String(s) => s.clone(),
        Value::Null => "{}".into(),
        other => other.to_string(),
    };
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

fn from_anthropic(role: &str, blocks: &[Value]) -> Vec<Value> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => texts.push(block.get("text").cloned().unwrap_or(Value::Null)),
            Some("tool_use") => calls.push(tool_call(
                block.get("id").unwrap_or(&Value::Null),
                block.get("name").unwrap_or(&Value::Null),
                block.get("input").unwrap_or(&Value::Null),
            )),
            Some("tool_result") => {
                let content = match block.get("content") {
                    Some(Value::Array(parts)) => {
                        Value::String(evaltap_core::chat::content_text(&Value::Array(parts.clone())))
                    }
                    Some(other) => other.clone(),
                    None => Value::String(String::new()),
                };
                results.push(
                    json!({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content}),
                );
            }
            _ => texts.push(block.get("text").cloned().unwrap_or(Value::Null)),
        }
    }
    let mut out = Vec::new();
    if !texts.is_empty() || !calls.is_empty() {
        let content: Vec<String> = texts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect();
        let mut message = json!({"role": role, "content": if content.is_empty() { Value::Null } else { Value::String(content.join("\n")) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        out.push(message);
    }
    out.extend(results);
    out
}

fn from_parts(role: &str, parts: &[Value]) -> Vec<Value> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("tool_call") => calls.push(tool_call(
                part.get("id").unwrap_or(&Value::Null),
                part.get("name").unwrap_or(&Value::Null),
                part.get("arguments").unwrap_or(&Value::Null),
            )),
            Some("tool_call_response") => {
                let result = match part.get("result").or_else(|| part.get("response")) {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(other) => Value::String(other.to_string()),
                    None => Value::String(String::new()),
                };
                results.push(json!({"role": "tool", "tool_call_id": part.get("id"), "content": result}));
            }
            _ => {
                if let Some(t) = part.get("content").or_else(|| part.get("text")).and_then(Value::as_str) {
                    texts.push(t.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    if !texts.is_empty() || !calls.is_empty() {
        let mut message = json!({"role": role, "content": if texts.is_empty() { Value::Null } else { Value::String(texts.join("\n")) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        out.push(message);
    }
    out.extend(results);
    out
}

/// A chat-completions request from messages and parameters.
pub fn request(model: Option<&str>, messages: Vec<Value>, params: Option<&Map<String, Value>>) -> Value {
    let mut body = Map::new();
    if let Some(params) = params {
        for (k, v) in params {
            if k != "messages" && !v.is_null() {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(model) = model {
        body.entry("model").or_insert_with(|| Value::String(model.into()));
    }
    body.insert("messages".into(), Value::Array(messages));
    Value::Object(body)
}

/// What a response said.
#[derive(Debug, Clone, Default)]
pub struct ResponseParts {
    /// Response id.
    pub id: Option<String>,
    /// Model that answered.
    pub model: Option<String>,
    /// Text content.
    pub content: Option<String>,
    /// OpenAI-shaped tool calls.
    pub tool_calls: Vec<Value>,
    /// Finish reason.
    pub finish_reason: Option<String>,
    /// (prompt, completion) tokens.
    pub usage: Option<(u64, u64)>,
}

/// A chat.completion response from its parts.
pub fn response(parts: ResponseParts) -> Value {
    let mut message = json!({"role": "assistant", "content": parts.content});
    if !parts.tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(parts.tool_calls);
    }
    let mut body = json!({"object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": parts.finish_reason}]});
    if let Some(id) = parts.id {
        body["id"] = Value::String(id);
    }
    if let Some(model) = parts.model {
        body["model"] = Value::String(model);
    }
    if let Some((prompt, completion)) = parts.usage {
        body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    }
    body
}

/// Normalizes a response body: OpenAI chat.completion passes through; an Anthropic message
/// (`content` blocks, `stop_reason`, `usage.input_tokens`) becomes a chat.completion.
pub fn response_body(body: &Value) -> Value {
    if body.get("choices").is_some() || body.get("type").and_then(Value::as_str) != Some("message") {
        return body.clone();
    }
    let blocks = body.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    let converted = from_anthropic("assistant", &blocks);
    let message = converted.into_iter().next().unwrap_or_else(|| json!({"role": "assistant", "content": ""}));
    let finish = match body.get("stop_reason").and_then(Value::as_str) {
        Some("end_turn") | Some("stop_sequence") => Some("stop".to_string()),
        Some("max_tokens") => Some("length".to_string()),
        Some("tool_use") => Some("tool_calls".to_string()),
        other => other.map(str::to_owned),
    };
    let usage = body.get("usage").and_then(|u| {
        Some((u.get("input_tokens")?.as_u64()?, u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0)))
    });
    response(ResponseParts {
        id: text(body.get("id")),
        model: text(body.get("model")),
        content: message.get("content").and_then(Value::as_str).map(str::to_owned),
        tool_calls: message.get("tool_calls").and_then(Value::as_array).cloned().unwrap_or_default(),
        finish_reason: finish,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_messages_become_openai_tool_calls() {
        let list = vec![
            json!({"role": "user", "content": "weather in Paris?"}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Paris"}}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": "18°C"}]}]}),
        ];
        let out = messages(&list);
        assert_eq!(out[1]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(out[1]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out[2], json!({"role": "tool", "tool_call_id": "tu_1", "content": "18°C"}));
        let reply = response_body(
            &json!({"type": "message", "id": "msg_1", "model": "claude", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "Paris."}], "usage": {"input_tokens": 9, "output_tokens": 2}}),
        );
        assert_eq!(evaltap_core::chat::response_text(&reply), "Paris.");
        assert_eq!(reply["choices"][0]["finish_reason"], "stop");
        assert_eq!(reply["usage"]["prompt_tokens"], 9);
    }

    #[test]
    fn otel_parts_become_openai_messages() {
        let list = vec![
            json!({"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}),
            json!({"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "calc", "arguments": {"x": "2+2"}}]}),
            json!({"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": 4}]}),
        ];
        let out = messages(&list);
        assert_eq!(out[0], json!({"role": "user", "content": "2+2?"}));
        assert_eq!(out[1]["tool_calls"][0]["id"], "c1");
        assert_eq!(out[2]["content"], "4");
    }
}
