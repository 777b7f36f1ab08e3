//! Domain types shared by every stage of the evaltap pipeline.
//!
//! - [`Exchange`]: one captured request/response pair, as ingest produces it and the store keeps it.
//! - [`chat`]: reading OpenAI chat-completions bodies (message text, response text, usage).
//! - [`Price`]: per-million-token prices and the cost of a call.
//! - [`sampling`]: deterministic sampling and content hashing.
//! - [`config`]: the `evaltap.toml` file.

pub mod apis;
pub mod chat;
pub mod config;
pub mod exchange;
pub mod pricing;
pub mod recommend;
pub mod redact;
pub mod sampling;
pub mod words;

pub use config::{
    AlertsConfig, AuthConfig, CandidateConfig, Config, ConfigError, JudgeConfig, ModelApi, Role, SampleRule,
    SlackSink, SourceConfig, TokenConfig, WebhookSink, WorkerConfig,
};
pub use exchange::Exchange;
pub use pricing::{Price, Usage};
pub use recommend::RecommendConfig;
