//! What traffic cost and what it would have cost: spend per source and model scaled up from the
//! sample, monthly projections, and the "you spent X on M; C would have cost Y" sentence from
//! finished experiments.

use std::collections::BTreeMap;

use evaltap_core::{Price, Usage};
use evaltap_store::TrafficRow;
use serde::{Deserialize, Serialize};

use crate::Report;

/// Spend of one source and model over a window, scaled from the stored sample to all traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpendRow {
    /// Source (gateway).
    pub source: String,
    /// Model (`unknown` when the gateway did not say).
    pub model: String,
    /// Exchanges stored.
    pub stored_requests: u64,
    /// The source's sample rate: each stored exchange stands for 1 / rate requests.
    pub sample_rate: f64,
    /// Requests the stored ones stand for.
    pub estimated_requests: f64,
    /// Cost of the stored exchanges: the gateway's cost field, else configured prices × tokens.
    pub stored_cost_usd: f64,
    /// Stored exchanges with no cost at all (no cost field and no configured price).
    pub unpriced_requests: u64,
    /// The spend the stored cost stands for: stored cost / sample rate.
    pub estimated_spend_usd: f64,
}

/// Spend rows from stored traffic, scaled by each source's sample rate (`sample_rates`;
/// sources no longer configured count as unsampled), pricing exchanges without a cost field
/// from `prices` when the model has one.
pub fn spend_rows(
    traffic: &[TrafficRow],
    sample_rates: &BTreeMap<String, f64>,
    prices: &BTreeMap<String, Price>,
) -> Vec<SpendRow> {
    traffic
        .iter()
        .map(|row| {
            let model = row.model.clone().unwrap_or_else(|| "unknown".into());
            let rate =
                sample_rates.get(&row.source).copied().filter(|r| *r > 0.0 && *r <= 1.0).unwrap_or(1.0);
            let unpriced = row.requests - row.priced;
            let price = prices
                .get(&model)
                .copied()
                .or_else(|| evaltap_core::pricing::PriceTable::shipped().price_of(&model));
            let (from_prices, unpriced_requests) = match price {
                Some(price) if unpriced > 0 => (
                    price.cost(Usage {
                        input_tokens: row.unpriced_input_tokens,
                        output_tokens: row.unpriced_output_tokens,
                        ..Default::default()
                    }),
                    0,
                ),
                _ => (0.0, unpriced),
            };
            let stored_cost = row.cost_usd + from_prices;
            SpendRow {
                source: row.source.clone(),
                model,
                stored_requests: row.requests,
                sample_rate: rate,
                estimated_requests: row.requests as f64 / rate,
                stored_cost_usd: stored_cost,
                unpriced_requests,
                estimated_spend_usd: stored_cost / rate,
            }
        })
        .collect()
}

/// "You spent $X on M; C would have cost $Y (−Z%) with quality Δ [interval] on your traffic."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhatIf {
    /// The production model.
    pub model: String,
    /// Estimated spend on it over the window (all sources, scaled).
    pub spent_usd: f64,
    /// The finished experiment the comparison comes from.
    pub experiment: String,
    /// Candidate name.
    pub candidate: String,
    /// Candidate model.
    pub candidate_model: String,
    /// What the same requests would have cost on the candidate: the spend scaled by the
    /// experiment's cost per request, candidate over baseline.
    pub would_cost_usd: f64,
    /// Change in percent (negative is cheaper).
    pub change_pct: f64,
    /// Quality per rubric.
    pub quality: Vec<QualityDelta>,
    /// The sentence.
    pub sentence: String,
}

/// A quality delta with its interval and verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualityDelta {
    /// Rubric.
    pub rubric: String,
    /// Candidate − baseline, on [0, 1].
    pub delta: f64,
    /// 95% interval.
    pub ci_low: f64,
    /// See `ci_low`.
    pub ci_high: f64,
    /// Verdict.
    pub verdict: String,
}

