//! OpenAI Responses: a chat request carried to it, its answers and requests read as chat, its
//! streams assembled.

use serde_json::{Map, Value, json};

use super::{Untranslatable, chat_completion, copy_field, function_tools, text_of};
use crate::ModelApi;

/// A chat-completions body as an OpenAI Responses request.
pub(super) fn to_responses(body: &Map<String, Value>) -> Result<Value, Untranslatable> {
    let api = ModelApi::OpenaiResponses;
    let refuse = |reason: String| Untranslatable { api: api.as_str(), reason };
    if body.contains_key("stop") {
        return Err(refuse("stop sequences (`stop`): the Responses API has none".into()));
    }
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for message in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        match role {
            "system" | "developer" => instructions.push(text_of(message.get("content"))),
            "user" | "assistant" => {
                let text_type = if role == "user" { "input_text" } else { "output_text" };
                let content = match message.get("content") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(text)) => vec![json!({"type": text_type, "text": text})],
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .map(|part| match part.get("type").and_then(Value::as_str).unwrap_or("text") {
                            "text" | "input_text" | "output_text" => {
                                Ok(json!({"type": text_type, "text": part.get("text").cloned().unwrap_or(json!(""))}))
                            }
                            "image_url" | "input_image" => part
                                .pointer("/image_url/url")
                                .or_else(|| part.get("image_url"))
                                .map(|url| json!({"type": "input_image", "image_url": url}))
                                .ok_or_else(|| refuse("an image part without a URL".into())),
                            "input_audio" | "audio" => Err(refuse("audio input".into())),
                            other => Err(refuse(format!("a `{other}` content part"))),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(other) => vec![json!({"type": text_type, "text": other.to_string()})],
                };
                if !content.is_empty() {
                    input.push(json!({"role": role, "content": content}));
                }
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let arguments = match call.pointer("/function/arguments") {
                        Some(Value::String(text)) => text.clone(),
                        Some(other) => other.to_string(),
                        None => "{}".into(),
                    };
                    input.push(json!({"type": "function_call", "call_id": call.get("id").cloned().unwrap_or(json!("call")),
                        "name": call.pointer("/function/name").cloned().unwrap_or(json!("")), "arguments": arguments}));
                }
            }
            "tool" | "function" => input.push(json!({"type": "function_call_output",
                "call_id": message.get("tool_call_id").cloned().unwrap_or(json!("call")),
                "output": text_of(message.get("content"))})),
            other => return Err(refuse(format!("a message of role `{other}`"))),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), body.get("model").cloned().unwrap_or(Value::Null));
    let instructions: Vec<String> = instructions.into_iter().filter(|s| !s.trim().is_empty()).collect();
    if !instructions.is_empty() {
        out.insert("instructions".into(), json!(instructions.join("\n\n")));
    }
    out.insert("input".into(), Value::Array(input));
    if let Some(limit) = body.get("max_completion_tokens").or_else(|| body.get("max_tokens")) {
        out.insert("max_output_tokens".into(), limit.clone());
    }
    for field in ["temperature", "top_p", "parallel_tool_calls", "reasoning_effort"] {
        if let Some(value) = body.get(field) {
            if field == "reasoning_effort" {
                out.insert("reasoning".into(), json!({"effort": value}));
            } else {
                out.insert(field.into(), value.clone());
            }
        }
    }
    match body.get("response_format") {
        Some(format) if format.get("type").and_then(Value::as_str) == Some("json_schema") => {
            let schema = format.get("json_schema").cloned().unwrap_or(json!({}));
            let mut text_format = json!({"type": "json_schema",
                "name": schema.get("name").cloned().unwrap_or(json!("answer")),
                "schema": schema.get("schema").cloned().unwrap_or(json!({}))});
            if let Some(strict) = schema.get("strict") {
                text_format["strict"] = strict.clone();
            }
            out.insert("text".into(), json!({"format": text_format}));
        }
        Some(format) if format.get("type").and_then(Value::as_str) == Some("json_object") => {
            out.insert("text".into(), json!({"format": {"type": "json_object"}}));
        }
        _ => {}
    }
    let tools = function_tools(body, api)?;
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                json!({"type": "function", "name": name, "description": description, "parameters": parameters})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice") {
        let translated = match choice {
            Value::String(mode) => json!(mode),
            other => match other.pointer("/function/name") {
                Some(name) => json!({"type": "function", "name": name}),
                None => return Err(refuse(format!("`tool_choice` {other}"))),
            },
        };
        out.insert("tool_choice".into(), translated);
    }
    out.insert("store".into(), json!(false));
    Ok(Value::Object(out))
}

