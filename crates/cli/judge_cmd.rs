//! `evaltap rubric check|render`, `evaltap judge calibrate` and `evaltap experiment show`:
//! trusting the judge before trusting its verdicts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use evaltap_judge::calibration::{self, CalibrationResult};
use evaltap_judge::{Mode, Rubrics, Subject};
use evaltap_store::{BASELINE, Calibration, Experiment};
use futures_util::StreamExt as _;

use evaltap_app::App;

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

/// Runs the configured judge over a labels file with `rubric`, stores the result and returns it.
pub async fn calibrate(app: &App, rubric: &str, labels: &Path) -> anyhow::Result<CalibrationResult> {
    let definition = app.rubrics.get(rubric)?.clone();
    if definition.mode != Mode::Pointwise {
        bail!("calibration compares scores: rubric `{rubric}` is pairwise");
    }
    let items = calibration::read_labels(labels, &definition)?;
    let config = app.config.judge.as_ref().context("no [judge] is configured in evaltap.toml")?;
    let judge = app.services.judge_with(config);
    let rubrics = &app.rubrics;
    let concurrency = config.max_concurrency.max(1);
    let scores: Vec<Option<f64>> = futures_util::stream::iter(items.iter())
        .map(|item| {
            let judge = judge.clone();
            async move {
                let subject = Subject { request: &item.request, response: &item.response, reference: None };
                let seed = evaltap_judge::judgment_seed(&["calibrate", rubric, &item.id]);
                match judge.grade(rubrics, rubric, subject, 1, seed).await {
                    Ok(graded) => Some(graded.mean().raw),
                    Err(failure) => {
                        tracing::warn!(item = %item.id, error = %failure.error, "judge failed on a labelled item");
                        None
                    }
                }
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    let result = calibration::agreement(&definition, &items, &scores);
    app.store
        .insert_calibration(&Calibration {
            rubric: rubric.into(),
            rubric_sha256: definition.sha256.clone(),
            judge_model: judge.model_for(&definition),
            labels_file: labels.display().to_string(),
            created_at: chrono::Utc::now(),
            result: serde_json::to_value(&result)?,
        })
        .await?;
    Ok(result)
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
