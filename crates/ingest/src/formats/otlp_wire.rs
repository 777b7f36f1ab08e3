//! OTLP/HTTP trace payloads, JSON or protobuf, read into plain spans with flattened
//! attributes. Only the fields evaltap uses are declared; protobuf skips the rest.

use serde_json::{Map, Value};

/// A span with its attributes as JSON values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id ('' for a root span).
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// Start, ns since the epoch.
    pub start_ns: Option<u64>,
    /// End, ns since the epoch.
    pub end_ns: Option<u64>,
    /// Span attributes.
    pub attributes: Map<String, Value>,
    /// Events: name and attributes.
    pub events: Vec<(String, Map<String, Value>)>,
    /// Status code: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
    /// Status description (set with an error status).
    pub status_message: String,
    /// Resource attributes.
    pub resource: Map<String, Value>,
}

/// Protobuf messages of `opentelemetry/proto/collector/trace/v1` (subset).
pub mod proto {
    #![allow(missing_docs)]
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, repeated, tag = "11")]
        pub events: Vec<Event>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Event {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(int32, tag = "3")]
        pub code: i32,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<any_value::Value>,
    }
    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
            #[prost(message, tag = "5")]
            ArrayValue(super::ArrayValue),
            #[prost(message, tag = "6")]
            KvlistValue(super::KeyValueList),
            #[prost(bytes, tag = "7")]
            BytesValue(Vec<u8>),
        }
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn proto_value(value: &proto::AnyValue) -> Value {
    use proto::any_value::Value as V;
    match &value.value {
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(proto_value).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(proto_attributes(&kv.values)),
        Some(V::BytesValue(b)) => Value::String(hex(b)),
        None => Value::Null,
    }
}

fn proto_attributes(list: &[proto::KeyValue]) -> Map<String, Value> {
    list.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, proto_value))).collect()
}

/// Spans of a protobuf `ExportTraceServiceRequest`.
pub fn from_protobuf(body: &[u8]) -> Result<Vec<Span>, String> {
    use prost::Message;
    let request =
        proto::ExportTraceServiceRequest::decode(body).map_err(|e| format!("invalid OTLP protobuf: {e}"))?;
    let mut spans = Vec::new();
    for rs in &request.resource_spans {
        let resource = rs.resource.as_ref().map(|r| proto_attributes(&r.attributes)).unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                spans.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    start_ns: (s.start_time_unix_nano > 0).then_some(s.start_time_unix_nano),
                    end_ns: (s.end_time_unix_nano > 0).then_some(s.end_time_unix_nano),
                    attributes: proto_attributes(&s.attributes),
                    events: s
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), proto_attributes(&e.attributes)))
                        .collect(),
                    status_code: s.status.as_ref().map_or(0, |st| i64::from(st.code)),
                    status_message: s.status.as_ref().map(|st| st.message.clone()).unwrap_or_default(),
                    resource: resource.clone(),
                });
            }
        }
    }
    Ok(spans)
}

/// An OTLP JSON `AnyValue` (`intValue` may be a number or a string).
fn json_value(value: &Value) -> Value {
    let Some(map) = value.as_object() else { return Value::Null };
    if let Some(s) = map.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = map.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map_or_else(|_| i.clone(), Value::from),
            other => other.clone(),
        };
    }
    if let Some(d) = map.get("doubleValue") {
        return match d {
            Value::String(s) => {
                s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(d.clone(), Value::Number)
            }
            other => other.clone(),
        };
    }
    if let Some(b) = map.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = map.get("arrayValue") {
        return Value::Array(
            a.get("values")
                .and_then(Value::as_array)
                .map_or_else(Vec::new, |v| v.iter().map(json_value).collect()),
        );
    }
    if let Some(kv) = map.get("kvlistValue") {
        return Value::Object(json_attributes(kv.get("values")));
    }
    map.get("bytesValue").cloned().unwrap_or(Value::Null)
}

fn json_attributes(list: Option<&Value>) -> Map<String, Value> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|kv| {
                    Some((
                        kv.get("key")?.as_str()?.to_string(),
                        kv.get("value").map_or(Value::Null, json_value),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn nanos(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        _ => None,
    }
    .filter(|n| *n > 0)
}

/// Spans of an OTLP JSON body (`{"resourceSpans": [...]}`).
pub fn from_json(body: &Value) -> Result<Vec<Span>, String> {
    let resource_spans = match body.get("resourceSpans") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err("`resourceSpans` must be an array".into()),
        None if body.as_object().is_some_and(|o| o.is_empty()) => return Ok(Vec::new()),
        None => return Err("`resourceSpans` is missing: not an OTLP traces payload".into()),
    };
    let mut spans = Vec::new();
    for rs in resource_spans {
        let resource = json_attributes(rs.pointer("/resource/attributes"));
        for ss in rs.get("scopeSpans").and_then(Value::as_array).into_iter().flatten() {
            for s in ss.get("spans").and_then(Value::as_array).into_iter().flatten() {
                let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                spans.push(Span {
                    trace_id: str_of("traceId"),
                    span_id: str_of("spanId"),
                    parent_span_id: str_of("parentSpanId"),
                    name: str_of("name"),
                    start_ns: nanos(s.get("startTimeUnixNano")),
                    end_ns: nanos(s.get("endTimeUnixNano")),
                    attributes: json_attributes(s.get("attributes")),
                    events: s
                        .get("events")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                                json_attributes(e.get("attributes")),
                            )
                        })
                        .collect(),
                    status_code: s
                        .pointer("/status/code")
                        .and_then(|c| {
                            c.as_i64().or_else(|| c.as_str().map(|t| i64::from(t.contains("ERROR")) * 2))
                        })
                        .unwrap_or(0),
                    status_message: s
                        .pointer("/status/message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    resource: resource.clone(),
                });
            }
        }
    }
    Ok(spans)
}

