//! `[recommend]` in `evaltap.toml`: how an experiment's results split into segments of traffic
//! and when a switch of model is recommended for one.

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The export formats a recommendation can be written in, as `gateway_model` keys name them.
pub const GATEWAY_FORMATS: [&str; 4] = ["litellm", "portkey", "kong", "openrouter"];

/// How segments are formed and what a recommended candidate must meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendConfig {
    /// What splits traffic into segments, combined: `source`, `model` (the production model)
    /// or a tag key (`tag:source` names a tag that shadows a reserved word). Default `["route"]`.
    #[serde(default = "default_segment_by")]
    pub segment_by: Vec<String>,
    /// Fewest scored pairs a segment needs before its verdicts count (default 30); a smaller
    /// segment is `not enough data` with the pairs still needed.
    #[serde(default = "default_min_segment_n")]
    pub min_segment_n: usize,
    /// Highest replay error rate a recommended candidate may have (default 0.02).
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Largest increase of the 95th percentile latency over production a recommended candidate
    /// may have, in percent (default 50).
    #[serde(default = "default_max_latency_increase")]
    pub max_latency_p95_increase_pct: f64,
}

fn default_segment_by() -> Vec<String> {
    vec!["route".into()]
}
fn default_min_segment_n() -> usize {
    30
}
fn default_max_error_rate() -> f64 {
    0.02
}
fn default_max_latency_increase() -> f64 {
    50.0
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig {
            segment_by: default_segment_by(),
            min_segment_n: default_min_segment_n(),
            max_error_rate: default_max_error_rate(),
            max_latency_p95_increase_pct: default_max_latency_increase(),
        }
    }
}

impl RecommendConfig {
    /// Rejects settings no recommendation can be made under.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("[recommend]: {message}")));
        if self.segment_by.is_empty() || self.segment_by.iter().any(|k| k.trim().is_empty()) {
            return invalid(
                "segment_by needs at least one non-empty key (`route`, `source`, `model`…)".into(),
            );
        }
        if self.min_segment_n < 2 {
            return invalid(format!("min_segment_n must be at least 2, got {}", self.min_segment_n));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return invalid(format!("max_error_rate must be within [0, 1], got {}", self.max_error_rate));
        }
        if !self.max_latency_p95_increase_pct.is_finite() || self.max_latency_p95_increase_pct < 0.0 {
            return invalid(format!(
                "max_latency_p95_increase_pct must be a percentage ≥ 0, got {}",
                self.max_latency_p95_increase_pct
            ));
        }
        Ok(())
    }
}

/// Checks a candidate's `gateway_model` table: only known formats, no empty names.
pub fn validate_gateway_models(
    candidate: &str,
    models: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (format, model) in models {
        if !GATEWAY_FORMATS.contains(&format.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "candidate `{candidate}`: gateway_model has `{format}`; the formats are {}",
                GATEWAY_FORMATS.join(", ")
            )));
        }
        if model.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "candidate `{candidate}`: gateway_model.{format} is empty"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_route_thirty_two_percent_and_fifty_percent() {
        let config = RecommendConfig::default();
        assert_eq!(config.segment_by, ["route"]);
        assert_eq!(
            (config.min_segment_n, config.max_error_rate, config.max_latency_p95_increase_pct),
            (30, 0.02, 50.0)
        );
        assert!(config.validate().is_ok());
        assert!(RecommendConfig { segment_by: vec![], ..config.clone() }.validate().is_err());
        assert!(RecommendConfig { max_error_rate: 1.5, ..config.clone() }.validate().is_err());
        assert!(RecommendConfig { max_latency_p95_increase_pct: -1.0, ..config }.validate().is_err());
    }

    #[test]
    fn gateway_models_name_known_formats() {
        let mut models = std::collections::BTreeMap::new();
        models.insert("litellm".to_string(), "openai/gpt-4o-mini".to_string());
        assert!(validate_gateway_models("small", &models).is_ok());
        models.insert("nginx".to_string(), "x".to_string());
        let err = validate_gateway_models("small", &models).expect_err("unknown format").to_string();
        assert!(err.contains("litellm, portkey, kong, openrouter"), "{err}");
    }
}
