//! Golden datasets: files under `datasets/` (one JSONL per set), versioned in the database by
//! content, promoted from production traffic, and run through the same queue, judges and
//! statistics as experiments.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use evaltap_golden::{Check, DatasetDir, FieldMap, Item, formats};
use evaltap_store::{BaselineSpec, DatasetRef, Experiment, Filter};
use evaltap_worker::ExperimentRequest;
use serde_json::{Map, Value, json};

use crate::{AppError, Context};

type Result<T, E = AppError> = std::result::Result<T, E>;

fn invalid<T>(message: impl Into<String>) -> Result<T> {
    Err(AppError::Invalid(message.into()))
}

/// The dataset folder of a configuration.
pub fn datasets(ctx: &Context) -> DatasetDir {
    DatasetDir::new(&ctx.config.datasets_dir)
}

/// Registers the current content of dataset `name` as a version; returns (version, whether it
/// was new).
pub async fn sync(ctx: &Context, name: &str) -> Result<(String, bool, usize), AppError> {
    let (version, new, items) = sync_items(ctx, name).await?;
    Ok((version, new, items.len()))
}

/// [`sync`], returning the items it read.
pub async fn sync_items(ctx: &Context, name: &str) -> Result<(String, bool, Vec<Item>)> {
    let items = datasets(ctx).read(name)?;
    let version = evaltap_golden::version_of(&items);
    let rows: Vec<(String, Value)> =
        items.iter().map(|i| (i.id.clone(), serde_json::to_value(i).unwrap_or(Value::Null))).collect();
    let new = ctx.store.register_dataset_version(name, &version, &rows).await?;
    Ok((version, new, items))
}

/// Parses `k=v` tags.
pub fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>> {
    tags.iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| AppError::Invalid(format!("tag `{t}`: write it as key=value")))
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
pub fn add(ctx: &Context, name: &str, new: &NewItem) -> Result<String> {
    let dir = datasets(ctx);
    let existing = if dir.exists(name) { dir.read(name)? } else { Vec::new() };
    let messages = match (&new.input, &new.messages) {
        (Some(input), None) => vec![json!({"role": "user", "content": input})],
        (None, Some(json)) => {
            let value: Value = serde_json::from_str(json)
                .map_err(|e| AppError::Invalid(format!("--messages is not JSON: {e}")))?;
            evaltap_golden::messages_from_input(&value)
                .map_err(|e| AppError::Invalid(format!("--messages {e}")))?
        }
        _ => return invalid("give --input TEXT or --messages JSON"),
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
    ctx: &Context,
    name: &str,
    file: &Path,
    format: Option<&str>,
    map: &[String],
) -> Result<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| AppError::Invalid(format!("reading {}: {e}", file.display())))?;
    import_text(ctx, name, &file.display().to_string(), &text, format, map)
}

/// [`import`] of content already read; `path` names it in messages (and its extension helps
/// detect the format).
pub fn import_text(
    ctx: &Context,
    name: &str,
    path: &str,
    text: &str,
    format: Option<&str>,
    map: &[String],
) -> Result<(usize, Vec<String>)> {
    let detected = formats::detect(path, text);
    let format = format.unwrap_or(detected);
    let mut notes = evaltap_golden::ImportNotes::default();
    let items = formats::by_name(format)?.import_noting(path, text, &FieldMap::parse(map)?, &mut notes)?;
    if items.is_empty() {
        return invalid(format!("{path}: no items"));
    }
    let count = items.len();
    datasets(ctx).append(name, items)?;
    let mut lines = notes.lines();
    if format != detected && !notes.skipped.is_empty() {
        lines.push(format!(
            "this file looks like `{detected}`, not `{format}`: `--format {detected}` would read what was skipped"
        ));
    }
    Ok((count, lines))
}

