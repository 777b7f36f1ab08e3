//! `POST /v1/mirror/openrouter`: OpenRouter Broadcast's Webhook or OpenTelemetry Collector
//! destination. Both deliver OTLP/HTTP JSON, one trace per request, whose root span carries
//! `gen_ai.prompt` / `gen_ai.completion` as JSON strings; read with the OTLP adapter. The
//! "Test Connection" delivery carries no LLM span and gets an empty 202.

use super::otlp;
use crate::{Adapter, Decoded, IngestError};

/// OpenRouter Broadcast.
#[derive(Debug, Clone, Copy)]
pub struct OpenRouter;

impl Adapter for OpenRouter {
    fn name(&self) -> &'static str {
        "openrouter"
    }

    fn decode(&self, body: &[u8], headers: &http::HeaderMap) -> Result<Decoded, IngestError> {
        otlp::Otlp.decode(body, headers)
    }
}
