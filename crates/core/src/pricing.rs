//! Token usage and what it costs.

use serde::{Deserialize, Serialize};

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub input_tokens: u64,
    /// Completion (output) tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Reads the `usage` object of an OpenAI chat-completions response.
    pub fn from_openai(response: &serde_json::Value) -> Option<Usage> {
        let usage = response.get("usage")?;
        Some(Usage {
            input_tokens: usage.get("prompt_tokens")?.as_u64()?,
            output_tokens: usage.get("completion_tokens").and_then(|v| v.as_u64()).unwrap_or(0),
        })
    }
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// Cost in USD of a call with this usage.
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_mtok + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_per_million_tokens() {
        let price = Price { input_per_mtok: 2.0, output_per_mtok: 8.0 };
        let usage = Usage { input_tokens: 500_000, output_tokens: 250_000 };
        assert!((price.cost(usage) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn usage_reads_openai_shape() {
        let body = serde_json::json!({"usage": {"prompt_tokens": 12, "completion_tokens": 5}});
        assert_eq!(Usage::from_openai(&body), Some(Usage { input_tokens: 12, output_tokens: 5 }));
        assert_eq!(Usage::from_openai(&serde_json::json!({})), None);
    }
}
