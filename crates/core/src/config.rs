//! `evaltap.toml`: where traffic comes from, which models to try, who judges.
//!
//! Secrets never live in this file: each key is named by the environment variable that holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Price;

mod alerts;
mod auth;
mod models;
mod worker;

pub use alerts::{AlertsConfig, SlackSink, WebhookSink};
pub use auth::{AuthConfig, Role, TokenConfig};
pub use models::{CandidateConfig, DEFAULT_BATCH_DISCOUNT, JUDGE_OUTPUT_TOKENS_BOUND, JudgeConfig, ModelApi};
pub use worker::WorkerConfig;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    // The source's text is not repeated here: error chains print it after this line.
    #[error("cannot read {path}")]
    Read {
        /// File that was read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration in {path}")]
    Parse {
        /// File that was parsed.
        path: PathBuf,
        /// Underlying error.
        source: toml::de::Error,
    },
    /// The file parsed but is inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Database URL; SQLite is the embedded default.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Address `evaltap serve` listens on.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Where people reach the dashboard (`https://evaltap.example.com`): the gate's pull-request
    /// comment links each row there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Folder of rubric files.
    #[serde(default = "default_rubrics_dir")]
    pub rubrics_dir: PathBuf,
    /// Folder of golden dataset files (`NAME.jsonl`).
    #[serde(default = "default_datasets_dir")]
    pub datasets_dir: PathBuf,
    /// Largest ingest body accepted, in bytes (larger gets 413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most values one ingest body may hold — items, fields and list elements together (JSON
    /// values, or OTLP protobuf messages); more gets 413 before anything is decoded.
    #[serde(default = "default_max_body_values")]
    pub max_body_values: usize,
    /// Ingest requests processed at once; more get 503 with `Retry-After`.
    #[serde(default = "default_max_concurrent_ingest")]
    pub max_concurrent_ingest: usize,
    /// Seconds a client may take to send a request's headers (and an idle kept-alive connection
    /// may wait for its next request) before it is disconnected.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Connections served at once; more are answered 503 and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest an ingest request may take to send its body, in seconds; a slower body gets 408
    /// (and so does an HMAC-signed delivery after a third of it).
    #[serde(default = "default_ingest_body_timeout_secs")]
    pub ingest_body_timeout_secs: u64,
    /// Sources that may send traffic to the mirror endpoint.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Candidate models to replay traffic against.
    #[serde(default)]
    pub candidates: Vec<CandidateConfig>,
    /// The judge model used by rubrics that do not name their own.
    pub judge: Option<JudgeConfig>,
    /// Known prices of production models by name, used when a gateway does not report cost.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// Where drift alerts go (besides the log and `GET /api/alerts`).
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Who may use the API and the dashboard.
    #[serde(default)]
    pub auth: AuthConfig,
    /// How workers hold work and notice each other's deaths.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Segments and recommendation limits (`evaltap recommend`).
    #[serde(default)]
    pub recommend: crate::RecommendConfig,
    /// How long a paid replay or judgment stays reusable by later experiments and golden
    /// runs, in hours (default 168: a week). Drift runs and guards never read it.
    #[serde(default = "default_cache_max_age_hours")]
    pub cache_max_age_hours: u64,
}

fn default_cache_max_age_hours() -> u64 {
    168
}

/// A traffic source: one gateway or application sending to the mirror endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name shown in reports and stored with each exchange.
    pub name: String,
    /// Environment variable that holds this source's bearer key.
    pub key_env: Option<String>,
    /// The bearer key itself; for local setups only, prefer `key_env` or `key_sha256`.
    pub key: Option<String>,
    /// Hex SHA-256 of the bearer key, so the key itself need not be stored anywhere
    /// (`evaltap sources add` prints it).
    pub key_sha256: Option<String>,
    /// The gateway format this source sends (`native`, `litellm`, `otlp`…); informational,
    /// used by `evaltap sources add` and shown by `evaltap sources`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Fraction of exchanges kept, decided by a stable hash of each exchange.
    #[serde(default = "default_rate")]
    pub sample_rate: f64,
    /// Most exchanges kept per minute; the rest count as sampled out.
    pub max_per_minute: Option<u64>,
    /// Sampling rules by model or route; the first that matches sets the rate.
    #[serde(default)]
    pub rules: Vec<SampleRule>,
    /// Environment variable holding the secret of signed deliveries (Helicone's
    /// `Helicone-Signature`, or `X-Evaltap-Signature: sha256=<hex>`): unsigned or badly signed
    /// bodies are refused.
    pub hmac_secret_env: Option<String>,
    /// Whether the built-in redaction (emails, phone numbers, cards, tokens, API keys) runs.
    #[serde(default = "default_true")]
    pub redact: bool,
    /// Extra regexes redacted before storage.
    #[serde(default)]
    pub redact_patterns: Vec<String>,
    /// Upstream base URL (up to `/v1`) for the tee proxy `/proxy/{name}/v1/chat/completions`.
    pub upstream: Option<String>,
}

