//! Property tests (bounded, seeded, run by `cargo test`): no input makes any adapter panic. The
//! generators mix raw bytes with JSON built from the field names the adapters look for, so the
//! runs reach deep into each format rather than failing at the first brace. A case that ever
//! fails here becomes a fixed regression test below.

use evaltap_ingest::ADAPTERS;
use http::HeaderMap;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value, json};

/// Field names the adapters read, so generated objects hit real code paths.
const KEYS: [&str; 40] = [
    "id",
    "request",
    "response",
    "messages",
    "role",
    "content",
    "choices",
    "message",
    "usage",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "tool_calls",
    "function",
    "arguments",
    "error",
    "tags",
    "metadata",
    "status",
    "resourceSpans",
    "scopeSpans",
    "spans",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "events",
    "name",
    "parts",
    "type",
    "text",
    "request_body",
    "response_body",
    "ai",
    "payload",
    "response_cost",
    "startTime",
    "endTime",
    "gen_ai.input.messages",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z{}\\[\\]\":, ]{0,24}".prop_map(Value::String),
        Just(json!("[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"x\"}]}]")),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((0..KEYS.len(), inner), 0..8).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (KEYS[k].to_string(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

fn runner(cases: u32) -> TestRunner {
    // Seeded: the same cases every run.
    TestRunner::new_with_rng(
        Config { cases, failure_persistence: None, ..Config::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    )
}

#[test]
fn no_json_shape_makes_any_adapter_panic() {
    for a in ADAPTERS.iter() {
        let mut runner = runner(300);
        let result = runner.run(&json_value(), |value| {
            for body in [value.to_string(), format!("[{value}]"), format!("{value}\n{value}\n")] {
                let _ = a.decode(body.as_bytes(), &HeaderMap::new());
            }
            Ok(())
        });
        assert!(result.is_ok(), "{}: {result:?}", a.name());
    }
}

#[test]
fn no_bytes_make_any_adapter_panic() {
    let mut protobuf = HeaderMap::new();
    protobuf.insert(http::header::CONTENT_TYPE, "application/x-protobuf".parse().expect("header"));
    for a in ADAPTERS.iter() {
        let mut runner = runner(300);
        let result = runner.run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            let _ = a.decode(&bytes, &HeaderMap::new());
            let _ = a.decode(&bytes, &protobuf);
            Ok(())
        });
        assert!(result.is_ok(), "{}: {result:?}", a.name());
    }
}

/// Regression cases: shapes that once reached unusual paths.
#[test]
fn fixed_odd_inputs_are_handled() {
    for body in [
        "",
        "null",
        "[]",
        "[null]",
        "{\"resourceSpans\": 5}",
        "{\"messages\": {}}",
        "\u{feff}{}",
        "[[[[[]]]]]",
    ] {
        for adapter in ADAPTERS {
            let _ = adapter.decode(body.as_bytes(), &HeaderMap::new());
        }
    }
}
