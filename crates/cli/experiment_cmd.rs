//! `evaltap experiment …`, `evaltap report` and `evaltap gate`: parse and print around the
//! worker's experiment creation, the report and the gate (`evaltap_app::gate`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use evaltap_app::App;
use evaltap_store::Filter;
use evaltap_worker::ExperimentRequest;

/// `--early-stop-on`: what settles a candidate ([`evaltap_store::StopOn`]).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum EarlyStopOn {
    Segments,
    Verdicts,
}

impl From<EarlyStopOn> for evaltap_store::StopOn {
    fn from(choice: EarlyStopOn) -> Self {
        match choice {
            EarlyStopOn::Segments => evaltap_store::StopOn::Segments,
            EarlyStopOn::Verdicts => evaltap_store::StopOn::Verdicts,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExperimentCommand {
    /// Create an experiment and enqueue its replays and judgments.
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Candidates from evaltap.toml (comma-separated or repeated).
        #[arg(long = "candidate", required = true, value_delimiter = ',')]
        candidates: Vec<String>,
        /// Rubric (repeat for several; when omitted, every rubric that applies: not those
        /// needing references, nor pairwise ones against a replayed baseline).
        #[arg(long = "rubric", value_delimiter = ',')]
        rubrics: Vec<String>,
        /// Exchanges to sample (all matching when omitted).
        #[arg(long)]
        sample: Option<usize>,
        /// Only exchanges from this source.
        #[arg(long)]
        source: Option<String>,
        /// Only exchanges served by this model.
        #[arg(long)]
        model: Option<String>,
        /// Only exchanges with this tag value, as KEY=VALUE (`--tag route=support`; repeat for
        /// several).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Non-inferiority margin on the [0, 1] scale [default: 0.02].
        #[arg(long)]
        margin: Option<f64>,
        /// Most to spend on candidate replays and judge calls together, in USD; work past it is
        /// skipped and the report says so.
        #[arg(long)]
        spend_cap_usd: Option<f64>,
        /// Judge calls averaged per item and rubric (default: `[judge].samples`, else 1).
        #[arg(long)]
        judge_samples: Option<usize>,
        /// Print the estimated cost (replays and judge apart) and create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not add the checks the traffic calls for (tool_call and tool_arguments_valid when
        /// production answers call tools, response_format when requests set one).
        #[arg(long)]
        no_auto_checks: bool,
        /// Replay every sampled exchange, even for a candidate whose verdict is settled early
        /// (by default a candidate stops once every rubric has a settled always-valid verdict).
        #[arg(long)]
        no_early_stop: bool,
        /// What early stopping waits for: `segments` also settles each segment of `[recommend]
        /// segment_by` (the per-segment recommendations need that evidence); `verdicts` stops a
        /// candidate on its whole-sample verdicts alone, which costs less and leaves its
        /// segments with the pairs made before the stop.
        #[arg(long, value_enum, default_value_t = EarlyStopOn::Segments)]
        early_stop_on: EarlyStopOn,
        /// Pay for every replay and judgment again instead of reusing the ones already paid for
        /// (same request to the same endpoint and model, same prompt to the same judge).
        #[arg(long)]
        no_cache: bool,
    },
    /// Print what an experiment froze: sample, candidates, rubrics (text hash, mode, scale) and
    /// the judge with its parameters.
    Show {
        /// Experiment name.
        name: String,
    },
    /// Run an experiment's remaining work in this process until it is done, then print the report.
    Run {
        /// Experiment name.
        name: String,
        /// Jobs in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Push every unfinished job again, including work already queued — for jobs the queue
        /// gave up on after repeated storage errors. Duplicates call no model: claims decide.
        #[arg(long)]
        requeue: bool,
    },
    /// List experiments.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `evaltap experiment` command.
pub(crate) async fn dispatch(app: &App, command: &ExperimentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExperimentCommand::Create {
            name,
            candidates,
            rubrics,
            sample,
            source,
            model,
            tags,
            margin,
            spend_cap_usd,
            judge_samples,
            dry_run,
            no_auto_checks,
            no_early_stop,
            early_stop_on,
            no_cache,
        } => {
            let request = ExperimentRequest {
                name: name.clone(),
                candidates: candidates.clone(),
                rubrics: rubrics.clone(),
                sample_size: *sample,
                filter: Filter {
                    source: source.clone(),
                    model: model.clone(),
                    tags: tags.iter().cloned().collect(),
                    ..Filter::default()
                },
                margin: *margin,
                spend_cap_usd: *spend_cap_usd,
                judge_samples: *judge_samples,
                dataset: None,
                baseline: None,
                checks: Vec::new(),
                auto_checks: !*no_auto_checks,
                early_stop: !*no_early_stop,
                early_stop_on: (*early_stop_on).into(),
                cache: !*no_cache,
            };
            let spec =
                evaltap_worker::plan_experiment(&app.config, &app.rubrics, &app.store, request.clone())
                    .await?;
            println!("{}", evaltap_worker::estimate_cost(&app.store, &app.rubrics, &spec).await?.line());
            if *dry_run {
                return Ok(ExitCode::SUCCESS);
            }
            let experiment =
                evaltap_worker::create_experiment(&app.config, &app.rubrics, &app.store, request).await?;
            let progress = app.progress(&experiment).await?;
            println!(
                "created experiment `{}` ({}): {} exchanges × {} candidates, {} rubrics; run it with `evaltap experiment run {}` or a running `evaltap serve`",
                experiment.spec.name,
                experiment.id,
                progress.exchanges,
                experiment.spec.candidates.len(),
                experiment.spec.rubrics.len(),
                experiment.spec.name
            );
        }
        ExperimentCommand::Run { name, concurrency, requeue } => {
            let experiment = app.store.require_experiment(name).await?;
            if *requeue {
                let requeued =
                    evaltap_worker::requeue_unfinished(&app.store, &app.queue, &experiment).await?;
                let left = match requeued.in_batches {
                    0 => String::new(),
                    n => format!(" ({n} out in batches are left to them)"),
                };
                eprintln!("requeued {} unfinished jobs{left}", requeued.pushed);
            } else {
                evaltap_worker::enqueue_missing(&app.store, &experiment).await?;
            }
            crate::demo::run_with_progress(app, &experiment, *concurrency, false).await?;
            let report = evaltap_report::build(&app.store, &experiment).await?;
            print!("{}", evaltap_report::render_text(&report));
        }
        ExperimentCommand::List { json: true } => {
            let mut rows = Vec::new();
            for experiment in app.store.experiments().await? {
                let progress = app.progress(&experiment).await?;
                rows.push(serde_json::json!({
                    "name": experiment.spec.name,
                    "id": experiment.id,
                    "created_at": experiment.created_at,
                    "done": progress.is_done(),
                    "completed": progress.completed(),
                    "total": progress.total(),
                    "candidates": experiment.spec.candidates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                    "rubrics": experiment.spec.rubrics,
                    "dataset": experiment.spec.dataset.as_ref().map(|d| &d.name),
                }));
            }
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        ExperimentCommand::List { json: false } => {
            for experiment in app.store.experiments().await? {
                let progress = app.progress(&experiment).await?;
                println!(
                    "{}\t{}\t{}/{} done\t{}",
                    experiment.spec.name,
                    experiment.created_at.format("%Y-%m-%d %H:%M"),
                    progress.completed(),
                    progress.total(),
                    experiment.spec.candidates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")
                );
            }
        }
        ExperimentCommand::Show { name } => {
            let experiment = app.store.require_experiment(name).await?;
            let exchanges = app.store.experiment_item_ids(&experiment.id).await?.len();
            print!("{}", crate::judge_cmd::show_experiment(&experiment, exchanges));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `evaltap gate`: exit 0 pass, 1 a significant regression, 2 undecided.
pub(crate) async fn gate(
    app: &App,
    name: &str,
    candidate: Option<&str>,
    junit: Option<&Path>,
    markdown: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let experiment = app.store.require_experiment(name).await?;
    let report = evaltap_report::stored(&app.store, &experiment).await?;
    if let Some(wanted) = candidate
        && !report.candidates.iter().any(|c| c.name == wanted)
    {
        let known: Vec<&str> = report.candidates.iter().map(|c| c.name.as_str()).collect();
        return Err(crate::UsageError(format!(
            "experiment `{name}` has no candidate `{wanted}` (its candidates: {})",
            known.join(", ")
        ))
        .into());
    }
    let outcome = evaltap_app::gate::evaluate(&report, candidate);
    if let Some(path) = junit {
        std::fs::write(path, evaltap_app::gate::junit(&report, &outcome))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty());
    if markdown.is_some() || summary.is_some() {
        let worst = evaltap_app::gate::worst_items(&app.store, &experiment, 5).await?;
        let text = crate::gate_comment::markdown(&report, &outcome, &worst, app.config.public_url.as_deref());
        if let Some(path) = markdown {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = summary {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening GITHUB_STEP_SUMMARY {}", path.display()))?;
            writeln!(file, "{text}").context("appending to GITHUB_STEP_SUMMARY")?;
        }
    }
    let verdict = match outcome.code {
        evaltap_app::gate::GateCode::Pass => "passed",
        evaltap_app::gate::GateCode::Regression => "failed (significant regression)",
        evaltap_app::gate::GateCode::Undecided => "undecided",
    };
    println!("gate {verdict}: experiment `{name}` ({})", report.status);
    for reason in &outcome.reasons {
        println!("  {reason}");
    }
    Ok(ExitCode::from(outcome.code as u8))
}

/// `evaltap report`: the stored report as a table, or its JSON.
pub(crate) async fn report(app: &App, name: &str, json: bool) -> anyhow::Result<()> {
    let experiment = app.store.require_experiment(name).await?;
    let report = evaltap_report::stored(&app.store, &experiment).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", evaltap_report::render_text(&report));
    }
    Ok(())
}

/// `KEY=VALUE` of `--tag`.
fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE (e.g. route=support), got `{text}`")),
    }
}
