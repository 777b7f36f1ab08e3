//! The tee proxy, `POST /proxy/{source}/v1/chat/completions`: forwards the caller's request to
//! the source's `upstream`, returns the upstream's status, headers and body as they come —
//! server-sent events chunk by chunk, never buffered before the client sees them — and, once
//! the response is complete, hands the exchange (assembled from the stream) to a background
//! task through a bounded channel that sheds, and counts, what it cannot take. Storage never
//! sits on the request path.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use evaltap_core::ModelApi;
use evaltap_core::{Exchange, Usage};
use futures::Stream;
use futures::stream::BoxStream;
use serde_json::{Map, Value, json};

use crate::writer::Writer;
use crate::{ApiError, AppState};

/// Largest response body kept for mirroring; larger ones are passed through, not mirrored.
const MAX_MIRRORED_BYTES: usize = 8 * 1024 * 1024;

/// The proxy's HTTP client and the writer its mirrored exchanges go to.
#[derive(Clone)]
pub struct ProxyState {
    http: reqwest::Client,
    writer: Writer,
}

impl ProxyState {
    /// Proxy state mirroring through `writer` (shared with the mirror endpoint).
    pub fn start(writer: Writer) -> ProxyState {
        // Streams may run for minutes; only connecting is bounded.
        let http = evaltap_providers::http_client(Duration::from_secs(3600)).unwrap_or_default();
        ProxyState { http, writer }
    }

    /// Returns once every exchange mirrored so far is stored (shutdown calls this after the
    /// last connection closed, so nothing a client was served is lost).
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

    /// Exchanges this process could not mirror because the store was behind.
    pub fn shed(&self) -> u64 {
        self.writer.shed()
    }
}

/// Headers that describe one hop, not the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The header that carries a source's key on tee-proxy calls.
pub const SOURCE_KEY_HEADER: &str = "x-evaltap-key";

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    tee(state, source_name, headers, body, ModelApi::OpenaiChat).await
}

/// `POST /proxy/{source}/v1/messages`: Anthropic Messages, passed through and mirrored.
pub(crate) async fn anthropic_messages(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    tee(state, source_name, headers, body, ModelApi::AnthropicMessages).await
}

/// `POST /proxy/{source}/v1/responses`: OpenAI Responses, passed through and mirrored.
pub(crate) async fn responses(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    tee(state, source_name, headers, body, ModelApi::OpenaiResponses).await
}

