//! Every adapter against fixtures shaped like what each gateway really sends (see
//! `gateway-formats.md`): batches, tool calls, streaming-assembled responses, failures,
//! unicode, missing optional fields, and malformed payloads.

use evaltap_core::chat::{last_user_text, response_text};
use evaltap_ingest::{Decoded, IngestError, adapter};
use http::HeaderMap;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture exists")
}

fn decode(format: &str, body: &[u8]) -> Result<Decoded, IngestError> {
    adapter(format).expect("registered").decode(body, &HeaderMap::new())
}

/// What every adapter must produce for every exchange: OpenAI-shaped request and response.
fn conforms(decoded: &Decoded) {
    for (_, exchange) in &decoded.exchanges {
        assert!(exchange.request["messages"].is_array(), "{:?}", exchange.request);
        if exchange.succeeded {
            let message = &exchange.response["choices"][0]["message"];
            assert!(message.is_object(), "{:?}", exchange.response);
            assert!(
                message["content"].is_string() || message["tool_calls"].is_array(),
                "{:?}",
                exchange.response
            );
        }
    }
}

#[test]
fn litellm_batch_with_unicode_tool_calls_stream_and_failure() {
    let decoded = decode("litellm", &fixture("litellm/batch.json")).expect("decodes");
    conforms(&decoded);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let [(_, first), (_, tools), (_, failed)] = &decoded.exchanges[..] else { panic!("three exchanges") };
    assert_eq!(first.external_id.as_deref(), Some("4f6e0c1a-0001"));
    assert_eq!(last_user_text(&first.request), "Capitale de la France ? 🇫🇷");
    assert_eq!(first.request["temperature"], 0.3);
    assert_eq!(first.request["model"], "gpt-4o-mini");
    assert_eq!(response_text(&first.response), "Paris est la capitale de la France.");
    assert_eq!(first.cost_usd, Some(1.35e-05));
    assert!((first.latency_ms.expect("latency") - 31.0).abs() < 0.5);
    assert_eq!(first.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((10, 20)));
    assert_eq!(first.tags["user_id"], "end-user-42");
    assert_eq!(first.tags["requester_metadata"]["app"], "trivia");
    assert!(first.tags.get("requester_custom_headers").is_none());
    assert_eq!(tools.response["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert!(tools.request["tools"].is_array());
    assert!(!failed.succeeded);
    assert!(failed.response["error"]["message"].as_str().is_some_and(|m| m.contains("RateLimitError")));
}

#[test]
fn litellm_ndjson_and_single_formats_and_bad_items() {
    let batch: Vec<Value> = serde_json::from_slice(&fixture("litellm/batch.json")).expect("json");
    let ndjson: String = batch.iter().map(|v| format!("{v}\n")).collect();
    assert_eq!(decode("litellm", ndjson.as_bytes()).expect("ndjson").exchanges.len(), 3);
    assert_eq!(decode("litellm", batch[0].to_string().as_bytes()).expect("single").exchanges.len(), 1);
    let mut no_messages = batch[0].clone();
    no_messages.as_object_mut().expect("object").remove("messages");
    let decoded = decode("litellm", json!([batch[0], no_messages]).to_string().as_bytes()).expect("decodes");
    assert_eq!(decoded.exchanges.len(), 1);
    assert_eq!(decoded.rejected[0].index, 1);
    assert!(decoded.rejected[0].reason.contains("`messages`"), "{}", decoded.rejected[0].reason);
}

/// A payload exactly as LiteLLM proxy 1.108.7's `generic_api` callback posted it (captured from
/// a real proxy in front of the simulated upstream, driven by the `openai` client): 17 KB, most
/// of it key metadata and the model's cost map, none of which evaltap keeps.
#[test]
fn litellm_real_payload_keeps_what_matters_and_drops_the_rest() {
    let decoded = decode("litellm", &fixture("litellm/1.108.7_payload.json")).expect("decodes");
    conforms(&decoded);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let [(_, exchange)] = &decoded.exchanges[..] else { panic!("one exchange") };
    assert_eq!(exchange.external_id.as_deref(), Some("ca9afd90-0b58-4d99-967c-47a5a68111b8"));
    assert_eq!(exchange.request["model"], "sim-large");
    assert_eq!(exchange.request["temperature"], 0.2);
    assert_eq!(exchange.request["max_tokens"], 300);
    assert_eq!(exchange.request["messages"].as_array().map(Vec::len), Some(2));
    assert!(last_user_text(&exchange.request).ends_with("What is 17 + 25? Reply with the number."));
    assert_eq!(response_text(&exchange.response), "The answer is 42.");
    assert_eq!(exchange.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((787, 6)));
    assert_eq!(exchange.cost_usd, Some(0.0));
    assert!((exchange.latency_ms.expect("latency") - 23.57).abs() < 0.01);
    assert_eq!(exchange.occurred_at.map(|t| t.timestamp()), Some(1_796_018_773));
    assert!(exchange.succeeded);
    let tags = &exchange.tags;
    assert_eq!(tags["user_id"], "end-user-42");
    assert_eq!(tags["litellm_model_name"], "openai/sim-large");
    assert_eq!(tags["call_type"], "acompletion");
    assert_eq!(tags["request_tags"][2], "team-support");
    assert_eq!(tags["requester_metadata"]["app"], "helpdesk");
    // Client headers beyond the allowlist (host, x-stainless-*, content-length) are dropped.
    let headers = tags["requester_metadata"]["headers"].as_object().expect("headers");
    let mut kept: Vec<&str> = headers.keys().map(String::as_str).collect();
    kept.sort_unstable();
    assert_eq!(kept, ["accept", "content-type", "user-agent", "x-request-id"]);
    assert!(tags.get("cache_hit").is_none(), "null fields are not tags");
    let stored = serde_json::to_string(exchange).expect("serializes");
    for dropped in ["model_map_information", "user_api_key_hash", "input_cost_per_token", "x-stainless-os"] {
        assert!(!stored.contains(dropped), "{dropped} was kept");
    }
}

/// A field of an unexpected type is that item's rejection, naming the field; nested metadata
/// of an unexpected shape is ignored, not a reason to lose the call.
#[test]
fn litellm_fields_of_the_wrong_type() {
    let batch: Vec<Value> = serde_json::from_slice(&fixture("litellm/batch.json")).expect("json");
    let mut odd_metadata = batch[0].clone();
    odd_metadata["metadata"] = json!("not an object");
    odd_metadata["hidden_params"] = json!([1, 2]);
    let mut not_an_object = batch[0].clone();
    not_an_object = json!([not_an_object]);
    let body = json!([batch[0], odd_metadata, not_an_object, 42]).to_string();
    let decoded = decode("litellm", body.as_bytes()).expect("decodes");
    assert_eq!(decoded.exchanges.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
    assert!(decoded.exchanges[1].1.tags.get("requester_metadata").is_none());
    assert_eq!(decoded.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [2, 3]);
    assert!(
        decoded.rejected.iter().all(|r| r.reason.contains("StandardLoggingPayload")),
        "{:?}",
        decoded.rejected
    );
}

#[test]
fn openrouter_broadcast_root_span_and_test_connection() {
    let decoded = decode("openrouter", &fixture("openrouter/broadcast.json")).expect("decodes");
    conforms(&decoded);
    assert_eq!(decoded.exchanges.len(), 1, "only the root span has content");
    assert!(
        decoded.rejected.is_empty(),
        "a child span without content is not an error: {:?}",
        decoded.rejected
    );
    let (_, ex) = &decoded.exchanges[0];
    assert_eq!(ex.external_id.as_deref(), Some("gen-1790605504-cpHC"));
    assert_eq!(last_user_text(&ex.request), "Capital of France?");
    assert_eq!(ex.request["max_tokens"], 64);
    assert_eq!(ex.request["model"], "anthropic/claude-haiku-4.5");
    assert_eq!(response_text(&ex.response), "Paris.");
    assert_eq!(ex.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((24, 8)));
    assert_eq!(ex.cost_usd, Some(0.000064));
    assert!((ex.latency_ms.expect("latency") - 2443.0).abs() < 1e-6);
    assert_eq!(ex.tags["session_id"], "ses_f179");
    assert_eq!(ex.tags["trace.metadata.openrouter.provider_name"], "Amazon Bedrock");
    let test = decode("openrouter", &fixture("openrouter/test_connection.json")).expect("decodes");
    assert!(test.exchanges.is_empty() && test.rejected.is_empty());
    let empty = decode("openrouter", b"{}").expect("empty payload");
    assert!(empty.exchanges.is_empty());
}

#[test]
fn otlp_semconv_parts_tool_calls_and_system_instructions() {
    let decoded = decode("otlp", &fixture("otlp/semconv.json")).expect("decodes");
    conforms(&decoded);
    let (_, ex) = &decoded.exchanges[0];
    let messages = ex.request["messages"].as_array().expect("messages");
    assert_eq!(messages[0], json!({"role": "system", "content": "You are a weather bot."}));
    assert_eq!(messages[1]["content"], "Weather in Tōkyō?");
    assert_eq!(messages[2]["tool_calls"][0]["function"]["arguments"], "{\"location\":\"Tokyo\"}");
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(ex.request["temperature"], 0.2);
    assert_eq!(ex.request["max_tokens"], 200);
    assert_eq!(response_text(&ex.response), "It is rainy and 57°F in Tokyo.");
    assert_eq!(ex.response["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(ex.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(ex.tags["conversation_id"], "conv-77");
    assert_eq!(ex.cost_usd, None, "the conventions define no cost attribute");
    let failed = decode("otlp", &fixture("otlp/details_event.json")).expect("decodes");
    let (_, ex) = &failed.exchanges[0];
    assert!(!ex.succeeded);
    assert_eq!(last_user_text(&ex.request), "Summarize this.");
}

#[test]
fn otlp_protobuf_decodes_like_json() {
    use evaltap_ingest::formats::otlp_wire::proto::*;
    use prost::Message;
    let kv = |key: &str, v: any_value::Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", any_value::Value::StringValue("vercel".into()))] }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    parent_span_id: vec![],
                    name: "chat gpt-4o-mini".into(),
                    start_time_unix_nano: 1_795_824_818_000_000_000,
                    end_time_unix_nano: 1_795_824_818_500_000_000,
                    attributes: vec![
                        kv("gen_ai.request.model", any_value::Value::StringValue("gpt-4o-mini".into())),
                        kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(7)),
                        kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(3)),
                        kv("gen_ai.input.messages", any_value::Value::StringValue(r#"[{"role":"user","parts":[{"type":"text","content":"Ça va ?"}]}]"#.into())),
                        kv("gen_ai.output.messages", any_value::Value::StringValue(r#"[{"role":"assistant","parts":[{"type":"text","content":"Oui !"}],"finish_reason":"stop"}]"#.into())),
                    ],
                    events: vec![],
                    status: None,
                }],
            }],
        }],
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, "application/x-protobuf".parse().expect("header"));
    let decoded = adapter("otlp").expect("otlp").decode(&request.encode_to_vec(), &headers).expect("decodes");
    conforms(&decoded);
    let (_, ex) = &decoded.exchanges[0];
    assert_eq!(last_user_text(&ex.request), "Ça va ?");
    assert_eq!(response_text(&ex.response), "Oui !");
    assert_eq!(ex.latency_ms, Some(500.0));
    assert_eq!(ex.external_id.as_deref(), Some("01010101010101010101010101010101:0202020202020202"));
    let err = adapter("otlp").expect("otlp").decode(b"\xff\xff\xff", &headers).expect_err("garbage");
    assert!(err.to_string().contains("protobuf"), "{err}");

    // Counted without decoding: a resource span, the resource and its attribute with its
    // value, a scope span, the span, five attributes with their values.
    let body = request.encode_to_vec();
    let counted = evaltap_ingest::formats::otlp_wire::protobuf_messages_within(&body, 1000).expect("reads");
    assert_eq!(counted, Some(1 + 1 + 2 + 1 + 1 + 10));
    assert_eq!(evaltap_ingest::formats::otlp_wire::protobuf_messages_within(&body, 10).expect("reads"), None);
    assert!(evaltap_ingest::within_value_limit(&body, &headers, 16).is_ok());
    let err = evaltap_ingest::within_value_limit(&body, &headers, 15).expect_err("over");
    assert!(err.to_string().contains("more than 15 values"), "{err}");
    assert!(
        evaltap_ingest::within_value_limit(&body[..body.len() - 3], &headers, 1000).is_err(),
        "truncated"
    );
}