/// Responses input items as chat messages.
fn response_items_to_chat(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                let call = json!({"id": item.get("call_id").cloned().unwrap_or(Value::Null), "type": "function",
                    "function": {"name": item.get("name").cloned().unwrap_or(Value::Null),
                                 "arguments": item.get("arguments").cloned().unwrap_or(json!("{}"))}});
                // Calls after an assistant message belong to it.
                match out.last_mut() {
                    Some(last) if last.get("role").and_then(Value::as_str) == Some("assistant") => {
                        match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                            Some(calls) => calls.push(call),
                            None => last["tool_calls"] = json!([call]),
                        }
                    }
                    _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            Some("function_call_output") => out.push(json!({"role": "tool",
                "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "content": item.get("output").map(crate::chat::content_text).unwrap_or_default()})),
            _ => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = match item.get("content") {
                    Some(Value::Array(parts)) => {
                        let chat: Vec<Value> = parts
                            .iter()
                            .map(|p| match p.get("type").and_then(Value::as_str) {
                                Some("input_image") => json!({"type": "image_url", "image_url": {"url": p.get("image_url").cloned().unwrap_or(Value::Null)}}),
                                _ => json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
                            })
                            .collect();
                        if chat.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("text")) {
                            json!(
                                chat.iter()
                                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            )
                        } else {
                            Value::Array(chat)
                        }
                    }
                    Some(other) => other.clone(),
                    None => continue,
                };
                let role = if role == "developer" { "system" } else { role };
                out.push(json!({"role": role, "content": content}));
            }
        }
    }
    out
}

/// A Responses API response read as a chat completion.
pub(super) fn answer_to_chat(response: &Value) -> Value {
    let count = |pointer: &str| response.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);

    let items = response.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for item in &items {
        match item.get("type").and_then(Value::as_str) {
                    Some("message") => {
                        for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                            if let Some(text) = part.get("text").and_then(Value::as_str) {
                                texts.push(text.to_string());
                            }
                        }
                    }
                    Some("function_call") => calls.push(json!({"id": item.get("call_id").cloned().unwrap_or(Value::Null),
                        "type": "function", "function": {"name": item.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": item.get("arguments").cloned().unwrap_or(json!("{}"))}})),
                    _ => {}
                }
    }
    let incomplete = response.get("status").and_then(Value::as_str) == Some("incomplete");
    let finish = match () {
        _ if incomplete => "length",
        _ if !calls.is_empty() => "tool_calls",
        _ => "stop",
    };
    let (input, output) = (count("/usage/input_tokens"), count("/usage/output_tokens"));
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                "prompt_tokens_details": {"cached_tokens": count("/usage/input_tokens_details/cached_tokens")},
                "completion_tokens_details": {"reasoning_tokens": count("/usage/output_tokens_details/reasoning_tokens")}});
    chat_completion(response, &texts, calls, finish, usage)
}

/// The chat-completions fields of a Responses request, into `out` and `messages`.
pub(super) fn request_into_chat(
    request: &Value,
    fields: &Map<String, Value>,
    out: &mut Map<String, Value>,
    messages: &mut Vec<Value>,
) {
    if let Some(instructions) =
        fields.get("instructions").and_then(Value::as_str).filter(|s| !s.trim().is_empty())
    {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match fields.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => messages.extend(response_items_to_chat(items)),
        _ => {}
    }
    copy_field(fields, out, "max_output_tokens", "max_tokens");
    copy_field(fields, out, "parallel_tool_calls", "parallel_tool_calls");
    let tools: Vec<Value> = fields
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                json!({"type": "function", "function": {"name": t.get("name").cloned().unwrap_or(Value::Null),
                        "description": t.get("description").cloned().unwrap_or(Value::Null),
                        "parameters": t.get("parameters").cloned().unwrap_or(json!({"type": "object"}))}})
            }
            _ => t.clone(),
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = fields.get("tool_choice") {
        let chat = match choice.get("name") {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => choice.clone(),
        };
        out.insert("tool_choice".into(), chat);
    }
    if let Some(format) = request.pointer("/text/format") {
        let chat = match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => json!({"type": "json_schema", "json_schema": {
                        "name": format.get("name").cloned().unwrap_or(json!("answer")),
                        "schema": format.get("schema").cloned().unwrap_or(json!({})),
                        "strict": format.get("strict").cloned().unwrap_or(Value::Bool(false))}}),
            Some("json_object") => json!({"type": "json_object"}),
            _ => Value::Null,
        };
        if !chat.is_null() {
            out.insert("response_format".into(), chat);
        }
    }
}

/// The whole response a Responses stream ends with (`response.completed`).
pub(super) fn assemble_stream(events: impl Iterator<Item = Value>) -> Option<Value> {
    events
        .filter(|e| {
            matches!(
                e.get("type").and_then(Value::as_str),
                Some("response.completed" | "response.incomplete")
            )
        })
        .fold(None, |_, e| e.get("response").cloned())
}
