//! The per-example view: each item's scores per candidate and rubric, filterable and sorted by
//! the size of the change, and one item side by side with a word-level diff.

use std::collections::HashMap;

use evaltap_store::{BASELINE, DatasetItemRow, ExchangeHead, Experiment, JudgmentScore, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::pairwise_outcome;

mod detail;
pub use detail::{Answer, DiffSegment, ExampleDetail, JudgmentView, example, word_diff};

/// One item × candidate × rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExampleRow {
    /// Item (exchange id, or dataset item key).
    pub item_id: String,
    /// Candidate.
    pub candidate: String,
    /// Rubric.
    pub rubric: String,
    /// Baseline score on [0, 1] (pairwise: ½, the level a tie scores).
    pub baseline_score: Option<f64>,
    /// Candidate score on [0, 1] (pairwise: 1 win, ½ tie, 0 loss over both orders).
    pub candidate_score: Option<f64>,
    /// Candidate − baseline; `None` while a side is missing.
    pub delta: Option<f64>,
    /// The candidate's replay failed.
    pub replay_error: bool,
    /// Source of the exchange (none for dataset items).
    pub source: Option<String>,
    /// The exchange's tags.
    pub tags: serde_json::Value,
    /// The start of the last user message, to tell examples apart in a list.
    pub preview: String,
    /// Both answers and their word diff: filled in for the rows of a page only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<RowAnswers>,
}

/// A listed row's two answers, for reading them inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowAnswers {
    /// The baseline's answer (production, a replayed model, or the reference).
    pub baseline: String,
    /// The candidate's answer (empty when its replay failed).
    pub candidate: String,
    /// Word diff from the baseline's answer to the candidate's.
    pub diff: Vec<DiffSegment>,
}

/// How a candidate fared on a rubric across the listed examples, as a diff view counts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeCounts {
    /// Candidate.
    pub candidate: String,
    /// Rubric.
    pub rubric: String,
    /// Items the candidate scored higher on.
    pub improvements: usize,
    /// Items it scored lower on.
    pub regressions: usize,
    /// Items scored the same.
    pub unchanged: usize,
    /// Items without both scores yet.
    pub unscored: usize,
}

/// Longest request preview in a listing, in characters.
const PREVIEW_CHARS: usize = 90;

