//! The simulated upstream: an OpenAI-compatible server (`POST /v1/chat/completions`, streaming
//! or not, and `GET /v1/models`) with deterministic simulated models of known accuracy and
//! price, and a simulated judge that really checks answers.
//!
//! Tests, benchmarks and the demo point evaltap at it exactly as they would at a real gateway:
//! only the base URL differs.

mod apis;
pub mod batches;
mod chat;
pub mod judge;
pub mod models;
pub mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_64;

pub use judge::JudgeBehavior;
pub use models::{CATALOG, Role, SimModel};
pub use tasks::Task;

/// How the simulated upstream behaves.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Multiplies each model's simulated latency (0 answers at once).
    pub latency_scale: f64,
    /// Noise and bias of the judge model.
    pub judge: JudgeBehavior,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { latency_scale: 1.0, judge: JudgeBehavior::default() }
    }
}

/// A uniform number in [0, 1) from a seeded hash of (model, prompt, salt): the simulation's only
/// source of randomness, so every run answers the same way.
pub fn unit(model: &str, prompt: &str, salt: &str) -> f64 {
    let key = format!("{model}\u{0}{prompt}\u{0}{salt}");
    (xxh3_64(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Token count the simulation charges for a text: about 4/3 of a token per word.
pub fn count_tokens(text: &str) -> u64 {
    let words = text.split_whitespace().count() as u64;
    (words * 4).div_ceil(3)
}

/// Accuracies changed while the server runs (`POST /control/accuracy`), by model id: how drift
/// is produced on purpose.
#[derive(Debug, Clone, Default)]
pub struct AccuracyOverrides(Arc<RwLock<HashMap<String, f64>>>);

impl AccuracyOverrides {
    /// Sets `model`'s accuracy (clamped to [0, 1]).
    pub fn set(&self, model: &str, accuracy: f64) {
        let mut map = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(model.to_string(), accuracy.clamp(0.0, 1.0));
    }

    /// `model`'s accuracy now.
    pub fn get(&self, model: &SimModel) -> f64 {
        let map = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(model.id).copied().unwrap_or(model.accuracy)
    }
}

/// Every chat completion request received, counted by its body: the same request made twice
/// (a model call paid twice) shows as a count of 2. Also the bill: what each answered call
/// costs at the model's prices, charged when the answer is ready — before it is sent, so a
/// caller that dies waiting is billed all the same, as by a real provider.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<std::sync::Mutex<HashMap<u64, u64>>>, Arc<std::sync::Mutex<f64>>);

impl CallLog {
    pub(crate) fn record(&self, body: &[u8]) {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry(xxhash_rust::xxh3::xxh3_64(body)).or_insert(0) += 1;
    }

    pub(crate) fn bill(&self, model: &SimModel, prompt_tokens: u64, completion_tokens: u64) {
        let cost = (prompt_tokens as f64 * model.input_per_mtok
            + completion_tokens as f64 * model.output_per_mtok)
            / 1_000_000.0;
        *self.1.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += cost;
    }

    /// USD billed so far, over every model.
    pub fn billed_usd(&self) -> f64 {
        *self.1.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Requests received, in all.
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().sum()
    }

    /// Distinct requests received.
    pub fn distinct(&self) -> usize {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// How many times each request that came more than once came.
    pub fn repeats(&self) -> Vec<u64> {
        let map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.values().copied().filter(|count| *count > 1).collect()
    }
}

#[derive(Clone)]
pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    pub(crate) accuracy: AccuracyOverrides,
    pub(crate) calls: CallLog,
    pub(crate) batches: batches::Batches,
}

/// The router of the simulated upstream.
pub fn router(config: SimConfig, accuracy: AccuracyOverrides, calls: CallLog) -> Router {
    router_with_batches(config, accuracy, calls, batches::Batches::default())
}

/// The router, with the batches it keeps shared with the caller.
pub fn router_with_batches(
    config: SimConfig,
    accuracy: AccuracyOverrides,
    calls: CallLog,
    batches: batches::Batches,
) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(list_models))
        .route("/v1/messages", post(apis::anthropic_messages))
        .route("/v1/responses", post(apis::responses))
        .route("/control/accuracy", post(set_accuracy))
        .route("/control/calls", get(call_counts))
        .route("/v1/files", post(batches::upload_file))
        .route("/v1/files/{id}/content", get(batches::file_content))
        .route("/v1/batches", post(batches::create_openai_batch).get(batches::list_openai_batches))
        .route("/v1/batches/{id}", get(batches::get_openai_batch))
        .route("/v1/batches/{id}/cancel", post(batches::cancel_openai_batch))
        .route(
            "/v1/messages/batches",
            post(batches::create_anthropic_batch).get(batches::list_anthropic_batches),
        )
        .route("/v1/messages/batches/{id}", get(batches::get_anthropic_batch))
        .route("/v1/messages/batches/{id}/results", get(batches::anthropic_results))
        .route("/v1/messages/batches/{id}/cancel", post(batches::cancel_anthropic_batch))
        .route("/control/batches", post(batches::control).get(batches::batch_counts))
        .with_state(SimState { config, accuracy, calls, batches })
}

/// `GET /control/calls`: requests received, distinct, and the counts of repeated ones.
async fn call_counts(State(state): State<SimState>) -> Json<Value> {
    let calls = &state.calls;
    Json(json!({"total": calls.total(), "distinct": calls.distinct(), "repeats": calls.repeats(),
                "billed_usd": calls.billed_usd()}))
}

/// `POST /control/accuracy {"model", "accuracy"}`: the body is read as JSON whatever its
/// content type (a bare `curl -d` sends form encoding).
async fn set_accuracy(State(state): State<SimState>, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(StatusCode::BAD_REQUEST, "send JSON: {\"model\", \"accuracy\"}", "bad_control");
    };
    let (Some(model), Some(accuracy)) =
        (body.get("model").and_then(Value::as_str), body.get("accuracy").and_then(Value::as_f64))
    else {
        return openai_error(StatusCode::BAD_REQUEST, "send {\"model\", \"accuracy\"}", "bad_control");
    };
    if models::find(model).is_none() {
        return openai_error(
            StatusCode::NOT_FOUND,
            format!("model `{model}` does not exist"),
            "model_not_found",
        );
    }
    state.accuracy.set(model, accuracy);
    Json(json!({"model": model, "accuracy": accuracy.clamp(0.0, 1.0)})).into_response()
}

