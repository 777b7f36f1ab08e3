//! `evaltap golden …`: golden datasets kept as files under `datasets/`, versioned in the
//! database, promoted from production traffic, and run through the same queue, judges and
//! statistics as experiments.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use evaltap_golden::{Check, DatasetDir, FieldMap, Item, formats};
use evaltap_report::Report;
use evaltap_store::{BaselineSpec, DatasetRef, Filter};
use evaltap_worker::ExperimentRequest;
use serde_json::{Map, Value, json};

use crate::app::App;

/// The dataset folder of a configuration.
pub fn datasets(app: &App) -> DatasetDir {
    DatasetDir::new(&app.config.datasets_dir)
}

/// Registers the current content of dataset `name` as a version; returns (version, whether it
/// was new).
pub async fn sync(app: &App, name: &str) -> anyhow::Result<(String, bool, usize)> {
    let (version, new, items) = sync_items(app, name).await?;
    Ok((version, new, items.len()))
}

/// [`sync`], returning the items it read.
async fn sync_items(app: &App, name: &str) -> anyhow::Result<(String, bool, Vec<Item>)> {
    let items = datasets(app).read(name)?;
    let version = evaltap_golden::version_of(&items);
    let rows: Vec<(String, Value)> =
        items.iter().map(|i| Ok((i.id.clone(), serde_json::to_value(i)?))).collect::<anyhow::Result<_>>()?;
    let new = app.store.register_dataset_version(name, &version, &rows).await?;
    Ok((version, new, items))
}

/// Parses `k=v` tags.
pub fn parse_tags(tags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    tags.iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("tag `{t}`: write it as key=value"))
        })
        .collect()
}

/// What `golden add` is given.
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    /// Item id (generated when absent).
    pub id: Option<String>,
    /// A plain user input.
    pub input: Option<String>,
    /// Chat messages, as JSON.
    pub messages: Option<String>,
    /// Reference answer.
    pub reference: Option<String>,
    /// Checks (`--check` syntax).
    pub checks: Vec<String>,
    /// `k=v` tags.
    pub tags: Vec<String>,
}

/// Adds one item to a dataset (creating it); returns the item's id.
pub fn add(app: &App, name: &str, new: &NewItem) -> anyhow::Result<String> {
    let dir = datasets(app);
    let existing = if dir.exists(name) { dir.read(name)? } else { Vec::new() };
    let messages = match (&new.input, &new.messages) {
        (Some(input), None) => vec![json!({"role": "user", "content": input})],
        (None, Some(json)) => {
            let value: Value = serde_json::from_str(json).context("--messages is not JSON")?;
            evaltap_golden::messages_from_input(&value).map_err(|e| anyhow::anyhow!("--messages {e}"))?
        }
        _ => bail!("give --input TEXT or --messages JSON"),
    };
    let id = new.id.clone().unwrap_or_else(|| {
        let taken: HashSet<&str> = existing.iter().map(|i| i.id.as_str()).collect();
        (existing.len() + 1..)
            .map(|n| format!("item-{n}"))
            .find(|id| !taken.contains(id.as_str()))
            .unwrap_or_default()
    });
    let checks = new.checks.iter().map(|c| Check::parse_arg(c)).collect::<Result<Vec<_>, _>>()?;
    let item = Item {
        id: id.clone(),
        messages,
        reference: new.reference.clone(),
        checks,
        tags: parse_tags(&new.tags)?,
        metadata: Map::new(),
        draft: false,
    };
    dir.append(name, vec![item])?;
    Ok(id)
}

/// Imports a foreign (or native) file into a dataset, all or nothing; returns the count and
/// what became of the source's fields (mapped, skipped and why).
pub fn import(
    app: &App,
    name: &str,
    file: &Path,
    format: Option<&str>,
    map: &[String],
) -> anyhow::Result<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let path = file.display().to_string();
    let detected = formats::detect(&path, &text);
    let format = format.unwrap_or(detected);
    let mut notes = evaltap_golden::ImportNotes::default();
    let items = formats::by_name(format)?.import_noting(&path, &text, &FieldMap::parse(map)?, &mut notes)?;
    if items.is_empty() {
        bail!("{path}: no items");
    }
    let count = items.len();
    datasets(app).append(name, items)?;
    let mut lines = notes.lines();
    if format != detected && !notes.skipped.is_empty() {
        lines.push(format!(
            "this file looks like `{detected}`, not `{format}`: `--format {detected}` would read what was skipped"
        ));
    }
    Ok((count, lines))
}