/// A sampling rule: when every given field matches, `sample_rate` applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRule {
    /// Model the exchange was served by (or requested).
    pub model: Option<String>,
    /// Value of the exchange's `route` tag.
    pub route: Option<String>,
    /// Fraction kept.
    pub sample_rate: f64,
}

impl SampleRule {
    /// Whether the rule applies to an exchange with this model and route.
    pub fn matches(&self, model: Option<&str>, route: Option<&str>) -> bool {
        self.model.as_deref().is_none_or(|m| Some(m) == model)
            && self.route.as_deref().is_none_or(|r| Some(r) == route)
    }
}

impl SourceConfig {
    /// A source authenticating with `key`, keeping everything, with the defaults elsewhere.
    pub fn with_key(name: &str, key: &str) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            key_env: None,
            key: Some(key.into()),
            key_sha256: None,
            format: default_format(),
            sample_rate: 1.0,
            max_per_minute: None,
            rules: Vec::new(),
            hmac_secret_env: None,
            redact: true,
            redact_patterns: Vec::new(),
            upstream: None,
        }
    }

    /// The bearer key this source authenticates with, if one is configured and set.
    pub fn resolve_key(&self) -> Option<String> {
        match (&self.key, &self.key_env) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(var)) => std::env::var(var).ok().filter(|k| !k.is_empty()),
            (None, None) => None,
        }
    }

    /// The sampling rate for an exchange with this model and route.
    pub fn rate_for(&self, model: Option<&str>, route: Option<&str>) -> f64 {
        self.rules.iter().find(|r| r.matches(model, route)).map_or(self.sample_rate, |r| r.sample_rate)
    }
}

fn default_judge_samples() -> usize {
    1
}

