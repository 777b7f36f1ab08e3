//! The three APIs models are called over — OpenAI Chat Completions, OpenAI Responses, Anthropic
//! Messages — and translation between them, as pure functions on JSON bodies, one file per API.
//! Captured traffic is replayed as a chat-completions body; [`to_api`] carries it to the
//! candidate's API (system prompt, tools and `tool_choice`, tool calls and their results in the
//! history, JSON response formats, stop sequences, output limits, sampling parameters, images)
//! and [`from_api`] reads the answer back as a chat completion, which is what judges, checks and
//! reports read. A request the API cannot
//! carry faithfully is refused with the reason ([`Untranslatable`]), never silently changed.

mod anthropic;
mod responses;

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
        ModelApi::AnthropicMessages => anthropic::to_anthropic(&fields),
        ModelApi::OpenaiResponses => responses::to_responses(&fields),
        ModelApi::OpenaiChat => Ok(body.clone()),
    }
}

/// Copies `fields[from]`, when present, to `out[to]`.
fn copy_field(fields: &Map<String, Value>, out: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = fields.get(from) {
        out.insert(to.into(), value.clone());
    }
}

/// A chat completion of `answer`'s id and model with this text (joined), tool calls, finish
/// reason and usage.
fn chat_completion<S: std::borrow::Borrow<str>>(
    answer: &Value,
    texts: &[S],
    calls: Vec<Value>,
    finish: &str,
    usage: Value,
) -> Value {
    let (id, model) = (
        answer.get("id").cloned().unwrap_or(Value::Null),
        answer.get("model").cloned().unwrap_or(Value::Null),
    );
    let text = (!texts.is_empty()).then(|| texts.join(""));
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
        ModelApi::AnthropicMessages => anthropic::answer_to_chat(&response),
        ModelApi::OpenaiResponses => responses::answer_to_chat(&response),
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
    for field in ["model", "temperature", "top_p", "stream"] {
        copy_field(fields, &mut out, field, field);
    }
    match api {
        ModelApi::OpenaiChat => return request.clone(),
        ModelApi::AnthropicMessages => anthropic::request_into_chat(fields, &mut out, &mut messages),
        ModelApi::OpenaiResponses => responses::request_into_chat(request, fields, &mut out, &mut messages),
    }
    out.insert("messages".into(), Value::Array(messages));
    Value::Object(out)
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
        ModelApi::OpenaiResponses => responses::assemble_stream(events),
        ModelApi::AnthropicMessages => anthropic::assemble_stream(events),
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