/// The messages of the OTLP schema [`from_protobuf`] builds, and which field of each holds which
/// (the fields it skips are not counted: prost skips them without building anything).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Request,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Span,
    Event,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    Status,
}

impl Kind {
    fn child(self, field: u64) -> Option<Kind> {
        use Kind::*;
        match (self, field) {
            (Request, 1) => Some(ResourceSpans),
            (ResourceSpans, 1) => Some(Resource),
            (ResourceSpans, 2) => Some(ScopeSpans),
            (Resource, 1) | (Event, 3) | (Span, 9) | (KeyValueList, 1) => Some(KeyValue),
            (ScopeSpans, 2) => Some(Span),
            (Span, 11) => Some(Event),
            (Span, 15) => Some(Status),
            (KeyValue, 2) | (ArrayValue, 1) => Some(AnyValue),
            (AnyValue, 5) => Some(ArrayValue),
            (AnyValue, 6) => Some(KeyValueList),
            _ => None,
        }
    }
}

/// Nesting deeper than this is refused (prost's own recursion limit is 100).
const MAX_PROTOBUF_DEPTH: usize = 64;

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("invalid OTLP protobuf: truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("invalid OTLP protobuf: varint too long".into())
}

/// Counts the messages an OTLP protobuf body would decode into (spans, attributes, values at
/// any depth), reading only its tags and lengths — nothing is allocated — and stops with
/// `Ok(None)` as soon as there are more than `limit`: a 16 MB body of empty spans would decode
/// into millions of structs, hundreds of bytes each.
pub fn protobuf_messages_within(body: &[u8], limit: usize) -> Result<Option<usize>, String> {
    Ok(protobuf_census(body, limit)?.map(|(messages, _)| messages))
}

/// Spans in an OTLP protobuf body, counted as [`protobuf_messages_within`] counts messages;
/// `Ok(None)` beyond `limit` messages.
pub fn protobuf_spans(body: &[u8], limit: usize) -> Result<Option<usize>, String> {
    Ok(protobuf_census(body, limit)?.map(|(_, spans)| spans))
}

/// (messages, of which spans) of an OTLP protobuf body, or `None` beyond `limit` messages.
fn protobuf_census(body: &[u8], limit: usize) -> Result<Option<(usize, usize)>, String> {
    let mut count = 0usize;
    let mut spans = 0usize;
    // (kind, end) of each message open around the cursor.
    let mut open: Vec<(Kind, usize)> = vec![(Kind::Request, body.len())];
    let mut at = 0usize;
    while let Some(&(kind, end)) = open.last() {
        if at >= end {
            open.pop();
            continue;
        }
        let key = varint(body, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(body, &mut at)?;
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let len =
                    usize::try_from(varint(body, &mut at)?).map_err(|_| "invalid OTLP protobuf: length")?;
                let inner_end = at
                    .checked_add(len)
                    .filter(|e| *e <= end)
                    .ok_or("invalid OTLP protobuf: a length runs past its message")?;
                if let Some(child) = kind.child(field) {
                    count += 1;
                    spans += usize::from(matches!(child, Kind::Span));
                    if count > limit {
                        return Ok(None);
                    }
                    if open.len() >= MAX_PROTOBUF_DEPTH {
                        return Err("invalid OTLP protobuf: nested too deep".into());
                    }
                    open.push((child, inner_end));
                } else {
                    at = inner_end;
                }
            }
            other => return Err(format!("invalid OTLP protobuf: unsupported wire type {other}")),
        }
        if at > end {
            return Err("invalid OTLP protobuf: a field runs past its message".into());
        }
    }
    Ok(Some((count, spans)))
}

/// Spans of an OTLP JSON body (`resourceSpans[].scopeSpans[].spans[]`), counted before any is
/// built.
pub fn json_spans(body: &Value) -> usize {
    let lists = body.get("resourceSpans").and_then(Value::as_array).into_iter().flatten();
    lists
        .flat_map(|rs| rs.get("scopeSpans").and_then(Value::as_array).into_iter().flatten())
        .map(|ss| ss.get("spans").and_then(Value::as_array).map_or(0, Vec::len))
        .sum()
}