/// A dataset in another tool's shape.
pub fn export(ctx: &Context, name: &str, format: &str) -> Result<String> {
    let items = datasets(ctx).read(name)?;
    formats::by_name(format)?.export(&items).ok_or_else(|| {
        AppError::Invalid(format!("format `{format}` is import-only (export: native, langfuse, promptfoo)"))
    })
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

pub fn tag_value(tags: &Value, key: &str) -> Option<String> {
    match tags.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Turns stored production exchanges into items whose reference is the production answer,
/// flagged as a draft until accepted. Exchanges already promoted into the dataset are skipped.
/// Returns the ids added.
pub async fn promote(ctx: &Context, name: &str, promotion: &Promotion) -> Result<Vec<String>> {
    let wanted_tags = parse_tags(&promotion.tags)?;
    if let Some(s) = promotion.stratify.as_deref()
        && !["route", "model", "source"].contains(&s)
    {
        return invalid(format!("--stratify {s}: use route, model or source"));
    }
    let dir = datasets(ctx);
    let existing = if dir.exists(name) { dir.read(name)? } else { Vec::new() };
    let promoted: HashSet<String> =
        existing.iter().filter_map(|i| i.metadata.get("exchange_id")?.as_str().map(str::to_owned)).collect();
    let mut pool: Vec<_> = ctx
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
pub fn accept(ctx: &Context, name: &str, all: bool, ids: &[String]) -> Result<usize> {
    if !all && ids.is_empty() {
        return invalid("name the items to accept, or pass --all");
    }
    let dir = datasets(ctx);
    let mut items = dir.read(name)?;
    let known: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    if let Some(missing) = ids.iter().find(|id| !known.contains(id.as_str())) {
        return Err(AppError::NotFound(format!("dataset `{name}` has no item `{missing}`")));
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
pub fn remove_items(ctx: &Context, name: &str, ids: &[String]) -> Result<usize> {
    let dir = datasets(ctx);
    let items = dir.read(name)?;
    let known: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    if let Some(missing) = ids.iter().find(|id| !known.contains(id.as_str())) {
        return Err(AppError::NotFound(format!("dataset `{name}` has no item `{missing}`")));
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
pub async fn list_rows(ctx: &Context) -> Result<Vec<DatasetRow>> {
    let dir = datasets(ctx);
    let mut rows = Vec::new();
    for name in dir.names()? {
        let versions = ctx.store.dataset_versions(&name).await?;
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

/// How to run a dataset.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Non-inferiority margin (default: the dataset's own, else 0.02).
    pub margin: Option<f64>,
    /// Spend cap.
    pub spend_cap_usd: Option<f64>,
}

/// A golden run, planned: the experiment to create, what it should cost, and what the set can
/// show when that is less than asked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The experiment to create.
    pub request: ExperimentRequest,
    /// Its expected cost.
    pub estimate: evaltap_worker::CostEstimate,
    /// A note when the set is too small for the margin ([`what_the_set_can_show`]).
    pub note: Option<String>,
}

/// Plans the run ([`plan`]) and creates it as an experiment over the dataset's current
/// version; its jobs are queued for whatever worker runs.
pub async fn start_run(ctx: &Context, dataset: &str, options: &GoldenRun) -> Result<(Experiment, Plan)> {
    let plan = plan(ctx, dataset, options).await?;
    let experiment =
        evaltap_worker::create_experiment(&ctx.config, &ctx.rubrics, &ctx.store, plan.request.clone())
            .await?;
    Ok((experiment, plan))
}

/// Syncs the dataset and plans its run: the request and what it is expected to cost.
pub async fn plan(ctx: &Context, dataset: &str, options: &GoldenRun) -> Result<Plan> {
    let (version, _, items) = sync_items(ctx, dataset).await?;
    if items.is_empty() {
        return invalid(format!("dataset `{dataset}` has no items"));
    }
    let baseline = match (&options.baseline, options.against_reference) {
        (Some(model), false) => BaselineSpec::Candidate { name: model.clone() },
        (None, true) => BaselineSpec::Reference,
        (Some(_), true) => return invalid("give --baseline MODEL or --against-reference, not both"),
        (None, false) => {
            return invalid(
                "compare with a model (--baseline CANDIDATE) or with the references (--against-reference)",
            );
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
        None => datasets(ctx).settings(dataset)?.margin.unwrap_or(evaltap_worker::DEFAULT_MARGIN),
    };
    let note = what_the_set_can_show(dataset, items.len(), margin);
    let dataset = DatasetRef { name: dataset.into(), version };
    let mut request = ExperimentRequest::golden(
        name,
        dataset,
        baseline,
        options.candidates.clone(),
        rubrics,
        checks,
        margin,
    );
    request.spend_cap_usd = options.spend_cap_usd;
    let spec =
        evaltap_worker::plan_experiment(&ctx.config, &ctx.rubrics, &ctx.store, request.clone()).await?;
    let estimate = evaltap_worker::estimate_cost(&ctx.store, &ctx.rubrics, &spec).await?;
    Ok(Plan { request, estimate, note })
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
