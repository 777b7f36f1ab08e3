//! What a candidate did not pay for: the replays early stopping skipped, and the results read
//! back from the result cache.

use evaltap_store::{ReplayRecord, SettledCandidate};
use serde::{Deserialize, Serialize};

/// What a report's verdicts rest on, decided here once for the text report and the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictsRestOn {
    /// Results are still landing: the always-valid statistics.
    Landing,
    /// Every candidate ran to the end: the fixed-n test at the planned sample size.
    FixedN,
    /// Every candidate stopped early: the always-valid statistics (the fixed-n test is not
    /// valid after an optional stop).
    EveryStopped,
    /// Some candidates stopped early: theirs on the always-valid statistics, the others' fixed-n.
    SomeStopped,
}

impl crate::Report {
    /// What the verdicts rest on.
    pub fn verdicts_rest_on(&self) -> VerdictsRestOn {
        let stopped = self.candidates.iter().filter(|c| c.stopped_early.is_some()).count();
        match (self.basis, stopped) {
            (evaltap_stats::Basis::Sequential, _) => VerdictsRestOn::Landing,
            (evaltap_stats::Basis::FixedN, 0) => VerdictsRestOn::FixedN,
            (evaltap_stats::Basis::FixedN, n) if n == self.candidates.len() => VerdictsRestOn::EveryStopped,
            (evaltap_stats::Basis::FixedN, _) => VerdictsRestOn::SomeStopped,
        }
    }
}

/// What a candidate reused from the result cache: it cost nothing this time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheUse {
    /// Replays read back.
    pub replays: usize,
    /// Judgments of its answers read back.
    pub judgments: usize,
    /// What those cost when they were paid (saved this time), in USD.
    pub original_cost_usd: f64,
}

/// When and where a candidate stopped.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoppedEarly {
    /// When its verdict was settled.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Pairs per rubric then (the fewest).
    pub pairs: u64,
    /// What the replays it did not make would have cost, at its mean cost per replay and the
    /// judge's mean cost per call on it (an estimate).
    pub saved_usd: Option<f64>,
}

/// What the replays of a candidate read back from the cache, and its judgments read back
/// (`judged`: count and cost when paid, per rubric).
pub(crate) fn cache_use<'a>(
    replays: impl Iterator<Item = &'a ReplayRecord>,
    judged: impl Iterator<Item = (usize, f64)>,
) -> CacheUse {
    let replayed: Vec<f64> = replays.filter_map(|r| r.cached_cost_usd).collect();
    let (judgments, judged_usd) = judged.fold((0, 0.0), |(n, usd), (count, cost)| (n + count, usd + cost));
    CacheUse {
        replays: replayed.len(),
        judgments,
        original_cost_usd: replayed.iter().sum::<f64>() + judged_usd,
    }
}

/// When a candidate stopped and about what the `not_made` replays would have cost: each at the
/// candidate's mean cost per replay plus the judge's mean cost per judged replay.
pub(crate) fn stopped_early(
    settled: &SettledCandidate,
    not_made: usize,
    cost_per_replay: Option<f64>,
    judge_usd: f64,
    judged_replays: usize,
) -> StoppedEarly {
    let judge_per_replay = if judged_replays == 0 { 0.0 } else { judge_usd / judged_replays as f64 };
    StoppedEarly {
        at: settled.settled_at,
        pairs: settled.pairs,
        saved_usd: cost_per_replay.map(|cost| not_made as f64 * (cost + judge_per_replay)),
    }
}
