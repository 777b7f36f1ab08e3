//! Token usage and what it costs.

use serde::{Deserialize, Serialize};

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Prompt (input) tokens, the cached ones included.
    pub input_tokens: u64,
    /// Completion (output) tokens, reasoning tokens included (they are billed as output).
    pub output_tokens: u64,
    /// Of the input tokens, those read from the provider's prompt cache (billed at the cached
    /// price where the model has one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Of the output tokens, those a reasoning model spent thinking (billed as output; counted
    /// so a report can say where the tokens went).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Reads the `usage` object of an OpenAI chat-completions response.
    pub fn from_openai(response: &serde_json::Value) -> Option<Usage> {
        let usage = response.get("usage")?;
        let count = |pointer: &str| usage.pointer(pointer).and_then(serde_json::Value::as_u64).unwrap_or(0);
        Some(Usage {
            input_tokens: usage.get("prompt_tokens")?.as_u64()?,
            output_tokens: count("/completion_tokens"),
            cached_input_tokens: count("/prompt_tokens_details/cached_tokens"),
            reasoning_tokens: count("/completion_tokens_details/reasoning_tokens"),
        })
    }
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens (reasoning tokens included).
    pub output_per_mtok: f64,
    /// USD per million input tokens read from the prompt cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
}

impl Price {
    /// Cost in USD of a call with this usage: uncached input at the input price, cached input at
    /// the cached price, output (reasoning included) at the output price.
    pub fn cost(&self, usage: Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        (uncached as f64 * self.input_per_mtok
            + cached as f64 * self.cached_input_per_mtok.unwrap_or(self.input_per_mtok)
            + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// The default price table shipped with evaltap (`crates/core/data/prices.toml`): dated list
/// prices of common models, for production calls logged without a cost.
#[derive(Debug, Clone, Deserialize)]
pub struct PriceTable {
    /// The date the prices were read from the providers' pages.
    pub as_of: String,
    /// Prices by model name.
    pub models: std::collections::BTreeMap<String, Price>,
}

static DEFAULT_TABLE: std::sync::LazyLock<PriceTable> = std::sync::LazyLock::new(|| {
    // The file is part of the source tree; its test proves it parses.
    toml::from_str(include_str!("../data/prices.toml"))
        .unwrap_or_else(|_| PriceTable { as_of: String::new(), models: Default::default() })
});

impl PriceTable {
    /// The table shipped with this build.
    pub fn shipped() -> &'static PriceTable {
        &DEFAULT_TABLE
    }

    /// The price of `model` as a gateway logged it: by its name, then without a provider
    /// prefix (`openai/gpt-4o`), then without a date suffix (`gpt-4o-2024-08-06`,
    /// `claude-sonnet-4-5-20250929`); Anthropic's dotted versions (`claude-sonnet-4.5`) as
    /// dashed.
    pub fn price_of(&self, model: &str) -> Option<Price> {
        let unprefixed = model.rsplit('/').next().unwrap_or(model);
        let dashed = unprefixed
            .replace("claude-sonnet-4.5", "claude-sonnet-4-5")
            .replace("claude-haiku-4.5", "claude-haiku-4-5")
            .replace("claude-opus-4.1", "claude-opus-4-1");
        let undated = strip_date(&dashed);
        [model, unprefixed, dashed.as_str(), undated].iter().find_map(|name| self.models.get(*name).copied())
    }
}

/// `gpt-4o-2024-08-06` → `gpt-4o`, `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`.
fn strip_date(model: &str) -> &str {
    let bytes = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = bytes.len();
    if n > 11
        && bytes[n - 11] == b'-'
        && bytes[n - 6] == b'-'
        && bytes[n - 3] == b'-'
        && digits(&bytes[n - 10..n - 6])
        && digits(&bytes[n - 5..n - 3])
        && digits(&bytes[n - 2..])
    {
        return &model[..n - 11];
    }
    if n > 9 && bytes[n - 9] == b'-' && digits(&bytes[n - 8..]) {
        return &model[..n - 9];
    }
    model
}

/// Tokens an image in a prompt counts for at most: providers charge an image by its pixels,
/// capped by the size they scale it to (about 1,600 tokens at Anthropic, 1,105 at OpenAI's high
/// detail per 512-pixel tile set), never by the bytes of its encoding.
pub const IMAGE_TOKENS_BOUND: u64 = 2_000;

/// The most input tokens a chat request can be charged for, whatever the model's tokenizer:
/// its JSON bytes (a token covers at least one byte, and the JSON's own punctuation more than
/// pays for the per-message overhead), with each image counted at [`IMAGE_TOKENS_BOUND`]
/// instead of its encoded bytes or URL.
pub fn input_tokens_bound(request: &serde_json::Value) -> u64 {
    fn walk(value: &serde_json::Value, images: &mut u64, image_bytes: &mut u64) {
        match value {
            serde_json::Value::Object(map) => {
                let kind = map.get("type").and_then(serde_json::Value::as_str);
                if matches!(kind, Some("image_url" | "input_image" | "image")) {
                    *images += 1;
                    *image_bytes += serde_json::to_string(value).map_or(0, |s| s.len() as u64);
                    return;
                }
                map.values().for_each(|v| walk(v, images, image_bytes));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, images, image_bytes)),
            _ => {}
        }
    }
    let (mut images, mut image_bytes) = (0, 0);
    walk(request, &mut images, &mut image_bytes);
    let bytes = serde_json::to_string(request).map_or(0, |s| s.len() as u64);
    bytes.saturating_sub(image_bytes) + images * IMAGE_TOKENS_BOUND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_price_table_parses_and_finds_models_as_gateways_name_them() {
        let table = PriceTable::shipped();
        assert_eq!(table.as_of, "2025-10-01");
        assert!(table.models.len() >= 15, "{}", table.models.len());
        let gpt4o = table.price_of("gpt-4o").expect("gpt-4o");
        assert_eq!(
            (gpt4o.input_per_mtok, gpt4o.output_per_mtok, gpt4o.cached_input_per_mtok),
            (2.5, 10.0, Some(1.25))
        );
        for name in ["openai/gpt-4o", "gpt-4o-2024-08-06", "openrouter/openai/gpt-4o"] {
            assert_eq!(table.price_of(name), Some(gpt4o), "{name}");
        }
        let sonnet = table.price_of("claude-sonnet-4-5").expect("sonnet");
        for name in ["anthropic/claude-sonnet-4.5", "claude-sonnet-4-5-20250929"] {
            assert_eq!(table.price_of(name), Some(sonnet), "{name}");
        }
        assert_eq!(
            table.price_of("gpt-4o-mini"),
            table.models.get("gpt-4o-mini").copied(),
            "not gpt-4o's price"
        );
        assert_eq!(table.price_of("my-finetune"), None);
    }

    #[test]
    fn the_input_bound_counts_bytes_and_images_by_their_cap() {
        let text = serde_json::json!({"messages": [{"role": "user", "content": "What is 2 + 2?"}]});
        let bytes = serde_json::to_string(&text).map(|s| s.len() as u64).unwrap_or(0);
        assert_eq!(input_tokens_bound(&text), bytes);
        let payload = "A".repeat(400_000);
        let image = serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{payload}")}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
        let bound = input_tokens_bound(&image);
        assert!((2 * IMAGE_TOKENS_BOUND..2 * IMAGE_TOKENS_BOUND + 200).contains(&bound), "{bound}");
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let price = Price { input_per_mtok: 2.0, output_per_mtok: 8.0, ..Default::default() };
        let usage = Usage { input_tokens: 500_000, output_tokens: 250_000, ..Default::default() };
        assert!((price.cost(usage) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn cached_input_and_reasoning_tokens_are_priced_as_billed() {
        // 10,000 prompt tokens of which 8,000 cached; 3,000 completion tokens of which 2,500
        // reasoning. At $2 / $0.50 cached / $8 per million: 2,000 × 2 + 8,000 × 0.5 + 3,000 × 8
        // = 4,000 + 4,000 + 24,000 micro-dollars = $0.032.
        let body = serde_json::json!({"usage": {"prompt_tokens": 10_000, "completion_tokens": 3_000,
            "prompt_tokens_details": {"cached_tokens": 8_000}, "completion_tokens_details": {"reasoning_tokens": 2_500}}});
        let usage = Usage::from_openai(&body).expect("usage");
        assert_eq!((usage.cached_input_tokens, usage.reasoning_tokens), (8_000, 2_500));
        let price = Price { input_per_mtok: 2.0, output_per_mtok: 8.0, cached_input_per_mtok: Some(0.5) };
        assert!((price.cost(usage) - 0.032).abs() < 1e-12, "{}", price.cost(usage));
        // Without a cached price, cached tokens cost what input costs: 10,000 × 2 + 3,000 × 8.
        let plain = Price { cached_input_per_mtok: None, ..price };
        assert!((plain.cost(usage) - 0.044).abs() < 1e-12, "{}", plain.cost(usage));
    }

    #[test]
    fn usage_reads_openai_shape() {
        let body = serde_json::json!({"usage": {"prompt_tokens": 12, "completion_tokens": 5}});
        assert_eq!(
            Usage::from_openai(&body),
            Some(Usage { input_tokens: 12, output_tokens: 5, ..Default::default() })
        );
        assert_eq!(Usage::from_openai(&serde_json::json!({})), None);
    }
}
