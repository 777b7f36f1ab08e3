//! Judge calibration: how far the judge agrees with people on human-labelled items.
//!
//! A labels file is JSONL, one item a line: `id`, the request as `messages` (chat messages) or
//! `input` (a plain string), the `response` graded, and the human score on the rubric's scale
//! as `label` (one labeller) or `labels` (several). The judge grades every item with the rubric;
//! the agreement statistics come from `evaltap-stats`.

use std::collections::BTreeMap;
use std::path::Path;

use evaltap_stats::{
    Level, cohen_kappa, krippendorff_alpha, krippendorff_alpha_multi, mean, quadratic_weighted_kappa,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{JudgeError, Rubric};

/// One human-labelled item.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledItem {
    /// Item id.
    pub id: String,
    /// The chat-completions request the response answered.
    pub request: Value,
    /// The response graded.
    pub response: String,
    /// One score per labeller, on the rubric's scale.
    pub labels: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: Option<Value>,
    messages: Option<Value>,
    input: Option<String>,
    response: Option<String>,
    label: Option<f64>,
    labels: Option<Vec<f64>>,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<Value>,
}

/// Reads a labels file; a bad line is reported with its number and field, and nothing is read.
pub fn read_labels(path: &Path, rubric: &Rubric) -> Result<Vec<LabelledItem>, JudgeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| JudgeError::Read { path: path.display().to_string(), source })?;
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |reason: String| JudgeError::InvalidLabels {
            path: format!("{}:{line_no}", path.display()),
            reason,
        };
        let raw: RawItem = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
        let id = match raw.id {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line-{line_no}"),
        };
        let request = match (raw.messages, raw.input) {
            (Some(messages @ Value::Array(_)), _) => json!({ "messages": messages }),
            (Some(_), _) => return Err(invalid("`messages` must be an array of chat messages".into())),
            (None, Some(input)) => json!({"messages": [{"role": "user", "content": input}]}),
            (None, None) => return Err(invalid("needs `messages` or `input`".into())),
        };
        let response = raw.response.ok_or_else(|| invalid("needs `response`".into()))?;
        let labels = match (raw.label, raw.labels) {
            (Some(one), None) => vec![one],
            (None, Some(many)) if !many.is_empty() => many,
            (Some(_), Some(_)) => return Err(invalid("give `label` or `labels`, not both".into())),
            _ => return Err(invalid("needs `label` (a number) or `labels` (numbers)".into())),
        };
        if let Some(bad) = labels.iter().find(|l| !(rubric.scale.min..=rubric.scale.max).contains(*l)) {
            return Err(invalid(format!(
                "label {bad} is outside rubric `{}`'s scale {}–{}",
                rubric.name, rubric.scale.min, rubric.scale.max
            )));
        }
        items.push(LabelledItem { id, request, response, labels });
    }
    if items.is_empty() {
        return Err(JudgeError::InvalidLabels {
            path: path.display().to_string(),
            reason: "no items".into(),
        });
    }
    Ok(items)
}

/// One cell of the confusion table: how often a human score met a judge score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionCell {
    /// Human score (labellers' mean, rounded to the scale's nearest whole point).
    pub human: f64,
    /// Judge score (rounded likewise).
    pub judge: f64,
    /// Items.
    pub count: u64,
}

/// How the judge agrees with the human labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationResult {
    /// Items the judge scored.
    pub n: usize,
    /// Items the judge failed on (left out of the statistics).
    pub judge_failures: usize,
    /// Quadratic-weighted κ between the judge and the human score (ordinal agreement).
    pub weighted_kappa: f64,
    /// Cohen's κ on pass/fail (a score at or above the scale's midpoint passes).
    pub kappa: f64,
    /// Observed pass/fail agreement.
    pub agreement: f64,
    /// Krippendorff's α (interval) over every labeller and the judge; `None` with one labeller
    /// (then it equals the two-coder α, reported as `alpha_judge_human`).
    pub alpha_all: Option<f64>,
    /// Krippendorff's α (interval) among the human labellers alone, the ceiling to compare with.
    pub alpha_humans: Option<f64>,
    /// Krippendorff's α (interval) between the judge and the human score.
    pub alpha_judge_human: f64,
    /// Mean judge score − mean human score, on the rubric's scale (positive: lenient judge).
    pub mean_bias: f64,
    /// Mean judge score.
    pub judge_mean: f64,
    /// Mean human score.
    pub human_mean: f64,
    /// Human × judge counts.
    pub confusion: Vec<ConfusionCell>,
}

