//! evaltap's own format, `POST /v1/mirror`: one JSON object, a JSON array of them, or JSON
//! lines. Each item:
//!
//! ```json
//! {"request": {chat-completions request}, "response": {chat-completions response},
//!  "id": "gateway request id", "timestamp": "RFC 3339 or unix seconds",
//!  "latency_ms": 812, "cost_usd": 0.0021, "tags": {"route": "support"}}
//! ```
//!
//! A failed call sends `"error"` instead of `"response"`; it is stored as failed.

use chrono::{DateTime, TimeZone, Utc};
use evaltap_core::{Exchange, ModelApi, Usage, chat};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{Adapter, Decoded, IngestError};

/// The native format.
#[derive(Debug, Clone, Copy)]
pub struct Native;

impl Adapter for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn decode(&self, body: &[u8], _headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        crate::decode_each(body, exchange_from_item)
    }
}

/// Calls `each` with the JSON text of every item of a body — a JSON array, one object, or JSON
/// lines — in order, as each is scanned. Items are borrowed from the body, not built into
/// trees: an adapter parses each into just what it reads, a bad item is that item's rejection,
/// and the elements of a large array are never all held at once.
pub fn for_each_raw_item<'a>(
    body: &'a [u8],
    mut each: impl FnMut(usize, Result<&'a RawValue, String>),
) -> Result<(), IngestError> {
    let text =
        std::str::from_utf8(body).map_err(|e| IngestError::InvalidJson(format!("body is not UTF-8: {e}")))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(IngestError::Empty);
    }
    if trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(trimmed);
        let mut index = 0;
        let streamed =
            serde::Deserializer::deserialize_seq(&mut de, Elements { each: &mut each, index: &mut index })
                .and_then(|()| de.end());
        return streamed.map_err(|e| IngestError::InvalidJson(e.to_string()));
    }
    let whole_error = match serde_json::from_str::<&RawValue>(trimmed) {
        Ok(item) => {
            each(0, Ok(item));
            return Ok(());
        }
        Err(err) => err,
    };
    let lines: Vec<&str> = trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.len() < 2 {
        return Err(IngestError::InvalidJson(whole_error.to_string()));
    }
    for (i, line) in lines.into_iter().enumerate() {
        each(i, serde_json::from_str(line).map_err(|e| format!("line {}: invalid JSON: {e}", i + 1)));
    }
    Ok(())
}

/// [`for_each_raw_item`] with each item parsed into a [`Value`].
pub fn for_each_json_item(
    body: &[u8],
    mut each: impl FnMut(usize, Result<Value, String>),
) -> Result<(), IngestError> {
    for_each_raw_item(body, |index, item| {
        each(
            index,
            item.and_then(|raw| serde_json::from_str(raw.get()).map_err(|e| format!("invalid JSON: {e}"))),
        )
    })
}

/// Streams a JSON array's elements to a callback.
struct Elements<'a, F> {
    each: &'a mut F,
    index: &'a mut usize,
}

impl<'de, F: FnMut(usize, Result<&'de RawValue, String>)> serde::de::Visitor<'de> for Elements<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            (self.each)(*self.index, Ok(item));
            *self.index += 1;
        }
        Ok(())
    }
}

fn optional_f64(item: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(format!("`{field}` must be a number")),
    }
}

/// Reads a timestamp given as RFC 3339 text or unix seconds (milliseconds when very large).
pub fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => {
            let secs = n.as_f64()?;
            let millis = if secs > 1e11 { secs } else { secs * 1000.0 };
            Utc.timestamp_millis_opt(millis as i64).single()
        }
        _ => None,
    }
}

