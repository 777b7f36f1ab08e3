//! The report as text: `evaltap report`'s table and the notes beside it.

use std::fmt::Write as _;

use evaltap_stats::Comparison;
use evaltap_store::Spend;

use crate::*;

/// `includes $0.004200 presumed paid for 3 calls …` when calls are counted at their bound.
pub fn presumed_note(spend: &Spend) -> Option<String> {
    (spend.presumed_calls > 0).then(|| {
        format!(
            "includes ${:.6} presumed paid for {} whose answer was lost (a worker stopped mid-call, or a timeout), counted at the most each could cost",
            spend.presumed_usd,
            evaltap_core::words::count(spend.presumed_calls.max(0) as u64, "call")
        )
    })
}

/// `12 answers cut at the output limit …` for a candidate with truncated answers.
pub fn truncated_note(truncated: usize) -> String {
    format!(
        "{} cut at the output limit (finish_reason length); a cut answer may score lower — raise the limit with the candidate's params.max_tokens",
        evaltap_core::words::count(truncated as u64, "answer")
    )
}

/// `3 requests skipped: anthropic-messages cannot carry this request: audio input`.
pub fn unsupported_note(reason: &str, count: usize) -> String {
    format!("{} skipped: {reason}", evaltap_core::words::count(count as u64, "request"))
}

/// ` (~120 more pairs, 15 clusters in all, to settle; ~300 more for the running report)`.
pub(crate) fn settle_note(more: u64, stats: &Comparison) -> String {
    let clusters = stats
        .clusters_needed
        .map(|c| format!(", {} in all,", evaltap_core::words::count(c, "cluster")))
        .unwrap_or_default();
    let running = stats
        .samples_needed_sequential
        .map(|n| format!("; ~{} more for the running report", n.saturating_sub(stats.n as u64)))
        .unwrap_or_default();
    format!(" (~{}{clusters} to settle{running})", evaltap_core::words::count(more, "more pair"))
}

