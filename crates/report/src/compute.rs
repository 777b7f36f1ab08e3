//! Computing a report from its inputs (pure: no I/O): the baseline, per candidate cost, latency
//! and the paired comparison per rubric, one multiple-comparison family.

use std::collections::{BTreeMap, HashMap};

use evaltap_core::Usage;
use evaltap_stats::{Basis, CompareOptions, Comparison, compare_paired, decide_family, percentile};
use evaltap_store::{BASELINE, BaselineSpec, DatasetRef, Progress};

use crate::*;

/// exchange id → (normalized score, arrival sequence), for one (subject, rubric, position).
type ScoresByExchange = HashMap<String, (f64, usize)>;

/// What the judgments of one (subject, rubric, position) say besides scores.
#[derive(Default)]
struct JudgeBook {
    /// Exchanges whose judgment failed (not skipped).
    failed: std::collections::HashSet<String>,
    /// Exchanges whose judgment was skipped at the spend cap.
    skipped: std::collections::HashSet<String>,
    /// Cost of the calls.
    cost: f64,
    /// (Σ within-item variance, items) over judgments with several samples.
    within: (f64, u64),
    /// Judgments read from the result cache, and what they cost when paid.
    cached: (usize, f64),
}

/// The statistics' options for an experiment in this state: fixed-n once done, else sequential.
pub(crate) fn compare_options(margin: f64, progress: &Progress, planned_n: usize) -> CompareOptions {
    CompareOptions {
        alpha: ALPHA,
        margin,
        basis: if progress.is_done() { Basis::FixedN } else { Basis::Sequential },
        planned_n: Some(planned_n),
        ..CompareOptions::default()
    }
}

