//! One item side by side: every answer, judgment and a word-level diff against the baseline.

use evaltap_store::{BASELINE, BaselineSpec, Experiment, JudgmentRecord, Store, StoreError};
use serde::{Deserialize, Serialize};

/// A stretch of a word-level diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiffSegment {
    /// `same`, `removed` (baseline only) or `added` (candidate only).
    pub kind: String,
    /// The words, with the whitespace between them.
    pub text: String,
}

/// The word-level diff from `baseline` to `candidate`, adjacent words of one kind merged.
pub fn word_diff(baseline: &str, candidate: &str) -> Vec<DiffSegment> {
    let diff = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_millis(50))
        .diff_unicode_words(baseline, candidate);
    let mut out: Vec<DiffSegment> = Vec::new();
    for change in diff.iter_all_changes() {
        let kind = match change.tag() {
            similar::ChangeTag::Equal => "same",
            similar::ChangeTag::Delete => "removed",
            similar::ChangeTag::Insert => "added",
        };
        match out.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(change.value()),
            _ => out.push(DiffSegment { kind: kind.into(), text: change.value().to_string() }),
        }
    }
    out
}

/// One side's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    /// Candidate name, or `baseline`.
    pub name: String,
    /// Model.
    pub model: Option<String>,
    /// The answer's text.
    pub text: String,
    /// Why there is no answer (replay failed or skipped).
    pub error: Option<String>,
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    pub output_tokens: Option<u64>,
    /// Cost in USD.
    pub cost_usd: Option<f64>,
    /// Latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// The judgments of this side (pairwise ones sit with the candidate).
    pub judgments: Vec<JudgmentView>,
    /// Word diff from the baseline's answer (candidates only).
    pub diff: Vec<DiffSegment>,
}

/// A judgment as the example page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JudgmentView {
    /// Rubric.
    pub rubric: String,
    /// `ab` (baseline shown first), `ba` (candidate first), or empty for pointwise.
    pub position: String,
    /// Normalized score.
    pub score: Option<f64>,
    /// Score on the rubric's own scale.
    pub raw_score: Option<f64>,
    /// The judge's reason.
    pub reason: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it was not made.
    pub skipped: Option<String>,
}

/// One item, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExampleDetail {
    /// Experiment.
    pub experiment: String,
    /// Item.
    pub item_id: String,
    /// Source (exchanges only).
    pub source: Option<String>,
    /// Tags.
    pub tags: serde_json::Value,
    /// The request's messages (as stored, redacted).
    pub messages: serde_json::Value,
    /// The baseline's answer.
    pub baseline: Answer,
    /// Each candidate's answer, in the experiment's order.
    pub candidates: Vec<Answer>,
}

fn judgment_views(judgments: &[JudgmentRecord], subject: &str) -> Vec<JudgmentView> {
    judgments
        .iter()
        .filter(|j| j.subject == subject)
        .map(|j| JudgmentView {
            rubric: j.rubric.clone(),
            position: j.position.clone(),
            score: j.score,
            raw_score: j.raw_score,
            reason: j.reason.clone(),
            error: j.error.clone(),
            skipped: j.skipped.clone(),
        })
        .collect()
}

/// One item of an experiment with every answer, judgment and diff; `None` if the experiment
/// has no such item.
pub async fn example(
    store: &Store,
    experiment: &Experiment,
    item_id: &str,
) -> Result<Option<ExampleDetail>, StoreError> {
    let spec = &experiment.spec;
    if !store.experiment_has_item(&experiment.id, item_id).await? {
        return Ok(None);
    }
    let replays = store.item_replays(&experiment.id, item_id).await?;
    let judgments = store.item_judgments(&experiment.id, item_id).await?;
    let baseline_subject = spec.baseline_candidate().unwrap_or(BASELINE).to_string();
    let answer_of = |name: &str| {
        let replay = replays.iter().find(|r| r.candidate == name);
        Answer {
            name: name.to_string(),
            model: replay.map(|r| r.model.clone()),
            // What the judge was shown: the text and any tool calls.
            text: replay
                .and_then(|r| {
                    r.response.as_ref().map(evaltap_core::chat::answer_text).filter(|t| !t.is_empty())
                })
                .or_else(|| replay.and_then(|r| r.output_text.clone()))
                .unwrap_or_default(),
            error: replay.and_then(|r| r.skipped.clone().or_else(|| r.error.clone())),
            input_tokens: replay.and_then(|r| r.usage).map(|u| u.input_tokens),
            output_tokens: replay.and_then(|r| r.usage).map(|u| u.output_tokens),
            cost_usd: replay.and_then(|r| r.cost_usd),
            latency_ms: replay.and_then(|r| r.latency_ms),
            judgments: judgment_views(&judgments, name),
            diff: Vec::new(),
        }
    };
    let (source, tags, messages, mut baseline) = if spec.dataset.is_some() {
        let row = store.dataset_item(item_id).await?;
        let body = row.map(|r| r.body).unwrap_or_default();
        let messages =
            body.get("messages").cloned().or_else(|| body.get("input").cloned()).unwrap_or_default();
        let tags = body.get("tags").cloned().unwrap_or_default();
        let baseline = match &spec.baseline {
            BaselineSpec::Candidate { name } => answer_of(name),
            _ => Answer {
                name: "reference".into(),
                model: None,
                text: body
                    .get("reference")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                ..answer_of(BASELINE)
            },
        };
        (None, tags, messages, baseline)
    } else {
        let stored = store.exchange(item_id).await?;
        let baseline = match (&spec.baseline, &stored) {
            (BaselineSpec::Candidate { name }, _) => answer_of(name),
            (_, Some(s)) => {
                let ex = &s.exchange;
                Answer {
                    name: BASELINE.into(),
                    model: ex.model.clone(),
                    text: evaltap_core::chat::answer_text(&ex.response),
                    error: None,
                    input_tokens: ex.usage.map(|u| u.input_tokens),
                    output_tokens: ex.usage.map(|u| u.output_tokens),
                    cost_usd: ex.cost_usd,
                    latency_ms: ex.latency_ms,
                    judgments: judgment_views(&judgments, BASELINE),
                    diff: Vec::new(),
                }
            }
            (_, None) => answer_of(BASELINE),
        };
        let messages =
            stored.as_ref().and_then(|s| s.exchange.request.get("messages").cloned()).unwrap_or_default();
        (
            stored.as_ref().map(|s| s.source.clone()),
            stored.map_or(serde_json::Value::Null, |s| s.exchange.tags),
            messages,
            baseline,
        )
    };
    baseline.judgments = judgment_views(&judgments, &baseline_subject);
    let candidates = spec
        .compared_candidates()
        .map(|c| {
            let mut answer = answer_of(&c.name);
            answer.model.get_or_insert_with(|| c.model.clone());
            answer.diff = word_diff(&baseline.text, &answer.text);
            answer
        })
        .collect();
    Ok(Some(ExampleDetail {
        experiment: spec.name.clone(),
        item_id: item_id.to_string(),
        source,
        tags,
        messages,
        baseline,
        candidates,
    }))
}