/// A dataset in another tool's shape.
pub fn export(app: &App, name: &str, format: &str) -> anyhow::Result<String> {
    let items = datasets(app).read(name)?;
    formats::by_name(format)?
        .export(&items)
        .with_context(|| format!("format `{format}` is import-only (export: native, langfuse, promptfoo)"))
}

/// Which production exchanges to promote.
#[derive(Debug, Clone, Default)]
pub struct Promotion {
    /// Source, model and time window.
    pub filter: Filter,
    /// Tags the exchange must carry (`k=v`).
    pub tags: Vec<String>,
    /// How many to take (all matching when absent).
    pub sample: Option<usize>,
    /// Spread the sample evenly over `route`, `model` or `source`.
    pub stratify: Option<String>,
}

pub(crate) fn tag_value(tags: &Value, key: &str) -> Option<String> {
    match tags.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Turns stored production exchanges into items whose reference is the production answer,
/// flagged as a draft until accepted. Exchanges already promoted into the dataset are skipped.
/// Returns the ids added.
pub async fn promote(app: &App, name: &str, promotion: &Promotion) -> anyhow::Result<Vec<String>> {
    let wanted_tags = parse_tags(&promotion.tags)?;
    if let Some(s) = promotion.stratify.as_deref()
        && !["route", "model", "source"].contains(&s)
    {
        bail!("--stratify {s}: use route, model or source");
    }
    let dir = datasets(app);
    let existing = if dir.exists(name) { dir.read(name)? } else { Vec::new() };
    let promoted: HashSet<String> =
        existing.iter().filter_map(|i| i.metadata.get("exchange_id")?.as_str().map(str::to_owned)).collect();
    let mut pool: Vec<_> = app
        .store
        .matching_exchanges(&promotion.filter)
        .await?
        .into_iter()
        .filter(|e| !promoted.contains(&e.id))
        .filter(|e| wanted_tags.iter().all(|(k, v)| tag_value(&e.exchange.tags, k).as_deref() == Some(v)))
        .filter(|e| !evaltap_core::chat::messages(&e.exchange.request).is_empty())
        .collect();
    // A stable order that does not follow arrival: the same call promotes the same exchanges,
    // and the same traffic (by content, not by the row ids it happened to get) the same sample.
    pool.sort_by_cached_key(|e| {
        xxhash_rust::xxh3::xxh3_64(format!("{name}\u{0}{}", e.exchange.dedup_key()).as_bytes())
    });
    let take = promotion.sample.unwrap_or(pool.len()).min(pool.len());
    let chosen: Vec<_> = match promotion.stratify.as_deref() {
        None => pool.into_iter().take(take).collect(),
        Some(by) => {
            let stratum = |e: &evaltap_store::StoredExchange| match by {
                "model" => e.exchange.model.clone().unwrap_or_default(),
                "source" => e.source.clone(),
                _ => tag_value(&e.exchange.tags, "route").unwrap_or_default(),
            };
            let mut strata: BTreeMap<String, std::collections::VecDeque<_>> = BTreeMap::new();
            for e in pool {
                strata.entry(stratum(&e)).or_default().push_back(e);
            }
            // Round-robin over the strata so each is represented as evenly as it can be.
            let mut chosen = Vec::with_capacity(take);
            while chosen.len() < take {
                let before = chosen.len();
                for queue in strata.values_mut() {
                    if chosen.len() < take
                        && let Some(e) = queue.pop_front()
                    {
                        chosen.push(e);
                    }
                }
                if chosen.len() == before {
                    break;
                }
            }
            chosen
        }
    };
    let items: Vec<Item> = chosen
        .iter()
        .map(|e| {
            let ex = &e.exchange;
            let mut tags: BTreeMap<String, String> = match &ex.tags {
                Value::Object(map) => {
                    map.iter().filter_map(|(k, _)| tag_value(&ex.tags, k).map(|v| (k.clone(), v))).collect()
                }
                _ => BTreeMap::new(),
            };
            tags.insert("source".into(), e.source.clone());
            if let Some(model) = &ex.model {
                tags.insert("model".into(), model.clone());
            }
            let mut metadata = Map::new();
            metadata.insert("exchange_id".into(), json!(e.id));
            metadata.insert("promoted_from".into(), json!("traffic"));
            Item {
                id: format!("ex-{}", e.id),
                messages: evaltap_core::chat::messages(&ex.request).to_vec(),
                reference: Some(evaltap_core::chat::response_text(&ex.response)),
                checks: Vec::new(),
                tags,
                metadata,
                draft: true,
            }
        })
        .collect();
    let ids = items.iter().map(|i| i.id.clone()).collect();
    dir.append(name, items)?;
    Ok(ids)
}

/// Accepts draft references: every one with `all`, else the named items. Returns how many.
pub fn accept(app: &App, name: &str, all: bool, ids: &[String]) -> anyhow::Result<usize> {
    if !all && ids.is_empty() {
        bail!("name the items to accept, or pass --all");
    }
    let dir = datasets(app);
    let mut items = dir.read(name)?;
    let known: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    if let Some(missing) = ids.iter().find(|id| !known.contains(id.as_str())) {
        bail!("dataset `{name}` has no item `{missing}`");
    }
    let mut accepted = 0;
    for item in items.iter_mut().filter(|i| i.draft && (all || ids.contains(&i.id))) {
        item.draft = false;
        accepted += 1;
    }
    dir.write(name, &items)?;
    Ok(accepted)
}

/// Removes items from a dataset; returns how many.
pub fn remove_items(app: &App, name: &str, ids: &[String]) -> anyhow::Result<usize> {
    let dir = datasets(app);
    let items = dir.read(name)?;
    let known: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    if let Some(missing) = ids.iter().find(|id| !known.contains(id.as_str())) {
        bail!("dataset `{name}` has no item `{missing}`");
    }
    let before = known.len();
    let kept: Vec<Item> = items.into_iter().filter(|i| !ids.contains(&i.id)).collect();
    let removed = before - kept.len();
    dir.write(name, &kept)?;
    Ok(removed)
}

/// The datasets with their item counts, drafts and stored versions, as text.
/// One dataset as `golden list` shows it.
#[derive(Debug, serde::Serialize)]
pub struct DatasetRow {
    /// Dataset name.
    pub name: String,
    /// Items in its file.
    pub items: usize,
    /// Items whose reference is still a draft.
    pub drafts: usize,
    /// The file's content version.
    pub version: String,
    /// Whether that version is registered in the database.
    pub synced: bool,
    /// Versions registered in the database.
    pub stored_versions: usize,
    /// Why the file does not read, when it does not.
    pub error: Option<String>,
}

/// The datasets with their counts and versions.
pub async fn list_rows(app: &App) -> anyhow::Result<Vec<DatasetRow>> {
    let dir = datasets(app);
    let mut rows = Vec::new();
    for name in dir.names()? {
        let versions = app.store.dataset_versions(&name).await?;
        let row = match dir.read(&name) {
            Ok(items) => {
                let version = evaltap_golden::version_of(&items);
                DatasetRow {
                    items: items.len(),
                    drafts: items.iter().filter(|i| i.draft).count(),
                    synced: versions.iter().any(|v| v.version == version),
                    version,
                    stored_versions: versions.len(),
                    error: None,
                    name,
                }
            }
            Err(err) => DatasetRow {
                name,
                items: 0,
                drafts: 0,
                version: String::new(),
                synced: false,
                stored_versions: versions.len(),
                error: Some(err.to_string()),
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// `golden list` as text.
pub async fn list(app: &App) -> anyhow::Result<String> {
    let rows = list_rows(app).await?;
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "no datasets in {} (`evaltap golden new NAME` starts one)",
            datasets(app).root().display()
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

/// How to run a dataset.
#[derive(Debug, Clone, Default)]
pub struct GoldenRun {
    /// Candidates.
    pub candidates: Vec<String>,
    /// A configured candidate to compare with.
    pub baseline: Option<String>,
    /// Compare with the references instead.
    pub against_reference: bool,
    /// Judge rubrics (default: `correctness_vs_reference` when every item has a reference,
    /// else `correctness`).
    pub rubrics: Vec<String>,
    /// Run-level checks (`--check` syntax).
    pub checks: Vec<String>,
    /// Experiment name (default: dataset, version and time).
    pub name: Option<String>,
    /// Non-inferiority margin.
    pub margin: Option<f64>,
    /// Spend cap.
    pub spend_cap_usd: Option<f64>,
    /// Jobs in flight.
    pub concurrency: usize,
    /// Estimate the cost and run nothing.
    pub dry_run: bool,
    /// No progress bar.
    pub quiet: bool,
}

/// Syncs the dataset, creates its run as an experiment over the version, runs it through the
/// queue to the end and returns the report.
pub async fn run(app: &App, dataset: &str, options: &GoldenRun) -> anyhow::Result<Report> {
    let (request, estimate) = plan(app, dataset, options).await?;
    eprintln!("{}", estimate.line());
    let experiment =
        evaltap_worker::create_experiment(&app.config, &app.rubrics, &app.store, request).await?;
    app.run_to_done(&experiment, options.concurrency.max(1), options.quiet).await?;
    Ok(evaltap_report::build(&app.store, &experiment).await?)
}

/// Syncs the dataset and plans its run: the request and what it is expected to cost.
pub async fn plan(
    app: &App,
    dataset: &str,
    options: &GoldenRun,
) -> anyhow::Result<(ExperimentRequest, evaltap_worker::CostEstimate)> {
    let (version, _, items) = sync_items(app, dataset).await?;
    if items.is_empty() {
        bail!("dataset `{dataset}` has no items");
    }
    let baseline = match (&options.baseline, options.against_reference) {
        (Some(model), false) => BaselineSpec::Candidate { name: model.clone() },
        (None, true) => BaselineSpec::Reference,
        (Some(_), true) => bail!("give --baseline MODEL or --against-reference, not both"),
        (None, false) => {
            bail!("compare with a model (--baseline CANDIDATE) or with the references (--against-reference)")
        }
    };
    let checks = options
        .checks
        .iter()
        .map(|c| Check::parse_arg(c).map(|c| serde_json::to_value(c).unwrap_or(Value::Null)))
        .collect::<Result<Vec<_>, _>>()?;
    let rubrics = if options.rubrics.is_empty() && !checks.is_empty() {
        // Asked for checks and no rubric: checks only, no judge.
        Vec::new()
    } else if options.rubrics.is_empty() {
        let all_referenced = items.iter().all(|i| i.reference.is_some());
        vec![if all_referenced { "correctness_vs_reference" } else { "correctness" }.to_string()]
    } else {
        options.rubrics.clone()
    };
    let name = options.name.clone().unwrap_or_else(|| {
        format!("{dataset}@{}-{}", &version[..8], chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"))
    });
    let margin = match options.margin {
        Some(margin) => margin,
        None => datasets(app).settings(dataset)?.margin.unwrap_or(evaltap_worker::DEFAULT_MARGIN),
    };
    if let Some(note) = what_the_set_can_show(dataset, items.len(), margin) {
        eprintln!("{note}");
    }
    let request = ExperimentRequest {
        name,
        candidates: options.candidates.clone(),
        rubrics,
        sample_size: None,
        filter: Filter::default(),
        margin: Some(margin),
        spend_cap_usd: options.spend_cap_usd,
        judge_samples: None,
        dataset: Some(DatasetRef { name: dataset.into(), version }),
        baseline: Some(baseline),
        checks,
        // Golden items carry their own checks.
        auto_checks: false,
    };
    let spec =
        evaltap_worker::plan_experiment(&app.config, &app.rubrics, &app.store, request.clone()).await?;
    let estimate = evaltap_worker::estimate_cost(&app.store, &app.rubrics, &spec).await?;
    Ok((request, estimate))
}

/// What a set of `items` can show at `margin`, said before a run when it is less than asked:
/// even a candidate that agrees with the baseline on every item is non-inferior only once the
/// exact bound 1 − α^(1/n) clears the margin (the rule of three; see `evaltap-stats`).
pub fn what_the_set_can_show(dataset: &str, items: usize, margin: f64) -> Option<String> {
    let alpha = 0.05;
    let smallest = -evaltap_stats::no_disagreement_lower_bound(items, alpha);
    if smallest <= margin {
        return None;
    }
    let needed = evaltap_stats::no_disagreement_samples_needed(margin, alpha).map_or(String::new(), |n| {
        format!(" ({} would show {margin})", evaltap_core::words::count(n, "agreeing item"))
    });
    Some(format!(
        "note: with {} this set can show non-inferiority only at a margin of at least {smallest:.3}, even for a \
         candidate that matches every item; at margin {margin} the gate will say undecided unless a candidate is \
         clearly worse. Add items{needed}, or give the set a wider margin: `evaltap golden margin {dataset} {:.2}`.",
        evaltap_core::words::count(items as u64, "item"),
        (smallest * 100.0).ceil() / 100.0,
    ))
}

/// A dataset's items as text.
pub fn show(app: &App, name: &str) -> anyhow::Result<String> {
    let items = datasets(app).read(name)?;
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
pub(crate) async fn dispatch(
    app: &App,
    command: &crate::cli::GoldenCommand,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::cli::GoldenCommand as G;
    match command {
        G::New { name, margin } => {
            let dir = datasets(app);
            if let Some(margin) = margin {
                dir.write_settings(name, &evaltap_golden::DatasetSettings { margin: Some(*margin) })?;
            }
            dir.create(name)?;
            println!("created {}", dir.path(name)?.display());
        }
        G::Margin { name, value } => {
            let dir = datasets(app);
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
            let id = add(app, name, &new)?;
            let (version, _, count) = sync(app, name).await?;
            println!("added `{id}` to {name} ({count} items, version {})", &version[..12]);
        }
        G::List { json: false } => print!("{}", list(app).await?),
        G::List { json: true } => println!("{}", serde_json::to_string_pretty(&list_rows(app).await?)?),
        G::Show { name, json: false } => print!("{}", show(app, name)?),
        G::Show { name, json: true } => {
            let items = datasets(app).read(name)?;
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
                datasets(app).remove(name)?;
                println!("removed dataset {name} (its stored versions stay with the runs that used them)");
            } else {
                if items.is_empty() {
                    bail!("name the items to remove, or pass --all to remove the dataset");
                }
                let removed = remove_items(app, name, items)?;
                println!("removed {removed} items from {name}");
            }
        }
        G::Import { name, file, format, map } => {
            let (count, notes) = import(app, name, file, format.as_deref(), map)?;
            let (version, _, total) = sync(app, name).await?;
            println!("imported {count} items into {name} ({total} items, version {})", &version[..12]);
            for note in notes {
                println!("  {note}");
            }
        }
        G::Export { name, format, out } => {
            let text = export(app, name, format)?;
            match out {
                Some(path) => {
                    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
                }
                None => print!("{text}"),
            }
        }
        G::Promote { name, from_traffic: _, source, model, tags, since, sample, stratify } => {
            let promotion = Promotion {
                filter: Filter { source: source.clone(), model: model.clone(), since: *since, until: None },
                tags: tags.clone(),
                sample: *sample,
                stratify: stratify.clone(),
            };
            let ids = promote(app, name, &promotion).await?;
            println!(
                "promoted {} exchanges into {name} as drafts; review the references, then `evaltap golden accept {name} --all`",
                ids.len()
            );
        }
        G::Accept { name, items, all } => {
            let accepted = accept(app, name, *all, items)?;
            let (version, _, _) = sync(app, name).await?;
            println!("accepted {accepted} references in {name} (version {})", &version[..12]);
        }
        G::Sync { name } => {
            let names = match name {
                Some(n) => vec![n.clone()],
                None => datasets(app).names()?,
            };
            for name in names {
                let (version, new, count) = sync(app, &name).await?;
                println!(
                    "{name}: {count} items, version {}{}",
                    &version[..12],
                    if new { " (new)" } else { "" }
                );
            }
        }
        G::Schedule(command) => schedule(app, command).await?,
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
                concurrency: *concurrency,
                quiet: *json,
                dry_run: *dry_run,
            };
            if options.dry_run {
                let (_, estimate) = plan(app, name, &options).await?;
                println!("{}", estimate.line());
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let report = run(app, name, &options).await?;
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

/// Why a scheduled run could not start, if it could not.
fn start_error(run: &evaltap_store::ScheduleRun) -> Option<&str> {
    run.outcome.as_ref()?.get("error")?.as_str()
}

/// The latest run's start error: a schedule whose last slot could not start is failing.
fn last_start_error(runs: &[evaltap_store::ScheduleRun]) -> Option<String> {
    runs.iter().max_by_key(|r| r.slot).and_then(start_error).map(str::to_string)
}

async fn schedule(app: &App, command: &crate::cli::ScheduleCommand) -> anyhow::Result<()> {
    use crate::cli::ScheduleCommand as S;
    match command {
        S::Add { name, model, every, rubrics, checks, margin, schedule_name } => {
            let every = humantime::parse_duration(every)
                .with_context(|| format!("--every `{every}` (try 6h, 30m, 1d)"))?;
            let (version, _, count) = sync(app, name).await?;
            if count == 0 {
                bail!("dataset `{name}` has no items");
            }
            let checks = checks
                .iter()
                .map(|c| Check::parse_arg(c).map(|c| serde_json::to_value(c).unwrap_or(Value::Null)))
                .collect::<Result<Vec<_>, _>>()?;
            let rubrics = if rubrics.is_empty() && checks.is_empty() {
                vec!["correctness".to_string()]
            } else {
                rubrics.clone()
            };
            let new = evaltap_drift::NewSchedule {
                name: schedule_name.clone(),
                dataset: DatasetRef { name: name.clone(), version: version.clone() },
                candidate: model.clone(),
                every,
                spec: evaltap_store::ScheduleSpec { rubrics, checks, margin: *margin },
            };
            let schedule = evaltap_drift::add_schedule(&app.drift_context()?, new).await?;
            println!(
                "schedule `{}`: {name} (version {}) against {model} every {}; runs start in any `evaltap serve` or `evaltap worker`",
                schedule.name,
                &version[..12],
                humantime::format_duration(every)
            );
        }
        S::List { json: true } => {
            let alerts = app.store.alerts().await?;
            let mut rows = Vec::new();
            for s in app.store.schedules().await? {
                let runs = app.store.schedule_runs(&s.id).await?;
                let open = alerts.iter().filter(|a| a.schedule_id == s.id && a.status == "open").count();
                let mut row = serde_json::to_value(&s)?;
                row["runs"] = runs.len().into();
                row["open_alerts"] = open.into();
                let failing = last_start_error(&runs);
                row["status"] = if failing.is_some() {
                    "failing"
                } else if s.paused {
                    "paused"
                } else {
                    "ok"
                }
                .into();
                row["error"] = failing.into();
                rows.push(row);
            }
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        S::List { json: false } => {
            let alerts = app.store.alerts().await?;
            let schedules = app.store.schedules().await?;
            if schedules.is_empty() {
                println!("no schedules (`evaltap golden schedule add DATASET --candidate C --every 6h`)");
            }
            for s in schedules {
                let runs = app.store.schedule_runs(&s.id).await?;
                let open = alerts.iter().filter(|a| a.schedule_id == s.id && a.status == "open").count();
                let failed = runs.iter().filter(|r| start_error(r).is_some()).count();
                let references = runs
                    .iter()
                    .filter(|r| r.outcome.as_ref().is_some_and(|o| o["reference"] == Value::Bool(true)))
                    .count();
                let needed = evaltap_drift::policy::REFERENCE_RUNS;
                println!(
                    "{:<28} {} against {} every {}{}: {}{}{}, {}{}",
                    s.name,
                    s.dataset,
                    s.candidate,
                    humantime::format_duration(std::time::Duration::from_secs(s.every_seconds.max(0) as u64)),
                    if s.paused { " (paused)" } else { "" },
                    evaltap_core::words::count(runs.len() as u64, "run"),
                    if failed > 0 { format!(" ({failed} could not start)") } else { String::new() },
                    if references < needed && runs.iter().any(|r| r.experiment_id.is_some()) {
                        format!(" (reference {references} of {needed}: no alerts before it is complete)")
                    } else {
                        String::new()
                    },
                    evaltap_core::words::count(open as u64, "open alert"),
                    last_start_error(&runs).map(|e| format!(" — FAILING: {e}")).unwrap_or_default()
                );
            }
        }
        S::Rm { name } => {
            let s = app.store.schedule(name).await?;
            app.store.delete_schedule(&s.id).await?;
            println!("deleted schedule `{}`", s.name);
        }
        S::Pause { name } | S::Resume { name } => {
            let s = app.store.schedule(name).await?;
            let paused = matches!(command, S::Pause { .. });
            app.store.set_schedule_paused(&s.id, paused).await?;
            println!("schedule `{}` {}", s.name, if paused { "paused" } else { "resumed" });
        }
    }
    Ok(())
}