#[test]
fn json_values_are_counted_outside_strings() {
    use evaltap_ingest::json_values_within;
    // One, plus each structural character outside strings: the object, two keys' colons, the
    // array, its comma and the member comma; nothing inside the string (escaped quote included).
    assert_eq!(json_values_within(br#"{"a": [1, 2], "b": "x,:{[\"]"}"#, 100), Some(7));
    assert_eq!(json_values_within(b"[{},{},{}]", 100), Some(7));
    assert_eq!(json_values_within(b"[{},{},{}]", 5), None);
    let lines = b"{\"a\":1}\n{\"a\":2}\n";
    assert_eq!(json_values_within(lines, 100), Some(5));
}

#[test]
fn cloudflare_otel_and_logpush_with_encrypted_bodies_rejected() {
    let decoded = decode("cloudflare", &fixture("cloudflare/otel.json")).expect("decodes");
    conforms(&decoded);
    let (_, ex) = &decoded.exchanges[0];
    assert_eq!(response_text(&ex.response), "Paris.");
    assert_eq!(ex.request["temperature"], 0);
    assert_eq!(ex.cost_usd, Some(0.000012));
    assert_eq!(ex.usage.map(|u| u.input_tokens), Some(12));
    let logpush = decode("cloudflare", &fixture("cloudflare/logpush.ndjson")).expect("decodes");
    conforms(&logpush);
    assert_eq!(logpush.exchanges.len(), 1);
    let (_, ex) = &logpush.exchanges[0];
    assert_eq!(ex.latency_ms, Some(812.0));
    assert_eq!(ex.request["model"], "gpt-4o-mini");
    assert_eq!(ex.tags["user_id"], "u-42");
    assert_eq!(logpush.rejected[0].index, 1);
    assert!(logpush.rejected[0].reason.contains("`RequestBody` is encrypted"));
}

#[test]
fn helicone_string_bodies_and_too_large() {
    let decoded = decode("helicone", &fixture("helicone/request.json")).expect("decodes");
    conforms(&decoded);
    let (_, ex) = &decoded.exchanges[0];
    assert_eq!(ex.external_id.as_deref(), Some("550e8400-e29b-41d4-a716-446655440000"));
    assert_eq!(last_user_text(&ex.request), "Hauptstadt von Österreich?");
    assert_eq!(response_text(&ex.response), "Wien.");
    assert_eq!((ex.cost_usd, ex.latency_ms), (Some(0.000003), Some(930.0)));
    let mut big: Value = serde_json::from_slice(&fixture("helicone/request.json")).expect("json");
    big["request_body"] = json!("Body too large, see request_response_url");
    let rejected = decode("helicone", big.to_string().as_bytes()).expect("decodes");
    assert!(rejected.rejected[0].reason.contains("`request_body`"));
}

#[test]
fn kong_batch_with_streamed_response_and_missing_cost() {
    let decoded = decode("kong", &fixture("kong/batch.json")).expect("decodes");
    conforms(&decoded);
    let [(_, first), (_, streamed)] = &decoded.exchanges[..] else { panic!("two exchanges") };
    assert_eq!(first.external_id.as_deref(), Some("a1b2c3"));
    assert_eq!(first.request["model"], "gpt-4o-mini");
    assert_eq!(first.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(first.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((24, 8)));
    assert_eq!((first.cost_usd, first.latency_ms), (Some(0.0000084), Some(812.0)));
    assert_eq!(first.tags["consumer"], "team-a");
    assert_eq!(response_text(&streamed.response), "Once upon a time…");
    assert_eq!(streamed.cost_usd, None, "cost 0 means the plugin has no prices configured");
    let err = decode("kong", br#"{"request": {"id": "x"}}"#).expect("decodes");
    assert!(err.rejected[0].reason.contains("`ai.proxy`"));
}

#[test]
fn portkey_drops_headers_and_rejects_streams() {
    let decoded = decode("portkey", &fixture("portkey/log.json")).expect("decodes");
    conforms(&decoded);
    let (_, ex) = &decoded.exchanges[0];
    assert_eq!(ex.external_id.as_deref(), Some("chatcmpl-mock123"));
    assert_eq!(ex.tags["user_id"], "u-42");
    let stored = serde_json::to_string(&(&ex.request, &ex.response, &ex.tags)).expect("json");
    assert!(!stored.contains("SECRET"), "credentials must not be kept: {stored}");
    let stream = decode("portkey", &fixture("portkey/stream.json")).expect("decodes");
    assert!(stream.rejected[0].reason.contains("streaming"));
}

#[test]
fn malformed_payloads_name_the_problem() {
    for format in ["litellm", "portkey", "helicone", "kong", "cloudflare", "native"] {
        assert!(matches!(decode(format, b"{not json"), Err(IngestError::InvalidJson(_))), "{format}");
        let decoded = decode(format, b"[1]").expect("array of one");
        assert_eq!(decoded.rejected.len(), 1, "{format}");
    }
    let err = decode("otlp", br#"{"spans": []}"#).expect_err("not OTLP");
    assert!(err.to_string().contains("`resourceSpans`"), "{err}");
}

#[test]
fn otlp_error_spans_keep_their_status_description() {
    let body = json!({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "chat m",
        "startTimeUnixNano": "1795824818000000000", "endTimeUnixNano": "1795824818500000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
            {"key": "gen_ai.input.messages", "value": {"stringValue": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"hi\"}]}]"}}
        ],
        "status": {"code": 2, "message": "upstream returned 429: rate limited"}}]}]}]});
    let decoded = decode("otlp", body.to_string().as_bytes()).expect("decodes");
    let (_, ex) = &decoded.exchanges[0];
    assert!(!ex.succeeded);
    assert_eq!(ex.response["error"]["message"], "upstream returned 429: rate limited");
}

