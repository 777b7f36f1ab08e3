//! The providers' batch interfaces: OpenAI's (a JSON-lines file uploaded to `/files`, then a
//! batch over it at `/batches`) — which OpenAI-compatible gateways also serve — and Anthropic's
//! Message Batches (`/messages/batches`). Requests are submitted together, answered within the
//! provider's completion window at a discount, and read back by their `custom_id`.

use std::time::Duration;

use evaltap_core::ModelApi;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{HttpClient, ProviderError};

/// The key a request is parked and answered under: the SHA-256 of its body as sent.
pub fn request_key(body: &Value) -> String {
    Sha256::digest(body.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The metadata key OpenAI batches carry evaltap's own batch id under, so that a batch created
/// by a process that died before recording it is found again instead of created twice.
pub const BATCH_TAG: &str = "evaltap_batch";

/// One request of a batch.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// Its id within the batch.
    pub custom_id: String,
    /// The body, as the API it goes to takes it.
    pub body: Value,
}

/// What a batch's status says.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchState {
    /// Still running.
    Running,
    /// Ended (`completed`, `expired`, `cancelled`, `failed`, or Anthropic's `ended`): its
    /// results can be read.
    Ended {
        /// The provider's word for how it ended.
        status: String,
        /// Where its answers are (OpenAI's output and error files; Anthropic's results URL).
        files: Vec<String>,
    },
}

/// A request's answer read back from a batch: the response body as the API answers one call,
/// or why there is none (an error status, or the batch ended before it ran — never billed).
pub type BatchAnswer = Result<Value, String>;

/// A client of one endpoint's batch interface.
#[derive(Debug, Clone)]
pub struct BatchClient {
    http: HttpClient,
    base: String,
    api_key: Option<String>,
    api: ModelApi,
}

/// Most pages of the batch list read when looking for a batch by its tag.
const LIST_PAGES: usize = 20;