/// Computes the report from its inputs (pure: no I/O).
pub fn compute(inputs: ReportInputs) -> Report {
    let ReportInputs {
        experiment,
        progress,
        item_ids,
        replays,
        references,
        exchanges,
        unreadable_items,
        takeovers,
        batches,
        judgments,
        calibrations,
        spend,
        bootstrap_resamples,
        settled,
        sequence_alpha,
    } = inputs;
    let experiment = &experiment;
    let spec = &experiment.spec;

    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    let mut baseline_costs = Vec::new();
    let mut clusters: HashMap<String, String> = HashMap::new();
    let mut baseline_lengths: HashMap<String, f64> = HashMap::new();
    // The baseline side: production answers, a replayed model, or the items' references.
    let baseline_subject = spec.baseline_candidate().unwrap_or(BASELINE).to_string();
    match (&spec.baseline, &spec.dataset) {
        (BaselineSpec::Candidate { name }, _) => {
            let model =
                spec.candidates.iter().find(|c| &c.name == name).map_or(name.clone(), |c| c.model.clone());
            models.insert(model, item_ids.len());
            for r in replays.iter().filter(|r| &r.candidate == name && r.error.is_none()) {
                baseline_costs.extend(r.cost_usd);
                baseline_lengths
                    .insert(r.item_id.clone(), r.output_text.as_deref().unwrap_or("").chars().count() as f64);
            }
        }
        (BaselineSpec::Reference, Some(_)) => {
            models.insert("reference".into(), item_ids.len());
            for row in references {
                let reference = row.body.get("reference").and_then(serde_json::Value::as_str).unwrap_or("");
                baseline_lengths.insert(row.key, reference.chars().count() as f64);
            }
        }
        _ => {}
    }
    let mut cost_sources = CostSources::default();
    for stored in &exchanges {
        let (id, ex) = (&stored.id, &stored.exchange);
        if let Some(key) = cluster_key(&ex.tags) {
            clusters.insert(id.clone(), key);
        }
        if spec.baseline == BaselineSpec::Production {
            *models.entry(ex.model.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
            // The stored response's own usage keeps cached and reasoning tokens, which the token
            // columns do not.
            let usage = Usage::from_openai(&ex.response).or(ex.usage);
            let cost = cost_of(experiment, ex.cost_usd, ex.model.as_deref(), usage);
            match cost.map(|(_, source)| source) {
                Some(CostSource::Gateway) => cost_sources.gateway += 1,
                Some(CostSource::Config) => cost_sources.config += 1,
                Some(CostSource::Table) => cost_sources.table += 1,
                None => cost_sources.unknown += 1,
            }
            baseline_costs.extend(cost.map(|(usd, _)| usd));
            let text = evaltap_core::chat::response_text(&ex.response);
            baseline_lengths.insert(id.clone(), text.chars().count() as f64);
        }
    }
    let mut baseline_models: Vec<ModelCount> =
        models.iter().map(|(model, n)| ModelCount { model: model.clone(), n: *n }).collect();
    baseline_models.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.model.cmp(&b.model)));
    let baseline_model = match baseline_models.as_slice() {
        [] => String::new(),
        [only] => only.model.clone(),
        _ => MIXED_BASELINE.to_string(),
    };
    let baseline_cost = mean_or_zero(&baseline_costs);

    let mut scores: HashMap<(String, String, String), ScoresByExchange> = HashMap::new();
    let mut books: HashMap<(String, String), JudgeBook> = HashMap::new();
    let mut baseline_judgments = crate::model::BaselineJudgments::default();
    for (seq, j) in judgments.into_iter().enumerate() {
        if j.subject == BASELINE && j.score.is_some() {
            if spec.reference_by_definition(&j.rubric).is_some() {
                baseline_judgments.by_definition += 1;
            } else if j.cached_cost_usd.is_some() {
                baseline_judgments.reused += 1;
            } else {
                baseline_judgments.asked += 1;
            }
        }
        let book = books.entry((j.subject.clone(), j.rubric.clone())).or_default();
        book.cost += j.cost_usd.unwrap_or(0.0);
        if let Some(original) = j.cached_cost_usd {
            book.cached.0 += 1;
            book.cached.1 += original;
        }
        if let Some(samples) = j.score_samples.as_deref().filter(|s| s.len() > 1) {
            book.within.0 += evaltap_stats::variance(samples);
            book.within.1 += 1;
        }
        match j.score.filter(|s| s.is_finite()) {
            Some(score) => {
                scores.entry((j.subject, j.rubric, j.position)).or_default().insert(j.item_id, (score, seq));
            }
            // A check the item does not carry is no judgment at all.
            None if j.skipped.as_deref().is_some_and(|s| s.starts_with("not applicable")) => {}
            // Skipped by early stopping: no pair was ever to be made of it.
            None if j.skipped.as_deref() == Some(evaltap_store::SETTLED) => {}
            None if j.skipped.is_some() => {
                book.skipped.insert(j.item_id);
            }
            None => {
                book.failed.insert(j.item_id);
            }
        }
    }
    let options = CompareOptions {
        bootstrap_resamples,
        sequence_alpha,
        ..compare_options(spec.margin, &progress, item_ids.len())
    };
    let basis = options.basis;
    let empty = HashMap::new();
    let no_book = JudgeBook::default();
    let mut candidates: Vec<CandidateReport> = spec
        .compared_candidates()
        .map(|candidate| {
            let mine: Vec<_> = replays.iter().filter(|r| r.candidate == candidate.name).collect();
            let ok: Vec<_> = mine.iter().filter(|r| r.error.is_none()).collect();
            // A replay read from the cache cost nothing this time; the model's price per request
            // is what it cost when paid.
            let costs: Vec<f64> = ok.iter().filter_map(|r| r.cached_cost_usd.or(r.cost_usd)).collect();
            let latencies: Vec<f64> = ok.iter().filter_map(|r| r.latency_ms).collect();
            let candidate_lengths: HashMap<&str, f64> = ok
                .iter()
                .map(|r| (r.item_id.as_str(), r.output_text.as_deref().unwrap_or("").chars().count() as f64))
                .collect();
            let cost = mean_or_zero(&costs);
            let stopped = settled.iter().find(|s| s.candidate == candidate.name);
            // A candidate that stopped early is judged on the always-valid statistics: the
            // fixed-n test is not valid after an optional stop.
            let options = if stopped.is_some() { CompareOptions { basis: Basis::Sequential, ..options.clone() } } else { options.clone() };
            let rubrics = spec
                .rubrics
                .iter()
                .map(|rubric| {
                    let get = |subject: &str, position: &str| {
                        scores
                            .get(&(subject.to_string(), rubric.clone(), position.to_string()))
                            .unwrap_or(&empty)
                    };
                    let book = |subject: &str| books.get(&(subject.to_string(), rubric.clone())).unwrap_or(&no_book);
                    let (mine_book, base_book) = (book(&candidate.name), book(&baseline_subject));
                    // A pair arrives when its later judgment is stored; sequential statistics
                    // see pairs in that order.
                    let pairwise_rubric = spec.is_pairwise(rubric);
                    let (mut pairs, pairwise): (Vec<(usize, &String, f64, f64)>, _) = if pairwise_rubric {
                        // Both orders judged: the exchange scores 1, ½ or 0 against ½.
                        let (ab, ba) = (get(&candidate.name, "ab"), get(&candidate.name, "ba"));
                        let both: Vec<(usize, &String, f64, f64)> = ab
                            .iter()
                            .filter_map(|(ex, (x, xs))| {
                                ba.get(ex).map(|(y, ys)| ((*xs).max(*ys), ex, *x, *y))
                            })
                            .collect();
                        let summary = pairwise_summary(both.iter().map(|p| (p.2, p.3)));
                        (
                            both.into_iter()
                                .map(|(seq, ex, x, y)| (seq, ex, 0.5, pairwise_outcome(x, y)))
                                .collect(),
                            Some(summary),
                        )
                    } else {
                        let (base, cand) = (get(&baseline_subject, ""), get(&candidate.name, ""));
                        let pairs = cand
                            .iter()
                            .filter_map(|(ex, (c, cs))| {
                                base.get(ex).map(|(b, bs)| ((*cs).max(*bs), ex, *b, *c))
                            })
                            .collect();
                        (pairs, None)
                    };
                    pairs.sort_by_key(|p| p.0);
                    let b: Vec<f64> = pairs.iter().map(|p| p.2).collect();
                    let c: Vec<f64> = pairs.iter().map(|p| p.3).collect();
                    let keys: Vec<String> = pairs
                        .iter()
                        .map(|p| clusters.get(p.1).cloned().unwrap_or_else(|| format!("exchange:{}", p.1)))
                        .collect();
                    let clustered = !clusters.is_empty();
                    let length_diff: Vec<f64> = pairs
                        .iter()
                        .map(|p| {
                            candidate_lengths.get(p.1.as_str()).copied().unwrap_or(0.0)
                                - baseline_lengths.get(p.1.as_str()).copied().unwrap_or(0.0)
                        })
                        .collect();
                    let score_diff: Vec<f64> = c.iter().zip(&b).map(|(c, b)| c - b).collect();
                    // Judge failures that cost this candidate a pair: its own judgments, and the
                    // baseline's on exchanges it replayed.
                    let lost = |own: &std::collections::HashSet<String>, base: &std::collections::HashSet<String>| {
                        ok.iter()
                            .filter(|r| {
                                own.contains(&r.item_id) || (!pairwise_rubric && base.contains(&r.item_id))
                            })
                            .count() as u64
                    };
                    let judge_errors = lost(&mine_book.failed, &base_book.failed);
                    let judge_skipped = lost(&mine_book.skipped, &base_book.skipped);
                    let within = [mine_book.within, base_book.within];
                    let within_items: u64 = within.iter().map(|w| w.1).sum();
                    let mut warnings = Vec::new();
                    let attempted = pairs.len() as u64 + judge_errors;
                    if attempted > 0 && judge_errors as f64 / attempted as f64 > MAX_JUDGE_ERROR_SHARE {
                        warnings.push(format!(
                            "{judge_errors} of {attempted} pairs ({:.1}%) lost to judge failures: if failures \
                             depend on the answer, the delta is biased",
                            100.0 * judge_errors as f64 / attempted as f64
                        ));
                    }
                    if let Some(p) = &pairwise
                        && p.position_consistency < MIN_PAIRWISE_CONSISTENCY
                        && !pairs.is_empty()
                    {
                        warnings.push(format!(
                            "the judge agreed with itself across the two orders on only {:.0}% of \
                             exchanges (first position named {:.0}% of the time): position bias",
                            100.0 * p.position_consistency,
                            100.0 * p.first_position_rate
                        ));
                    }
                    let calibration = calibrations.get(rubric).map(|cal| CalibrationSummary {
                        created_at: cal.created_at,
                        judge_model: cal.judge_model.clone(),
                        same_rubric_text: spec.frozen_rubric(rubric).is_none_or(|f| f.sha256 == cal.rubric_sha256),
                        result: cal.result.clone(),
                    });
                    if calibration.as_ref().is_some_and(|c| !c.same_rubric_text) {
                        warnings.push("the latest calibration was of another version of this rubric's text".into());
                    }
                    RubricResult {
                        rubric: rubric.clone(),
                        stats: compare_paired(&b, &c, clustered.then_some(&keys[..]), &options),
                        more_samples_needed: None,
                        p_noninferiority_holm: None,
                        judge_errors,
                        judge_skipped,
                        judge_cost_usd: mine_book.cost,
                        length_correlation: correlation(&score_diff, &length_diff),
                        consistency: pairwise.as_ref().map(|p| p.position_consistency),
                        first_position_rate: pairwise.as_ref().map(|p| p.first_position_rate),
                        lc_win_rate: pairwise
                            .as_ref()
                            .and_then(|_| evaltap_stats::length_controlled_win_rate(&c, &length_diff))
                            .map(|lc| lc.lc),
                        judge_within_item_sd: (within_items > 0)
                            .then(|| (within.iter().map(|w| w.0).sum::<f64>() / within_items as f64).sqrt()),
                        calibration,
                        warnings,
                        pass_rates: if pairwise.is_none() { pass_rates(&b, &c) } else { None },
                        pairwise,
                    }
                })
                .collect();
            CandidateReport {
                name: candidate.name.clone(),
                model: candidate.model.clone(),
                n: ok.len(),
                errors: mine.iter().filter(|r| r.error.is_some() && r.skipped.is_none()).count(),
                skipped: mine
                    .iter()
                    .filter(|r| r.skipped.is_some() && r.unsupported().is_none() && !r.settled())
                    .count(),
                settled: mine.iter().filter(|r| r.settled()).count(),
                spent_usd: mine.iter().filter_map(|r| r.cost_usd).sum::<f64>()
                    + spec
                        .rubrics
                        .iter()
                        .filter_map(|rubric| books.get(&(candidate.name.clone(), rubric.clone())))
                        .map(|book| book.cost)
                        .sum::<f64>(),
                cached: crate::reuse::cache_use(
                    mine.iter().copied(),
                    spec.rubrics
                        .iter()
                        .filter_map(|rubric| books.get(&(candidate.name.clone(), rubric.clone())))
                        .map(|book| book.cached),
                ),
                stopped_early: stopped.map(|s| {
                    let judge_usd: f64 = spec
                        .rubrics
                        .iter()
                        .filter_map(|rubric| books.get(&(candidate.name.clone(), rubric.clone())))
                        .map(|book| book.cost)
                        .sum();
                    crate::reuse::stopped_early(
                        s,
                        mine.iter().filter(|r| r.settled()).count(),
                        (!costs.is_empty()).then_some(cost),
                        judge_usd,
                        ok.len(),
                    )
                }),
                unsupported: mine.iter().filter_map(|r| r.unsupported()).fold(
                    std::collections::BTreeMap::new(),
                    |mut reasons, reason| {
                        *reasons.entry(reason.to_string()).or_default() += 1;
                        reasons
                    },
                ),
                truncated: mine.iter().filter(|r| r.error.is_none() && r.truncated()).count(),
                // No priced successful call: the cost is unknown, not zero (never "−100%").
                cost_per_request_usd: (!costs.is_empty()).then_some(cost),
                cost_delta_pct: (!costs.is_empty() && baseline_cost > 0.0)
                    .then(|| (cost - baseline_cost) / baseline_cost * 100.0),
                latency_p50_ms: percentile(&latencies, 50.0).unwrap_or(0.0),
                latency_p95_ms: percentile(&latencies, 95.0).unwrap_or(0.0),
                error_rate: {
                    let failed = mine.iter().filter(|r| r.error.is_some() && r.skipped.is_none()).count();
                    if ok.len() + failed == 0 { 0.0 } else { failed as f64 / (ok.len() + failed) as f64 }
                },
                rubrics,
            }
        })
        .collect();

    // Every candidate × rubric test feeds one decision: adjust across all of them.
    let mut family: Vec<Comparison> =
        candidates.iter().flat_map(|c| c.rubrics.iter().map(|r| r.stats.clone())).collect();
    decide_family(&mut family, &options);
    let mut decided = family.into_iter();
    for rubric in candidates.iter_mut().flat_map(|c| c.rubrics.iter_mut()) {
        if let Some(stats) = decided.next() {
            rubric.more_samples_needed = stats.samples_needed.map(|n| n.saturating_sub(stats.n as u64));
            rubric.stats = stats;
        }
    }
    let spend_cap_reached = spend.capped
        || candidates.iter().any(|c| c.skipped > 0 || c.rubrics.iter().any(|r| r.judge_skipped > 0));
    Report {
        spend,
        spend_cap_reached,
        experiment: spec.name.clone(),
        status: if progress.is_done() { "done" } else { "running" }.into(),
        margin: spec.margin,
        basis,
        progress,
        baseline: BaselineSummary {
            model: baseline_model,
            models: baseline_models,
            is_reference: matches!(spec.baseline, BaselineSpec::Reference),
            cost_sources,
            n: item_ids.len(),
            cost_per_request_usd: baseline_cost,
            judgments: baseline_judgments,
        },
        unreadable_items,
        takeovers,
        batches: crate::BatchUse::of(&batches),
        dataset: spec.dataset.as_ref().map(|d: &DatasetRef| d.name.clone()),
        dataset_version: spec.dataset.as_ref().map(|d| d.version.clone()),
        frozen_rubrics: spec
            .rubric_definitions
            .iter()
            .map(|r| FrozenRubricSummary {
                name: r.name.clone(),
                sha256: r.sha256.clone(),
                mode: r.mode.clone(),
                scale: (r.scale_min, r.scale_max),
                judge_model: r.judge_model.clone(),
            })
            .collect(),
        judge_model: spec.judge.as_ref().map(|j| j.model.clone()),
        judge: spec.judge.as_ref().map(|j| JudgeSummary {
            model: j.model.clone(),
            temperature: j.temperature,
            samples: spec.judge_samples,
            input_per_mtok: j.input_per_mtok,
            output_per_mtok: j.output_per_mtok,
        }),
        candidates,
    }
}