/// Passes a call of `api` to the source's upstream at the same path, answers the client with
/// the upstream's bytes as they come, and mirrors the exchange once the answer is complete.
async fn tee(
    state: AppState,
    source_name: String,
    headers: HeaderMap,
    body: Bytes,
    api: ModelApi,
) -> Result<Response, ApiError> {
    let source = state
        .sources
        .by_name(&source_name)
        .ok_or_else(|| ApiError::not_found(format!("no source named `{source_name}`")))?;
    let upstream = source.config.upstream.clone().ok_or_else(|| {
        ApiError::not_found(format!("source `{source_name}` has no `upstream` to proxy to"))
    })?;
    // The source key travels in its own header, so the caller's `Authorization` (its provider
    // key) reaches the upstream unchanged and is never taken as ours.
    let presented = headers.get(SOURCE_KEY_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    let keyed = presented.and_then(|k| state.sources.by_key(k)).is_some_and(|s| s.config.name == source_name);
    if !keyed {
        return Err(ApiError::Client(
            StatusCode::UNAUTHORIZED,
            format!("the tee proxy needs source `{source_name}`'s key in `{SOURCE_KEY_HEADER}`"),
        ));
    }
    let url = format!("{}{}", upstream.trim_end_matches('/'), evaltap_providers::api::path(api));
    let mut request = state.proxy.http.post(&url).body(body.clone());
    for (name, value) in &headers {
        // The mirror must read the body, so ask the upstream for it uncompressed; the client
        // still gets the same content.
        if !hop_by_hop(name) && name.as_str() != "accept-encoding" && name.as_str() != SOURCE_KEY_HEADER {
            request = request.header(name, value);
        }
    }
    let started = Instant::now();
    let upstream_response = match request.send().await {
        Ok(r) => r,
        Err(err) => {
            let body = json!({"error": {"message": format!("evaltap proxy could not reach the upstream: {err}"), "type": "upstream_unreachable"}});
            return Ok((StatusCode::BAD_GATEWAY, axum::Json(body)).into_response());
        }
    };
    let status = upstream_response.status();
    let mut builder = Response::builder().status(status.as_u16());
    let mut content_type = String::new();
    for (name, value) in upstream_response.headers() {
        if name.as_str() == "content-type" {
            content_type = value.to_str().unwrap_or_default().to_string();
        }
        if !hop_by_hop(name) {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
    }
    // A response the upstream framed by length keeps that framing (and header): the client gets
    // the same bytes the same way. Streams stay chunked, chunk by chunk.
    let mut expected_len = None;
    if !content_type.contains("text/event-stream")
        && let Some(length) = upstream_response.headers().get(axum::http::header::CONTENT_LENGTH)
    {
        builder = builder.header(axum::http::header::CONTENT_LENGTH, length.as_bytes());
        expected_len = length.to_str().ok().and_then(|l| l.trim().parse::<usize>().ok());
    }
    let request_json: Option<Value> = serde_json::from_slice(&body).ok();
    let proxy = state.proxy.clone();
    let on_complete = move |bytes: Vec<u8>, complete: bool| {
        let (Some(request), true) = (request_json, complete) else { return };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let exchange = assemble(api, request, &bytes, &content_type, status.as_u16(), latency_ms);
        let (kept, counts) = source.admit([exchange], 0);
        proxy.writer.deliver_detached(&source.config.name, kept, counts, source.config.max_per_minute);
    };
    let stream = Tee {
        inner: Box::pin(upstream_response.bytes_stream()),
        buffer: Vec::new(),
        overflow: false,
        seen: 0,
        expected_len,
        on_complete: Some(Box::new(on_complete)),
    };
    builder
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(format!("building the proxied response: {e}")))
}

type OnComplete = Box<dyn FnOnce(Vec<u8>, bool) + Send>;

/// Passes chunks through as they arrive while keeping a copy for the mirror.
struct Tee {
    inner: BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: Vec<u8>,
    overflow: bool,
    /// Bytes passed through so far.
    seen: usize,
    /// The upstream's Content-Length: with it the server stops polling once that many bytes
    /// went out, so the tee completes there rather than at the end of the stream.
    expected_len: Option<usize>,
    on_complete: Option<OnComplete>,
}

impl Tee {
    fn complete(&mut self) {
        if let Some(done) = self.on_complete.take() {
            done(std::mem::take(&mut self.buffer), !self.overflow);
        }
    }
}

impl Stream for Tee {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if !this.overflow {
                    if this.buffer.len() + chunk.len() > MAX_MIRRORED_BYTES {
                        this.overflow = true;
                        this.buffer = Vec::new();
                    } else {
                        this.buffer.extend_from_slice(&chunk);
                    }
                }
                this.seen += chunk.len();
                if this.expected_len.is_some_and(|len| this.seen >= len) {
                    this.complete();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                this.complete();
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// The exchange of a proxied call of `api`: a streamed answer is assembled into one, and a call
/// made over another API than Chat Completions holds the chat view judges and replays read,
/// keeping the call as it was made under the response's `evaltap_original` (`api`, `request`,
/// `response`).
pub fn assemble(
    api: ModelApi,
    request: Value,
    body: &[u8],
    content_type: &str,
    status: u16,
    latency_ms: f64,
) -> Exchange {
    let answer = match (content_type.contains("text/event-stream"), api) {
        (true, ModelApi::OpenaiChat) => assemble_sse(body),
        (true, _) => evaltap_core::apis::assemble_stream(body, api)
            .unwrap_or_else(|| json!({"error": {"message": "the stream held no complete answer"}})),
        (false, _) => serde_json::from_slice(body)
            .unwrap_or_else(|_| json!({"error": {"message": String::from_utf8_lossy(body)}})),
    };
    let (request, response) = evaltap_core::apis::chat_view(api, request, answer);
    let succeeded = (200..300).contains(&status) && response.get("choices").is_some();
    Exchange {
        external_id: response.get("id").and_then(Value::as_str).map(str::to_owned),
        occurred_at: Some(chrono::Utc::now()),
        model: evaltap_core::chat::model_of(&request, &response),
        usage: Usage::from_openai(&response),
        cost_usd: None,
        latency_ms: Some(latency_ms),
        tags: json!({"via": "proxy"}),
        request,
        response,
        succeeded,
    }
}

/// Builds a chat.completion from OpenAI streaming chunks.
pub fn assemble_sse(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut head = Map::new();
    let mut content = String::new();
    let mut has_content = false;
    let mut finish: Value = Value::Null;
    let mut usage = Value::Null;
    let mut tool_calls: Vec<Value> = Vec::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
        if data == "[DONE]" {
            break;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
        for key in ["id", "model", "created", "system_fingerprint"] {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                head.entry(key).or_insert_with(|| v.clone());
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = u.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else { continue };
        if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
            finish = f.clone();
        }
        let Some(delta) = choice.get("delta") else { continue };
        if let Some(piece) = delta.get("content").and_then(Value::as_str) {
            content.push_str(piece);
            has_content = true;
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            while tool_calls.len() <= index {
                tool_calls
                    .push(json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}));
            }
            let slot = &mut tool_calls[index];
            if let Some(id) = call.get("id").filter(|v| !v.is_null()) {
                slot["id"] = id.clone();
            }
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                let joined = format!("{}{name}", slot["function"]["name"].as_str().unwrap_or(""));
                slot["function"]["name"] = Value::String(joined);
            }
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                let joined = format!("{}{args}", slot["function"]["arguments"].as_str().unwrap_or(""));
                slot["function"]["arguments"] = Value::String(joined);
            }
        }
    }
    let mut message = json!({"role": "assistant", "content": if has_content { Value::String(content) } else { Value::Null }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let mut out = Value::Object(head);
    out["object"] = json!("chat.completion");
    out["choices"] = json!([{"index": 0, "message": message, "finish_reason": finish}]);
    if !usage.is_null() {
        out["usage"] = usage;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_content_tool_calls_and_usage_from_chunks() {
        let body = concat!(
            "data: {\"id\":\"c1\",\"model\":\"m\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n",
            "data: [DONE]\n\n"
        );
        let out = assemble_sse(body.as_bytes());
        assert_eq!(out["id"], "c1");
        assert_eq!(out["choices"][0]["message"]["content"], "Héllo wörld");
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["completion_tokens"], 3);
    }
}
