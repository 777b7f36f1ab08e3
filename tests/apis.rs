//! Candidates over the Anthropic Messages and OpenAI Responses APIs, against the simulator's
//! endpoints for both: captured chat traffic with tools and JSON formats is carried over and
//! judged like any candidate's, and what an API cannot carry is skipped with the reason.

use evaltap_core::{Config, ModelApi};
use evaltap_stats::Verdict;
use serde_json::{Value, json};

use crate::common::Bench;
use crate::first_hour::mirror;

/// A candidate named `name` calling `model` over `api`.
fn over(config: &mut Config, name: &str, model: &str, api: ModelApi) {
    let mut candidate = config.candidates[0].clone();
    candidate.name = name.into();
    candidate.model = model.into();
    candidate.api = api;
    config.candidates.push(candidate);
}

/// Production traffic: `n` tool-calling requests and `n` JSON-schema requests answered by the
/// simulated production model, plus three with audio input and two with stop sequences.
async fn traffic(bench: &Bench, n: usize) -> Vec<Value> {
    let cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar"];
    let mut requests = Vec::new();
    for i in 0..n {
        requests.push(json!({"model": "sim-large",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "tool_choice": "auto",
            "messages": [{"role": "system", "content": "You are a travel assistant."},
                         {"role": "user", "content": format!("What is the weather in {} today? (#{i})", cities[i % cities.len()])}]}));
        requests.push(json!({"model": "sim-large",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                "schema": {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "number"}}}}},
            "messages": [{"role": "user", "content": format!("What is {} + {}? Reply in JSON as {{\"answer\": <number>}}.", i, i + 7)}]}));
    }
    for i in 0..3 {
        requests.push(json!({"model": "sim-large", "messages": [{"role": "user", "content": [
            {"type": "text", "text": format!("What is said in this recording? (#{i})")},
            {"type": "input_audio", "input_audio": {"data": "UklGRgAAAAA=", "format": "wav"}}]}]}));
    }
    for i in 0..2 {
        requests.push(json!({"model": "sim-large", "stop": ["\n\n"],
            "messages": [{"role": "user", "content": format!("What is {i} + 2?")}]}));
    }
    let mut exchanges = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        let response = bench.production_call(&request).await;
        exchanges.push(json!({"id": format!("api-{i}"), "request": request, "response": response}));
    }
    exchanges
}

crate::on_both_engines! {
    /// The production model over Messages and over Responses calls tools and answers JSON as
    /// production does (non-inferior on the checks); a worse model over Messages is worse; audio
    /// input (and, for Responses, stop sequences) is skipped with the reason and counted.
    async fn candidates_over_messages_and_responses_replay_tools_and_json_formats() {
        let bench = Bench::start_with("apis", evaltap_sim::JudgeBehavior::default(), None, 1, |config| {
            over(config, "large-messages", "sim-large", ModelApi::AnthropicMessages);
            over(config, "large-responses", "sim-large", ModelApi::OpenaiResponses);
            over(config, "small-messages", "sim-small", ModelApi::AnthropicMessages);
        })
        .await;
        // 160 of each: every pair agreeing then bounds the difference below the 0.02 margin.
        let exchanges = traffic(&bench, 160).await;
        mirror(&bench, exchanges).await;
        let experiment = bench
            .create(evaltap_worker::ExperimentRequest {
                candidates: vec!["large-messages".into(), "large-responses".into(), "small-messages".into()],
                sample_size: None,
                ..crate::common::experiment_request("apis", "small", "correctness", 1)
            })
            .await;
        let report = crate::common::run(&bench.app, &experiment).await;
        let candidate = |name: &str| report.candidates.iter().find(|c| c.name == name).expect("candidate");
        let verdict = |name: &str, rubric: &str| {
            let r = candidate(name).rubrics.iter().find(|r| r.rubric == rubric).expect("rubric in the report");
            (r.stats.verdict, r.stats.n)
        };
        for name in ["large-messages", "large-responses"] {
            assert_eq!(verdict(name, "check:tool_call"), (Verdict::NonInferior, 160), "{name}");
            assert_eq!(verdict(name, "check:response_format"), (Verdict::NonInferior, 160), "{name}");
        }
        assert_eq!(verdict("small-messages", "check:tool_call").0, Verdict::Worse);
        let audio = "cannot carry this request: audio input";
        let messages = &candidate("large-messages").unsupported;
        assert_eq!(messages.get(&format!("anthropic-messages {audio}")), Some(&3), "{messages:?}");
        assert_eq!(messages.values().sum::<usize>(), 3, "stop sequences carry over to Messages: {messages:?}");
        let responses = &candidate("large-responses").unsupported;
        assert_eq!(responses.get(&format!("openai-responses {audio}")), Some(&3), "{responses:?}");
        assert_eq!(
            responses.get("openai-responses cannot carry this request: stop sequences (`stop`): the Responses API has none"),
            Some(&2),
            "{responses:?}"
        );
        // Skipped for its API, not for money: the cap was never reached.
        assert!(!report.spend_cap_reached && candidate("large-messages").skipped == 0);
        let text = evaltap_report::render_text(&report);
        assert!(text.contains("3 requests skipped: anthropic-messages cannot carry this request: audio input"), "{text}");
        let page = reqwest::get(format!("{}/experiments/apis", bench.url)).await.expect("page").text().await.expect("html");
        assert!(page.contains("3 requests skipped: openai-responses cannot carry this request: audio input"), "page");
    }
}
