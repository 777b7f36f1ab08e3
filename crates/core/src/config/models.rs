//! The models evaltap calls: candidates and the judge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{default_concurrency, default_judge_samples};
use crate::Price;

/// An API models are called over: a candidate's (`api` in `evaltap.toml`), or the one a
/// captured call was made with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelApi {
    /// OpenAI Chat Completions, `POST {base_url}/chat/completions` (what gateways speak).
    #[default]
    OpenaiChat,
    /// OpenAI Responses, `POST {base_url}/responses`.
    OpenaiResponses,
    /// Anthropic Messages, `POST {base_url}/messages`.
    AnthropicMessages,
}

impl ModelApi {
    /// The name used in `evaltap.toml` and in reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelApi::OpenaiChat => "openai-chat",
            ModelApi::OpenaiResponses => "openai-responses",
            ModelApi::AnthropicMessages => "anthropic-messages",
        }
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A model endpoint to replay traffic against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateConfig {
    /// Name used on the command line and in reports.
    pub name: String,
    /// Base URL of the OpenAI-compatible API, up to and including `/v1`.
    pub base_url: String,
    /// Model name sent in each request.
    pub model: String,
    /// Environment variable that holds the API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    /// Price of this model.
    #[serde(flatten)]
    pub price: Price,
    /// Request fields overridden on every replay (e.g. `temperature`).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The API the candidate is called over (`openai-chat` unless set); captured chat traffic
    /// is translated to it, and a request it cannot carry is skipped with the reason.
    #[serde(default, skip_serializing_if = "is_default")]
    pub api: ModelApi,
    /// Request fields the model refuses, removed from every replay (e.g. `["temperature"]`
    /// for reasoning models).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_params: Vec<String>,
    /// Calls in flight at once against this endpoint.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Longest one attempt may take, in seconds (default 60).
    #[serde(default)]
    pub attempt_timeout_secs: Option<u64>,
    /// Longest a call may take with its retries, in seconds (default 180).
    #[serde(default)]
    pub deadline_secs: Option<u64>,
    /// Whether replays go through the provider's batch interface (OpenAI `/v1/files` +
    /// `/v1/batches`, or Anthropic Message Batches for `api = "anthropic-messages"`): parked,
    /// grouped into batch files, answered within the provider's completion window, priced at
    /// `batch_discount`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    /// The share taken off the price of batched calls (0.5 unless set: OpenAI's and
    /// Anthropic's batch discount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount: Option<f64>,
    /// The model's name in each gateway's configuration, per export format (`litellm`,
    /// `portkey`, `kong`, `openrouter`), for `evaltap recommend`; unmapped formats use `model`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_model: BTreeMap<String, String>,
}

/// The judge model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// Base URL of the OpenAI-compatible API, up to and including `/v1`.
    pub base_url: String,
    /// Judge model name.
    pub model: String,
    /// Environment variable that holds the API key.
    pub api_key_env: Option<String>,
    /// Calls in flight at once against the judge.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Longest one attempt may take, in seconds (default 60).
    #[serde(default)]
    pub attempt_timeout_secs: Option<u64>,
    /// Longest a call may take with its retries, in seconds (default 180).
    #[serde(default)]
    pub deadline_secs: Option<u64>,
    /// USD per million judge prompt tokens (judge calls count against an experiment's cap).
    #[serde(default)]
    pub input_per_mtok: f64,
    /// USD per million judge completion tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
    /// Judge calls averaged per item and rubric (K). Every call carries its own `seed`, so at a
    /// `temperature` above 0 the K calls are independent samples of the judge.
    #[serde(default = "default_judge_samples")]
    pub samples: usize,
    /// Sampling temperature of judge calls (0 unless set).
    #[serde(default)]
    pub temperature: f64,
    /// The most output tokens a judge answer may run to in an experiment with a spend cap
    /// (sent as `max_tokens`, so no judge call can cost more than it reserved); 512 unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Whether the judge model takes images: the conversation's images (at most 8) are then
    /// sent with the prompt as image parts, besides the placeholders the prompt shows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub images: bool,
    /// Whether judge calls go through the provider's batch interface (OpenAI `/v1/files` +
    /// `/v1/batches`), priced at `batch_discount`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    /// The share taken off the judge's price for batched calls (0.5 unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount: Option<f64>,
}

/// Judge answers are a score and a sentence or two of reason: this leaves room for far more.
pub const JUDGE_OUTPUT_TOKENS_BOUND: u64 = 512;

impl JudgeConfig {
    /// The output-token limit judge calls carry under a spend cap.
    pub fn output_bound(&self) -> u64 {
        self.max_output_tokens.unwrap_or(JUDGE_OUTPUT_TOKENS_BOUND).max(1)
    }

    /// The judge's price.
    pub fn price(&self) -> Price {
        Price {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            ..Default::default()
        }
    }

    /// What a judge call costs of its list price: `1 - batch_discount` when batched, else 1.
    pub fn price_factor(&self) -> f64 {
        price_factor(self.batch, self.batch_discount)
    }
}

impl CandidateConfig {
    /// What a replay costs of its list price: `1 - batch_discount` when batched, else 1.
    pub fn price_factor(&self) -> f64 {
        price_factor(self.batch, self.batch_discount)
    }
}

/// The batch discount of OpenAI's and Anthropic's batch interfaces.
pub const DEFAULT_BATCH_DISCOUNT: f64 = 0.5;

fn price_factor(batch: bool, discount: Option<f64>) -> f64 {
    if batch { 1.0 - discount.unwrap_or(DEFAULT_BATCH_DISCOUNT).clamp(0.0, 1.0) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_calls_cost_the_declared_share_of_the_list_price() {
        let candidate: CandidateConfig = toml::from_str(
            "name = \"c\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\nbatch = true\n",
        )
        .expect("candidate");
        assert_eq!(candidate.price_factor(), 0.5, "OpenAI's and Anthropic's discount unless set");
        let candidate: CandidateConfig = toml::from_str(
            "name = \"c\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\nbatch = true\nbatch_discount = 0.25\n",
        )
        .expect("candidate");
        assert_eq!(candidate.price_factor(), 0.75);
        let judge: JudgeConfig =
            toml::from_str("base_url = \"http://x/v1\"\nmodel = \"j\"\nbatch_discount = 0.5\n")
                .expect("judge");
        assert_eq!(judge.price_factor(), 1.0, "a discount applies only in batch mode");
        assert_eq!(price_factor(true, Some(3.0)), 0.0, "a discount is at most the whole price");
    }
}