/// A running simulated upstream.
#[derive(Debug)]
pub struct SimServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Its changeable accuracies.
    pub accuracy: AccuracyOverrides,
    /// The requests it received.
    pub calls: CallLog,
    /// Its batches (OpenAI's and Anthropic's batch interfaces).
    pub batches: batches::Batches,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Base URL for OpenAI-compatible clients, ending in `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (port 0 picks a free port) and serves in the background until dropped.
pub async fn spawn(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    // Replies go out as headers then body; with Nagle on, the second write waits for the
    // peer's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let accuracy = AccuracyOverrides::default();
    let calls = CallLog::default();
    let batches = batches::Batches::default();
    let app = router_with_batches(config, accuracy.clone(), calls.clone(), batches.clone());
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).await;
        if let Err(err) = served {
            tracing::error!(%err, "simulated upstream stopped");
        }
    });
    Ok(SimServer { addr, accuracy, calls, batches, task })
}

pub(crate) fn openai_error(status: StatusCode, message: impl Into<String>, code: &str) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error", "code": code}});
    (status, Json(body)).into_response()
}

async fn list_models() -> Json<Value> {
    let data: Vec<Value> = CATALOG
        .iter()
        .map(|m| {
            json!({"id": m.id, "object": "model", "created": 1_700_000_000, "owned_by": "evaltap-sim",
                   "role": m.role, "accuracy": m.accuracy,
                   "pricing": {"input_per_mtok": m.input_per_mtok, "output_per_mtok": m.output_per_mtok}})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub(crate) fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{CITIES, RAMBLE, assistant_reply, judge_draw, tool_call, within_limit};

    #[test]
    fn assistants_hit_their_accuracy() {
        for model in CATALOG.iter().filter(|m| m.role == Role::Assistant) {
            let correct = (0..2000)
                .filter(|i| {
                    let task = Task::generate(11, *i);
                    task.check(&assistant_reply(model, model.accuracy, &task.prompt()))
                })
                .count() as f64
                / 2000.0;
            // 4σ of a binomial proportion at n = 2000 is under 0.045.
            assert!((correct - model.accuracy).abs() < 0.045, "{}: {correct}", model.id);
        }
    }

    #[test]
    fn sim_small_is_as_good_as_production_on_lookups_and_far_worse_on_computation() {
        let rate = |id: &str, family: tasks::Family| {
            let model = models::find(id).expect("in the catalog");
            let tasks: Vec<Task> =
                (0..4000).map(|i| Task::generate(11, i)).filter(|t| t.family() == family).collect();
            let right = tasks
                .iter()
                .filter(|t| t.check(&assistant_reply(model, model.accuracy, &t.prompt())))
                .count();
            right as f64 / tasks.len() as f64
        };
        let (small_lookup, large_lookup) =
            (rate("sim-small", tasks::Family::Lookup), rate("sim-large", tasks::Family::Lookup));
        let (small_compute, large_compute) =
            (rate("sim-small", tasks::Family::Compute), rate("sim-large", tasks::Family::Compute));
        // About 2,000 tasks per family: 4σ is under 0.045.
        assert!(
            (small_lookup - 0.92).abs() < 0.045 && (large_lookup - 0.92).abs() < 0.045,
            "{small_lookup} {large_lookup}"
        );
        assert!(
            (small_compute - 0.28).abs() < 0.045 && (large_compute - 0.92).abs() < 0.045,
            "{small_compute} {large_compute}"
        );
    }

    #[test]
    fn tool_requests_get_calls_right_with_the_models_accuracy() {
        let request = json!({"tools": [{"type": "function", "function": {"name": "get_weather"}}]});
        for model in CATALOG.iter().filter(|m| m.role == Role::Assistant) {
            let right = (0..2000)
                .filter(|i| {
                    let city = CITIES[i % CITIES.len()];
                    let prompt = format!("What is the weather in {city} today? (#{i})");
                    let (name, arguments) =
                        tool_call(model, model.accuracy, &request, &prompt).expect("a call");
                    name == "get_weather" && arguments == json!({"city": city})
                })
                .count() as f64
                / 2000.0;
            assert!((right - model.accuracy).abs() < 0.045, "{}: {right}", model.id);
        }
        // No tools offered, or no weather asked: no call.
        let model = models::find("sim-large").expect("model");
        assert!(tool_call(model, 1.0, &json!({}), "What is the weather in Rome?").is_none());
        assert!(tool_call(model, 1.0, &request, "What is 2 + 3?").is_none());
    }

    #[test]
    fn verbose_models_follow_a_json_output_instruction() {
        let prompt = "What is 2 + 3? Reply in JSON as {\"answer\": <number>}.";
        let large = models::find("sim-large").expect("model");
        let reply: serde_json::Value =
            serde_json::from_str(&assistant_reply(large, 1.0, prompt)).expect("JSON");
        assert!(reply["answer"].is_i64(), "{reply}");
        let small = models::find("sim-small").expect("model");
        assert!(
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&assistant_reply(
                small, 1.0, prompt
            ))
            .is_err()
        );
    }

    #[test]
    fn a_token_limit_cuts_the_answer_at_whole_words() {
        let long = format!("The answer is 4. {RAMBLE}");
        assert!(count_tokens(&long) > 70, "a rambling answer is long");
        let (cut, was_cut) = within_limit(long.clone(), Some(20));
        assert!(was_cut && count_tokens(&cut) <= 20 && count_tokens(&cut) >= 18, "{cut}");
        assert!(long.starts_with(&cut));
        assert_eq!(within_limit("short".into(), Some(20)), ("short".into(), false));
        assert_eq!(within_limit(long.clone(), None), (long, false));
    }

    #[test]
    fn the_judge_s_noise_is_fresh_per_call_and_reproducible_from_a_seed() {
        let judge = models::find("sim-judge").expect("judge");
        let noisy = judge::JudgeBehavior { noise: 0.3, position_bias: 0.0, unreadable_long: 0.0 };
        let prompt = "Rate the response on a scale from 1 to 10.\n### Question\nuser: What is 2 + 3? Reply with the number.\n### Response\nThe answer is 5.\n";
        let score = |request: &Value| judge::judge(&judge_draw(judge, request), prompt, noisy);
        // One answer, graded 2,000 times with different seeds: about 30% of the scores are noise
        // (a random score on 1–10 is 10 a tenth of the time), never a fixed function of it.
        let changed =
            (0..2000).filter(|seed| !score(&json!({"seed": seed})).contains("\"score\":10")).count();
        let expected = 2000.0 * 0.3 * 0.9;
        assert!((changed as f64 - expected).abs() < 4.0 * (expected * 0.73).sqrt(), "{changed}");
        assert_eq!(score(&json!({"seed": 7})), score(&json!({"seed": 7})), "a seed reproduces the call");
        // Unseeded calls draw afresh.
        let unseeded: std::collections::HashSet<String> = (0..200).map(|_| score(&json!({}))).collect();
        assert!(unseeded.len() > 1, "{unseeded:?}");
    }

    #[test]
    fn tokens_grow_with_text() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("one two three"), 4);
    }
}
