//! What the result cache keeps of a replay and of a judgment, and the keys they are kept under:
//! everything that decides the result, hashed (SHA-256).

use evaltap_core::{CandidateConfig, Usage};
use evaltap_store::{JudgmentRecord, ReplayRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn key(parts: &Value) -> String {
    Sha256::digest(parts.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A replay's key: the candidate's endpoint, API and model, and the request exactly as sent
/// (with its parameter overrides and seed).
pub(crate) fn replay_key(candidate: &CandidateConfig, body: &Value) -> String {
    key(&json!(["replay", candidate.base_url, candidate.api, candidate.model, body]))
}

/// A judgment's key: the judge model and sampling, the rubric's text (SHA-256), the rendered
/// prompt, the position and the sample seed.
pub(crate) fn judgment_key(
    judge_model: &str,
    temperature: f64,
    samples: usize,
    rubric_sha256: Option<&str>,
    prompt: &str,
    position: &str,
    seed: u64,
) -> String {
    key(&json!(["judgment", judge_model, temperature, samples, rubric_sha256, prompt, position, seed]))
}

/// A paid replay, as reused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedReplay {
    response: Option<Value>,
    output_text: Option<String>,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    latency_ms: Option<f64>,
    finish_reason: Option<String>,
}

impl CachedReplay {
    pub(crate) fn of(record: &ReplayRecord) -> CachedReplay {
        CachedReplay {
            response: record.response.clone(),
            output_text: record.output_text.clone(),
            usage: record.usage,
            cost_usd: record.cost_usd,
            latency_ms: record.latency_ms,
            finish_reason: record.finish_reason.clone(),
        }
    }

    /// Fills `record` with the reused result: it costs nothing now; what it cost is kept.
    pub(crate) fn fill(self, record: &mut ReplayRecord) {
        record.response = self.response;
        record.output_text = self.output_text;
        record.usage = self.usage;
        record.latency_ms = self.latency_ms;
        record.finish_reason = self.finish_reason;
        record.cost_usd = Some(0.0);
        record.cached_cost_usd = Some(self.cost_usd.unwrap_or(0.0));
    }
}

/// A paid judgment, as reused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedJudgment {
    raw_score: Option<f64>,
    score: Option<f64>,
    reason: Option<String>,
    judge_model: Option<String>,
    raw_output: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_usd: Option<f64>,
    attempts: i64,
    score_samples: Option<Vec<f64>>,
}

impl CachedJudgment {
    pub(crate) fn of(record: &JudgmentRecord) -> CachedJudgment {
        CachedJudgment {
            raw_score: record.raw_score,
            score: record.score,
            reason: record.reason.clone(),
            judge_model: record.judge_model.clone(),
            raw_output: record.raw_output.clone(),
            input_tokens: record.input_tokens,
            output_tokens: record.output_tokens,
            cost_usd: record.cost_usd,
            attempts: record.attempts,
            score_samples: record.score_samples.clone(),
        }
    }

    /// Fills `record` with the reused judgment: it costs nothing now; what it cost is kept.
    pub(crate) fn fill(self, record: &mut JudgmentRecord) {
        record.raw_score = self.raw_score;
        record.score = self.score;
        record.reason = self.reason;
        record.judge_model = self.judge_model;
        record.raw_output = self.raw_output;
        record.input_tokens = self.input_tokens;
        record.output_tokens = self.output_tokens;
        record.attempts = self.attempts;
        record.score_samples = self.score_samples;
        record.cost_usd = Some(0.0);
        record.cached_cost_usd = Some(self.cost_usd.unwrap_or(0.0));
    }
}
