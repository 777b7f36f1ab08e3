//! `evaltap recommend`: parse and print around `evaltap_app::recommend` — per route, switch to
//! the cheapest candidate shown good enough or keep production, and the gateway configuration.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
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

#[derive(Debug, Subcommand)]
pub(crate) enum GuardCommand {
    /// Watch a route after its switch: every period, replay a sample of the route's new traffic
    /// against the former production model; alert (through [alerts]) when the new model is
    /// worse than the experiment's margin, and again when it recovers.
    Add {
        /// The experiment whose recommendation was applied.
        experiment: String,
        /// The switched route.
        #[arg(long)]
        route: String,
        /// Period between runs: 1h, 6h, 1d…
        #[arg(long, default_value = evaltap_app::guards::DEFAULT_EVERY)]
        every: String,
        /// Most exchanges replayed per run.
        #[arg(long, default_value_t = evaltap_app::guards::DEFAULT_SAMPLE)]
        sample: usize,
        /// The new model's name as the gateway reports it (default: the candidate's model).
        #[arg(long)]
        model: Option<String>,
        /// Guard name (default guard:EXPERIMENT:ROUTE).
        #[arg(long)]
        name: Option<String>,
    },
    /// The guards with their runs and open alerts (pause, resume and remove them with
    /// `evaltap golden schedule`).
    List,
}

fn describe(guard: &evaltap_store::Schedule) -> String {
    let spec = guard.spec.guard.as_ref();
    format!(
        "guard `{}`: {} on {}={}, replayed against {} every {} ({} exchanges a run, margin {})",
        guard.name,
        spec.map_or("", |g| g.model.as_str()),
        spec.map_or("", |g| g.tag.as_str()),
        spec.map_or("", |g| g.route.as_str()),
        guard.candidate,
        humantime::format_duration(std::time::Duration::from_secs(guard.every_seconds.max(0) as u64)),
        spec.map_or(0, |g| g.sample),
        guard.spec.margin
    )
}

/// Runs one `evaltap guard` command.
pub(crate) async fn guard(app: &App, command: &GuardCommand) -> anyhow::Result<()> {
    let ctx = app.context();
    match command {
        GuardCommand::Add { experiment, route, every, sample, model, name } => {
            let request = evaltap_app::guards::GuardRequest {
                experiment: experiment.clone(),
                route: route.clone(),
                every: every.clone(),
                sample: *sample,
                model: model.clone(),
                name: name.clone(),
            };
            let guard = evaltap_app::guards::add(&ctx, &request).await?;
            println!("{}; runs start in any `evaltap serve` or `evaltap worker`", describe(&guard));
        }
        GuardCommand::List => {
            let rows = evaltap_app::schedules::list(&ctx).await?;
            let guards: Vec<_> = rows.iter().filter(|r| r.schedule.spec.guard.is_some()).collect();
            if guards.is_empty() {
                println!(
                    "no guards (`evaltap guard add EXPERIMENT --route ROUTE`, or `evaltap recommend EXPERIMENT --watch`)"
                );
            }
            for row in guards {
                println!(
                    "{}: {}, {}{}",
                    describe(&row.schedule),
                    evaltap_core::words::count(row.runs as u64, "run"),
                    evaltap_core::words::count(row.open_alerts as u64, "open alert"),
                    row.error.as_deref().map(|e| format!(" — FAILING: {e}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// `evaltap recommend … --watch`: a guard on every switched route.
pub(crate) async fn watch(app: &App, name: &str) -> anyhow::Result<()> {
    let guards = evaltap_app::guards::add_for_switches(
        &app.context(),
        name,
        evaltap_app::guards::DEFAULT_EVERY,
        evaltap_app::guards::DEFAULT_SAMPLE,
    )
    .await?;
    if guards.is_empty() {
        eprintln!("no route is switched: nothing to watch");
    }
    for guard in &guards {
        eprintln!("{}", describe(guard));
    }
    Ok(())
}
