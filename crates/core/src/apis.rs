//! The three APIs models are called over — OpenAI Chat Completions, OpenAI Responses, Anthropic
//! Messages — and translation between them, as pure functions on JSON bodies. Candidates on
//! other APIs than Chat Completions. Captured traffic is replayed as a
//! chat-completions body; [`to_api`] carries it to the candidate's API (system prompt, tools and
//! `tool_choice`, tool calls and their results in the history, JSON response formats, stop
//! sequences, output limits, sampling parameters, images) and [`from_api`] reads the answer back
//! as a chat completion, which is what judges, checks and reports read. A request the API cannot
//! carry faithfully is refused with the reason ([`Untranslatable`]), never silently changed.

use crate::ModelApi;
use serde_json::{Map, Value, json};

/// Why a request cannot be carried to an API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{api} cannot carry this request: {reason}")]
pub struct Untranslatable {
    /// The API.
    pub api: &'static str,
    /// What it lacks.
    pub reason: String,
}

/// The path under the base URL each API is called at.
pub fn path(api: ModelApi) -> &'static str {
    match api {
        ModelApi::OpenaiChat => "/chat/completions",
        ModelApi::OpenaiResponses => "/responses",
        ModelApi::AnthropicMessages => "/messages",
    }
}

/// Whether the API requires an output limit on every request (Anthropic's `max_tokens`).
pub fn requires_output_limit(api: ModelApi) -> bool {
    api == ModelApi::AnthropicMessages
}

/// Chat-completions fields that only steer sampling or bookkeeping and that the other APIs do
/// not have: left out of a translated request (a gateway's `drop_params` does the same).
const SAMPLING_ONLY: [&str; 7] =
    ["seed", "frequency_penalty", "presence_penalty", "logit_bias", "user", "service_tier", "store"];

/// Fields no other API can honour: a request that sets them is refused.
fn refuse_unknown(api: ModelApi, body: &Map<String, Value>) -> Result<(), Untranslatable> {
    let refuse = |reason: String| Err(Untranslatable { api: api.as_str(), reason });
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return refuse("several choices (`n` > 1)".into());
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return refuse("log probabilities (`logprobs`)".into());
    }
    if body.get("modalities").and_then(Value::as_array).is_some_and(|m| m.iter().any(|x| x != "text"))
        || body.contains_key("audio")
    {
        return refuse("audio output".into());
    }
    Ok(())
}

/// The text of a system or developer message's content.
fn text_of(content: Option<&Value>) -> String {
    content.map(crate::chat::content_text).unwrap_or_default()
}

/// The tool calls' arguments as JSON, or why not.
fn arguments(call: &Value, api: ModelApi) -> Result<Value, Untranslatable> {
    let raw = call.pointer("/function/arguments").cloned().unwrap_or(Value::Null);
    match raw {
        Value::String(text) if text.trim().is_empty() => Ok(json!({})),
        Value::String(text) => serde_json::from_str(&text).map_err(|e| Untranslatable {
            api: api.as_str(),
            reason: format!("a tool call in the history has arguments that are not JSON ({e})"),
        }),
        Value::Null => Ok(json!({})),
        other => Ok(other),
    }
}

