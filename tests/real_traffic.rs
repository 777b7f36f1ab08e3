//! The traffic people really send, from outside: tool-using exchanges rendered for the judge
//! and checked, JSON-schema answers, cached-input and reasoning tokens priced as billed, a model
//! nobody priced, and a system prompt logged beside the messages.

use crate::first_hour::{evaltap_in, mirror, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rubric_render_shows_a_tool_using_exchange_for_what_it_is() {
    let bench =
        crate::common::Bench::start("tool-render", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let exchange = serde_json::json!({
        "id": "tool-1",
        "request": {"model": "sim-large",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "messages": [
                {"role": "system", "content": "You are a travel assistant."},
                {"role": "user", "content": "What is the weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\":18}"},
                {"role": "user", "content": "And in Rome?"}]},
        "response": {"model": "sim-large", "choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]}}]}
    });
    mirror(&bench, [exchange]).await;
    let found = evaltap_in(&bench.dir.0, &["exchanges", "--limit", "1", "--json"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).expect("json");
    let id = found["exchanges"][0]["id"].as_str().expect("id").to_string();
    for rubric in ["correctness", "tool_use"] {
        let out = evaltap_in(&bench.dir.0, &["rubric", "render", rubric, "--exchange", &id]);
        assert!(out.status.success(), "{}", stderr(&out));
        let prompt = stdout(&out);
        assert!(prompt.contains("get_weather: Weather for a city. parameters {"), "{prompt}");
        assert!(prompt.contains("assistant: [calls get_weather({\"city\":\"Paris\"})]"), "{prompt}");
        assert!(prompt.contains("tool (c1): {\"temp_c\":18}"), "{prompt}");
        assert!(prompt.contains("### Response\n[calls get_weather({\"city\":\"Rome\"})]"), "{prompt}");
    }
}

crate::on_both_engines! {
/// Tool-calling production traffic gets `check:tool_call` and `check:tool_arguments_valid`,
/// which tell a worse candidate from an equal one.
async fn tool_calling_traffic_gets_tool_call_checks_that_tell_a_worse_candidate_from_an_equal_one() {
    let bench =
        crate::common::Bench::start("tool-checks", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    // Production traffic that calls a tool: the simulated production model answers each
    // request with a call (right with its accuracy), as a gateway would log it.
    let cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar"];
    let mut exchanges = Vec::new();
    for i in 0..160 {
        let request = serde_json::json!({"model": "sim-large",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "messages": [{"role": "user", "content": format!("What is the weather in {} today? (#{i})", cities[i % cities.len()])}]});
        let response = bench.production_call(&request).await;
        assert!(response.pointer("/choices/0/message/tool_calls/0").is_some(), "{response}");
        exchanges.push(serde_json::json!({"id": format!("tool-{i}"), "request": request, "response": response}));
    }
    mirror(&bench, exchanges).await;
    let request = |name: &str, candidates: &[&str], auto_checks: bool| evaltap_worker::ExperimentRequest {
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
        // All 161 exchanges: the one without a tool call is not counted by the checks.
        sample_size: None,
        auto_checks,
        ..crate::common::experiment_request(name, "small", "tool_use", 161)
    };
    let experiment = bench.create(request("tools", &["small", "large"], true)).await;
    for check in ["check:tool_call", "check:tool_arguments_valid"] {
        assert!(experiment.spec.rubrics.contains(&check.to_string()), "{:?}", experiment.spec.rubrics);
    }
    let report = crate::common::run(&bench.app, &experiment).await;
    let verdict = |candidate: &str, rubric: &str| {
        let c = report.candidates.iter().find(|c| c.name == candidate).expect("candidate");
        let r = c.rubrics.iter().find(|r| r.rubric == rubric).unwrap_or_else(|| panic!("{rubric} in the report"));
        assert!(r.stats.mcnemar.is_some(), "pass/fail, decided by McNemar: {r:?}");
        assert_eq!(r.stats.n, 160, "the exchange without a tool call is not counted: {r:?}");
        r.stats.verdict
    };
    // The small model calls with the wrong city far more often: worse. The production model
    // itself, replayed, calls as production did: not worse (every pair agrees).
    assert_eq!(verdict("small", "check:tool_call"), evaltap_stats::Verdict::Worse);
    assert_eq!(verdict("large", "check:tool_call"), evaltap_stats::Verdict::NonInferior);
    // Wrong cities are still valid arguments.
    assert_ne!(verdict("small", "check:tool_arguments_valid"), evaltap_stats::Verdict::Worse);
    // The judge, shown the tools, the question and the call, says the same on `tool_use`.
    let judged = |candidate: &str| {
        let c = report.candidates.iter().find(|c| c.name == candidate).expect("candidate");
        c.rubrics.iter().find(|r| r.rubric == "tool_use").expect("tool_use in the report").stats.verdict
    };
    assert_eq!(judged("small"), evaltap_stats::Verdict::Worse);
    assert_ne!(judged("large"), evaltap_stats::Verdict::Worse);
    // Turned off, they are not added.
    let plain = bench.create(request("tools-off", &["small"], false)).await;
    assert!(!plain.spec.rubrics.iter().any(|r| r.starts_with("check:")), "{:?}", plain.spec.rubrics);
}
}

crate::on_both_engines! {
/// Traffic whose requests set a JSON schema gets `check:response_format`: a model that answers
/// bare values is worse, one that follows the format is not.
async fn json_schema_traffic_gets_a_response_format_check() {
    let bench =
        crate::common::Bench::start("format-checks", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    let mut exchanges = Vec::new();
    for i in 0..160_i64 {
        let request = serde_json::json!({"model": "sim-large",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                "schema": {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "number"}}}}},
            "messages": [{"role": "user", "content": format!("What is {} + {}? Reply in JSON as {{\"answer\": <number>}}.", i, i + 7)}]});
        let response = bench.production_call(&request).await;
        exchanges.push(serde_json::json!({"id": format!("fmt-{i}"), "request": request, "response": response}));
    }
    mirror(&bench, exchanges).await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            candidates: vec!["small".into(), "medium".into()],
            sample_size: None,
            ..crate::common::experiment_request("formats", "small", "correctness", 161)
        })
        .await;
    assert!(experiment.spec.rubrics.contains(&"check:response_format".to_string()), "{:?}", experiment.spec.rubrics);
    let report = crate::common::run(&bench.app, &experiment).await;
    let verdict = |candidate: &str| {
        let c = report.candidates.iter().find(|c| c.name == candidate).expect("candidate");
        let r = c.rubrics.iter().find(|r| r.rubric == "check:response_format").expect("the check in the report");
        assert_eq!(r.stats.n, 160, "{r:?}");
        r.stats.verdict
    };
    // The small model answers bare numbers; the medium one follows the format as production does.
    assert_eq!(verdict("small"), evaltap_stats::Verdict::Worse);
    assert_eq!(verdict("medium"), evaltap_stats::Verdict::NonInferior);
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_input_and_reasoning_tokens_are_priced_as_billed() {
    let bench = crate::common::Bench::start_with(
        "cached-tokens",
        evaltap_sim::JudgeBehavior::default(),
        None,
        1,
        |config| {
            config.prices.insert(
                "reasoner-1".into(),
                evaltap_core::Price {
                    input_per_mtok: 2.0,
                    output_per_mtok: 8.0,
                    cached_input_per_mtok: Some(0.5),
                },
            );
        },
    )
    .await;
    // No cost from the gateway: evaltap prices the usage itself. 10,000 prompt tokens of which
    // 8,000 cached, 3,000 completion tokens of which 2,500 reasoning: $0.032 a request.
    mirror(
        &bench,
        (0..12).map(|i| {
            serde_json::json!({
                "id": format!("cached-{i}"),
                "request": {"model": "reasoner-1", "messages": [{"role": "user", "content": format!("What is {i} + 1?")}]},
                "response": {"model": "reasoner-1", "choices": [{"message": {"role": "assistant", "content": format!("{}", i + 1)}}],
                             "usage": {"prompt_tokens": 10_000, "completion_tokens": 3_000,
                                       "prompt_tokens_details": {"cached_tokens": 8_000},
                                       "completion_tokens_details": {"reasoning_tokens": 2_500}}}
            })
        }),
    )
    .await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            filter: evaltap_store::Filter { model: Some("reasoner-1".into()), ..Default::default() },
            ..crate::common::experiment_request("cached", "small", "correctness", 12)
        })
        .await;
    let report = crate::common::run(&bench.app, &experiment).await;
    assert!((report.baseline.cost_per_request_usd - 0.032).abs() < 1e-12, "{:?}", report.baseline);
    // Each cost says where it came from.
    assert_eq!(
        report.baseline.cost_sources,
        evaltap_report::CostSources { gateway: 0, config: 12, table: 0, unknown: 0 }
    );
    let text = evaltap_report::render_text(&report);
    assert!(text.contains("$0.032000/request (priced: 12 from [prices] in evaltap.toml)"), "{text}");
}