/// Whole dollars from $100, cents from $1, and four decimals below (a sample's spend can be
/// fractions of a cent).
pub fn dollars(usd: f64) -> String {
    if usd.abs() >= 100.0 {
        format!("${usd:.0}")
    } else if usd.abs() >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

/// The what-if sentences: for every finished experiment whose baseline is production traffic
/// of a model with spend in `spend_by_model`, one per candidate whose cost is known.
pub fn what_if(spend_by_model: &BTreeMap<String, f64>, reports: &[Report]) -> Vec<WhatIf> {
    let mut out = Vec::new();
    for report in reports.iter().filter(|r| r.status == "done" && r.dataset.is_none()) {
        let baseline_cost = report.baseline.cost_per_request_usd;
        let spends: Vec<f64> = spend_by_model
            .iter()
            .filter(|(model, _)| report.baseline.includes(model))
            .map(|(_, usd)| *usd)
            .collect();
        if spends.is_empty() {
            continue;
        }
        // A fold from +0.0: `Sum for f64` starts at −0.0, which prints as "-0".
        let spent = spends.iter().fold(0.0, |total, usd| total + usd);
        if baseline_cost <= 0.0 {
            continue;
        }
        for candidate in &report.candidates {
            let Some(cost) = candidate.cost_per_request_usd else { continue };
            let ratio = cost / baseline_cost;
            let would_cost = spent * ratio;
            let change_pct = (ratio - 1.0) * 100.0;
            let quality: Vec<QualityDelta> = candidate
                .rubrics
                .iter()
                .map(|r| QualityDelta {
                    rubric: r.rubric.clone(),
                    delta: r.stats.delta,
                    ci_low: r.stats.ci_low,
                    ci_high: r.stats.ci_high,
                    verdict: r.stats.verdict.as_str().to_string(),
                })
                .collect();
            let quality_text: Vec<String> = quality
                .iter()
                .map(|q| {
                    format!(
                        "{} Δ {:+.3} [{:+.3}, {:+.3}] ({})",
                        q.rubric, q.delta, q.ci_low, q.ci_high, q.verdict
                    )
                })
                .collect();
            let sentence = format!(
                "You spent {} on {}; {} ({}) would have cost {} ({}{:.1}%) with quality {} on your traffic.",
                dollars(spent),
                report.baseline.describe(),
                candidate.name,
                candidate.model,
                dollars(would_cost),
                if change_pct < 0.0 { "−" } else { "+" },
                change_pct.abs(),
                quality_text.join(", ")
            );
            out.push(WhatIf {
                model: report.baseline.model.clone(),
                spent_usd: spent,
                experiment: report.experiment.clone(),
                candidate: candidate.name.clone(),
                candidate_model: candidate.model.clone(),
                would_cost_usd: would_cost,
                change_pct,
                quality,
                sentence,
            });
        }
    }
    out
}

/// Monthly cost at the observed traffic volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MonthlyProjection {
    /// Exchanges stored over the last 30 days.
    pub stored_requests: u64,
    /// Requests they stand for (each source's count over its sample rate).
    pub monthly_requests: f64,
    /// How the scaling was done, for the reader.
    pub scaling: String,
    /// Baseline cost per month.
    pub baseline_usd: f64,
    /// Per candidate (in the report's order): cost per month, `None` when unknown.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub candidates: Vec<(String, Option<f64>)>,
}

