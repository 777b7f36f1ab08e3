//! Reading OpenAI chat-completions bodies without forcing them into a closed schema: requests
//! carry provider-specific fields that a replay must pass along untouched.

use serde_json::Value;

/// Text of a message's `content`, whether a plain string or a list of content parts; parts
/// that are not text (images, audio, files) stand as placeholders saying what they were.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.clone()),
                _ => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| media_placeholder(part)),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Images a judge that takes images is shown, at most this many per prompt (the first ones).
pub const MAX_JUDGE_IMAGES: usize = 8;

/// The images of a chat request's conversation, in order, as chat-completions `image_url`
/// parts (data URLs and links alike; Anthropic-style base64 sources as data URLs), at most
/// [`MAX_JUDGE_IMAGES`].
pub fn image_parts(request: &Value) -> Vec<Value> {
    let mut images = Vec::new();
    for message in request.get("messages").and_then(Value::as_array).into_iter().flatten() {
        for part in message.get("content").and_then(Value::as_array).into_iter().flatten() {
            let url = match part.get("type").and_then(Value::as_str) {
                Some("image_url" | "input_image") => part
                    .pointer("/image_url/url")
                    .or_else(|| part.get("image_url"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                Some("image") => match part.pointer("/source/data").and_then(Value::as_str) {
                    Some(data) => Some(format!(
                        "data:{};base64,{data}",
                        part.pointer("/source/media_type").and_then(Value::as_str).unwrap_or("image/png")
                    )),
                    None => part.pointer("/source/url").and_then(Value::as_str).map(str::to_string),
                },
                _ => None,
            };
            if let Some(url) = url.filter(|u| !u.is_empty())
                && images.len() < MAX_JUDGE_IMAGES
            {
                images.push(serde_json::json!({"type": "image_url", "image_url": {"url": url}}));
            }
        }
    }
    images
}

/// `[image: image/png, 34 KB]`, `[image: https://…]`, `[audio: wav, 12 KB]`, `[file: report.pdf]`
/// for a content part that is not text; `None` for a part of an unknown kind.
fn media_placeholder(part: &Value) -> Option<String> {
    let kind = part.get("type").and_then(Value::as_str)?;
    let size = |data: &str| format!("{} KB", (data.len() * 3 / 4).div_ceil(1024));
    match kind {
        "image_url" | "input_image" | "image" => {
            let url = part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))
                .or_else(|| part.get("url"))
                .and_then(Value::as_str)
                .or_else(|| part.pointer("/source/url").and_then(Value::as_str));
            let data = part.pointer("/source/data").and_then(Value::as_str);
            Some(match (url, data) {
                (Some(url), _) if url.starts_with("data:") => {
                    let media = url.trim_start_matches("data:").split(';').next().unwrap_or("image");
                    let payload = url.split_once(',').map_or("", |(_, d)| d);
                    format!("[image: {media}, {}]", size(payload))
                }
                (Some(url), _) => format!("[image: {url}]"),
                (None, Some(data)) => {
                    let media = part.pointer("/source/media_type").and_then(Value::as_str).unwrap_or("image");
                    format!("[image: {media}, {}]", size(data))
                }
                (None, None) => "[image]".to_string(),
            })
        }
        "input_audio" | "audio" => {
            let format = part.pointer("/input_audio/format").and_then(Value::as_str).unwrap_or("audio");
            let data = part.pointer("/input_audio/data").and_then(Value::as_str).unwrap_or("");
            Some(format!("[audio: {format}, {}]", size(data)))
        }
        "file" | "input_file" | "document" => {
            let name = part
                .pointer("/file/filename")
                .or_else(|| part.get("filename"))
                .and_then(Value::as_str)
                .unwrap_or("attached");
            Some(format!("[file: {name}]"))
        }
        _ => None,
    }
}

/// Longest tool result shown to a judge, in characters: enough to tell what the tool said.
pub const TOOL_RESULT_CHARS: usize = 2_000;

