//! The normalized unit every gateway adapter produces and every later stage consumes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One captured production call: the chat-completions request and the response the gateway
/// returned, with what the gateway told us about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Deepest JSON nesting stored in a request, response or tags: deeper values are refused at the
/// door, so that everything stored reads back (serde_json stops at 128 levels, and storage
/// wraps values in a few more).
pub const MAX_JSON_DEPTH: usize = 64;

/// Nesting depth of a JSON value (a scalar is 0), computed without recursion.
pub fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

impl Exchange {
    /// Why this exchange cannot be stored, if it nests deeper than [`MAX_JSON_DEPTH`].
    pub fn too_deep(&self) -> Option<String> {
        [("request", &self.request), ("response", &self.response), ("tags", &self.tags)].iter().find_map(
            |(field, value)| {
                let depth = json_depth(value);
                (depth > MAX_JSON_DEPTH).then(|| {
                    format!("`{field}` nests {depth} levels deep; at most {MAX_JSON_DEPTH} are stored")
                })
            },
        )
    }

    /// Key that identifies this exchange within its source, for idempotent re-delivery: the
    /// gateway's id when present, else a hash of the request and response content.
    pub fn dedup_key(&self) -> String {
        match &self.external_id {
            Some(id) => format!("id:{id}"),
            None => format!("h:{:016x}", crate::sampling::content_hash(&[&self.request, &self.response])),
        }
    }
}

/// A tag's value as text: a string as it is, a number or a boolean as written; anything else
/// (an object, a list, null) has none. Filters and segments compare tags by this text.
pub fn tag_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
