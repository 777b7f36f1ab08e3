//! `evaltap recommend`: parse and print around `evaltap_app::recommend` — per route, switch to
//! the cheapest candidate shown good enough or keep production, and the gateway configuration.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use evaltap_app::App;
use evaltap_recommend::export::ExportOptions;
use evaltap_recommend::{Action, Recommendations};
use evaltap_report::savings::dollars;

/// The recommendations as a table a person reads.
pub fn render_text(recommendations: &Recommendations) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Recommendations for {} ({}; split by {}; margin {}; {} tests in the family)",
        recommendations.experiment,
        recommendations.status,
        recommendations.segment_by.join(" × "),
        recommendations.margin,
        recommendations.family_size
    );
    for segment in &recommendations.segments {
        let share = 100.0 * segment.traffic_share;
        match segment.action {
            Action::Switch => {
                let _ = writeln!(
                    out,
                    "  {:<24} {share:>4.0}% of traffic  SWITCH {} → {} ({}), saves {}/month",
                    segment.segment,
                    segment.production_model,
                    segment.candidate.as_deref().unwrap_or(""),
                    segment.model.as_deref().unwrap_or(""),
                    dollars(segment.monthly_saving_usd.unwrap_or(0.0)),
                );
            }
            Action::Keep => {
                let _ = writeln!(
                    out,
                    "  {:<24} {share:>4.0}% of traffic  KEEP {}",
                    segment.segment, segment.production_model
                );
            }
        }
        let _ = writeln!(out, "      {}", segment.reason);
        if segment.action == Action::Switch {
            // What a cheaper candidate fell short on, so the choice reads as a choice.
            for passed_over in segment.considered.iter().take_while(|c| !c.eligible) {
                let _ = writeln!(
                    out,
                    "      cheaper {} not chosen: {}",
                    passed_over.candidate, passed_over.reason
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "Monthly saving if applied: {} (on {:.0} requests/month: {})",
        dollars(recommendations.monthly_saving_usd),
        recommendations.volume.monthly_requests,
        recommendations.volume.scaling
    );
    let _ = writeln!(out, "Guarantee: {}.", recommendations.guarantee);
    out
}

/// `evaltap recommend NAME [--format F] [--canary PCT] [--out FILE]`.
pub async fn recommend(
    app: &App,
    name: &str,
    format: Option<&str>,
    canary: Option<u8>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let ctx = app.context();
    let (text, notes) = match format {
        None if canary.is_some() => {
            return Err(crate::UsageError("--canary applies to an export: add --format".into()).into());
        }
        None => (render_text(&evaltap_app::recommend::recommendations(&ctx, name).await?), Vec::new()),
        Some(format) => {
            let options = ExportOptions { canary_pct: canary };
            let (_, export) = evaltap_app::recommend::export_recommendations(&ctx, name, format, &options)
                .await
                .map_err(|err| match err {
                    // An export the recommendations cannot be written as is the caller's to fix.
                    evaltap_app::AppError::Invalid(msg) => anyhow::Error::new(crate::UsageError(msg)),
                    other => other.into(),
                })?;
            (export.body, export.notes)
        }
    };
    match out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}{}", text, if text.ends_with('\n') { "" } else { "\n" }),
    }
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(())
}