/// Projects each side's monthly cost from the last 30 days of traffic `(stored, sample rate)`
/// per source.
pub fn monthly_projection(report: &Report, volume: &[(String, u64, f64)]) -> MonthlyProjection {
    let stored: u64 = volume.iter().map(|v| v.1).sum();
    // A fold from +0.0: `Sum for f64` starts at −0.0, which no traffic would show as "-0".
    let monthly = volume
        .iter()
        .map(|(_, n, rate)| *n as f64 / rate.clamp(f64::MIN_POSITIVE, 1.0))
        .fold(0.0, |a, b| a + b);
    let scaling = volume
        .iter()
        .map(|(source, n, rate)| format!("{source}: {n} stored ÷ sample rate {rate}"))
        .collect::<Vec<_>>()
        .join("; ");
    MonthlyProjection {
        stored_requests: stored,
        monthly_requests: monthly,
        scaling: if scaling.is_empty() { "no traffic in the last 30 days".into() } else { scaling },
        baseline_usd: monthly * report.baseline.cost_per_request_usd,
        candidates: report
            .candidates
            .iter()
            .map(|c| (c.name.clone(), c.cost_per_request_usd.map(|cost| cost * monthly)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BaselineSummary, CandidateReport, RubricResult};
    use evaltap_stats::{CompareOptions, compare_paired};

    fn rubric_result(name: &str) -> RubricResult {
        let baseline = [0.6, 0.7, 0.8, 0.5, 0.9, 0.6, 0.7, 0.8, 0.6, 0.7, 0.8, 0.6];
        let candidate = [0.7, 0.7, 0.8, 0.6, 0.9, 0.7, 0.7, 0.9, 0.6, 0.8, 0.8, 0.7];
        RubricResult::of_stats(name, compare_paired(&baseline, &candidate, None, &CompareOptions::default()))
    }

    #[test]
    fn no_traffic_projects_zero_never_minus_zero() {
        let projection = monthly_projection(&report("done", "sim-large", 0.002, Some(0.001)), &[]);
        assert!(projection.monthly_requests == 0.0 && projection.monthly_requests.is_sign_positive());
        assert!(projection.baseline_usd.is_sign_positive(), "{projection:?}");
        let json = serde_json::to_string(&projection).expect("json");
        assert!(!json.contains("-0"), "{json}");
    }

    fn report(status: &str, baseline_model: &str, baseline_cost: f64, candidate_cost: Option<f64>) -> Report {
        Report {
            experiment: "swap".into(),
            status: status.into(),
            margin: 0.02,
            basis: evaltap_stats::Basis::FixedN,
            progress: evaltap_store::Progress {
                exchanges: 12,
                replays_expected: 12,
                replays_done: 12,
                replays_failed: 0,
                replays_skipped: 0,
                judgments_expected: 24,
                judgments_done: 24,
            },
            spend: evaltap_store::Spend::default(),
            spend_cap_reached: false,
            baseline: BaselineSummary {
                model: baseline_model.into(),
                models: Vec::new(),
                is_reference: false,
                cost_sources: Default::default(),
                n: 12,
                cost_per_request_usd: baseline_cost,
                judgments: Default::default(),
            },
            unreadable_items: 0,
            takeovers: 0,
            batches: Vec::new(),
            dataset: None,
            dataset_version: None,
            frozen_rubrics: vec![],
            judge_model: None,
            judge: None,
            candidates: vec![CandidateReport {
                name: "small".into(),
                model: "small-1".into(),
                n: 12,
                errors: 0,
                skipped: 0,
                truncated: 0,
                settled: 0,
                stopped_early: None,
                cached: Default::default(),
                spent_usd: 0.0,
                unsupported: Default::default(),
                cost_per_request_usd: candidate_cost,
                cost_delta_pct: None,
                latency_p50_ms: 100.0,
                latency_p95_ms: 150.0,
                error_rate: 0.0,
                rubrics: vec![rubric_result("helpfulness")],
            }],
        }
    }

    #[test]
    fn spend_is_scaled_by_the_sample_rate_and_priced_from_tokens_when_costless() {
        let traffic = [
            // 40 stored at 10% sampling carrying $0.80 → 400 requests, $8.00.
            TrafficRow {
                source: "openrouter".into(),
                model: Some("big-1".into()),
                requests: 40,
                priced: 40,
                cost_usd: 0.80,
                ..TrafficRow::default()
            },
            // 10 without a cost: 1M prompt + 0.5M completion tokens at $2 / $8 per Mtok = $6.
            TrafficRow {
                source: "litellm".into(),
                model: Some("big-1".into()),
                requests: 10,
                priced: 0,
                cost_usd: 0.0,
                unpriced_input_tokens: 1_000_000,
                unpriced_output_tokens: 500_000,
            },
            // No model, no cost, no price: counted, not priced.
            TrafficRow { source: "litellm".into(), model: None, requests: 3, ..TrafficRow::default() },
        ];
        let rates = BTreeMap::from([("openrouter".to_string(), 0.1), ("litellm".to_string(), 1.0)]);
        let prices = BTreeMap::from([(
            "big-1".to_string(),
            Price { input_per_mtok: 2.0, output_per_mtok: 8.0, ..Default::default() },
        )]);
        let rows = spend_rows(&traffic, &rates, &prices);
        assert!((rows[0].estimated_requests - 400.0).abs() < 1e-9);
        assert!((rows[0].estimated_spend_usd - 8.0).abs() < 1e-9);
        assert!((rows[1].estimated_spend_usd - 6.0).abs() < 1e-9);
        assert_eq!(rows[1].unpriced_requests, 0);
        assert_eq!((rows[2].model.as_str(), rows[2].unpriced_requests), ("unknown", 3));
    }

    #[test]
    fn the_what_if_sentence_scales_spend_by_the_cost_ratio() {
        // $14.00 on big-1; the candidate costs $0.0005 a request against the baseline's $0.002:
        // $14.00 × 0.25 = $3.50, −75.0%.
        let spend = BTreeMap::from([("big-1".to_string(), 14.0)]);
        let reports = [report("done", "big-1", 0.002, Some(0.0005))];
        let sentences = what_if(&spend, &reports);
        assert_eq!(sentences.len(), 1);
        let s = &sentences[0];
        assert!((s.would_cost_usd - 3.5).abs() < 1e-12, "{s:?}");
        assert!((s.change_pct + 75.0).abs() < 1e-9);
        let q = &s.quality[0];
        assert!(
            s.sentence.starts_with("You spent $14.00 on big-1; small (small-1) would have cost $3.50 (−75.0%) with quality helpfulness Δ"),
            "{}",
            s.sentence
        );
        assert!(s.sentence.contains(&format!("[{:+.3}, {:+.3}]", q.ci_low, q.ci_high)));
        assert!(s.sentence.contains(&format!("({})", q.verdict)));
        // Running experiments, unknown candidate cost and models without spend say nothing.
        assert!(what_if(&spend, &[report("running", "big-1", 0.002, Some(0.0005))]).is_empty());
        assert!(what_if(&spend, &[report("done", "big-1", 0.002, None)]).is_empty());
        assert!(what_if(&spend, &[report("done", "other", 0.002, Some(0.001))]).is_empty());
    }

    #[test]
    fn the_monthly_projection_scales_each_source_by_its_rate() {
        let r = report("done", "big-1", 0.002, Some(0.0005));
        let p = monthly_projection(&r, &[("a".into(), 100, 0.1), ("b".into(), 50, 1.0)]);
        assert!((p.monthly_requests - 1050.0).abs() < 1e-9);
        assert!((p.baseline_usd - 2.1).abs() < 1e-12);
        assert_eq!(p.candidates[0].1.map(|c| (c * 1e6).round() / 1e6), Some(0.525));
        assert!(p.scaling.contains("a: 100 stored ÷ sample rate 0.1"));
    }
}