#[test]
fn litellm_keeps_only_allowlisted_client_headers() {
    let body = json!([{"id": "chatcmpl-h", "call_type": "acompletion", "model": "m", "status": "success",
        "messages": [{"role": "user", "content": "hi"}],
        "response": {"id": "chatcmpl-h", "model": "m", "choices": [{"message": {"role": "assistant", "content": "hey"}}]},
        "metadata": {"requester_metadata": {"headers": {"user-agent": "openai-python/2.1", "x-custom-token": "t0k",
            "x-internal-thing": "anything", "x-request-id": "r-1"}, "team": "search"}}}]);
    let decoded = decode("litellm", body.to_string().as_bytes()).expect("decodes");
    let (_, ex) = &decoded.exchanges[0];
    assert_eq!(
        ex.tags["requester_metadata"],
        json!({"headers": {"user-agent": "openai-python/2.1", "x-request-id": "r-1"}, "team": "search"})
    );
}

#[test]
fn native_items_made_over_messages_or_responses_are_kept_as_made_beside_their_chat_view() {
    let body = serde_json::json!([
        {"id": "a1", "api": "anthropic-messages",
         "request": {"model": "claude-haiku-4-5", "max_tokens": 50, "system": "Be brief.",
                     "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
         "response": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                      "content": [{"type": "text", "text": "4"}], "stop_reason": "end_turn",
                      "usage": {"input_tokens": 12, "output_tokens": 1}}},
        {"id": "r1", "api": "openai-responses",
         "request": {"model": "gpt-5-mini", "instructions": "Be brief.", "input": "What is 3 + 3?"},
         "response": {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5-mini",
                      "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "6"}]}],
                      "usage": {"input_tokens": 9, "output_tokens": 1}}},
        {"id": "x1", "api": "gemini", "request": {"messages": []}, "response": {}}
    ])
    .to_string();
    let decoded = decode("native", body.as_bytes()).expect("decodes");
    assert_eq!(decoded.exchanges.len(), 2, "{:?}", decoded.rejected);
    assert_eq!(decoded.rejected[0].index, 2);
    assert!(decoded.rejected[0].reason.contains("`api` must be"), "{:?}", decoded.rejected);
    let (_, anthropic) = &decoded.exchanges[0];
    assert_eq!(
        anthropic.request["messages"][0],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(response_text(&anthropic.response), "4");
    assert_eq!(anthropic.response["evaltap_original"]["api"], "anthropic-messages");
    assert_eq!(anthropic.response["evaltap_original"]["request"]["system"], "Be brief.");
    assert_eq!(anthropic.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((12, 1)));
    let (_, responses) = &decoded.exchanges[1];
    assert_eq!(last_user_text(&responses.request), "What is 3 + 3?");
    assert_eq!(response_text(&responses.response), "6");
    assert_eq!(responses.response["evaltap_original"]["api"], "openai-responses");
    assert_eq!(responses.model.as_deref(), Some("gpt-5-mini"));
}
