//! Anthropic Messages: a chat request carried to it, its answers and requests read as chat,
//! its streams assembled.

use serde_json::{Map, Value, json};

use super::{
    Untranslatable, arguments, chat_completion, copy_field, function_tools, json_instruction, text_of,
};
use crate::ModelApi;

/// A content part of a user message in Anthropic's blocks.
fn anthropic_part(part: &Value) -> Result<Value, String> {
    match part.get("type").and_then(Value::as_str).unwrap_or("text") {
        "text" | "input_text" => {
            Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(json!(""))}))
        }
        "image_url" | "input_image" => {
            let url = part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))
                .and_then(Value::as_str)
                .ok_or("an image part without a URL")?;
            match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                Some((media_type, data)) => Ok(
                    json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                ),
                None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
            }
        }
        "input_audio" | "audio" => Err("audio input".into()),
        "file" | "input_file" => Err("a file part".into()),
        other => Err(format!("a `{other}` content part")),
    }
}

fn anthropic_content(content: Option<&Value>) -> Result<Vec<Value>, String> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![json!({"type": "text", "text": text})]),
        Some(Value::Array(parts)) => parts.iter().map(anthropic_part).collect(),
        Some(other) => Ok(vec![json!({"type": "text", "text": other.to_string()})]),
    }
}