/// Longest tool definitions block shown to a judge, in characters.
pub const TOOLS_CHARS: usize = 6_000;

/// `text`, cut to `limit` characters with a note of how much was left out.
fn bounded(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    if count <= limit {
        return text.to_string();
    }
    let kept: String = text.chars().take(limit).collect();
    format!("{kept}… [{} more characters]", count - limit)
}

/// A tool call as a judge reads it: `get_weather({"city":"Paris"})` (arguments as sent; a
/// string of JSON is shown compact).
fn call_text(call: &Value) -> String {
    let function = call.get("function").unwrap_or(call);
    let name = function.get("name").and_then(Value::as_str).unwrap_or("?");
    let arguments = match function.get("arguments").or_else(|| call.get("input")) {
        Some(Value::String(raw)) => {
            serde_json::from_str::<Value>(raw).map_or_else(|_| raw.clone(), |v| v.to_string())
        }
        Some(other) => other.to_string(),
        None => String::new(),
    };
    format!("{name}({arguments})")
}

/// The tool calls of an assistant message (`tool_calls`, or the older `function_call`).
fn calls_of(message: &Value) -> Vec<String> {
    let mut calls: Vec<String> =
        message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().map(call_text).collect();
    if let Some(call) = message.get("function_call") {
        calls.push(call_text(call));
    }
    calls
}

/// The request's messages, or an empty slice when it has none.
pub fn messages(request: &Value) -> &[Value] {
    request.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Text of the last `user` message of a request.
pub fn last_user_text(request: &Value) -> String {
    messages(request)
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// The conversation as `role: text` lines, for judge prompts: each assistant tool call in the
/// history (`assistant: [calls get_weather({"city":"Paris"})]`), each tool result (bounded, with
/// the call it answers), media as placeholders.
pub fn transcript(request: &Value) -> String {
    // A system prompt a gateway logged beside the messages (`instructions`, Anthropic's
    // `system`) is part of the conversation too.
    let logged_system: Vec<String> = ["instructions", "system"]
        .iter()
        .filter_map(|field| request.get(*field).map(content_text))
        .filter(|text| !text.trim().is_empty())
        .filter(|text| {
            !messages(request).first().is_some_and(|m| {
                m.get("role").and_then(Value::as_str) == Some("system")
                    && m.get("content").map(content_text).as_deref() == Some(text.as_str())
            })
        })
        .map(|text| format!("system: {text}"))
        .collect();
    logged_system.into_iter().chain(messages(request).iter().map(message_line)).collect::<Vec<_>>().join("\n")
}

/// One message of a transcript.
fn message_line(m: &Value) -> String {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
    let text = m.get("content").map(content_text).unwrap_or_default();
    if matches!(role, "tool" | "function") {
        let answered = m
            .get("name")
            .or_else(|| m.get("tool_call_id"))
            .and_then(Value::as_str)
            .map_or(String::new(), |n| format!(" ({n})"));
        return format!("tool{answered}: {}", bounded(&text, TOOL_RESULT_CHARS));
    }
    let mut line = format!("{role}: {text}");
    for call in calls_of(m) {
        if !line.ends_with(": ") {
            line.push(' ');
        }
        line.push_str(&format!("[calls {call}]"));
    }
    line
}

/// The tools a request offers, one per line — `get_weather: Get the weather for a city.
/// parameters {"type":"object",…}` — cut at [`TOOLS_CHARS`]; empty when it offers none.
pub fn tools_text(request: &Value) -> String {
    let tools = request.get("tools").or_else(|| request.get("functions")).and_then(Value::as_array);
    let lines: Vec<String> = tools
        .into_iter()
        .flatten()
        .map(|tool| {
            let function = tool.get("function").unwrap_or(tool);
            let name = function.get("name").and_then(Value::as_str).unwrap_or("?");
            let description = function.get("description").and_then(Value::as_str).unwrap_or("");
            let parameters = function.get("parameters").or_else(|| function.get("input_schema"));
            let mut line = format!("{name}: {description}");
            if let Some(schema) = parameters {
                line.push_str(&format!(" parameters {schema}"));
            }
            line
        })
        .collect();
    let mut text = bounded(&lines.join("\n"), TOOLS_CHARS);
    if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
        let choice = choice.as_str().map_or_else(|| choice.to_string(), str::to_owned);
        text.push_str(&format!("\ntool_choice: {choice}"));
    }
    text
}

/// Text of the first choice of a chat-completions response (`choices[0].message.content`).
pub fn response_text(response: &Value) -> String {
    response.pointer("/choices/0/message/content").map(content_text).unwrap_or_default()
}

/// The answer as a judge reads it: its text, then each tool call it makes
/// (`[calls get_weather({"city":"Paris"})]`) and a refusal (`[refusal: …]`).
pub fn answer_text(response: &Value) -> String {
    let Some(message) = response.pointer("/choices/0/message") else { return String::new() };
    let mut parts = Vec::new();
    let text = message.get("content").map(content_text).unwrap_or_default();
    if !text.is_empty() {
        parts.push(text);
    }
    parts.extend(calls_of(message).into_iter().map(|call| format!("[calls {call}]")));
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        parts.push(format!("[refusal: {refusal}]"));
    }
    parts.join("\n")
}