/// The function tools of a chat request as (name, description, parameters); another tool type
/// is refused.
fn function_tools(
    body: &Map<String, Value>,
    api: ModelApi,
) -> Result<Vec<(String, Value, Value)>, Untranslatable> {
    let mut tools = Vec::new();
    for tool in body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("function");
        let function = tool.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        let (Some(name), "function") = (name, kind) else {
            return Err(Untranslatable {
                api: api.as_str(),
                reason: format!("a `{kind}` tool (only function tools carry over)"),
            });
        };
        let description = function.and_then(|f| f.get("description")).cloned().unwrap_or(Value::Null);
        let parameters = function
            .and_then(|f| f.get("parameters"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        tools.push((name.to_string(), description, parameters));
    }
    Ok(tools)
}

/// The JSON answer a `response_format` asks for, as an instruction (for APIs without the field).
fn json_instruction(format: &Value) -> Option<String> {
    match format.get("type").and_then(Value::as_str)? {
        "json_schema" => {
            let schema = format.pointer("/json_schema/schema").cloned().unwrap_or(json!({}));
            Some(format!(
                "Reply with one JSON value only, no other text, valid against this JSON schema: {schema}"
            ))
        }
        "json_object" => Some("Reply with one JSON object only, no other text.".into()),
        _ => None,
    }
}

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
fn to_anthropic(body: &Map<String, Value>) -> Result<Value, Untranslatable> {
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

/// A chat-completions body as an OpenAI Responses request.
fn to_responses(body: &Map<String, Value>) -> Result<Value, Untranslatable> {
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

/// A chat-completions body carried to `api`, or why it cannot be.
pub fn to_api(body: &Value, api: ModelApi) -> Result<Value, Untranslatable> {
    if api == ModelApi::OpenaiChat {
        return Ok(body.clone());
    }
    let mut fields = body.as_object().cloned().unwrap_or_default();
    refuse_unknown(api, &fields)?;
    for field in SAMPLING_ONLY {
        fields.remove(field);
    }
    match api {
        ModelApi::AnthropicMessages => to_anthropic(&fields),
        ModelApi::OpenaiResponses => to_responses(&fields),
        ModelApi::OpenaiChat => Ok(body.clone()),
    }
}

fn chat_completion(
    id: Value,
    model: Value,
    text: Option<String>,
    calls: Vec<Value>,
    finish: &str,
    usage: Value,
) -> Value {
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({"id": id, "object": "chat.completion", "model": model,
           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})
}

/// An answer of `api` read as a chat completion (the original kept under `evaltap_original`:
/// `{"api", "response"}`); a chat completion is returned as it came.
pub fn from_api(response: Value, api: ModelApi) -> Value {
    let count = |pointer: &str| response.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    // Not an answer of that API (an error body, a gateway answering in chat shape): as it came.
    let expected = match api {
        ModelApi::OpenaiChat => return response,
        ModelApi::AnthropicMessages => "content",
        ModelApi::OpenaiResponses => "output",
    };
    if response.get(expected).is_none() {
        return response;
    }
    let mut chat = match api {
        ModelApi::OpenaiChat => return response,
        ModelApi::AnthropicMessages => {
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
            let text = (!texts.is_empty()).then(|| texts.join(""));
            chat_completion(
                response.get("id").cloned().unwrap_or(Value::Null),
                response.get("model").cloned().unwrap_or(Value::Null),
                text,
                calls,
                finish,
                usage,
            )
        }
        ModelApi::OpenaiResponses => {
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
            let text = (!texts.is_empty()).then(|| texts.join(""));
            chat_completion(
                response.get("id").cloned().unwrap_or(Value::Null),
                response.get("model").cloned().unwrap_or(Value::Null),
                text,
                calls,
                finish,
                usage,
            )
        }
    };
    chat["evaltap_original"] = json!({"api": api.as_str(), "response": response});
    chat
}

/// A request made over `api`, read as a chat-completions request (what judges and replays
/// read): Anthropic's `system`, blocks, `tool_use`/`tool_result`, tools and `tool_choice`,
/// `stop_sequences`; the Responses API's `instructions`, input items, `function_call` and
/// `function_call_output` items, tools, `text.format` and `max_output_tokens`.
pub fn request_to_chat(request: &Value, api: ModelApi) -> Value {
    let Some(fields) = request.as_object() else { return request.clone() };
    let mut out = Map::new();
    let mut messages = Vec::new();
    let copy = |out: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(value) = fields.get(from) {
            out.insert(to.into(), value.clone());
        }
    };
    copy(&mut out, "model", "model");
    copy(&mut out, "temperature", "temperature");
    copy(&mut out, "top_p", "top_p");
    copy(&mut out, "stream", "stream");
    match api {
        ModelApi::OpenaiChat => return request.clone(),
        ModelApi::AnthropicMessages => {
            let system = fields.get("system").map(crate::chat::content_text).unwrap_or_default();
            if !system.trim().is_empty() {
                messages.push(json!({"role": "system", "content": system}));
            }
            let list = fields.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
            messages.extend(anthropic_turns_to_chat(&list));
            copy(&mut out, "max_tokens", "max_tokens");
            copy(&mut out, "stop_sequences", "stop");
            let tools: Vec<Value> = fields
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| json!({"type": "function", "function": {"name": t.get("name").cloned().unwrap_or(Value::Null),
                    "description": t.get("description").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))}}))
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
        ModelApi::OpenaiResponses => {
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
            copy(&mut out, "max_output_tokens", "max_tokens");
            copy(&mut out, "parallel_tool_calls", "parallel_tool_calls");
            let tools: Vec<Value> = fields
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| match t.get("type").and_then(Value::as_str) {
                    Some("function") => json!({"type": "function", "function": {"name": t.get("name").cloned().unwrap_or(Value::Null),
                        "description": t.get("description").cloned().unwrap_or(Value::Null),
                        "parameters": t.get("parameters").cloned().unwrap_or(json!({"type": "object"}))}}),
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
    }
    out.insert("messages".into(), Value::Array(messages));
    Value::Object(out)
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

/// A call made over `api` as the chat view judges, checks and replays read — the request via
/// [`request_to_chat`], the answer via [`from_api`] — with the call as it was made kept under
/// the answer's `evaltap_original` (`api`, `request`, `response`). A chat call is returned as is.
pub fn chat_view(api: ModelApi, request: Value, response: Value) -> (Value, Value) {
    if api == ModelApi::OpenaiChat {
        return (request, response);
    }
    let chat_request = request_to_chat(&request, api);
    let mut chat_response = from_api(response.clone(), api);
    chat_response["evaltap_original"] =
        json!({"api": api.as_str(), "request": request, "response": response});
    (chat_request, chat_response)
}

/// A streamed answer of `api` (server-sent events) assembled into that API's whole answer:
/// Anthropic's `message_start`, content-block and `message_delta` events; the Responses API's
/// `response.completed` event, which carries the whole response. `None` when the stream holds
/// no answer.
pub fn assemble_stream(body: &[u8], api: ModelApi) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    let events = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok());
    match api {
        ModelApi::OpenaiChat => None,
        ModelApi::OpenaiResponses => events
            .filter(|e| {
                matches!(
                    e.get("type").and_then(Value::as_str),
                    Some("response.completed" | "response.incomplete")
                )
            })
            .fold(None, |_, e| e.get("response").cloned()),
        ModelApi::AnthropicMessages => {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat request with everything that must carry over: a system prompt, a tool, a forced
    /// tool choice, an earlier call and its result, an image, a JSON schema, limits.
    fn chat_request() -> Value {
        json!({"model": "m", "max_tokens": 300, "temperature": 0.2, "seed": 7, "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "strict": true, "schema": {"type": "object"}}},
            "messages": [
                {"role": "system", "content": "You are a travel assistant."},
                {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\":18}"},
                {"role": "user", "content": "And in Rome?"}]})
    }

    #[test]
    fn a_chat_request_carries_to_anthropic_messages() {
        let out = to_api(&chat_request(), ModelApi::AnthropicMessages).expect("carries");
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["temperature"], 0.2);
        assert!(out.get("seed").is_none(), "sampling-only fields are left out");
        let system = out["system"].as_str().expect("system");
        assert!(
            system.starts_with("You are a travel assistant.") && system.contains("JSON schema"),
            "{system}"
        );
        assert_eq!(
            out["tools"][0],
            json!({"name": "get_weather", "description": "Weather.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
        let messages = out["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3, "the tool result and the next question are one user turn: {out}");
        assert_eq!(
            messages[0]["content"][1],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}})
        );
        assert_eq!(
            messages[1]["content"][0],
            json!({"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}})
        );
        assert_eq!(
            messages[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "c1", "content": "{\"temp_c\":18}"})
        );
        assert_eq!(messages[2]["content"][1], json!({"type": "text", "text": "And in Rome?"}));
    }

    #[test]
    fn a_chat_request_carries_to_responses() {
        let out = to_api(&chat_request(), ModelApi::OpenaiResponses).expect("carries");
        assert_eq!(out["instructions"], "You are a travel assistant.");
        assert_eq!(out["max_output_tokens"], 300);
        assert_eq!(
            out["text"]["format"],
            json!({"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true})
        );
        assert_eq!(out["tools"][0]["name"], "get_weather");
        assert_eq!(out["tool_choice"], json!({"type": "function", "name": "get_weather"}));
        let input = out["input"].as_array().expect("input");
        assert_eq!(
            input[0]["content"][1],
            json!({"type": "input_image", "image_url": "data:image/png;base64,iVBOR"})
        );
        assert_eq!(
            input[1],
            json!({"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"})
        );
        assert_eq!(
            input[2],
            json!({"type": "function_call_output", "call_id": "c1", "output": "{\"temp_c\":18}"})
        );
        assert_eq!(input[3]["content"][0], json!({"type": "input_text", "text": "And in Rome?"}));
    }

    #[test]
    fn what_an_api_cannot_carry_is_refused_with_the_reason() {
        let refused = |body: Value, api: ModelApi| to_api(&body, api).expect_err("refused").to_string();
        let audio = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]}]});
        assert_eq!(
            refused(audio.clone(), ModelApi::AnthropicMessages),
            "anthropic-messages cannot carry this request: audio input"
        );
        assert!(refused(audio, ModelApi::OpenaiResponses).ends_with("audio input"));
        let stop = json!({"model": "m", "stop": "END", "messages": [{"role": "user", "content": "hi"}]});
        assert!(refused(stop.clone(), ModelApi::OpenaiResponses).contains("stop sequences"));
        assert_eq!(
            to_api(
                &{
                    let mut s = stop;
                    s["max_tokens"] = json!(5);
                    s
                },
                ModelApi::AnthropicMessages
            )
            .expect("carries")["stop_sequences"],
            json!(["END"])
        );
        let search = json!({"model": "m", "max_tokens": 5, "tools": [{"type": "web_search"}], "messages": [{"role": "user", "content": "hi"}]});
        assert!(refused(search, ModelApi::AnthropicMessages).contains("a `web_search` tool"));
        let several = json!({"model": "m", "n": 3, "messages": [{"role": "user", "content": "hi"}]});
        assert!(refused(several, ModelApi::OpenaiResponses).contains("`n` > 1"));
        let unlimited = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(refused(unlimited, ModelApi::AnthropicMessages).contains("max_tokens"));
        let bad_arguments = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]});
        assert!(refused(bad_arguments, ModelApi::AnthropicMessages).contains("not JSON"));
        let chat = json!({"model": "m", "n": 3, "messages": []});
        assert_eq!(to_api(&chat, ModelApi::OpenaiChat).expect("as is"), chat);
    }

    #[test]
    fn requests_made_over_messages_and_responses_read_as_chat() {
        let anthropic = json!({"model": "claude", "max_tokens": 64, "system": [{"type": "text", "text": "Be kind."}],
            "stop_sequences": ["END"], "tool_choice": {"type": "any"},
            "tools": [{"name": "f", "description": "F.", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"},
                                             {"type": "text", "text": "thanks"}]}]});
        let chat = request_to_chat(&anthropic, ModelApi::AnthropicMessages);
        assert_eq!(
            chat["messages"],
            json!([
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "done"},
            {"role": "user", "content": "thanks"}])
        );
        assert_eq!(
            (&chat["max_tokens"], &chat["stop"], &chat["tool_choice"]),
            (&json!(64), &json!(["END"]), &json!("required"))
        );
        assert_eq!(chat["tools"][0]["function"]["parameters"], json!({"type": "object"}));
        // And back: the chat view carries to Messages as the original said.
        let again = to_api(&chat, ModelApi::AnthropicMessages).expect("carries");
        assert_eq!(again["messages"][1]["content"][0]["input"], json!({"a": 1}));

        let responses = json!({"model": "gpt", "instructions": "Be brief.", "max_output_tokens": 9,
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
            "input": [{"role": "user", "content": "hi"},
                      {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
        let chat = request_to_chat(&responses, ModelApi::OpenaiResponses);
        assert_eq!(
            chat["messages"],
            json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}])
        );
        assert_eq!(chat["max_tokens"], 9);
        assert_eq!(chat["response_format"]["json_schema"]["name"], "n");
    }

    #[test]
    fn streamed_answers_assemble_into_whole_ones() {
        let anthropic = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"now.\"}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Rome\\\"}\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":20}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        let whole = assemble_stream(anthropic.as_bytes(), ModelApi::AnthropicMessages).expect("a message");
        assert_eq!(whole["content"][0]["text"], "Checking now.");
        assert_eq!(whole["content"][1]["input"], json!({"city": "Rome"}));
        assert_eq!(
            (&whole["stop_reason"], &whole["usage"]["output_tokens"]),
            (&json!("tool_use"), &json!(20))
        );
        let chat = from_api(whole, ModelApi::AnthropicMessages);
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");

        let responses = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\",\"status\":\"in_progress\",\"output\":[]}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"42\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"42\"}]}],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"
        );
        let whole = assemble_stream(responses.as_bytes(), ModelApi::OpenaiResponses).expect("a response");
        assert_eq!(from_api(whole, ModelApi::OpenaiResponses)["choices"][0]["message"]["content"], "42");
        assert_eq!(assemble_stream(b"data: [DONE]\n\n", ModelApi::AnthropicMessages), None);
    }

    #[test]
    fn answers_read_back_as_chat_completions() {
        let anthropic = json!({"id": "msg_1", "type": "message", "model": "claude", "role": "assistant",
            "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Rome"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90}});
        let chat = from_api(anthropic.clone(), ModelApi::AnthropicMessages);
        assert_eq!(chat["choices"][0]["message"]["content"], "Checking.");
        assert_eq!(
            chat["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"})
        );
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        let usage = crate::Usage::from_openai(&chat).expect("usage");
        assert_eq!((usage.input_tokens, usage.cached_input_tokens, usage.output_tokens), (100, 90, 5));
        assert_eq!(chat["evaltap_original"], json!({"api": "anthropic-messages", "response": anthropic}));

        let responses = json!({"id": "resp_1", "object": "response", "model": "gpt", "status": "incomplete",
            "output": [{"type": "reasoning", "summary": []}, {"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "The answer"}]}],
            "usage": {"input_tokens": 20, "output_tokens": 64, "input_tokens_details": {"cached_tokens": 4},
                      "output_tokens_details": {"reasoning_tokens": 60}}});
        let chat = from_api(responses, ModelApi::OpenaiResponses);
        assert_eq!(chat["choices"][0]["message"]["content"], "The answer");
        assert_eq!(chat["choices"][0]["finish_reason"], "length");
        let usage = crate::Usage::from_openai(&chat).expect("usage");
        assert_eq!(
            (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens),
            (20, 4, 64, 60)
        );
        // An error body is left as it came (the client then reports it).
        let error = json!({"type": "error", "error": {"message": "overloaded"}});
        assert_eq!(from_api(error.clone(), ModelApi::AnthropicMessages), error);
    }
}