/// A chat-completions body as an Anthropic Messages request.
pub(super) fn to_anthropic(body: &Map<String, Value>) -> Result<Value, Untranslatable> {
    let api = ModelApi::AnthropicMessages;
    let refuse = |reason: String| Untranslatable { api: api.as_str(), reason };
    let mut system = Vec::new();
    // Anthropic alternates user and assistant turns: consecutive turns of one role are merged.
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| match turns.last_mut() {
        Some((last, content)) if last == role => content.extend(blocks),
        _ => turns.push((role.to_string(), blocks)),
    };
    for message in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        match role {
            "system" | "developer" => system.push(text_of(message.get("content"))),
            "user" => push("user", anthropic_content(message.get("content")).map_err(refuse)?),
            "assistant" => {
                let mut blocks = anthropic_content(message.get("content")).map_err(refuse)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    blocks.push(
                        json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(json!("call")),
                        "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
                        "input": arguments(call, api)?}),
                    );
                }
                push("assistant", blocks);
            }
            "tool" | "function" => {
                let result = json!({"type": "tool_result",
                    "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(json!("call")),
                    "content": text_of(message.get("content"))});
                push("user", vec![result]);
            }
            other => return Err(refuse(format!("a message of role `{other}`"))),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), body.get("model").cloned().unwrap_or(Value::Null));
    if let Some(instruction) = body.get("response_format").and_then(json_instruction) {
        system.push(instruction);
    }
    let system: Vec<String> = system.into_iter().filter(|s| !s.trim().is_empty()).collect();
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    let messages: Vec<Value> =
        turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    out.insert("messages".into(), Value::Array(messages));
    let limit = body.get("max_completion_tokens").or_else(|| body.get("max_tokens")).cloned();
    out.insert("max_tokens".into(), limit.ok_or_else(|| refuse("no output limit (`max_tokens`)".into()))?);
    for field in ["temperature", "top_p", "top_k"] {
        if let Some(value) = body.get(field) {
            out.insert(field.into(), value.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    let tools = function_tools(body, api)?;
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                let mut tool = json!({"name": name, "input_schema": parameters});
                if let Value::String(description) = description {
                    tool["description"] = json!(description);
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice") {
        let mut translated = match choice {
            Value::String(mode) if mode == "auto" => json!({"type": "auto"}),
            Value::String(mode) if mode == "required" => json!({"type": "any"}),
            Value::String(mode) if mode == "none" => json!({"type": "none"}),
            other => match other.pointer("/function/name") {
                Some(name) => json!({"type": "tool", "name": name}),
                None => return Err(refuse(format!("`tool_choice` {other}"))),
            },
        };
        if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
            translated["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), translated);
    }
    Ok(Value::Object(out))
}

/// Anthropic turns as chat messages: text and image blocks as content parts, `tool_use` as
/// `tool_calls`, each `tool_result` as a `tool` message.
fn anthropic_turns_to_chat(turns: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("user");
        let blocks = match turn.get("content") {
            Some(Value::Array(blocks)) => blocks.clone(),
            Some(Value::String(text)) => {
                out.push(json!({"role": role, "content": text}));
                continue;
            }
            _ => Vec::new(),
        };
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        for block in &blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => parts.push(json!({"type": "text", "text": block.get("text").cloned().unwrap_or(json!(""))})),
                Some("image") => {
                    let source = block.get("source").cloned().unwrap_or(Value::Null);
                    let url = match source.get("type").and_then(Value::as_str) {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
                            source.get("data").and_then(Value::as_str).unwrap_or("")
                        ),
                        _ => source.get("url").and_then(Value::as_str).unwrap_or("").to_string(),
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                Some("tool_use") => calls.push(json!({"id": block.get("id").cloned().unwrap_or(Value::Null), "type": "function",
                    "function": {"name": block.get("name").cloned().unwrap_or(Value::Null),
                                 "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())}})),
                Some("tool_result") => out.push(json!({"role": "tool",
                    "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(Value::Null),
                    "content": block.get("content").map(crate::chat::content_text).unwrap_or_default()})),
                _ => {}
            }
        }
        let only_text = parts.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("text"));
        let content = if parts.is_empty() {
            Value::Null
        } else if only_text {
            json!(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        } else {
            Value::Array(parts)
        };
        if !content.is_null() || !calls.is_empty() {
            let mut message = json!({"role": role, "content": content});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            out.push(message);
        }
    }
    out
}

/// An Anthropic message read as a chat completion.
pub(super) fn answer_to_chat(response: &Value) -> Value {
    let count = |pointer: &str| response.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);

    let blocks = response.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    let texts: Vec<&str> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                .map(|b| json!({"id": b.get("id").cloned().unwrap_or(Value::Null), "type": "function",
                    "function": {"name": b.get("name").cloned().unwrap_or(Value::Null),
                                 "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())}}))
                .collect();
    let finish = match response.get("stop_reason").and_then(Value::as_str) {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    };
    let cached = count("/usage/cache_read_input_tokens");
    let input = count("/usage/input_tokens") + cached + count("/usage/cache_creation_input_tokens");
    let output = count("/usage/output_tokens");
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                               "prompt_tokens_details": {"cached_tokens": cached}});
    chat_completion(response, &texts, calls, finish, usage)
}

/// The chat-completions fields of an Anthropic request, into `out` and `messages`.
pub(super) fn request_into_chat(
    fields: &Map<String, Value>,
    out: &mut Map<String, Value>,
    messages: &mut Vec<Value>,
) {
    let system = fields.get("system").map(crate::chat::content_text).unwrap_or_default();
    if !system.trim().is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    let list = fields.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    messages.extend(anthropic_turns_to_chat(&list));
    copy_field(fields, out, "max_tokens", "max_tokens");
    copy_field(fields, out, "stop_sequences", "stop");
    let tools: Vec<Value> = fields
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            json!({"type": "function", "function": {"name": t.get("name").cloned().unwrap_or(Value::Null),
                    "description": t.get("description").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))}})
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = fields.get("tool_choice") {
        let chat = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
            }
            Some(mode) => json!(mode),
            None => choice.clone(),
        };
        out.insert("tool_choice".into(), chat);
    }
}

/// An Anthropic message assembled from its stream's events.
pub(super) fn assemble_stream(events: impl Iterator<Item = Value>) -> Option<Value> {
    let mut message: Option<Value> = None;
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial_json: Vec<String> = Vec::new();
    for event in events {
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => message = event.get("message").cloned(),
            Some("content_block_start") => {
                blocks.push(event.get("content_block").cloned().unwrap_or(Value::Null));
                partial_json.push(String::new());
            }
            Some("content_block_delta") => {
                let (Some(block), Some(json)) = (blocks.last_mut(), partial_json.last_mut()) else {
                    continue;
                };
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = format!(
                            "{}{}",
                            block.get("text").and_then(Value::as_str).unwrap_or(""),
                            delta.get("text").and_then(Value::as_str).unwrap_or("")
                        );
                        block["text"] = json!(text);
                    }
                    Some("input_json_delta") => {
                        json.push_str(delta.get("partial_json").and_then(Value::as_str).unwrap_or(""))
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(message) = message.as_mut() {
                    if let Some(reason) = event.pointer("/delta/stop_reason") {
                        message["stop_reason"] = reason.clone();
                    }
                    if let Some(output) = event.pointer("/usage/output_tokens") {
                        message["usage"]["output_tokens"] = output.clone();
                    }
                }
            }
            _ => {}
        }
    }
    let mut message = message?;
    for (block, json) in blocks.iter_mut().zip(partial_json) {
        if !json.is_empty() {
            block["input"] = serde_json::from_str(&json).unwrap_or(Value::String(json));
        }
    }
    message["content"] = Value::Array(blocks);
    Some(message)
}
