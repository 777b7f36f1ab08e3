//! The CI gate (`evaltap gate`, `GET /api/experiments/{name}/gate`): a CI step. Exit 0 when every rubric of every gated candidate is `better` or
//! `non-inferior`, 1 on a significant regression (`worse`), 2 when the experiment cannot say yet
//! (inconclusive, still running, or no data). Optional JUnit XML and a Markdown pull-request
//! comment.

use std::collections::HashMap;
use std::fmt::Write as _;

use evaltap_report::Report;
use evaltap_stats::Verdict;
use evaltap_store::{BASELINE, Experiment, Store};

/// The gate's answer, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateCode {
    /// Every rubric non-inferior or better.
    Pass = 0,
    /// A significant regression.
    Regression = 1,
    /// Not decided: inconclusive, still running, or no data.
    Undecided = 2,
}

/// One gated candidate × rubric.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    /// Candidate.
    pub candidate: String,
    /// Rubric.
    pub rubric: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Pairs.
    pub n: usize,
    /// Baseline mean.
    pub baseline: f64,
    /// Candidate mean.
    pub candidate_mean: f64,
    /// Δ.
    pub delta: f64,
    /// 95% interval.
    pub ci: (f64, f64),
    /// Holm-adjusted p.
    pub p_holm: f64,
}

impl GateRow {
    fn line(&self) -> String {
        format!(
            "{} on {}: {} (Δ {:+.3}, 95% CI [{:+.3}, {:+.3}], Holm p {:.4}, n {})",
            self.candidate, self.rubric, self.verdict, self.delta, self.ci.0, self.ci.1, self.p_holm, self.n
        )
    }
}

/// What the gate decided.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOutcome {
    /// The exit code.
    pub code: GateCode,
    /// Why, when it did not pass (one line per reason).
    pub reasons: Vec<String>,
    /// Every gated candidate × rubric.
    pub rows: Vec<GateRow>,
}

impl GateOutcome {
    /// Whether the gate passes.
    pub fn passed(&self) -> bool {
        self.code == GateCode::Pass
    }
}

/// Decides the gate for `report`, limited to `candidate` when given.
pub fn evaluate(report: &Report, candidate: Option<&str>) -> GateOutcome {
    let rows: Vec<GateRow> = report
        .candidates
        .iter()
        .filter(|c| candidate.is_none_or(|name| c.name == name))
        .flat_map(|c| {
            c.rubrics.iter().map(|r| GateRow {
                candidate: c.name.clone(),
                rubric: r.rubric.clone(),
                verdict: r.stats.verdict,
                n: r.stats.n,
                baseline: r.stats.baseline_mean,
                candidate_mean: r.stats.candidate_mean,
                delta: r.stats.delta,
                ci: (r.stats.ci_low, r.stats.ci_high),
                p_holm: r.stats.p_holm,
            })
        })
        .collect();
    let worse: Vec<String> = rows.iter().filter(|r| r.verdict == Verdict::Worse).map(GateRow::line).collect();
    if !worse.is_empty() {
        return GateOutcome { code: GateCode::Regression, reasons: worse, rows };
    }
    let mut reasons = Vec::new();
    if report.status != "done" {
        reasons.push(format!(
            "experiment `{}` is still running ({}/{} units done): a gate decides on finished experiments",
            report.experiment,
            report.progress.completed(),
            report.progress.total()
        ));
    }
    if rows.is_empty() || rows.iter().all(|r| r.n == 0) {
        reasons.push(format!("experiment `{}` has no scored pairs to gate on", report.experiment));
    }
    reasons.extend(
        rows.iter()
            .filter(|r| !matches!(r.verdict, Verdict::Better | Verdict::NonInferior))
            .map(GateRow::line),
    );
    let code = if reasons.is_empty() { GateCode::Pass } else { GateCode::Undecided };
    GateOutcome { code, reasons, rows }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML: one testcase per candidate × rubric; `worse` is a failure, anything undecided is
/// skipped with the reason.
pub fn junit(report: &Report, outcome: &GateOutcome) -> String {
    let failures = outcome.rows.iter().filter(|r| r.verdict == Verdict::Worse).count();
    let skipped = outcome
        .rows
        .iter()
        .filter(|r| !matches!(r.verdict, Verdict::Better | Verdict::NonInferior | Verdict::Worse))
        .count();
    let name = xml_escape(&format!("evaltap-gate: {}", report.experiment));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{name}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        outcome.rows.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
        outcome.rows.len()
    );
    if report.status != "done" {
        let _ = writeln!(
            out,
            "    <properties><property name=\"status\" value=\"{}\"/></properties>",
            xml_escape(&report.status)
        );
    }
    for row in &outcome.rows {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">",
            xml_escape(&format!("{}.{}", report.experiment, row.candidate)),
            xml_escape(&row.rubric)
        );
        match row.verdict {
            Verdict::Worse => {
                let _ = write!(out, "<failure message=\"{}\" type=\"regression\"/>", xml_escape(&row.line()));
            }
            Verdict::Better | Verdict::NonInferior => {}
            _ => {
                let _ = write!(out, "<skipped message=\"{}\"/>", xml_escape(&row.line()));
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The items whose score dropped most for each candidate × rubric (pointwise rubrics): item id
/// and Δ, worst first.
pub async fn worst_items(
    store: &Store,
    experiment: &Experiment,
    per_rubric: usize,
) -> Result<HashMap<(String, String), Vec<(String, f64)>>, crate::AppError> {
    let mut scores: HashMap<(String, String), HashMap<String, f64>> = HashMap::new();
    for j in store.judgments(&experiment.id).await? {
        if let (Some(score), "") = (j.score, j.position.as_str()) {
            scores.entry((j.subject, j.rubric)).or_default().insert(j.item_id, score);
        }
    }
    let mut worst = HashMap::new();
    for candidate in &experiment.spec.candidates {
        for rubric in &experiment.spec.rubrics {
            let (Some(base), Some(cand)) = (
                scores.get(&(BASELINE.to_string(), rubric.clone())),
                scores.get(&(candidate.name.clone(), rubric.clone())),
            ) else {
                continue;
            };
            let mut drops: Vec<(String, f64)> = cand
                .iter()
                .filter_map(|(item, c)| base.get(item).map(|b| (item.clone(), c - b)))
                .filter(|(_, d)| *d < 0.0)
                .collect();
            drops.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            drops.truncate(per_rubric);
            worst.insert((candidate.name.clone(), rubric.clone()), drops);
        }
    }
    Ok(worst)
}
