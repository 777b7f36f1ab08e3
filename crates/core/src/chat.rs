//! Reading OpenAI chat-completions bodies without forcing them into a closed schema: requests
//! carry provider-specific fields that a replay must pass along untouched.

use serde_json::Value;

/// Text of a message's `content`, whether a plain string or a list of content parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.as_str()),
                _ => part.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
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

/// The conversation as `role: text` lines, for judge prompts.
pub fn transcript(request: &Value) -> String {
    messages(request)
        .iter()
        .map(|m| {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
            let text = m.get("content").map(content_text).unwrap_or_default();
            format!("{role}: {text}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text of the first choice of a chat-completions response (`choices[0].message.content`).
pub fn response_text(response: &Value) -> String {
    response.pointer("/choices/0/message/content").map(content_text).unwrap_or_default()
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
}
