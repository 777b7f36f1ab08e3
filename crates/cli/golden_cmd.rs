//! `evaltap golden …`: parses and prints around the golden-set and schedule use cases of
//! `evaltap-app`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use evaltap_app::App;
use evaltap_app::golden::{
    GoldenRun, NewItem, Promotion, accept, add, datasets, export, import, list_rows, plan, promote,
    remove_items, start_run, sync,
};
use evaltap_golden::Check;
use evaltap_report::Report;
use evaltap_store::Filter;

#[derive(Debug, Subcommand)]
pub(crate) enum GoldenCommand {
    /// Start an empty dataset (`datasets/NAME.jsonl`).
    New {
        /// Dataset name.
        name: String,
        /// The non-inferiority margin its runs use unless given one (kept in `NAME.toml`).
        #[arg(long)]
        margin: Option<f64>,
    },
    /// Show, or set, the non-inferiority margin a dataset's runs use by default (`NAME.toml`
    /// beside its items); a small set can only show wide margins.
    Margin {
        /// Dataset name.
        name: String,
        /// The margin, on the [0, 1] scale.
        value: Option<f64>,
    },
    /// Add one item.
    Add {
        /// Dataset name.
        name: String,
        /// Item id (generated when omitted).
        #[arg(long)]
        id: Option<String>,
        /// The user's input, as one message.
        #[arg(long)]
        input: Option<String>,
        /// The chat messages, as a JSON array.
        #[arg(long)]
        messages: Option<String>,
        /// Reference answer.
        #[arg(long)]
        reference: Option<String>,
        /// A deterministic check (json_valid, regex=…, contains=…, equals[=…], max_length=N,
        /// tool_call, refusal, no_refusal, or a JSON object); repeat for several.
        #[arg(long = "check")]
        checks: Vec<String>,
        /// A tag key=value; repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List datasets with item counts, drafts and versions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a dataset's items.
    Show {
        /// Dataset name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove items (or, with --all, the whole dataset file; stored versions stay with the
    /// runs that used them).
    Rm {
        /// Dataset name.
        name: String,
        /// Item ids.
        items: Vec<String>,
        /// Remove the dataset itself.
        #[arg(long)]
        all: bool,
    },
    /// Import a file: native JSONL, langfuse, braintrust, promptfoo (YAML, JSON, JSONL, CSV),
    /// openai-evals or inspect. All or nothing.
    Import {
        /// Dataset name (created if missing).
        name: String,
        /// The file.
        file: PathBuf,
        /// Its format (detected when omitted).
        #[arg(long)]
        format: Option<String>,
        /// A source field with another name: ours=theirs (ours: id, input, reference,
        /// metadata, tags); repeat for several.
        #[arg(long = "map")]
        map: Vec<String>,
    },
    /// Write a dataset as native JSONL, langfuse or promptfoo.
    Export {
        /// Dataset name.
        name: String,
        /// Format.
        #[arg(long, default_value = "native")]
        format: String,
        /// Output file (stdout when omitted).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn stored production exchanges into items; the production answer becomes a draft
    /// reference until accepted.
    Promote {
        /// Dataset name (created if missing).
        name: String,
        /// Promote from stored traffic (the only source today; required for clarity).
        #[arg(long, required = true)]
        from_traffic: bool,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Only exchanges with this tag key=value; repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only exchanges received at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// How many to promote.
        #[arg(long)]
        sample: Option<usize>,
        /// Spread the sample evenly over route, model or source.
        #[arg(long)]
        stratify: Option<String>,
    },
    /// Accept draft references (all, or the named items).
    Accept {
        /// Dataset name.
        name: String,
        /// Item ids.
        items: Vec<String>,
        /// Accept every draft.
        #[arg(long)]
        all: bool,
    },
    /// Register the datasets' current files as versions in the database.
    Sync {
        /// Only this dataset.
        name: Option<String>,
    },
    /// Drift: run a dataset against a model on a schedule and alert on significant drops.
    #[command(subcommand)]
    Schedule(crate::schedule_cmd::ScheduleCommand),
    /// Drift alerts, newest first.
    Alerts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a dataset against candidates through the job queue and print the report.
    Run {
        /// Dataset name.
        #[arg(value_name = "DATASET")]
        name: String,
        /// Candidates from evaltap.toml (comma-separated or repeated).
        #[arg(long = "candidate", required = true, value_delimiter = ',')]
        candidates: Vec<String>,
        /// Compare with this configured candidate's answers.
        #[arg(long)]
        baseline: Option<String>,
        /// Compare with the items' reference answers.
        #[arg(long)]
        against_reference: bool,
        /// Judge rubric (repeat; default correctness_vs_reference when every item has a
        /// reference, else correctness; none when only --check is given).
        #[arg(long = "rubric", value_delimiter = ',')]
        rubrics: Vec<String>,
        /// A deterministic check for every item (repeat).
        #[arg(long = "check")]
        checks: Vec<String>,
        /// Name of the run (an experiment; `--run-name` is kept as an alias).
        #[arg(long = "name", alias = "run-name")]
        run_name: Option<String>,
        /// Non-inferiority margin [default: the dataset's `margin`, else 0.02].
        #[arg(long)]
        margin: Option<f64>,
        /// Spend cap in USD (replays and judge calls).
        #[arg(long)]
        spend_cap_usd: Option<f64>,
        /// Jobs in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print the report JSON.
        #[arg(long)]
        json: bool,
        /// Print the estimated cost (replays and judge apart) and run nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `golden list` as text.
pub async fn list(app: &App) -> anyhow::Result<String> {
    let rows = list_rows(&app.context()).await?;
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "no datasets in {} (`evaltap golden new NAME` starts one)",
            datasets(&app.context()).root().display()
        );
    }
    for row in rows {
        match &row.error {
            None => {
                let _ = writeln!(
                    out,
                    "{:<24} {:>11} {:>11}  version {}{}  ({})",
                    row.name,
                    evaltap_core::words::count(row.items as u64, "item"),
                    evaltap_core::words::count(row.drafts as u64, "draft"),
                    &row.version[..12.min(row.version.len())],
                    if row.synced { "" } else { " (not yet synced)" },
                    evaltap_core::words::count(row.stored_versions as u64, "stored version")
                );
            }
            Some(err) => {
                let _ = writeln!(out, "{:<24} unreadable: {err}", row.name);
            }
        }
    }
    Ok(out)
}

/// `golden run`: plans the run (printing its estimate and what the set can show), runs it
/// through a worker in this process with a progress bar unless `quiet`, returns the report.
pub async fn run(
    app: &App,
    dataset: &str,
    options: &GoldenRun,
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<Report> {
    let (experiment, plan) = start_run(&app.context(), dataset, options).await?;
    eprintln!("{}", plan.estimate.line());
    if let Some(note) = plan.note {
        eprintln!("{note}");
    }
    crate::demo::run_with_progress(app, &experiment, concurrency.max(1), quiet).await?;
    Ok(evaltap_report::build(&app.store, &experiment).await?)
}

/// A dataset's items as text.
pub fn show(ctx: &evaltap_app::Context, name: &str) -> anyhow::Result<String> {
    let items = datasets(ctx).read(name)?;
    let mut out = format!(
        "dataset {name}: {} items, version {}\n",
        items.len(),
        &evaltap_golden::version_of(&items)[..12]
    );
    for item in &items {
        let input: String = item.input_text().chars().take(70).collect();
        let _ = writeln!(
            out,
            "{:<20} {}{}  reference: {}  checks: {}",
            item.id,
            input,
            if item.draft { "  [draft]" } else { "" },
            item.reference.as_deref().map_or("—".to_string(), |r| r.chars().take(40).collect()),
            item.checks.iter().map(Check::name).collect::<Vec<_>>().join(",")
        );
    }
    Ok(out)
}

/// Runs one `evaltap golden` command.
pub(crate) async fn dispatch(app: &App, command: &GoldenCommand) -> anyhow::Result<std::process::ExitCode> {
    let ctx = app.context();
    use GoldenCommand as G;
    match command {
        G::New { name, margin } => {
            let dir = datasets(&ctx);
            if let Some(margin) = margin {
                dir.write_settings(name, &evaltap_golden::DatasetSettings { margin: Some(*margin) })?;
            }
            dir.create(name)?;
            println!("created {}", dir.path(name)?.display());
        }
        G::Margin { name, value } => {
            let dir = datasets(&ctx);
            if !dir.exists(name) {
                return Err(crate::UsageError(format!("no dataset `{name}`")).into());
            }
            let mut settings = dir.settings(name)?;
            if let Some(value) = value {
                settings.margin = Some(*value);
                dir.write_settings(name, &settings)?;
            }
            match settings.margin {
                Some(m) => println!(
                    "{name}: runs use margin {m} unless given --margin ({})",
                    dir.settings_path(name)?.display()
                ),
                None => println!(
                    "{name}: runs use the default margin {} unless given --margin",
                    evaltap_worker::DEFAULT_MARGIN
                ),
            }
        }
        G::Add { name, id, input, messages, reference, checks, tags } => {
            let new = NewItem {
                id: id.clone(),
                input: input.clone(),
                messages: messages.clone(),
                reference: reference.clone(),
                checks: checks.clone(),
                tags: tags.clone(),
            };
            let id = add(&ctx, name, &new)?;
            let (version, _, count) = sync(&ctx, name).await?;
            println!("added `{id}` to {name} ({count} items, version {})", &version[..12]);
        }
        G::List { json: false } => print!("{}", list(app).await?),
        G::List { json: true } => println!("{}", serde_json::to_string_pretty(&list_rows(&ctx).await?)?),
        G::Show { name, json: false } => print!("{}", show(&ctx, name)?),
        G::Show { name, json: true } => {
            let items = datasets(&ctx).read(name)?;
            let version = evaltap_golden::version_of(&items);
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"name": name, "version": version, "items": items})
                )?
            );
        }
        G::Rm { name, items, all } => {
            if *all {
                if !items.is_empty() {
                    bail!("give item ids or --all, not both");
                }
                datasets(&ctx).remove(name)?;
                println!("removed dataset {name} (its stored versions stay with the runs that used them)");
            } else {
                if items.is_empty() {
                    bail!("name the items to remove, or pass --all to remove the dataset");
                }
                let removed = remove_items(&ctx, name, items)?;
                println!("removed {removed} items from {name}");
            }
        }
        G::Import { name, file, format, map } => {
            let (count, notes) = import(&ctx, name, file, format.as_deref(), map)?;
            let (version, _, total) = sync(&ctx, name).await?;
            println!("imported {count} items into {name} ({total} items, version {})", &version[..12]);
            for note in notes {
                println!("  {note}");
            }
        }
        G::Export { name, format, out } => {
            let text = export(&ctx, name, format)?;
            match out {
                Some(path) => {
                    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
                }
                None => print!("{text}"),
            }
        }
        G::Promote { name, from_traffic: _, source, model, tags, since, sample, stratify } => {
            let promotion = Promotion {
                filter: Filter {
                    source: source.clone(),
                    model: model.clone(),
                    since: *since,
                    ..Filter::default()
                },
                tags: tags.clone(),
                sample: *sample,
                stratify: stratify.clone(),
            };
            let ids = promote(&ctx, name, &promotion).await?;
            println!(
                "promoted {} exchanges into {name} as drafts; review the references, then `evaltap golden accept {name} --all`",
                ids.len()
            );
        }
        G::Accept { name, items, all } => {
            let accepted = accept(&ctx, name, *all, items)?;
            let (version, _, _) = sync(&ctx, name).await?;
            println!("accepted {accepted} references in {name} (version {})", &version[..12]);
        }
        G::Sync { name } => {
            let names = match name {
                Some(n) => vec![n.clone()],
                None => datasets(&ctx).names()?,
            };
            for name in names {
                let (version, new, count) = sync(&ctx, &name).await?;
                println!(
                    "{name}: {count} items, version {}{}",
                    &version[..12],
                    if new { " (new)" } else { "" }
                );
            }
        }
        G::Schedule(command) => crate::schedule_cmd::dispatch(app, command).await?,
        G::Alerts { json: true } => println!("{}", serde_json::to_string_pretty(&app.store.alerts().await?)?),
        G::Alerts { json: false } => {
            let alerts = app.store.alerts().await?;
            if alerts.is_empty() {
                println!("no drift alerts");
            }
            for alert in alerts {
                println!(
                    "{} {:<7} {} on {}: opened {} ({}){}",
                    alert.id,
                    alert.status,
                    alert.details["schedule"].as_str().unwrap_or_default(),
                    alert.rubric,
                    alert.opened_at.format("%Y-%m-%d %H:%M"),
                    alert.details["delta"].as_f64().map_or(String::new(), |d| format!("Δ {d:+.3}")),
                    alert
                        .closed_at
                        .map(|t| format!(", recovered {}", t.format("%Y-%m-%d %H:%M")))
                        .unwrap_or_default()
                );
            }
        }
        G::Run {
            name,
            candidates,
            baseline,
            against_reference,
            rubrics,
            checks,
            run_name,
            margin,
            spend_cap_usd,
            concurrency,
            json,
            dry_run,
        } => {
            let options = GoldenRun {
                candidates: candidates.clone(),
                baseline: baseline.clone(),
                against_reference: *against_reference,
                rubrics: rubrics.clone(),
                checks: checks.clone(),
                name: run_name.clone(),
                margin: *margin,
                spend_cap_usd: *spend_cap_usd,
            };
            if *dry_run {
                println!("{}", plan(&ctx, name, &options).await?.estimate.line());
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let report = run(app, name, &options, *concurrency, *json).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", evaltap_report::render_text(&report));
                println!("gate it in CI: evaltap gate '{}'", report.experiment);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
