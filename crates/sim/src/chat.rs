//! `POST /v1/chat/completions` and what the simulated assistants answer: right with their
//! accuracy, wrong the same way each time, tool calls, JSON output, token limits and streaming.

use super::*;

/// How often a model's success on a prompt follows the prompt's shared difficulty rather than
/// its own draw.
const SHARED_DIFFICULTY: f64 = 0.75;

/// What a simulated assistant answers to a user prompt.
pub(crate) fn assistant_reply(model: &SimModel, accuracy: f64, prompt: &str) -> String {
    let Some(task) = Task::find(prompt) else {
        let preview: String = prompt.chars().take(80).collect();
        return format!("This is {}, a simulated model. You said: {preview}", model.id);
    };
    // Models share which prompts are hard most of the time (as real models do), so two models
    // of equal accuracy mostly fail on the same prompts; the marginal accuracy is unchanged
    // because both draws are uniform.
    let draw = if unit(model.id, prompt, "shared") < SHARED_DIFFICULTY {
        unit("", prompt, "difficulty")
    } else {
        unit(model.id, prompt, "correct")
    };
    let answer = if draw < model.accuracy_on(accuracy, &task) {
        task.answer()
    } else {
        task.wrong_answer(xxh3_64(format!("{}{prompt}", model.id).as_bytes()))
    };
    if model.terse && task.family() == tasks::Family::Compute {
        answer
    } else if model.rambling {
        format!("The answer is {answer}. {RAMBLE} {RAMBLE} {RAMBLE}")
    } else if prompt.contains("Reply in JSON") {
        // Verbose models follow a JSON output instruction; terse ones answer the bare value.
        serde_json::json!({"answer": answer.parse::<i64>().map_or(serde_json::json!(answer), |n| serde_json::json!(n))})
            .to_string()
    } else {
        format!("The answer is {answer}.")
    }
}

/// What a rambling model adds to every answer, three times over: some forty times the length of
/// the production model's answer.
pub(crate) const RAMBLE: &str = "To explain how I got there, I read the question twice, restated it in my own words, \
    worked through each step carefully, checked the arithmetic a second time, considered whether \
    any other reading of the question was possible, and concluded that this is the answer that \
    best fits everything the question says. Let me know if you would like more detail on any step.";

/// The answer cut at `limit` tokens (whole words), and whether it was cut.
pub(crate) fn within_limit(reply: String, limit: Option<u64>) -> (String, bool) {
    let Some(limit) = limit else { return (reply, false) };
    if count_tokens(&reply) <= limit {
        return (reply, false);
    }
    let mut kept = String::new();
    for word in reply.split_whitespace() {
        let next = if kept.is_empty() { word.to_string() } else { format!("{kept} {word}") };
        if count_tokens(&next) > limit {
            break;
        }
        kept = next;
    }
    (kept, true)
}

/// Cities the simulated tool task asks about; a wrong call names another.
pub(crate) const CITIES: [&str; 8] = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar"];

static WEATHER_IN: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"weather in ([A-Z][a-z]+)").expect("static regex"));

/// The simulated tool task: a request that offers tools and asks for "the weather in <City>"
/// is answered with a call of its first tool with `{"city": <City>}` — right with the model's
/// accuracy (the same shared difficulty as the other tasks), else with another city. `None`
/// for any other request.
pub(crate) fn tool_call(
    model: &SimModel,
    accuracy: f64,
    request: &Value,
    prompt: &str,
) -> Option<(String, Value)> {
    // Chat Completions nests the name under `function`; Messages and Responses do not.
    let tool = request
        .pointer("/tools/0/function/name")
        .or_else(|| request.pointer("/tools/0/name"))
        .and_then(Value::as_str)?;
    let city = WEATHER_IN.captures(prompt)?.get(1)?.as_str().to_string();
    let draw = if unit(model.id, prompt, "shared") < SHARED_DIFFICULTY {
        unit("", prompt, "difficulty")
    } else {
        unit(model.id, prompt, "correct")
    };
    let city = if draw < accuracy {
        city
    } else {
        let others: Vec<&str> = CITIES.iter().copied().filter(|c| *c != city).collect();
        others[(xxh3_64(format!("{}{prompt}", model.id).as_bytes()) % others.len() as u64) as usize]
            .to_string()
    };
    Some((tool.to_string(), json!({"city": city})))
}

