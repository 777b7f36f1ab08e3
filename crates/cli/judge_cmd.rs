//! `evaltap rubric check|render`, `evaltap judge calibrate` and `evaltap experiment show`:
//! trusting the judge before trusting its verdicts.

use clap::Subcommand;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use evaltap_judge::{Mode, Rubrics, Subject};
use evaltap_store::{BASELINE, Experiment};

use evaltap_app::App;

#[derive(Debug, Subcommand)]
pub(crate) enum RubricCommand {
    /// Load and render every rubric with a sample exchange; a broken template is reported as
    /// `file:line: reason` and the command exits 1.
    Check,
    /// Print the exact prompt the judge gets for a stored exchange.
    Render {
        /// Rubric name.
        name: String,
        /// Stored exchange id.
        #[arg(long)]
        exchange: String,
        /// Use the rubric text this experiment froze (and its replays with --candidate).
        #[arg(long)]
        experiment: Option<String>,
        /// Grade this candidate's replay instead of the production answer (pairwise: compare them).
        #[arg(long)]
        candidate: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum JudgeCommand {
    /// Run the judge on human-labelled items and report its agreement with them: weighted κ,
    /// κ on pass/fail, Krippendorff's α, the confusion table and the mean bias. Stored; every
    /// report names the rubric's latest calibration.
    Calibrate {
        /// Rubric (pointwise).
        #[arg(long)]
        rubric: String,
        /// JSONL of labelled items (see datasets/README.md).
        #[arg(long)]
        labels: std::path::PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Loads the rubric folder and renders each rubric with a sample exchange; returns the text to
/// print, or an error listing every broken rubric as `file:line: reason`.
pub fn check_rubrics(dir: &Path) -> anyhow::Result<String> {
    let rubrics = Rubrics::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let problems = rubrics.check();
    if !problems.is_empty() {
        bail!("{} broken rubric(s):\n{}", problems.len(), problems.join("\n"));
    }
    let mut out = String::new();
    for name in rubrics.names() {
        let rubric = rubrics.get(&name)?;
        let _ = writeln!(
            out,
            "ok  {:<24} {:<9} scale {}–{}  sha256 {}",
            name,
            mode_name(rubric.mode),
            rubric.scale.min,
            rubric.scale.max,
            &rubric.sha256[..12]
        );
    }
    Ok(out)
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Pointwise => "pointwise",
        Mode::Reference => "reference",
        Mode::Pairwise => "pairwise",
    }
}

/// The exact judge prompt for `rubric` on a stored exchange: the production answer (or, with
/// `experiment` and `candidate`, that candidate's replay), with the rubric text the experiment
/// froze when one is named, else the rubric files.
pub async fn render_rubric(
    app: &App,
    rubric: &str,
    exchange_id: &str,
    experiment: Option<&str>,
    candidate: Option<&str>,
) -> anyhow::Result<String> {
    // The rubric first: a typo in its name is the likelier mistake, and the answer lists them.
    if experiment.is_none() {
        app.rubrics.get(rubric)?;
    }
    let exchange = app.store.exchange(exchange_id).await?.ok_or_else(|| {
        crate::UsageError(format!("no stored exchange `{exchange_id}` (`evaltap exchanges` lists their ids)"))
    })?;
    let (rubrics, experiment) = match experiment {
        Some(name) => {
            let experiment = app.store.require_experiment(name).await?;
            (app.services.rubrics_for(&experiment.id, &experiment.spec)?, Some(experiment))
        }
        None => (app.rubrics.clone(), None),
    };
    let production = evaltap_core::chat::answer_text(&exchange.exchange.response);
    let candidate_text =
        match (candidate, &experiment) {
            (Some(c), Some(e)) => Some(
                app.store.replay(&e.id, exchange_id, c).await?.and_then(|r| r.output_text).with_context(
                    || format!("candidate `{c}` has no successful replay of `{exchange_id}`"),
                )?,
            ),
            (Some(_), None) => bail!("--candidate needs --experiment (replays belong to an experiment)"),
            (None, _) => None,
        };
    let request = &exchange.exchange.request;
    let definition = rubrics.get(rubric)?;
    Ok(match definition.mode {
        Mode::Pointwise | Mode::Reference => {
            let response = candidate_text.as_deref().unwrap_or(&production);
            rubrics.render(rubric, Subject { request, response, reference: None })?
        }
        Mode::Pairwise => {
            let other = candidate_text.with_context(|| {
                format!(
                    "pairwise rubric `{rubric}` compares with a candidate: pass --experiment and --candidate"
                )
            })?;
            rubrics.render_pair(rubric, request, &production, &other)?
        }
    })
}

/// What an experiment froze, as text.
pub fn show_experiment(experiment: &Experiment, exchanges: usize) -> String {
    let spec = &experiment.spec;
    let mut out = String::new();
    let _ = writeln!(out, "experiment {} ({}), created {}", spec.name, experiment.id, experiment.created_at);
    let _ = writeln!(
        out,
        "sample: {exchanges} exchanges; filter {}",
        serde_json::to_string(&spec.filter).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "margin {}, spend cap {}, judge samples per item {}",
        spec.margin,
        spec.spend_cap_usd.map_or("none".to_string(), |c| format!("${c}")),
        spec.judge_samples
    );
    let _ = writeln!(
        out,
        "early stopping {}; result cache {}",
        match (spec.early_stop, spec.early_stop_on) {
            (false, _) => "off",
            (true, evaltap_store::StopOn::Segments) =>
                "on: a candidate stops once its verdicts are settled, on the whole sample and on each segment",
            (true, evaltap_store::StopOn::Verdicts) =>
                "on: a candidate stops once its whole-sample verdicts are settled (segments not awaited)",
        },
        if spec.use_cache { "on" } else { "off" }
    );
    let _ = writeln!(out, "baseline: `{BASELINE}` (the production responses)");
    for c in &spec.candidates {
        let _ = writeln!(
            out,
            "candidate {}: model {} at {} (${}/M in, ${}/M out, {} in flight)",
            c.name, c.model, c.base_url, c.price.input_per_mtok, c.price.output_per_mtok, c.max_concurrency
        );
    }
    match &spec.judge {
        Some(j) => {
            let _ = writeln!(
                out,
                "judge: model {} at {}, temperature {}, ${}/M in, ${}/M out",
                j.model, j.base_url, j.temperature, j.input_per_mtok, j.output_per_mtok
            );
        }
        None => {
            let _ = writeln!(
                out,
                "judge: not frozen (created before judges were frozen; uses [judge] as configured)"
            );
        }
    }
    if spec.rubric_definitions.is_empty() {
        let _ = writeln!(
            out,
            "rubrics: {} (not frozen: created before rubrics were frozen)",
            spec.rubrics.join(", ")
        );
    }
    for r in &spec.rubric_definitions {
        let _ = writeln!(
            out,
            "rubric {}: {} scale {}–{}{} sha256 {}",
            r.name,
            r.mode,
            r.scale_min,
            r.scale_max,
            r.judge_model.as_ref().map(|m| format!(", judge {m},")).unwrap_or_default(),
            r.sha256
        );
        for line in r.source.lines() {
            let _ = writeln!(out, "    | {line}");
        }
    }
    out
}
