//! Model clients: OpenAI-compatible chat completions over reqwest, with retries (exponential
//! backoff, honouring `Retry-After`), a concurrency limit per endpoint, and usage for cost.
//!
//! The same client calls a real gateway and evaltap's simulated upstream; only the base URL
//! differs.

/// Translation between the APIs candidates are called over (in core: ingest reads them too).
pub use evaltap_core::apis as api;

pub mod batch;
pub use batch::{BatchAnswer, BatchClient, BatchRequest, BatchState, request_key};

use std::sync::Arc;
use std::time::{Duration, Instant};

use evaltap_core::Usage;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The endpoint answered with an error status (after retries, for retryable ones).
    #[error("{url} answered {status}: {body}")]
    Status {
        /// URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The request did not get an answer (connection refused, timeout…).
    #[error("calling {url} failed: {source}")]
    Transport {
        /// URL called.
        url: String,
        /// Underlying error.
        source: reqwest::Error,
    },
    /// The answer was not a chat-completions response.
    #[error("{url} returned an invalid response: {reason}")]
    InvalidResponse {
        /// URL called.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An attempt got no complete answer within the per-attempt timeout (after retries), or
    /// the call's overall deadline passed.
    #[error(
        "calling {url} timed out: {attempts} attempt(s) over {total_seconds:.1} s in all, the last cut at {attempt_seconds:.1} s"
    )]
    Timeout {
        /// URL called.
        url: String,
        /// How long the last attempt was given.
        attempt_seconds: f64,
        /// How long the whole call took, waits between attempts included.
        total_seconds: f64,
        /// Attempts made.
        attempts: u32,
    },
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    Client(reqwest::Error),
    /// The call goes through the provider's batch interface and has no answer yet: the caller
    /// parks it (see [`ChatClient::answering_from_batches`]).
    #[error("{url}: waiting for a batch to answer this call")]
    Parked {
        /// URL the call is for.
        url: String,
        /// The request, as it goes into the batch.
        body: Box<Value>,
    },
    /// The provider's batch interface returned no answer for the call (an error status, or
    /// the batch expired or was cancelled before it ran); not billed.
    #[error("{url} (batch): {reason}")]
    Batch {
        /// URL the call is for.
        url: String,
        /// What the batch said.
        reason: String,
    },
}

impl ProviderError {
    /// Whether the provider may have billed the failed call: the request went out and its
    /// answer was lost (a timeout, a connection cut after sending, an unreadable body). An
    /// error status or a connection never made is not billed.
    pub fn may_have_been_billed(&self) -> bool {
        match self {
            ProviderError::Timeout { .. } | ProviderError::InvalidResponse { .. } => true,
            ProviderError::Transport { source, .. } => !source.is_connect() && !source.is_builder(),
            ProviderError::Status { .. }
            | ProviderError::Client(_)
            | ProviderError::Parked { .. }
            | ProviderError::Batch { .. } => false,
        }
    }
}

/// How failed calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Longest wait between attempts, including one asked for by `Retry-After`.
    pub max_delay: Duration,
    /// Longest one attempt may take, from sending to the end of the body.
    pub attempt_timeout: Duration,
    /// Longest the whole call may take, retries and waits included.
    pub deadline: Duration,
    /// Whether an attempt whose answer was lost after sending (and so may have been billed) is
    /// tried again. Calls under a spend cap are not: their reservation covers one paid attempt.
    pub retry_when_maybe_billed: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(180),
            retry_when_maybe_billed: true,
        }
    }
}

/// A successful chat completion.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The response body.
    pub response: Value,
    /// Text of the first choice.
    pub text: String,
    /// Token usage, when the endpoint reported it.
    pub usage: Option<Usage>,
    /// Time of the successful attempt, in milliseconds.
    pub latency_ms: f64,
}

/// The HTTP client model clients share (connection pools are per client).
pub type HttpClient = reqwest::Client;

/// A reqwest client with the TLS crypto provider installed (reqwest is built without one to
/// avoid compiling two; building a client without a provider would panic).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    // Installing twice is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .map_err(ProviderError::Client)
}

/// An OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    limit: Arc<Semaphore>,
    retry: RetryPolicy,
    api: evaltap_core::ModelApi,
    /// In batch mode, the answers the batch interface returned for this unit of work, by
    /// [`request_key`]; a call without one is parked.
    batch_answers: Option<Arc<std::collections::HashMap<String, BatchAnswer>>>,
}

