//! `evaltap golden schedule …`: parses and prints around `evaltap_app::schedules`.

use clap::Subcommand;
use evaltap_app::App;

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Run dataset NAME against a candidate every period (the dataset's current version is
    /// pinned); the first three runs are the reference, each later run is tested against them,
    /// and a significant drop alerts.
    Add {
        /// Dataset name.
        #[arg(value_name = "DATASET")]
        name: String,
        /// Candidate from evaltap.toml (`--model` is kept as an alias).
        #[arg(long = "candidate", alias = "model")]
        model: String,
        /// Period: 6h, 30m, 1d…
        #[arg(long)]
        every: String,
        /// Judge rubric (repeat).
        #[arg(long = "rubric", value_delimiter = ',')]
        rubrics: Vec<String>,
        /// A deterministic check for every item (repeat).
        #[arg(long = "check")]
        checks: Vec<String>,
        /// A drop beyond this (and significant) alerts; back within it recovers.
        #[arg(long, default_value_t = evaltap_worker::DEFAULT_MARGIN)]
        margin: f64,
        /// Schedule name (default dataset:candidate; `--schedule-name` is kept as an alias).
        #[arg(long = "name", alias = "schedule-name")]
        schedule_name: Option<String>,
    },
    /// List schedules with their runs and open alerts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule (its runs' experiments stay).
    Rm {
        /// Schedule name.
        name: String,
    },
    /// Pause a schedule.
    Pause {
        /// Schedule name.
        name: String,
    },
    /// Resume a paused schedule.
    Resume {
        /// Schedule name.
        name: String,
    },
}

/// Runs one `evaltap golden schedule` command.
pub(crate) async fn dispatch(app: &App, command: &ScheduleCommand) -> anyhow::Result<()> {
    use ScheduleCommand as S;
    let ctx = app.context();
    match command {
        S::Add { name, model, every, rubrics, checks, margin, schedule_name } => {
            let new = evaltap_app::schedules::NewSchedule {
                dataset: name.clone(),
                candidate: model.clone(),
                every: every.clone(),
                rubrics: rubrics.clone(),
                checks: checks.clone(),
                margin: *margin,
                name: schedule_name.clone(),
            };
            let schedule = evaltap_app::schedules::add(&ctx, &new).await?;
            println!(
                "schedule `{}`: {name} (version {}) against {model} every {}; runs start in any `evaltap serve` or `evaltap worker`",
                schedule.name,
                &schedule.version[..12],
                humantime::format_duration(std::time::Duration::from_secs(
                    schedule.every_seconds.max(0) as u64
                ))
            );
        }
        S::List { json: true } => {
            println!("{}", serde_json::to_string_pretty(&evaltap_app::schedules::list(&ctx).await?)?);
        }
        S::List { json: false } => {
            let rows = evaltap_app::schedules::list(&ctx).await?;
            if rows.is_empty() {
                println!("no schedules (`evaltap golden schedule add DATASET --candidate C --every 6h`)");
            }
            for row in rows {
                let s = &row.schedule;
                let reference = if row.reference_runs < row.reference_needed && row.runs > row.failed_to_start
                {
                    format!(
                        " (reference {} of {}: no alerts before it is complete)",
                        row.reference_runs, row.reference_needed
                    )
                } else {
                    String::new()
                };
                println!(
                    "{:<28} {} against {} every {}{}: {}{}{}, {}{}",
                    s.name,
                    s.dataset,
                    s.candidate,
                    humantime::format_duration(std::time::Duration::from_secs(s.every_seconds.max(0) as u64)),
                    if s.paused { " (paused)" } else { "" },
                    evaltap_core::words::count(row.runs as u64, "run"),
                    if row.failed_to_start > 0 {
                        format!(" ({} could not start)", row.failed_to_start)
                    } else {
                        String::new()
                    },
                    reference,
                    evaltap_core::words::count(row.open_alerts as u64, "open alert"),
                    row.error.as_deref().map(|e| format!(" — FAILING: {e}")).unwrap_or_default()
                );
            }
        }
        S::Rm { name } => {
            let s = evaltap_app::schedules::remove(&ctx, name).await?;
            println!("deleted schedule `{}`", s.name);
        }
        S::Pause { name } | S::Resume { name } => {
            let paused = matches!(command, S::Pause { .. });
            let s = evaltap_app::schedules::set_paused(&ctx, name, paused).await?;
            println!("schedule `{}` {}", s.name, if paused { "paused" } else { "resumed" });
        }
    }
    Ok(())
}