fn default_database_url() -> String {
    "sqlite://evaltap.db".into()
}
fn default_bind() -> String {
    "127.0.0.1:7077".into()
}
fn default_rubrics_dir() -> PathBuf {
    "rubrics".into()
}
fn default_datasets_dir() -> PathBuf {
    "datasets".into()
}
fn default_max_body_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_body_values() -> usize {
    500_000
}
fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_max_connections() -> usize {
    // Below the common default of 1,024 file descriptors, leaving room for the database and
    // outgoing model calls.
    768
}
fn default_ingest_body_timeout_secs() -> u64 {
    30
}
fn default_max_concurrent_ingest() -> usize {
    64
}
fn default_format() -> String {
    "native".into()
}
fn default_true() -> bool {
    true
}
fn default_rate() -> f64 {
    1.0
}
fn default_concurrency() -> usize {
    8
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: default_database_url(),
            bind: default_bind(),
            public_url: None,
            rubrics_dir: default_rubrics_dir(),
            datasets_dir: default_datasets_dir(),
            max_body_bytes: default_max_body_bytes(),
            max_body_values: default_max_body_values(),
            max_concurrent_ingest: default_max_concurrent_ingest(),
            ingest_body_timeout_secs: default_ingest_body_timeout_secs(),
            max_connections: default_max_connections(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            sources: Vec::new(),
            candidates: Vec::new(),
            judge: None,
            prices: BTreeMap::new(),
            alerts: AlertsConfig::default(),
            auth: AuthConfig::default(),
            worker: WorkerConfig::default(),
            recommend: crate::RecommendConfig::default(),
            cache_max_age_hours: default_cache_max_age_hours(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the schema cannot: unique names, rates in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for source in &self.sources {
            if !seen.insert(("source", source.name.as_str())) {
                return Err(ConfigError::Invalid(format!("source `{}` is defined twice", source.name)));
            }
            if source.rules.iter().any(|r| !(0.0..=1.0).contains(&r.sample_rate)) {
                return Err(ConfigError::Invalid(format!(
                    "source `{}`: every rule's sample_rate must be within [0, 1]",
                    source.name
                )));
            }
            if let Err(err) = crate::redact::Redactor::new(source.redact, &source.redact_patterns) {
                return Err(ConfigError::Invalid(format!("source `{}`: {err}", source.name)));
            }
            if !(0.0..=1.0).contains(&source.sample_rate) {
                return Err(ConfigError::Invalid(format!(
                    "source `{}`: sample_rate must be within [0, 1], got {}",
                    source.name, source.sample_rate
                )));
            }
        }
        for candidate in &self.candidates {
            if !seen.insert(("candidate", candidate.name.as_str())) {
                return Err(ConfigError::Invalid(format!("candidate `{}` is defined twice", candidate.name)));
            }
            if candidate.name == "baseline" {
                return Err(ConfigError::Invalid(
                    "`baseline` is reserved for the production responses; rename the candidate".into(),
                ));
            }
            if candidate.max_concurrency == 0 {
                return Err(ConfigError::Invalid(format!(
                    "candidate `{}`: max_concurrency must be at least 1",
                    candidate.name
                )));
            }
            crate::recommend::validate_gateway_models(&candidate.name, &candidate.gateway_model)?;
        }
        self.recommend.validate()?;
        Ok(())
    }

    /// The candidate with this name.
    pub fn candidate(&self, name: &str) -> Option<&CandidateConfig> {
        self.candidates.iter().find(|c| c.name == name)
    }

    /// The price of a production model, from `[prices]`, a candidate serving that model, or
    /// the shipped default price table.
    pub fn price_of(&self, model: &str) -> Option<Price> {
        self.prices
            .get(model)
            .copied()
            .or_else(|| self.candidates.iter().find(|c| c.model == model).map(|c| c.price))
            .or_else(|| crate::pricing::PriceTable::shipped().price_of(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_with_a_priced_judge() {
        let text = include_str!("../../../evaltap.example.toml");
        let config = Config::parse(text, Path::new("evaltap.example.toml")).expect("the example is valid");
        let judge = config.judge.expect("a judge");
        assert!(judge.price().input_per_mtok > 0.0 && judge.samples == 1);
    }

    #[test]
    fn the_example_s_commented_anthropic_candidate_parses() {
        let text = include_str!("../../../evaltap.example.toml");
        // Commented-out settings (`# key = value`, `# [[table]]`) switched on; prose stays out.
        let setting = |l: &str| {
            l.starts_with('[')
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_alphanumeric() || c == '_'))
        };
        let uncommented: String = text
            .lines()
            .map(|line| line.strip_prefix("# ").filter(|l| setting(l)).unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&uncommented, Path::new("evaltap.example.toml")).expect("valid");
        let haiku = config.candidates.iter().find(|c| c.name == "haiku").expect("the commented candidate");
        assert_eq!(haiku.api, ModelApi::AnthropicMessages);
        assert_eq!(haiku.drop_params, ["top_p"]);
        assert_eq!(config.candidates[0].api, ModelApi::OpenaiChat, "the default");
        assert_eq!(config.candidates[0].gateway_model["portkey"], "gpt-4.1-mini");
        assert_eq!(config.recommend, crate::RecommendConfig::default(), "the example shows the defaults");
    }

    #[test]
    fn parses_a_full_file() {
        let text = r#"
            database_url = "sqlite://x.db"
            [[sources]]
            name = "prod"
            key_env = "PROD_KEY"
            sample_rate = 0.5
            [[candidates]]
            name = "mini"
            base_url = "http://localhost:1/v1"
            model = "m-mini"
            input_per_mtok = 0.1
            output_per_mtok = 0.4
            params = { temperature = 0.0 }
            [judge]
            base_url = "http://localhost:1/v1"
            model = "judge"
            [prices]
            "m-large" = { input_per_mtok = 2.5, output_per_mtok = 10.0 }
        "#;
        let config = Config::parse(text, Path::new("evaltap.toml")).expect("valid");
        assert_eq!(config.sources[0].sample_rate, 0.5);
        assert_eq!(config.candidate("mini").map(|c| c.price.output_per_mtok), Some(0.4));
        assert_eq!(config.price_of("m-large").map(|p| p.input_per_mtok), Some(2.5));
        assert_eq!(config.price_of("m-mini").map(|p| p.input_per_mtok), Some(0.1));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_rates() {
        // The TOML parser's message is the error's source (printed once by error chains).
        let err = Config::parse("datbase_url = 'x'", Path::new("e.toml")).expect_err("typo");
        let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
        assert!(err.to_string().contains("e.toml") && cause.contains("datbase_url"), "{err}: {cause}");
        let err =
            Config::parse("[[sources]]\nname='a'\nsample_rate=2.0", Path::new("e.toml")).expect_err("rate");
        assert!(err.to_string().contains("sample_rate"), "{err}");
    }
}