impl ChatClient {
    /// A client for `base_url` (up to and including `/v1`) with at most `max_concurrency` calls
    /// in flight.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        api_key: Option<String>,
        max_concurrency: usize,
    ) -> ChatClient {
        ChatClient {
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            limit: Arc::new(Semaphore::new(max_concurrency.max(1))),
            retry: RetryPolicy::default(),
            api: evaltap_core::ModelApi::OpenaiChat,
            batch_answers: None,
        }
    }

    /// This client calling `api` at its path under the same base URL: bodies sent are that
    /// API's (see [`api::to_api`]); answers are read back as chat completions.
    pub fn over(mut self, api: evaltap_core::ModelApi) -> ChatClient {
        let base = self.url.trim_end_matches(api::path(self.api)).to_string();
        self.url = format!("{base}{}", api::path(api));
        self.api = api;
        self
    }

    /// A timeout of attempt `attempts` given `budget`, in a call started at `call_started`.
    fn timeout(&self, budget: Duration, call_started: Instant, attempts: u32) -> ProviderError {
        ProviderError::Timeout {
            url: self.url.clone(),
            attempt_seconds: budget.as_secs_f64(),
            total_seconds: call_started.elapsed().as_secs_f64(),
            attempts,
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> ChatClient {
        self.retry = retry;
        self
    }

    /// This client (sharing its concurrency limit) for calls paid out of a reservation: an
    /// attempt that may have been billed is never repeated, so one call costs at most one
    /// attempt's worth.
    pub fn paying_once(&self) -> ChatClient {
        let mut client = self.clone();
        client.retry.retry_when_maybe_billed = false;
        client
    }

    /// This client in batch mode: a call is answered from `answers` (what the provider's batch
    /// interface returned for the unit of work, by [`request_key`]), and a call without an
    /// answer fails with [`ProviderError::Parked`], carrying the request to batch — nothing is
    /// sent.
    pub fn answering_from_batches(
        &self,
        answers: std::collections::HashMap<String, BatchAnswer>,
    ) -> ChatClient {
        let mut client = self.clone();
        client.batch_answers = Some(Arc::new(answers));
        client
    }

    /// The answer to `body` in batch mode: read back, or parked.
    fn batch_answer(
        &self,
        answers: &std::collections::HashMap<String, BatchAnswer>,
        body: &Value,
    ) -> Result<Completion, ProviderError> {
        match answers.get(&request_key(body)) {
            Some(Ok(response)) => self.completion(response.clone(), Duration::ZERO),
            Some(Err(reason)) => Err(ProviderError::Batch { url: self.url.clone(), reason: reason.clone() }),
            None => Err(ProviderError::Parked { url: self.url.clone(), body: Box::new(body.clone()) }),
        }
    }

    /// Sends a chat-completions request body and returns the parsed completion. Each attempt
    /// is bounded by `attempt_timeout`, the whole call (waits included) by `deadline`; a hung
    /// upstream is reported as a timeout.
    pub async fn chat(&self, body: &Value) -> Result<Completion, ProviderError> {
        if let Some(answers) = &self.batch_answers {
            return self.batch_answer(answers, body);
        }
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.limit.acquire().await.ok();
        let call_started = Instant::now();
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let remaining = self.retry.deadline.saturating_sub(call_started.elapsed());
            let budget = self.retry.attempt_timeout.min(remaining);
            let outcome = tokio::time::timeout(budget, self.attempt(body)).await;
            let (error, retry_after) = match outcome {
                Ok(Attempt::Done(response)) => return self.completion(response, started.elapsed()),
                Ok(Attempt::Final(error)) => return Err(error),
                Ok(Attempt::Retry(error, retry_after)) => (error, retry_after),
                Err(_) => (self.timeout(budget, call_started, attempt), None),
            };
            // A timeout reports the attempt it cut and the whole call, not only the last budget.
            let error = match error {
                ProviderError::Timeout { .. } => self.timeout(budget, call_started, attempt),
                other => other,
            };
            if attempt >= self.retry.max_attempts
                || (!self.retry.retry_when_maybe_billed && error.may_have_been_billed())
            {
                return Err(error);
            }
            let backoff = self.retry.base_delay * 2u32.saturating_pow(attempt - 1);
            let wait = retry_after.unwrap_or(backoff).min(self.retry.max_delay);
            if call_started.elapsed() + wait >= self.retry.deadline {
                return Err(match error {
                    ProviderError::Timeout { .. } => error,
                    other => {
                        tracing::debug!(error = %other, "no time left for another attempt");
                        other
                    }
                });
            }
            tracing::debug!(%error, attempt, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt: the response body, or an error with whether (and when) to retry.
    async fn attempt(&self, body: &Value) -> Attempt {
        let mut request = self.http.post(&self.url).json(body);
        if let Some(key) = &self.api_key {
            request = match self.api {
                evaltap_core::ModelApi::AnthropicMessages => request.header("x-api-key", key),
                _ => request.bearer_auth(key),
            };
        }
        if self.api == evaltap_core::ModelApi::AnthropicMessages {
            request = request.header("anthropic-version", "2023-06-01");
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => match response.json::<Value>().await {
                Ok(value) => Attempt::Done(value),
                Err(e) if e.is_timeout() => {
                    Attempt::Retry(self.timeout(Duration::ZERO, Instant::now(), 0), None)
                }
                Err(e) => Attempt::Final(ProviderError::InvalidResponse {
                    url: self.url.clone(),
                    reason: e.to_string(),
                }),
            },
            Ok(response) => {
                let status = response.status();
                let retry_after = parse_retry_after(response.headers(), std::time::SystemTime::now());
                let body: String = response.text().await.unwrap_or_default().chars().take(500).collect();
                let error = ProviderError::Status { url: self.url.clone(), status: status.as_u16(), body };
                if status.as_u16() == 429 || status.is_server_error() {
                    Attempt::Retry(error, retry_after)
                } else {
                    Attempt::Final(error)
                }
            }
            Err(source) if source.is_timeout() => {
                Attempt::Retry(self.timeout(Duration::ZERO, Instant::now(), 0), None)
            }
            Err(source) if source.is_builder() => {
                Attempt::Final(ProviderError::Transport { url: self.url.clone(), source })
            }
            Err(source) => Attempt::Retry(ProviderError::Transport { url: self.url.clone(), source }, None),
        }
    }

    fn completion(&self, response: Value, elapsed: Duration) -> Result<Completion, ProviderError> {
        let response = api::from_api(response, self.api);
        if response.pointer("/choices/0").is_none() {
            return Err(ProviderError::InvalidResponse {
                url: self.url.clone(),
                reason: "no `choices` in the response".into(),
            });
        }
        Ok(Completion {
            text: evaltap_core::chat::response_text(&response),
            usage: Usage::from_openai(&response),
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            response,
        })
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Value),
    Retry(ProviderError, Option<Duration>),
    Final(ProviderError),
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110), relative to `now`.
pub fn parse_retry_after(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds >= 0.0 && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Gateways log calls made to other APIs in a hybrid shape: LiteLLM stores an Anthropic
/// Messages call with `messages` beside the Responses API's `instructions`,
/// `max_output_tokens` and `include`; Anthropic's own shape has a top-level `system` and
/// `stop_sequences`. A chat-completions replay reads none of those: the system prompt goes in
/// as the first message (never dropped), the limits under their chat-completions names, and the
/// fields chat completions would refuse are removed.
fn carry_foreign_fields(body: &mut Map<String, Value>) {
    if !body.get("messages").is_some_and(Value::is_array) {
        return;
    }
    for field in ["instructions", "system"] {
        let Some(system) = body.remove(field) else { continue };
        let text = evaltap_core::chat::content_text(&system);
        let messages = body.get_mut("messages").and_then(Value::as_array_mut);
        if let Some(messages) = messages
            && !text.trim().is_empty()
            && !messages.first().is_some_and(|m| {
                m.get("role").and_then(Value::as_str) == Some("system")
                    && m.get("content").map(evaltap_core::chat::content_text).as_deref()
                        == Some(text.as_str())
            })
        {
            messages.insert(0, serde_json::json!({"role": "system", "content": text}));
        }
    }
    if let Some(max) = body.remove("max_output_tokens") {
        body.entry("max_tokens").or_insert(max);
    }
    if let Some(stops) = body.remove("stop_sequences") {
        body.entry("stop").or_insert(stops);
    }
    body.remove("include");
}

/// The body to replay a captured request against another model: the same messages, tools and
/// parameters, with `model` replaced, streaming turned off and `overrides` applied.
pub fn replay_body(captured: &Value, model: &str, overrides: &Map<String, Value>) -> Value {
    let mut body = match captured {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    body.insert("model".into(), Value::String(model.into()));
    body.remove("stream");
    body.remove("stream_options");
    carry_foreign_fields(&mut body);
    for (key, value) in overrides {
        body.insert(key.clone(), value.clone());
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(parse_retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        headers.insert(reqwest::header::RETRY_AFTER, later.parse().expect("header"));
        assert_eq!(parse_retry_after(&headers, now), Some(Duration::from_secs(42)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(42));
        headers.insert(reqwest::header::RETRY_AFTER, past.parse().expect("header"));
        assert_eq!(parse_retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(parse_retry_after(&headers, now), None);
    }

    #[test]
    fn a_hybrid_capture_replays_as_chat_completions_with_its_system_prompt() {
        // What LiteLLM logs for an Anthropic-format /v1/messages call.
        let captured = json!({"model": "claude", "instructions": "You are terse.", "max_output_tokens": 64,
                              "include": ["reasoning.encrypted_content"], "stop_sequences": ["END"],
                              "messages": [{"role": "user", "content": "hi"}]});
        let body = replay_body(&captured, "small", &Map::new());
        assert_eq!(
            body,
            json!({"model": "small", "max_tokens": 64, "stop": ["END"],
                   "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]})
        );
        // Anthropic's own `system` (blocks), and a system prompt already in the messages kept once.
        let anthropic = json!({"model": "claude", "system": [{"type": "text", "text": "Be kind."}],
                               "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]});
        let body = replay_body(&anthropic, "small", &Map::new());
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(2), "{body}");
        assert!(body.get("system").is_none());
    }

    #[test]
    fn replay_body_swaps_model_and_keeps_the_rest() {
        let captured = json!({"model": "big", "stream": true, "stream_options": {"include_usage": true},
                              "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7,
                              "tools": [{"type": "function", "function": {"name": "f"}}]});
        let overrides = json!({"temperature": 0.0}).as_object().cloned().unwrap_or_default();
        let body = replay_body(&captured, "small", &overrides);
        assert_eq!(body["model"], "small");
        assert_eq!(body["temperature"], 0.0);
        assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
        assert_eq!(body["tools"], captured["tools"]);
    }
}