/// A chat completion whose answer is one tool call.
fn tool_call_reply(calls: &CallLog, model: &SimModel, texts: &[String], call: &(String, Value)) -> Response {
    let (name, arguments) = call;
    let digest = xxh3_64(format!("{}{}", model.id, texts.join("\u{0}")).as_bytes());
    let prompt_tokens: u64 = texts.iter().map(|t| count_tokens(t) + 3).sum();
    let completion_tokens = 10;
    calls.bill(model, prompt_tokens, completion_tokens);
    Json(json!({
        "id": format!("chatcmpl-sim-{digest:016x}"), "object": "chat.completion",
        "created": 1_700_000_000 + (digest % 100_000_000), "model": model.id,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": format!("call_{:08x}", digest % 0xffff_ffff), "type": "function",
                            "function": {"name": name, "arguments": arguments.to_string()}}]}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response()
}

pub(crate) async fn chat_completions(State(state): State<SimState>, body: axum::body::Bytes) -> Response {
    state.calls.record(&body);
    let config = state.config;
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(err) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON body: {err}"),
                "invalid_json",
            );
        }
    };
    let Some(model_id) = request.get("model").and_then(Value::as_str) else {
        return openai_error(StatusCode::BAD_REQUEST, "`model` is required", "missing_model");
    };
    let Some(model) = models::find(model_id) else {
        return openai_error(
            StatusCode::NOT_FOUND,
            format!("model `{model_id}` does not exist"),
            "model_not_found",
        );
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "`messages` must be a non-empty array",
            "missing_messages",
        );
    };
    let texts: Vec<String> = messages.iter().map(message_text).collect();
    let reply = match model.role {
        Role::Judge => judge::judge(&judge_draw(model, &request), &texts.join("\n"), config.judge),
        Role::Assistant => {
            let last_user = messages
                .iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(|i| texts[i].as_str())
                .unwrap_or_default();
            let streamed = request.get("stream").and_then(Value::as_bool) == Some(true);
            if !streamed && let Some(call) = tool_call(model, state.accuracy.get(model), &request, last_user)
            {
                return tool_call_reply(&state.calls, model, &texts, &call);
            }
            assistant_reply(model, state.accuracy.get(model), last_user)
        }
    };
    // `max_tokens` (or `max_completion_tokens`) cuts the answer, as a real model stops there.
    let limit =
        ["max_completion_tokens", "max_tokens"].iter().find_map(|f| request.get(*f).and_then(Value::as_u64));
    let (reply, cut) = within_limit(reply, limit);
    let finish_reason = if cut { "length" } else { "stop" };
    let prompt_tokens: u64 = texts.iter().map(|t| count_tokens(t) + 3).sum();
    let completion_tokens = count_tokens(&reply);
    state.calls.bill(model, prompt_tokens, completion_tokens);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                       "total_tokens": prompt_tokens + completion_tokens});
    // Ids and timestamps are derived from the content, so the same call gets the same bytes.
    let digest = xxh3_64(format!("{}{}", model.id, texts.join("\u{0}")).as_bytes());
    let id = format!("chatcmpl-sim-{digest:016x}");
    let created = 1_700_000_000 + (digest % 100_000_000);

    let delay = Duration::from_secs_f64(model.latency_ms as f64 * config.latency_scale / 1000.0);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage =
            request.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        return stream_reply(&id, created, model.id, &reply, finish_reason, include_usage.then_some(usage));
    }
    Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": model.id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": finish_reason}],
        "usage": usage,
    }))
    .into_response()
}

/// What the simulated judge's noise is drawn from for one call. A judge at temperature > 0
/// varies from call to call: the draw is fresh for every call, and reproducible from the
/// request's `seed` when it has one.
pub(crate) fn judge_draw(model: &SimModel, request: &Value) -> String {
    match request.get("seed") {
        Some(seed) => format!("{}#{seed}", model.id),
        None => format!("{}#unseeded-{}", model.id, rand::random::<u64>()),
    }
}

/// Server-sent events as OpenAI sends them: a role chunk, content chunks word by word, a finish
/// chunk, an optional usage chunk, then `[DONE]`.
fn stream_reply(
    id: &str,
    created: u64,
    model: &str,
    reply: &str,
    finish_reason: &str,
    usage: Option<Value>,
) -> Response {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let mut rest = reply;
    while !rest.is_empty() {
        let cut = rest[1..].find(' ').map_or(rest.len(), |i| i + 1);
        events.push(chunk(json!({"content": &rest[..cut]}), Value::Null));
        rest = &rest[cut..];
    }
    events.push(chunk(json!({}), json!(finish_reason)));
    if let Some(usage) = usage {
        events.push(json!({"id": id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [], "usage": usage}));
    }
    let mut frames: Vec<Result<String, std::convert::Infallible>> =
        events.iter().map(|e| Ok(format!("data: {e}\n\n"))).collect();
    frames.push(Ok("data: [DONE]\n\n".to_string()));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(futures::stream::iter(frames)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
