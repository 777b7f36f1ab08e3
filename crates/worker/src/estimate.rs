//! What an experiment will cost before it runs, replays and judge calls apart: the judge often
//! costs more than the calls it evaluates, and a user should see that before paying for it.

use evaltap_core::{Price, Usage};
use evaltap_store::{BaselineSpec, ExperimentSpec, Store};
use serde::Serialize;

use crate::WorkerError;
use crate::jobs::CHECK_PREFIX;

/// Output tokens assumed for an answer when nothing tells its length (a dataset item without a
/// reference).
const ANSWER_TOKENS_WITHOUT_HINT: u64 = 256;

/// Output tokens expected of a judge call: a score and a sentence of reason, as the rubrics
/// ask (the spend cap reserves more; this is the expected figure, not the bound).
const JUDGE_ANSWER_TOKENS_EXPECTED: u64 = 40;

/// The expected cost of an experiment, from its sample as it would be frozen now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CostEstimate {
    /// Items in the sample.
    pub items: usize,
    /// Candidate calls (replays), the baseline's included when it is a replayed model.
    pub replay_calls: u64,
    /// Their expected cost in USD.
    pub replay_usd: f64,
    /// Judge calls (each sample of each rubric, both orders of pairwise ones).
    pub judge_calls: u64,
    /// Their expected cost in USD.
    pub judge_usd: f64,
}

impl CostEstimate {
    /// Replays and judge together.
    pub fn total_usd(&self) -> f64 {
        self.replay_usd + self.judge_usd
    }

    /// One line: `estimated cost $0.0123: replays $0.0020 (800 calls), judge $0.0103 (1,600 calls)`.
    pub fn line(&self) -> String {
        format!(
            "estimated cost ${:.4} for {} items: replays ${:.4} ({} calls), judge ${:.4} ({} calls)",
            self.total_usd(),
            self.items,
            self.replay_usd,
            self.replay_calls,
            self.judge_usd,
            self.judge_calls
        )
    }
}

/// Tokens of a text, at 4 characters a token.
fn tokens(text: &str) -> u64 {
    text.len().div_ceil(4) as u64
}

/// The expected cost of running `spec` over the sample it would freeze now: each replay at the
/// production call's token usage (else the request's length and the reference's); each judge
/// call at the prompt its rubric renders for the item (the production answer or reference
/// standing in for the candidates' answers) and a short verdict. `rubrics` are the loaded
/// rubrics, used when `spec` froze none.
pub async fn estimate_cost(
    store: &Store,
    rubrics: &evaltap_judge::Rubrics,
    spec: &ExperimentSpec,
) -> Result<CostEstimate, WorkerError> {
    let frozen;
    let rubrics = if spec.rubric_definitions.is_empty() {
        rubrics
    } else {
        frozen = evaltap_judge::Rubrics::from_sources(
            spec.rubric_definitions.iter().map(|r| (r.name.clone(), r.source.clone())),
        )
        .map_err(|e| WorkerError::Missing(format!("the experiment's rubrics do not load: {e}")))?;
        &frozen
    };
    let ids = store.sample_item_ids(spec).await?;
    // Each at its price, batched calls at the batch discount.
    let replayed: Vec<(Price, f64)> = spec
        .compared_candidates()
        .map(|c| (c.price, c.price_factor()))
        .chain(
            spec.baseline_candidate()
                .and_then(|name| spec.candidates.iter().find(|c| c.name == name))
                .map(|c| (c.price, c.price_factor())),
        )
        .collect();
    let judged_rubrics: Vec<&String> = spec.rubrics.iter().filter(|r| !r.starts_with(CHECK_PREFIX)).collect();
    let compared = spec.compared_candidates().count() as u64;
    let baseline_judged = u64::from(!matches!(spec.baseline, BaselineSpec::None));
    let samples = spec.judge_samples.max(1) as u64;
    let judge_price = spec.judge.as_ref().map(|j| (j.price(), j.price_factor()));
    let mut estimate = CostEstimate { items: ids.len(), ..CostEstimate::default() };
    for id in &ids {
        // The request, an answer of the length this item's answers run, and a reference.
        let (request, answer, reference, measured) = if spec.dataset.is_some() {
            let row = match store.dataset_item(id).await {
                Ok(Some(row)) => row,
                Ok(None) | Err(evaltap_store::StoreError::Json { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            let Ok(item) = serde_json::from_value::<evaltap_golden::Item>(row.body) else { continue };
            let answer =
                item.reference.clone().unwrap_or_else(|| "x ".repeat(ANSWER_TOKENS_WITHOUT_HINT as usize));
            (item.request(), answer, item.reference, None)
        } else {
            // A row that does not read back is skipped (the report counts it).
            let stored = match store.exchange(id).await {
                Ok(Some(stored)) => stored,
                Ok(None) | Err(evaltap_store::StoreError::Json { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            let ex = stored.exchange;
            let answer = evaltap_core::chat::answer_text(&ex.response);
            (ex.request, answer, None, ex.usage.filter(|u| u.input_tokens > 0))
        };
        let usage = measured.unwrap_or(Usage {
            input_tokens: tokens(&request.to_string()),
            output_tokens: tokens(&answer).max(1),
            ..Default::default()
        });
        for (price, factor) in &replayed {
            estimate.replay_calls += 1;
            estimate.replay_usd += price.cost(usage) * factor;
        }
        for rubric in &judged_rubrics {
            let pairwise = spec.is_pairwise(rubric);
            // A reference graded against itself is not asked about.
            let baseline_judged =
                if spec.reference_by_definition(rubric).is_some() { 0 } else { baseline_judged };
            let calls = if pairwise { compared * 2 } else { (compared + baseline_judged) * samples };
            estimate.judge_calls += calls;
            let Some((price, factor)) = judge_price else { continue };
            let prompt = if pairwise {
                rubrics.render_pair(rubric, &request, &answer, &answer)
            } else {
                let subject = evaltap_judge::Subject {
                    request: &request,
                    response: &answer,
                    reference: reference.as_deref(),
                };
                rubrics.render(rubric, subject)
            };
            // A rubric that does not render for this item is not judged on it.
            let Ok(prompt) = prompt else { continue };
            let call = price.cost(Usage {
                input_tokens: tokens(&prompt),
                output_tokens: JUDGE_ANSWER_TOKENS_EXPECTED,
                ..Default::default()
            }) * factor;
            estimate.judge_usd += call * calls as f64;
        }
    }
    Ok(estimate)
}