impl BatchClient {
    /// A client for the batch interface under `base_url` (up to and including `/v1`) of the
    /// API `api` is called over.
    pub fn new(http: HttpClient, base_url: &str, api_key: Option<String>, api: ModelApi) -> BatchClient {
        BatchClient { http, base: base_url.trim_end_matches('/').to_string(), api_key, api }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).timeout(CALL_TIMEOUT);
        if let Some(key) = &self.api_key {
            request = match self.api {
                ModelApi::AnthropicMessages => request.header("x-api-key", key),
                _ => request.bearer_auth(key),
            };
        }
        if self.api == ModelApi::AnthropicMessages {
            request = request.header("anthropic-version", "2023-06-01");
        }
        request
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let url = format!("{}{path}", self.base);
        let response =
            request.send().await.map_err(|source| ProviderError::Transport { url: url.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: String = response.text().await.unwrap_or_default().chars().take(500).collect();
        Err(ProviderError::Status { url, status, body })
    }

    async fn json(&self, request: reqwest::RequestBuilder, path: &str) -> Result<Value, ProviderError> {
        let url = format!("{}{path}", self.base);
        self.send(request, path)
            .await?
            .json()
            .await
            .map_err(|e| ProviderError::InvalidResponse { url, reason: e.to_string() })
    }

    async fn text(&self, path: &str) -> Result<String, ProviderError> {
        let url = format!("{}{path}", self.base);
        self.send(self.request(reqwest::Method::GET, path), path)
            .await?
            .text()
            .await
            .map_err(|e| ProviderError::InvalidResponse { url, reason: e.to_string() })
    }

    fn invalid(&self, path: &str, reason: impl Into<String>) -> ProviderError {
        ProviderError::InvalidResponse { url: format!("{}{path}", self.base), reason: reason.into() }
    }

    /// Submits `requests` as one batch tagged `tag`; returns the provider's batch id.
    pub async fn submit(&self, tag: &str, requests: &[BatchRequest]) -> Result<String, ProviderError> {
        let created = match self.api {
            ModelApi::AnthropicMessages => {
                let requests: Vec<Value> =
                    requests.iter().map(|r| json!({"custom_id": r.custom_id, "params": r.body})).collect();
                let path = "/messages/batches";
                self.json(
                    self.request(reqwest::Method::POST, path).json(&json!({"requests": requests})),
                    path,
                )
                .await?
            }
            api => {
                let endpoint = openai_endpoint(api);
                let mut lines = String::new();
                for request in requests {
                    let line = json!({"custom_id": request.custom_id, "method": "POST", "url": endpoint,
                                      "body": request.body});
                    lines.push_str(&line.to_string());
                    lines.push('\n');
                }
                let file = reqwest::multipart::Part::bytes(lines.into_bytes())
                    .file_name(format!("{tag}.jsonl"))
                    .mime_str("application/jsonl")
                    .map_err(|e| self.invalid("/files", e.to_string()))?;
                let form = reqwest::multipart::Form::new().text("purpose", "batch").part("file", file);
                let uploaded = self
                    .json(self.request(reqwest::Method::POST, "/files").multipart(form), "/files")
                    .await?;
                let file_id = uploaded
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| self.invalid("/files", "the upload answer has no `id`"))?;
                let batch = json!({"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h",
                                   "metadata": {BATCH_TAG: tag}});
                self.json(self.request(reqwest::Method::POST, "/batches").json(&batch), "/batches").await?
            }
        };
        created
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.invalid("/batches", "the created batch has no `id`"))
    }

    /// The batch this client created for evaltap's batch `tag` of `requests` requests, if it
    /// was created after `since_secs` (when its submission started) by a worker that died
    /// before recording it. OpenAI's batches carry the tag in their metadata. Anthropic's take
    /// no metadata: there it is the oldest batch of that many requests created since, that no
    /// other evaltap batch recorded (`taken`) — a match the caller checks on its results.
    pub async fn find(
        &self,
        tag: &str,
        since_secs: i64,
        requests: usize,
        taken: &std::collections::HashSet<String>,
    ) -> Result<Option<String>, ProviderError> {
        let anthropic = self.api == ModelApi::AnthropicMessages;
        let mut after: Option<String> = None;
        let mut found = None;
        for _ in 0..LIST_PAGES {
            let (list, cursor) =
                if anthropic { ("/messages/batches", "after_id") } else { ("/batches", "after") };
            let path = match &after {
                Some(id) => format!("{list}?limit=100&{cursor}={id}"),
                None => format!("{list}?limit=100"),
            };
            let page = self.json(self.request(reqwest::Method::GET, &path), &path).await?;
            let data = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            for batch in &data {
                let id = batch.get("id").and_then(Value::as_str).unwrap_or_default();
                let matches = if anthropic {
                    let created = batch
                        .get("created_at")
                        .and_then(Value::as_str)
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.timestamp());
                    let counts = batch.get("request_counts").and_then(Value::as_object);
                    let total: u64 = counts.map_or(0, |c| c.values().filter_map(Value::as_u64).sum());
                    // A minute of clock skew between evaltap and the provider.
                    created.is_some_and(|t| t >= since_secs - 60)
                        && total == requests as u64
                        && !taken.contains(id)
                } else {
                    batch.pointer(&format!("/metadata/{BATCH_TAG}")).and_then(Value::as_str) == Some(tag)
                };
                if matches && !id.is_empty() {
                    // Newest first: the last match is the oldest.
                    found = Some(id.to_string());
                    if !anthropic {
                        return Ok(found);
                    }
                }
            }
            let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
            after = data.last().and_then(|b| b.get("id")).and_then(Value::as_str).map(str::to_string);
            if !more || after.is_none() {
                break;
            }
        }
        Ok(found)
    }

    /// The batch's state.
    pub async fn state(&self, id: &str) -> Result<BatchState, ProviderError> {
        match self.api {
            ModelApi::AnthropicMessages => {
                let path = format!("/messages/batches/{id}");
                let batch = self.json(self.request(reqwest::Method::GET, &path), &path).await?;
                Ok(match batch.get("processing_status").and_then(Value::as_str) {
                    Some("ended") => BatchState::Ended {
                        status: "ended".into(),
                        files: vec![format!("/messages/batches/{id}/results")],
                    },
                    _ => BatchState::Running,
                })
            }
            _ => {
                let path = format!("/batches/{id}");
                let batch = self.json(self.request(reqwest::Method::GET, &path), &path).await?;
                let status = batch.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
                if !matches!(status.as_str(), "completed" | "expired" | "cancelled" | "failed") {
                    return Ok(BatchState::Running);
                }
                let files = ["output_file_id", "error_file_id"]
                    .iter()
                    .filter_map(|f| batch.get(*f).and_then(Value::as_str))
                    .map(|file| format!("/files/{file}/content"))
                    .collect();
                Ok(BatchState::Ended { status, files })
            }
        }
    }

    /// The answers of an ended batch, by custom id. A request without a line was never run.
    pub async fn answers(&self, files: &[String]) -> Result<Vec<(String, BatchAnswer)>, ProviderError> {
        let mut answers = Vec::new();
        for path in files {
            for line in self.text(path).await?.lines().filter(|l| !l.trim().is_empty()) {
                let line: Value = serde_json::from_str(line)
                    .map_err(|e| self.invalid(path, format!("a result line: {e}")))?;
                let Some(custom_id) = line.get("custom_id").and_then(Value::as_str) else { continue };
                answers.push((custom_id.to_string(), self.answer(&line)));
            }
        }
        Ok(answers)
    }

    fn answer(&self, line: &Value) -> BatchAnswer {
        if self.api == ModelApi::AnthropicMessages {
            return match line.pointer("/result/type").and_then(Value::as_str) {
                Some("succeeded") => {
                    line.pointer("/result/message").cloned().ok_or_else(|| "no message".into())
                }
                Some("errored") => Err(format!(
                    "the batch request failed: {}",
                    line.pointer("/result/error").unwrap_or(&Value::Null)
                )),
                Some(other) => Err(format!("the batch ended before this request ran ({other})")),
                None => Err("an unreadable result line".into()),
            };
        }
        match line.pointer("/response/status_code").and_then(Value::as_u64) {
            Some(200..=299) => line.pointer("/response/body").cloned().ok_or_else(|| "no body".into()),
            Some(status) => Err(format!(
                "the batch request was answered {status}: {}",
                line.pointer("/response/body").unwrap_or(&Value::Null)
            )),
            None => Err(match line.pointer("/error/code").and_then(Value::as_str) {
                Some(code) => format!("the batch ended before this request ran ({code})"),
                None => format!("the batch request failed: {}", line.get("error").unwrap_or(&Value::Null)),
            }),
        }
    }
}

/// The longest one request to a batch interface may take (uploads and result files included).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The endpoint an OpenAI batch's requests go to.
fn openai_endpoint(api: ModelApi) -> &'static str {
    match api {
        ModelApi::OpenaiResponses => "/v1/responses",
        _ => "/v1/chat/completions",
    }
}
