//! `evaltap gate`: a CI step that fails when a candidate significantly regresses.

use evaltap_report::Report;
use evaltap_stats::Verdict;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateOutcome {
    /// Whether the gate passes.
    pub passed: bool,
    /// One line per candidate × rubric that failed it.
    pub failures: Vec<String>,
}

/// Fails on any `worse` verdict; with `require_non_inferior`, also on anything that is not
/// `better` or `non-inferior` (the ship rule: every rubric shown non-inferior). `candidate`
/// limits the gate to one candidate.
pub fn evaluate(report: &Report, candidate: Option<&str>, require_non_inferior: bool) -> GateOutcome {
    let mut failures = Vec::new();
    for c in report.candidates.iter().filter(|c| candidate.is_none_or(|name| c.name == name)) {
        for r in &c.rubrics {
            let v = r.stats.verdict;
            let fails = v == Verdict::Worse
                || (require_non_inferior && !matches!(v, Verdict::Better | Verdict::NonInferior));
            if fails {
                failures.push(format!(
                    "{} on {}: {} (Δ {:+.3}, 95% CI [{:+.3}, {:+.3}], Holm p {:.4})",
                    c.name, r.rubric, v, r.stats.delta, r.stats.ci_low, r.stats.ci_high, r.stats.p_holm
                ));
            }
        }
    }
    GateOutcome { passed: failures.is_empty(), failures }
}