/// The model named by a response, else by the request.
pub fn model_of(request: &Value, response: &Value) -> Option<String> {
    response.get("model").or_else(|| request.get("model")).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_text_and_content_parts() {
        let request = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "héllo"}, {"type": "text", "text": "wörld"}]}
        ]});
        assert_eq!(last_user_text(&request), "héllo\nwörld");
        assert_eq!(transcript(&request), "system: be brief\nuser: héllo\nwörld");
        let response =
            json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": "42"}}]});
        assert_eq!(response_text(&response), "42");
        assert_eq!(model_of(&request, &response).as_deref(), Some("m"));
    }

    #[test]
    fn tools_calls_results_and_media_are_shown_to_the_judge() {
        let request = json!({
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "You are a travel assistant."},
            {"role": "user", "content": [{"type": "text", "text": "What is the weather here?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\":18}"},
            {"role": "user", "content": "And in Rome?"}
        ]});
        assert_eq!(
            transcript(&request),
            "system: You are a travel assistant.\nuser: What is the weather here?\n[image: image/png, 1 KB]\n\
             assistant: [calls get_weather({\"city\":\"Paris\"})]\ntool (c1): {\"temp_c\":18}\nuser: And in Rome?"
        );
        let tools = tools_text(&request);
        assert!(tools.starts_with("get_weather: Weather for a city. parameters {"), "{tools}");
        assert!(tools.ends_with("tool_choice: auto"), "{tools}");
        let response = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]}}]});
        assert_eq!(answer_text(&response), "[calls get_weather({\"city\":\"Rome\"})]");
        assert_eq!(response_text(&response), "");
        let refused = json!({"choices": [{"message": {"role": "assistant", "content": null, "refusal": "I can't help."}}]});
        assert_eq!(answer_text(&refused), "[refusal: I can't help.]");
        // A system prompt a gateway logged beside the messages is shown first, once.
        let hybrid =
            json!({"instructions": "You are terse.", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(transcript(&hybrid), "system: You are terse.\nuser: hi");
        let doubled = json!({"system": "Be kind.", "messages": [{"role": "system", "content": "Be kind."}]});
        assert_eq!(transcript(&doubled), "system: Be kind.");
        // A long tool result is cut, and says so.
        let long = json!({"messages": [{"role": "tool", "content": "x".repeat(TOOL_RESULT_CHARS + 10)}]});
        assert!(transcript(&long).ends_with("… [10 more characters]"));
    }
}