/// The report as a plain-text table.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let basis = match report.verdicts_rest_on() {
        VerdictsRestOn::Landing => "sequential (always-valid, results still landing)",
        VerdictsRestOn::FixedN => "fixed-n",
        VerdictsRestOn::EveryStopped => "sequential (always-valid: every candidate stopped early)",
        VerdictsRestOn::SomeStopped => "fixed-n, sequential for the candidates that stopped early",
    };
    let items = evaltap_core::words::count(
        report.baseline.n as u64,
        if report.dataset.is_some() { "item" } else { "exchange" },
    );
    // Production calls say where their cost came from; a replayed or reference baseline has
    // no production calls to price.
    let cost = if report.dataset.is_none() && !report.baseline.is_reference {
        format!(
            ", ${:.6}/request ({})",
            report.baseline.cost_per_request_usd,
            report.baseline.cost_sources.describe()
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "experiment {} ({}), baseline {} on {items}{cost}, margin {}, verdicts {}",
        report.experiment,
        report.status,
        report.baseline.describe(),
        report.margin,
        basis
    );
    if let Some(line) = report.baseline.judgments.describe() {
        let _ = writeln!(out, "{line}");
    }
    if report.takeovers > 0 {
        let _ = writeln!(
            out,
            "takeovers: {} (a worker stopped mid-call and another took the work over; each may have been paid twice)",
            evaltap_core::words::count(report.takeovers, "unit")
        );
    }
    if !report.batches.is_empty() {
        let parts: Vec<String> = report
            .batches
            .iter()
            .map(|b| {
                let out = b.batches - b.ended;
                let mut part = format!(
                    "{} {} of {}",
                    b.endpoint,
                    evaltap_core::words::count(b.batches as u64, "batch|batches"),
                    evaltap_core::words::count(b.requests.max(0) as u64, "request")
                );
                if out > 0 {
                    part.push_str(&format!(", {out} out"));
                }
                if b.unanswered > 0 {
                    part.push_str(&format!(", {} unanswered", b.unanswered));
                }
                part
            })
            .collect();
        let _ = writeln!(out, "batch interfaces: {}", parts.join("; "));
    }
    if report.spend.cap_usd.is_some() || report.spend.presumed_calls > 0 {
        let _ = writeln!(
            out,
            "spend ${:.6} (replays ${:.6}, judge ${:.6}){}{}{}",
            report.spend.total_spent_usd,
            report.spend.spent_usd,
            report.spend.judge_spent_usd,
            report.spend.cap_usd.map(|cap| format!(" of a ${cap:.6} cap")).unwrap_or_default(),
            if report.spend_cap_reached { " — cap reached, remaining work skipped" } else { "" },
            presumed_note(&report.spend).map(|note| format!("; {note}")).unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7}  {:<12} {:>6} {:>6} {:>7} {:>17} {:>8} {:>8} {:>8}  verdict",
        "candidate",
        "model",
        "n",
        "err",
        "$/request",
        "cost Δ",
        "p50 ms",
        "rubric",
        "base",
        "cand",
        "Δ",
        "95% CI",
        "p",
        "p(seq)",
        "p(Holm)"
    );
    for c in &report.candidates {
        for (i, r) in c.rubrics.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7.1}",
                    c.name,
                    c.model,
                    c.n,
                    c.errors,
                    c.cost_per_request_usd.map_or("unknown".to_string(), |v| format!("{v:.6}")),
                    c.cost_delta_pct.map_or("—".to_string(), |v| format!("{v:.1}%")),
                    c.latency_p50_ms
                )
            } else {
                format!("{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7}", "", "", "", "", "", "", "")
            };
            let s = &r.stats;
            let more = r.more_samples_needed.map(|m| settle_note(m, s)).unwrap_or_default();
            let _ = writeln!(
                out,
                "{head}  {:<12} {:>6.3} {:>6.3} {:>+7.3} {:>17} {:>8.4} {:>8.4} {:>8.4}  {}{more}",
                r.rubric,
                s.baseline_mean,
                s.candidate_mean,
                s.delta,
                format!("[{:+.3}, {:+.3}]", s.ci_low, s.ci_high),
                s.p_value,
                s.p_value_sequential,
                s.p_holm,
                s.verdict
            );
            let mut notes = Vec::new();
            if s.significantly_lower {
                notes.push("significantly lower, but shown within the margin".to_string());
            }
            if r.judge_errors > 0 || r.judge_skipped > 0 {
                notes
                    .push(format!("judge errors {}, skipped at the cap {}", r.judge_errors, r.judge_skipped));
            }
            if let Some(p) = &r.pairwise {
                notes.push(format!(
                    "W/T/L {}/{}/{}, consistency {:.0}%, first position {:.0}%, LC win rate {}",
                    p.wins,
                    p.ties,
                    p.losses,
                    100.0 * p.position_consistency,
                    100.0 * p.first_position_rate,
                    r.lc_win_rate.map_or("—".into(), |lc| format!("{lc:.3}"))
                ));
            }
            if let Some(note) = &s.note {
                notes.push(note.clone());
            }
            if i == 0 && c.truncated > 0 {
                notes.push(truncated_note(c.truncated));
            }
            if i == 0 {
                notes.extend(c.unsupported.iter().map(|(reason, n)| unsupported_note(reason, *n)));
            }
            if i == 0 && c.spent_usd > 0.0 {
                notes.push(format!(
                    "spent ${:.4} to its verdicts (its replays and judgments; the baseline's are shared)",
                    c.spent_usd
                ));
            }
            if i == 0 && (c.cached.replays > 0 || c.cached.judgments > 0) {
                notes.push(format!(
                    "reused from the result cache: {} and {} (cost nothing now; ${:.4} when paid)",
                    evaltap_core::words::count(c.cached.replays as u64, "replay"),
                    evaltap_core::words::count(c.cached.judgments as u64, "judgment"),
                    c.cached.original_cost_usd
                ));
            }
            if i == 0
                && let Some(stop) = &c.stopped_early
            {
                notes.push(format!(
                    "stopped early at {} pairs ({}): its verdicts rest on the always-valid statistics; {} not made{}",
                    stop.pairs,
                    stop.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    evaltap_core::words::count(c.settled as u64, "replay"),
                    stop.saved_usd.map(|usd| format!(", about ${usd:.4} saved")).unwrap_or_default()
                ));
            }
            for note in notes {
                let _ = writeln!(out, "{:>70}  note: {note}", "");
            }
            for warning in &r.warnings {
                let _ = writeln!(out, "{:>70}  warning: {warning}", "");
            }
        }
    }
    let mut named = std::collections::BTreeSet::new();
    for r in report.candidates.iter().flat_map(|c| &c.rubrics) {
        if let Some(cal) = &r.calibration
            && named.insert(r.rubric.clone())
        {
            let _ = writeln!(
                out,
                "rubric {}: calibrated {} against human labels ({}): weighted κ {}, mean bias {}",
                r.rubric,
                cal.created_at.format("%Y-%m-%d %H:%M"),
                cal.judge_model,
                cal.result
                    .get("weighted_kappa")
                    .and_then(serde_json::Value::as_f64)
                    .map_or("—".into(), |k| format!("{k:.3}")),
                cal.result
                    .get("mean_bias")
                    .and_then(serde_json::Value::as_f64)
                    .map_or("—".into(), |b| format!("{b:+.3}")),
            );
        }
    }
    if let Some(judge) = &report.judge {
        let _ = writeln!(
            out,
            "judge {} (temperature {}, {} sample(s) per item); judge spend ${:.6}; rubrics frozen: {}",
            judge.model,
            judge.temperature,
            judge.samples,
            report.spend.judge_spent_usd,
            report
                .frozen_rubrics
                .iter()
                .map(|r| format!("{} {}", r.name, &r.sha256[..12.min(r.sha256.len())]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}