/// A production model that neither the gateway nor `[prices]` priced is priced at the shipped,
/// dated default table, found under the name the gateway logged (provider prefix and date
/// suffix included), and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_nobody_priced_is_priced_at_the_dated_default_table() {
    let bench =
        crate::common::Bench::start("table-prices", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    // 10,000 prompt tokens of which 4,000 cached, 1,000 completion tokens, at gpt-4o's list
    // price ($2.50 / $1.25 cached / $10 per million): 6,000 × 2.5 + 4,000 × 1.25 + 1,000 × 10
    // = 15,000 + 5,000 + 10,000 micro-dollars = $0.030 a request.
    mirror(
        &bench,
        (0..8).map(|i| {
            serde_json::json!({
                "id": format!("table-{i}"),
                "request": {"model": "openai/gpt-4o-2024-08-06", "messages": [{"role": "user", "content": format!("What is {i} + 2?")}]},
                "response": {"model": "openai/gpt-4o-2024-08-06", "choices": [{"message": {"role": "assistant", "content": format!("{}", i + 2)}}],
                             "usage": {"prompt_tokens": 10_000, "completion_tokens": 1_000,
                                       "prompt_tokens_details": {"cached_tokens": 4_000}}}
            })
        }),
    )
    .await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            filter: evaltap_store::Filter {
                model: Some("openai/gpt-4o-2024-08-06".into()),
                ..Default::default()
            },
            ..crate::common::experiment_request("table", "small", "correctness", 8)
        })
        .await;
    let report = crate::common::run(&bench.app, &experiment).await;
    assert!((report.baseline.cost_per_request_usd - 0.030).abs() < 1e-12, "{:?}", report.baseline);
    assert_eq!(report.baseline.cost_sources, evaltap_report::CostSources { table: 8, ..Default::default() });
    let text = evaltap_report::render_text(&report);
    assert!(
        text.contains("(priced: 8 from the default price table (list prices as of 2025-10-01))"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_prompt_logged_beside_the_messages_reaches_the_judge() {
    let bench = crate::common::Bench::start("hybrid", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    // LiteLLM's log of an Anthropic-format /v1/messages call: the system prompt in `instructions`.
    mirror(
        &bench,
        [serde_json::json!({
            "id": "hybrid-1",
            "request": {"model": "claude", "instructions": "You answer in French.", "max_output_tokens": 64,
                        "include": ["reasoning.encrypted_content"], "messages": [{"role": "user", "content": "Hello?"}]},
            "response": {"model": "claude", "choices": [{"message": {"role": "assistant", "content": "Bonjour."}}]}
        })],
    )
    .await;
    let found = evaltap_in(&bench.dir.0, &["exchanges", "--model", "claude", "--json"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).expect("json");
    let id = found["exchanges"][0]["id"].as_str().expect("id").to_string();
    let prompt = stdout(&evaltap_in(&bench.dir.0, &["rubric", "render", "correctness", "--exchange", &id]));
    assert!(prompt.contains("### Conversation\nsystem: You answer in French.\nuser: Hello?"), "{prompt}");
}
