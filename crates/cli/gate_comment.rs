//! The gate's pull-request comment (`evaltap gate --markdown`): links into the dashboard, so it
//! sits with the binary that knows the server's paths.

use std::collections::HashMap;
use std::fmt::Write as _;

use evaltap_app::gate::{GateCode, GateOutcome};
use evaltap_report::Report;

/// A pull-request comment. Its first line is a hidden marker so a bot can update one sticky
/// comment per experiment.
pub fn markdown(
    report: &Report,
    outcome: &GateOutcome,
    worst: &HashMap<(String, String), Vec<(String, f64)>>,
    public_url: Option<&str>,
) -> String {
    use evaltap_server::path_segment;
    let experiment_url = public_url.map(|base| {
        format!("{}/experiments/{}", base.trim_end_matches('/'), path_segment(&report.experiment))
    });
    // A row's link: that candidate's examples on that rubric, worst first.
    let row_link = |text: &str, candidate: &str, rubric: &str| match &experiment_url {
        Some(url) => format!(
            "[{text}]({url}/examples?candidate={}&rubric={}&direction=regressions)",
            path_segment(candidate),
            path_segment(rubric)
        ),
        None => text.to_string(),
    };
    let mut out = format!("<!-- evaltap-gate: {} -->\n", report.experiment);
    let headline = match outcome.code {
        GateCode::Pass => "✅ passed: every rubric is non-inferior or better",
        GateCode::Regression => "❌ failed: significant regression",
        GateCode::Undecided => "⚠️ undecided: not enough evidence yet",
    };
    let title = match &experiment_url {
        Some(url) => format!("[`{}`]({url})", report.experiment),
        None => format!("`{}`", report.experiment),
    };
    let _ = writeln!(out, "### evaltap gate {title} — {headline}\n");
    let _ = writeln!(
        out,
        "Status {}, baseline {} on {}, ${:.6} per request, non-inferiority margin {}.\n",
        report.status,
        report.baseline.describe(),
        evaltap_core::words::count(report.baseline.n as u64, "item"),
        report.baseline.cost_per_request_usd,
        report.margin
    );
    out.push_str(
        "| candidate | rubric | baseline | candidate | Δ (95% CI) | verdict | $/request | cost Δ |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---|---:|---:|\n");
    for row in &outcome.rows {
        let cost = report.candidates.iter().find(|c| c.name == row.candidate);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:+.3} [{:+.3}, {:+.3}] | {} | {} | {} |",
            row.candidate,
            row.rubric,
            row.baseline,
            row.candidate_mean,
            row.delta,
            row.ci.0,
            row.ci.1,
            row_link(row.verdict.as_str(), &row.candidate, &row.rubric),
            cost.and_then(|c| c.cost_per_request_usd).map_or("unknown".to_string(), |v| format!("${v:.6}")),
            cost.and_then(|c| c.cost_delta_pct).map_or("—".to_string(), |v| format!("{v:+.1}%")),
        );
    }
    let regressions: Vec<_> = outcome
        .rows
        .iter()
        .filter_map(|r| {
            worst.get(&(r.candidate.clone(), r.rubric.clone())).filter(|w| !w.is_empty()).map(|w| (r, w))
        })
        .collect();
    if !regressions.is_empty() {
        out.push_str("\n**Items that regressed most**\n\n");
        for (row, items) in regressions {
            let list: Vec<String> = items
                .iter()
                .map(|(id, d)| match &experiment_url {
                    Some(url) => format!(
                        "[`{id}`]({url}/examples/{}#{}) ({d:+.2})",
                        path_segment(id),
                        path_segment(&row.candidate)
                    ),
                    None => format!("`{id}` ({d:+.2})"),
                })
                .collect();
            let _ = writeln!(out, "- {} on {}: {}", row.candidate, row.rubric, list.join(", "));
        }
    }
    if !outcome.reasons.is_empty() && outcome.code == GateCode::Undecided {
        out.push('\n');
        for reason in &outcome.reasons {
            let _ = writeln!(out, "- {reason}");
        }
    }
    out
}