fn exchange_from_item(value: Value) -> Result<Exchange, String> {
    let Value::Object(mut item) = value else { return Err("each item must be a JSON object".into()) };
    // The API the call was made over; an Anthropic Messages or Responses call is kept as made
    // beside its chat view.
    let api = match item.get("api") {
        None | Some(Value::Null) => ModelApi::OpenaiChat,
        Some(api) => serde_json::from_value::<ModelApi>(api.clone()).map_err(|_| {
            "`api` must be `openai-chat`, `openai-responses` or `anthropic-messages`".to_string()
        })?,
    };
    let request = match item.remove("request") {
        Some(Value::Object(request)) => Value::Object(request),
        Some(_) => return Err(format!("`request` must be a {} request object", api.as_str())),
        None => return Err("`request` is missing".into()),
    };
    let turns = if api == ModelApi::OpenaiResponses { "input" } else { "messages" };
    if !request
        .get(turns)
        .is_some_and(|t| t.is_array() || (api == ModelApi::OpenaiResponses && t.is_string()))
    {
        return Err(format!("`request.{turns}` must be an array"));
    }
    let (response, succeeded) = match (item.remove("response"), item.get("error")) {
        (Some(Value::Object(response)), _) => (Value::Object(response), true),
        (Some(_), _) => return Err(format!("`response` must be a {} response object", api.as_str())),
        (None, Some(error)) if !error.is_null() => (serde_json::json!({"error": error}), false),
        (None, _) => return Err("`response` is missing (send `error` for a failed call)".into()),
    };
    let (request, response) = if succeeded {
        evaltap_core::apis::chat_view(api, request, response)
    } else {
        (evaltap_core::apis::request_to_chat(&request, api), response)
    };
    let external_id = match item.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err("`id` must be a non-empty string".into()),
    };
    let occurred_at = match item.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(ts) => Some(parse_timestamp(ts).ok_or("`timestamp` must be RFC 3339 text or unix seconds")?),
    };
    let tags = match item.remove("tags") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(tags)) => Value::Object(tags),
        Some(_) => return Err("`tags` must be an object".into()),
    };
    Ok(Exchange {
        external_id,
        occurred_at,
        model: chat::model_of(&request, &response),
        usage: Usage::from_openai(&response),
        cost_usd: optional_f64(&item, "cost_usd")?,
        latency_ms: optional_f64(&item, "latency_ms")?,
        request,
        response,
        tags,
        succeeded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str) -> Value {
        json!({"id": id, "timestamp": "2026-11-28T10:00:00Z", "latency_ms": 120, "cost_usd": 0.002,
               "tags": {"route": "faq"},
               "request": {"model": "m", "messages": [{"role": "user", "content": "héllo 👋"}]},
               "response": {"model": "m-2026", "choices": [{"message": {"role": "assistant", "content": "hi"}}],
                            "usage": {"prompt_tokens": 4, "completion_tokens": 1}}})
    }

    fn decode(body: &str) -> Result<Decoded, IngestError> {
        Native.decode(body.as_bytes(), &http::HeaderMap::new())
    }

    #[test]
    fn single_array_and_ndjson() {
        let one = decode(&item("a").to_string()).expect("object");
        assert_eq!(one.exchanges.len(), 1);
        let (_, exchange) = &one.exchanges[0];
        assert_eq!(exchange.model.as_deref(), Some("m-2026"));
        assert_eq!(exchange.usage, Some(Usage { input_tokens: 4, output_tokens: 1, ..Default::default() }));
        assert_eq!(exchange.external_id.as_deref(), Some("a"));
        assert_eq!(
            exchange.occurred_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-28T10:00:00+00:00")
        );
        let array = decode(&json!([item("a"), item("b")]).to_string()).expect("array");
        assert_eq!(array.exchanges.len(), 2);
        let lines = format!("{}\n\n{}\n", item("a"), item("b"));
        assert_eq!(decode(&lines).expect("ndjson").exchanges.len(), 2);
    }

    #[test]
    fn bad_items_are_rejected_alone_with_the_field_named() {
        let body = format!("{}\n{{not json\n{}\n{}", item("a"), json!({"response": {}}), item("c"));
        let decoded = decode(&body).expect("batch");
        assert_eq!(decoded.exchanges.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(decoded.rejected.len(), 2);
        assert_eq!(decoded.rejected[0].index, 1);
        assert!(decoded.rejected[0].reason.contains("invalid JSON"));
        assert_eq!(decoded.rejected[1].reason, "`request` is missing");
        let mut bad_ts = item("d");
        bad_ts["timestamp"] = json!("yesterday");
        assert!(decode(&bad_ts.to_string()).expect("item").rejected[0].reason.contains("`timestamp`"));
    }

    #[test]
    fn failures_are_kept_as_failed() {
        let failed = json!({"request": {"messages": []}, "error": {"message": "rate limited"}});
        let decoded = decode(&failed.to_string()).expect("item");
        assert!(!decoded.exchanges[0].1.succeeded);
    }

    #[test]
    fn whole_body_errors() {
        assert_eq!(decode("  "), Err(IngestError::Empty));
        assert!(matches!(decode("{oops"), Err(IngestError::InvalidJson(_))));
    }
}
