//! The normalized unit every gateway adapter produces and every later stage consumes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One captured production call: the chat-completions request and the response the gateway
/// returned, with what the gateway told us about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// The gateway's request id, when it sent one; re-deliveries with the same id are duplicates.
    pub external_id: Option<String>,
    /// When the call happened, as the gateway reported it.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The chat-completions request body (`model`, `messages`, parameters, tools…).
    pub request: Value,
    /// The chat-completions response body.
    pub response: Value,
    /// Model that served the call (the response's `model`, else the request's).
    pub model: Option<String>,
    /// Token usage as reported in the response.
    pub usage: Option<crate::Usage>,
    /// Cost of the call in USD, when the gateway reported it.
    pub cost_usd: Option<f64>,
    /// End-to-end latency in milliseconds, when known.
    pub latency_ms: Option<f64>,
    /// Free-form tags/metadata (route, user, session…).
    pub tags: Value,
    /// `false` when the gateway reports the call failed; such exchanges are stored but never
    /// replayed as a baseline.
    pub succeeded: bool,
}

impl Exchange {
    /// Key that identifies this exchange within its source, for idempotent re-delivery: the
    /// gateway's id when present, else a hash of the request and response content.
    pub fn dedup_key(&self) -> String {
        match &self.external_id {
            Some(id) => format!("id:{id}"),
            None => format!("h:{:016x}", crate::sampling::content_hash(&[&self.request, &self.response])),
        }
    }
}
