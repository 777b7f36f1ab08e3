//! Ingest: turns what a gateway sends into [`Exchange`]s. Each wire format is one adapter
//! behind [`Adapter`], registered in [`formats::ADAPTERS`].
//!
//! Decoding is per item: a batch with one bad item yields that item's rejection (with its index
//! and a reason naming the field) and the other items' exchanges, so one bad record never costs
//! the rest of a batch.

pub mod formats;
pub mod normalize;

use evaltap_core::Exchange;
use serde::Serialize;

/// A whole request body that cannot be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The body is empty.
    #[error("the request body is empty")]
    Empty,
    /// The body is not JSON (or JSON lines) at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON of the wrong shape.
    #[error("{0}")]
    Shape(String),
    /// The body holds more values than a body may: decoding it would take memory out of
    /// proportion to its size.
    #[error(
        "the body holds more than {limit} values (items, fields and list elements together); send smaller batches"
    )]
    TooManyValues {
        /// The limit.
        limit: usize,
    },
    /// The body holds more items of one kind than a body may.
    #[error("the body holds more than {limit} {what}; send smaller batches")]
    TooManyItems {
        /// The limit.
        limit: usize,
        /// What is counted (`spans`).
        what: &'static str,
    },
}

impl IngestError {
    /// Whether the body was refused for its size (413) rather than its content (400).
    pub fn too_large(&self) -> bool {
        matches!(self, IngestError::TooManyValues { .. } | IngestError::TooManyItems { .. })
    }
}

/// Counts the JSON values of a body — objects, arrays, keys and scalars at any depth, as the
/// structural characters outside strings tell them — reading its bytes once and allocating
/// nothing; `None` as soon as there are more than `limit`.
pub fn json_values_within(body: &[u8], limit: usize) -> Option<usize> {
    let (mut count, mut in_string, mut escaped) = (1usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' | b',' | b':' => {
                count += 1;
                if count > limit {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(count)
}

/// Refuses, before any decoding, a body of more than `max_values` values (JSON values, or
/// the messages of an OTLP protobuf body): what a body decodes into is then bounded by its size
/// whatever its format, not by how many tiny items fit in it.
pub fn within_value_limit(
    body: &[u8],
    headers: &http::HeaderMap,
    max_values: usize,
) -> Result<(), IngestError> {
    let protobuf = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("protobuf"));
    let within = if protobuf {
        formats::otlp_wire::protobuf_messages_within(body, max_values).map_err(IngestError::Shape)?.is_some()
    } else {
        json_values_within(body, max_values).is_some()
    };
    if within { Ok(()) } else { Err(IngestError::TooManyValues { limit: max_values }) }
}

/// One item of a batch that was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// Position of the item in the batch (0-based; for JSON lines, among non-empty lines).
    pub index: usize,
    /// Why, naming the field at fault.
    pub reason: String,
}

/// What an adapter made of a body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Exchanges, each with its index in the batch.
    pub exchanges: Vec<(usize, Exchange)>,
    /// Items that were rejected: the first [`MAX_KEPT_REJECTIONS`] with their reasons.
    pub rejected: Vec<Rejection>,
    /// Rejected items beyond those listed in `rejected`.
    pub more_rejected: usize,
}

/// Rejections kept with their reasons; beyond this they are only counted, so a batch of junk
/// cannot grow a list as long as itself.
pub const MAX_KEPT_REJECTIONS: usize = 1000;

impl Decoded {
    /// Adds the outcome of decoding item `index`.
    pub fn push(&mut self, index: usize, item: Result<Exchange, String>) {
        match item {
            Ok(exchange) => self.exchanges.push((index, exchange)),
            Err(reason) => self.reject(index, reason),
        }
    }

    /// Records a rejected item.
    pub fn reject(&mut self, index: usize, reason: String) {
        if self.rejected.len() < MAX_KEPT_REJECTIONS {
            self.rejected.push(Rejection { index, reason });
        } else {
            self.more_rejected += 1;
        }
    }

    /// Every rejected item, listed or not.
    pub fn rejected_total(&self) -> usize {
        self.rejected.len() + self.more_rejected
    }
}

/// Decodes a body of independent items (a JSON array, one object, or JSON lines) by mapping
/// each item with `item`; a bad item becomes a rejection with its index.
pub fn decode_each(
    body: &[u8],
    item: impl Fn(serde_json::Value) -> Result<Exchange, String>,
) -> Result<Decoded, IngestError> {
    let mut decoded = Decoded::default();
    formats::native::for_each_json_item(body, |index, value| decoded.push(index, value.and_then(&item)))?;
    Ok(decoded)
}

/// [`decode_each`] for adapters that read a typed view of each item (`T` names only the fields
/// it reads; the rest is skipped, never built into a tree). Each item must be a JSON object
/// (serde would otherwise read an array as a struct, field by position); `not_an_object` is the
/// reason given for one that is not.
pub fn decode_each_typed<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    not_an_object: &str,
    item: impl Fn(T) -> Result<Exchange, String>,
) -> Result<Decoded, IngestError> {
    let mut decoded = Decoded::default();
    formats::native::for_each_raw_item(body, |index, raw| {
        let typed = raw.and_then(|raw| match raw.get().starts_with('{') {
            true => serde_json::from_str::<T>(raw.get()).map_err(|e| e.to_string()),
            false => Err(not_an_object.to_string()),
        });
        decoded.push(index, typed.and_then(&item))
    })?;
    Ok(decoded)
}

/// A gateway wire format.
pub trait Adapter: Send + Sync {
    /// Route name: `POST /v1/mirror/{name}`.
    fn name(&self) -> &'static str;
    /// Decodes a request body (and its headers) into exchanges and rejections.
    fn decode(&self, body: &[u8], headers: &http::HeaderMap) -> Result<Decoded, IngestError>;
}

pub use formats::{ADAPTERS, adapter};