/// The start of the last user message of a chat request.
fn preview(request: &serde_json::Value) -> String {
    let text = request
        .get("messages")
        .and_then(serde_json::Value::as_array)
        .and_then(|m| {
            m.iter().rev().find(|m| m.get("role").and_then(serde_json::Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .map(evaltap_core::chat::content_text)
        .unwrap_or_default();
    let mut preview: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().count() > PREVIEW_CHARS {
        preview.push('…');
    }
    preview
}

/// Which examples a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExampleFilter {
    /// Only this candidate.
    pub candidate: Option<String>,
    /// Only this rubric.
    pub rubric: Option<String>,
    /// `regressions` (largest drop first, only drops), `improvements` (largest gain first, only
    /// gains), or anything else for all, largest drop first.
    pub direction: Option<String>,
    /// `key=value`: only exchanges carrying this tag.
    pub tag: Option<String>,
    /// Only exchanges from this source.
    pub source: Option<String>,
}

/// One page of examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExamplePage {
    /// The rows of this page.
    pub rows: Vec<ExampleRow>,
    /// Rows matching the filter, on all pages.
    pub total: usize,
    /// This page (1-based).
    pub page: usize,
    /// Rows per page.
    pub per_page: usize,
    /// Pages in all.
    pub pages: usize,
    /// Improvements and regressions per candidate × rubric over every row the filter keeps
    /// (whatever the direction asked).
    #[serde(default)]
    pub counts: Vec<ChangeCounts>,
}

fn tag_matches(tags: &serde_json::Value, filter: &str) -> bool {
    let (key, value) = filter.split_once('=').unwrap_or((filter, ""));
    match tags.get(key) {
        Some(serde_json::Value::String(s)) => value.is_empty() || s == value,
        Some(other) => value.is_empty() || *other == *value,
        None => false,
    }
}

/// What the example listing is built from: scores without judge texts, failed replays, and the
/// sampled exchanges without their responses.
#[derive(Debug, Clone)]
pub struct ExampleInputs {
    experiment: Experiment,
    item_ids: Vec<String>,
    scores: Vec<JudgmentScore>,
    failed: Vec<(String, String)>,
    exchanges: Vec<ExchangeHead>,
    references: Vec<DatasetItemRow>,
}

/// Loads what the listing of `experiment` is built from, in a handful of queries.
pub async fn load(store: &Store, experiment: &Experiment) -> Result<ExampleInputs, StoreError> {
    let spec = &experiment.spec;
    Ok(ExampleInputs {
        experiment: experiment.clone(),
        item_ids: store.experiment_item_ids(&experiment.id).await?,
        scores: store.judgment_scores(&experiment.id).await?,
        failed: store.failed_replays(&experiment.id).await?,
        exchanges: if spec.dataset.is_none() {
            store.experiment_exchange_heads(&experiment.id).await?
        } else {
            Vec::new()
        },
        references: match &spec.dataset {
            Some(dataset) => store.dataset_items(&dataset.version).await?,
            None => Vec::new(),
        },
    })
}

/// Every item × candidate × rubric row of an experiment.
pub fn example_rows(inputs: &ExampleInputs) -> Vec<ExampleRow> {
    let spec = &inputs.experiment.spec;
    let baseline_subject = spec.baseline_candidate().unwrap_or(BASELINE).to_string();
    let mut scores: HashMap<(&str, &str, &str), HashMap<&str, f64>> = HashMap::new();
    for j in &inputs.scores {
        if let Some(score) = j.score.filter(|s| s.is_finite()) {
            scores
                .entry((j.subject.as_str(), j.rubric.as_str(), j.position.as_str()))
                .or_default()
                .insert(j.item_id.as_str(), score);
        }
    }
    let exchanges: HashMap<&str, &ExchangeHead> =
        inputs.exchanges.iter().map(|e| (e.id.as_str(), e)).collect();
    let failed: std::collections::HashSet<(&str, &str)> =
        inputs.failed.iter().map(|(item, candidate)| (item.as_str(), candidate.as_str())).collect();
    let empty = HashMap::new();
    let get = |subject: &str, rubric: &str, position: &str, item: &str| {
        scores.get(&(subject, rubric, position)).unwrap_or(&empty).get(item).copied()
    };
    let references: HashMap<&str, &serde_json::Value> =
        inputs.references.iter().map(|r| (r.key.as_str(), &r.body)).collect();
    let mut rows = Vec::new();
    for item in &inputs.item_ids {
        let exchange = exchanges.get(item.as_str());
        let request_preview = match exchange {
            Some(e) => preview(&e.request),
            None => references.get(item.as_str()).map(|body| preview(body)).unwrap_or_default(),
        };
        for candidate in spec.compared_candidates() {
            for rubric in &spec.rubrics {
                let (baseline, cand) = if spec.is_pairwise(rubric) {
                    let outcome = match (
                        get(&candidate.name, rubric, "ab", item),
                        get(&candidate.name, rubric, "ba", item),
                    ) {
                        (Some(ab), Some(ba)) => Some(pairwise_outcome(ab, ba)),
                        _ => None,
                    };
                    (outcome.map(|_| 0.5), outcome)
                } else {
                    (get(&baseline_subject, rubric, "", item), get(&candidate.name, rubric, "", item))
                };
                rows.push(ExampleRow {
                    item_id: item.clone(),
                    candidate: candidate.name.clone(),
                    rubric: rubric.clone(),
                    baseline_score: baseline,
                    candidate_score: cand,
                    delta: baseline.zip(cand).map(|(b, c)| c - b),
                    replay_error: failed.contains(&(item.as_str(), candidate.name.as_str())),
                    source: exchange.map(|e| e.source.clone()),
                    tags: exchange.map_or(serde_json::Value::Null, |e| e.tags.clone()),
                    preview: request_preview.clone(),
                    answers: None,
                });
            }
        }
    }
    rows
}

/// The rows matching `filter`, sorted by the size of the change, cut to page `page` (1-based).
pub fn page(rows: &[ExampleRow], filter: &ExampleFilter, page: usize, per_page: usize) -> ExamplePage {
    let kept: Vec<&ExampleRow> = rows
        .iter()
        .filter(|r| {
            filter.candidate.as_ref().is_none_or(|c| &r.candidate == c)
                && filter.rubric.as_ref().is_none_or(|x| &r.rubric == x)
                && filter.source.as_ref().is_none_or(|s| r.source.as_ref() == Some(s))
                && filter.tag.as_ref().is_none_or(|t| tag_matches(&r.tags, t))
        })
        .collect();
    let mut counts: Vec<ChangeCounts> = Vec::new();
    for r in &kept {
        let at = match counts.iter().position(|c| c.candidate == r.candidate && c.rubric == r.rubric) {
            Some(at) => at,
            None => {
                counts.push(ChangeCounts {
                    candidate: r.candidate.clone(),
                    rubric: r.rubric.clone(),
                    improvements: 0,
                    regressions: 0,
                    unchanged: 0,
                    unscored: 0,
                });
                counts.len() - 1
            }
        };
        let c = &mut counts[at];
        match r.delta {
            Some(d) if d > 0.0 => c.improvements += 1,
            Some(d) if d < 0.0 => c.regressions += 1,
            Some(_) => c.unchanged += 1,
            None => c.unscored += 1,
        }
    }
    let mut matching: Vec<&ExampleRow> = kept
        .into_iter()
        .filter(|r| match filter.direction.as_deref() {
            Some("regressions") => r.delta.is_some_and(|d| d < 0.0),
            Some("improvements") => r.delta.is_some_and(|d| d > 0.0),
            _ => true,
        })
        .collect();
    // Largest drop first (largest gain first for improvements); unscored rows last; ties by id
    // so that pages are stable.
    let improvements = filter.direction.as_deref() == Some("improvements");
    matching.sort_by(|a, b| {
        let key = |r: &ExampleRow| r.delta.map(|d| if improvements { -d } else { d });
        match (key(a), key(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.item_id.cmp(&b.item_id))
        .then_with(|| a.candidate.cmp(&b.candidate))
        .then_with(|| a.rubric.cmp(&b.rubric))
    });
    let per_page = per_page.clamp(1, 500);
    let total = matching.len();
    let pages = total.div_ceil(per_page).max(1);
    let page = page.clamp(1, pages);
    let rows = matching.into_iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
    ExamplePage { rows, total, page, per_page, pages, counts }
}

/// Longest answer shown inline in a listing, in characters (the example's page has it whole).
const INLINE_ANSWER_CHARS: usize = 600;

fn inline(text: &str) -> String {
    let mut cut: String = text.chars().take(INLINE_ANSWER_CHARS).collect();
    if text.chars().count() > INLINE_ANSWER_CHARS {
        cut.push('…');
    }
    cut
}

/// Fills in both answers and their word diff for the rows of `page` (one read per item).
pub async fn with_answers(
    store: &Store,
    experiment: &Experiment,
    mut page: ExamplePage,
) -> Result<ExamplePage, StoreError> {
    let mut details: HashMap<String, Option<ExampleDetail>> = HashMap::new();
    for row in &mut page.rows {
        if !details.contains_key(&row.item_id) {
            details.insert(row.item_id.clone(), example(store, experiment, &row.item_id).await?);
        }
        let Some(Some(detail)) = details.get(&row.item_id) else { continue };
        let Some(candidate) = detail.candidates.iter().find(|c| c.name == row.candidate) else { continue };
        let (baseline, answer) = (inline(&detail.baseline.text), inline(&candidate.text));
        row.answers = Some(RowAnswers { diff: word_diff(&baseline, &answer), baseline, candidate: answer });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_diff_marks_removed_and_added_words() {
        let diff = word_diff("the cat sat on the mat", "the dog sat on the mat today");
        let text = |kind: &str| -> String {
            diff.iter().filter(|d| d.kind == kind).map(|d| d.text.as_str()).collect()
        };
        assert_eq!(text("removed"), "cat");
        assert_eq!(text("added").trim(), "dog today");
        // Nothing is lost: each side is recoverable.
        let baseline: String = diff.iter().filter(|d| d.kind != "added").map(|d| d.text.as_str()).collect();
        let candidate: String =
            diff.iter().filter(|d| d.kind != "removed").map(|d| d.text.as_str()).collect();
        assert_eq!(baseline, "the cat sat on the mat");
        assert_eq!(candidate, "the dog sat on the mat today");
        // Words, not whitespace-separated chunks: a number before a full stop is one word.
        let diff = word_diff("The answer is 81.", "The answer is 75.");
        let changed: Vec<(&str, &str)> =
            diff.iter().filter(|d| d.kind != "same").map(|d| (d.kind.as_str(), d.text.as_str())).collect();
        assert_eq!(changed, [("removed", "81"), ("added", "75")]);
    }

    fn row(item: &str, delta: Option<f64>, source: &str) -> ExampleRow {
        ExampleRow {
            item_id: item.into(),
            candidate: "c".into(),
            rubric: "r".into(),
            baseline_score: delta.map(|_| 0.5),
            candidate_score: delta.map(|d| 0.5 + d),
            delta,
            replay_error: false,
            source: Some(source.into()),
            tags: serde_json::json!({"team": if item < "c" { "search" } else { "chat" }}),
            preview: String::new(),
            answers: None,
        }
    }

    #[test]
    fn regressions_come_largest_first_and_pages_are_stable() {
        let rows = vec![
            row("a", Some(-0.1), "s1"),
            row("b", Some(-0.4), "s1"),
            row("c", Some(0.2), "s2"),
            row("d", None, "s2"),
            row("e", Some(-0.4), "s2"),
        ];
        let regressions = ExampleFilter { direction: Some("regressions".into()), ..Default::default() };
        let first = page(&rows, &regressions, 1, 2);
        assert_eq!(first.total, 3);
        assert_eq!(first.pages, 2);
        assert_eq!(first.rows.iter().map(|r| r.item_id.as_str()).collect::<Vec<_>>(), ["b", "e"]);
        // The counts cover every row the filter keeps, whatever the direction.
        let counts = &first.counts[0];
        assert_eq!(
            (counts.improvements, counts.regressions, counts.unchanged, counts.unscored),
            (1, 3, 0, 1),
            "{counts:?}"
        );
        assert_eq!(page(&rows, &regressions, 2, 2).rows[0].item_id, "a");
        let all = page(&rows, &ExampleFilter::default(), 1, 10);
        assert_eq!(all.rows.last().map(|r| r.item_id.as_str()), Some("d"), "unscored rows come last");
        let improvements = ExampleFilter { direction: Some("improvements".into()), ..Default::default() };
        assert_eq!(page(&rows, &improvements, 1, 10).total, 1);
        let by_source = ExampleFilter { source: Some("s2".into()), ..Default::default() };
        assert_eq!(page(&rows, &by_source, 1, 10).total, 3);
        let by_tag = ExampleFilter { tag: Some("team=search".into()), ..Default::default() };
        assert_eq!(page(&rows, &by_tag, 1, 10).total, 2);
        // Past the end clamps to the last page.
        assert_eq!(page(&rows, &regressions, 9, 2).page, 2);
    }
}