/// Agreement of judge scores with labels, item by item (`judge[i]` is `None` where the judge
/// failed). Scores are on the rubric's scale.
pub fn agreement(rubric: &Rubric, items: &[LabelledItem], judge: &[Option<f64>]) -> CalibrationResult {
    let (min, max) = (rubric.scale.min, rubric.scale.max);
    let round = |x: f64| ((x - min).round() + min).clamp(min, max);
    let mut judged = Vec::new();
    let mut human = Vec::new();
    let mut units: Vec<Vec<f64>> = Vec::new();
    let mut human_units: Vec<Vec<f64>> = Vec::new();
    for (item, score) in items.iter().zip(judge) {
        let Some(score) = score else { continue };
        judged.push(*score);
        human.push(mean(&item.labels));
        let mut unit = item.labels.clone();
        unit.push(*score);
        units.push(unit);
        human_units.push(item.labels.clone());
    }
    let several = items.iter().any(|i| i.labels.len() > 1);
    let (jr, hr): (Vec<f64>, Vec<f64>) =
        judged.iter().zip(&human).map(|(j, h)| (round(*j), round(*h))).unzip();
    let midpoint = (min + max) / 2.0;
    let pass = |xs: &[f64]| xs.iter().map(|x| f64::from(u8::from(*x >= midpoint))).collect::<Vec<_>>();
    let (kappa, agreement) = cohen_kappa(&pass(&judged), &pass(&human));
    let mut confusion: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for (h, j) in hr.iter().zip(&jr) {
        *confusion.entry((*h as i64, *j as i64)).or_default() += 1;
    }
    let finite = |x: f64| if x.is_finite() { x } else { f64::NAN };
    CalibrationResult {
        n: judged.len(),
        judge_failures: judge.iter().filter(|s| s.is_none()).count(),
        weighted_kappa: finite(quadratic_weighted_kappa(&jr, &hr)),
        kappa: finite(kappa),
        agreement,
        alpha_all: several.then(|| krippendorff_alpha_multi(&units)),
        alpha_humans: several.then(|| krippendorff_alpha_multi(&human_units)),
        alpha_judge_human: krippendorff_alpha(&judged, &human, Level::Interval),
        mean_bias: mean(&judged) - mean(&human),
        judge_mean: mean(&judged),
        human_mean: mean(&human),
        confusion: confusion
            .into_iter()
            .map(|((h, j), count)| ConfusionCell { human: h as f64, judge: j as f64, count })
            .collect(),
    }
}

/// The confusion table and statistics as text.
pub fn render(rubric: &str, result: &CalibrationResult) -> String {
    let opt = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.3}"));
    let mut out = format!(
        "rubric {rubric}: {} items judged ({} judge failures)\n\
         weighted κ (quadratic, ordinal) {:.3}\n\
         κ (pass/fail at the scale's midpoint) {:.3}, agreement {:.1}%\n\
         Krippendorff's α (interval): judge vs humans {:.3}; all coders {}; humans alone {}\n\
         mean bias (judge − human) {:+.3} (judge {:.3}, human {:.3})\n\
         confusion (rows human, columns judge):\n",
        result.n,
        result.judge_failures,
        result.weighted_kappa,
        result.kappa,
        100.0 * result.agreement,
        result.alpha_judge_human,
        opt(result.alpha_all),
        opt(result.alpha_humans),
        result.mean_bias,
        result.judge_mean,
        result.human_mean,
    );
    let mut rows: Vec<f64> = result.confusion.iter().map(|c| c.human).collect();
    let mut cols: Vec<f64> = result.confusion.iter().map(|c| c.judge).collect();
    for v in [&mut rows, &mut cols] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    out.push_str(&format!("{:>8}", "h \\ j"));
    for c in &cols {
        out.push_str(&format!("{c:>6}"));
    }
    out.push('\n');
    for r in &rows {
        out.push_str(&format!("{r:>8}"));
        for c in &cols {
            let count =
                result.confusion.iter().find(|x| x.human == *r && x.judge == *c).map_or(0, |x| x.count);
            out.push_str(&format!("{count:>6}"));
        }
        out.push('\n');
    }
    out
}
