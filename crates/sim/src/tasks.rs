//! The task family behind simulated traffic: prompts whose correct answer code can compute,
//! so simulated models can be right or wrong on purpose and the simulated judge can check.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

/// A task a prompt asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// `a op b` with op in `+ - *`.
    Arithmetic {
        /// Left operand.
        a: i64,
        /// Operator.
        op: char,
        /// Right operand.
        b: i64,
    },
    /// A unit conversion with an exact integer factor.
    Convert {
        /// Quantity.
        amount: i64,
        /// Index into [`CONVERSIONS`].
        conversion: usize,
    },
    /// Pull one field out of a JSON object.
    JsonField {
        /// The object.
        object: Map<String, Value>,
        /// Field asked for.
        field: String,
    },
    /// Label a review positive or negative.
    Sentiment {
        /// The review.
        review: String,
    },
}

/// Which kind of work a task is: models may be better at one than the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Reading something off the prompt: a JSON field, a review's sentiment.
    Lookup,
    /// Working something out: arithmetic, a unit conversion.
    Compute,
}

impl Family {
    /// The route the demo tags this family's traffic with.
    pub fn route(self) -> &'static str {
        match self {
            Family::Lookup => "support",
            Family::Compute => "math",
        }
    }
}

/// (from, to, factor) of the supported conversions.
pub const CONVERSIONS: [(&str, &str, i64); 5] = [
    ("km", "m", 1000),
    ("kg", "g", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("feet", "inches", 12),
];

const POSITIVE: [&str; 6] = ["wonderful", "delicious", "friendly", "excellent", "lovely", "great"];
const NEGATIVE: [&str; 6] = ["awful", "bland", "rude", "terrible", "disappointing", "cold"];
const NOUNS: [&str; 6] = ["food", "service", "room", "staff", "coffee", "view"];
const FIELDS: [&str; 6] = ["name", "city", "plan", "country", "color", "status"];
const WORDS: [&str; 12] = [
    "alpha", "harbor", "violet", "quartz", "maple", "cobalt", "ember", "lumen", "orchid", "tundra", "sierra",
    "nimbus",
];

static ARITHMETIC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"What is (-?\d+) ([+*-]) (-?\d+)\?").expect("valid regex"));
static CONVERT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Convert (\d+) (km|kg|hours|minutes|feet) to (m|g|minutes|seconds|inches)\.")
        .expect("valid regex")
});
static JSON_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"Extract the value of the field "(\w+)" from this JSON: (\{[^\n]*\})"#).expect("valid regex")
});
static SENTIMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"Classify the sentiment of this review as positive or negative: "([^"\n]+)""#)
        .expect("valid regex")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"-?\d+(?:\.\d+)?").expect("valid regex"));

/// Deterministic 64-bit mixer (splitmix64), so tasks depend only on their index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Task {
    /// The `index`-th task of the family for `seed`; the same pair always gives the same task.
    pub fn generate(seed: u64, index: u64) -> Task {
        let h = mix(seed ^ mix(index));
        let pick = |shift: u32, n: u64| ((h >> shift) % n) as usize;
        match h % 4 {
            0 => Task::Arithmetic {
                a: 2 + (h >> 8) as i64 % 98,
                op: ['+', '-', '*'][pick(16, 3)],
                b: 2 + (h >> 24) as i64 % 48,
            },
            1 => Task::Convert { amount: 1 + (h >> 8) as i64 % 250, conversion: pick(20, 5) },
            2 => {
                let mut object = Map::new();
                for (i, field) in FIELDS.iter().enumerate().take(3 + pick(8, 3)) {
                    let word = WORDS[(pick(12, 12) + i * 5) % WORDS.len()];
                    object.insert((*field).into(), json!(format!("{word}-{}", (h >> (i + 30)) % 90 + 10)));
                }
                let field = FIELDS[pick(40, object.len() as u64)].to_string();
                Task::JsonField { object, field }
            }
            _ => {
                let lexicon = if pick(8, 2) == 0 { POSITIVE } else { NEGATIVE };
                let review = format!(
                    "The {} was {} and the {} was {}.",
                    NOUNS[pick(12, 6)],
                    lexicon[pick(16, 6)],
                    NOUNS[(pick(12, 6) + 1 + pick(20, 5)) % 6],
                    lexicon[pick(24, 6)]
                );
                Task::Sentiment { review }
            }
        }
    }

    /// The task's family.
    pub fn family(&self) -> Family {
        match self {
            Task::JsonField { .. } | Task::Sentiment { .. } => Family::Lookup,
            Task::Arithmetic { .. } | Task::Convert { .. } => Family::Compute,
        }
    }

    /// The user prompt that asks for this task.
    pub fn prompt(&self) -> String {
        match self {
            Task::Arithmetic { a, op, b } => {
                format!("What is {a} {op} {b}? Reply with the number.")
            }
            Task::Convert { amount, conversion } => {
                let (from, to, _) = CONVERSIONS[*conversion];
                format!("Convert {amount} {from} to {to}. Reply with the number.")
            }
            Task::JsonField { object, field } => format!(
                "Extract the value of the field \"{field}\" from this JSON: {}",
                Value::Object(object.clone())
            ),
            Task::Sentiment { review } => {
                format!("Classify the sentiment of this review as positive or negative: \"{review}\"")
            }
        }
    }

    /// Finds the first task stated anywhere in `text` (a user prompt or a judge prompt).
    pub fn find(text: &str) -> Option<Task> {
        if let Some(c) = ARITHMETIC.captures(text) {
            return Some(Task::Arithmetic {
                a: c[1].parse().ok()?,
                op: c[2].chars().next()?,
                b: c[3].parse().ok()?,
            });
        }
        if let Some(c) = CONVERT.captures(text) {
            let conversion = CONVERSIONS.iter().position(|(f, t, _)| *f == &c[2] && *t == &c[3])?;
            return Some(Task::Convert { amount: c[1].parse().ok()?, conversion });
        }
        if let Some(c) = JSON_FIELD.captures(text) {
            let object = serde_json::from_str::<Map<String, Value>>(&c[2]).ok()?;
            let field = c[1].to_string();
            return object.contains_key(&field).then_some(Task::JsonField { object, field });
        }
        if let Some(c) = SENTIMENT.captures(text) {
            return Some(Task::Sentiment { review: c[1].to_string() });
        }
        None
    }

    /// The correct answer.
    pub fn answer(&self) -> String {
        match self {
            Task::Arithmetic { a, op, b } => match op {
                '+' => a + b,
                '-' => a - b,
                _ => a * b,
            }
            .to_string(),
            Task::Convert { amount, conversion } => (amount * CONVERSIONS[*conversion].2).to_string(),
            Task::JsonField { object, field } => value_text(&object[field]),
            Task::Sentiment { review } => sentiment_of(review).to_string(),
        }
    }

    /// A plausible wrong answer, chosen by `h`.
    pub fn wrong_answer(&self, h: u64) -> String {
        match self {
            Task::Arithmetic { .. } => {
                let right: i64 = self.answer().parse().unwrap_or(0);
                let off = 1 + (h % 9) as i64;
                (if h & 1 == 0 { right + off } else { right - off }).to_string()
            }
            Task::Convert { amount, conversion } => {
                // The classic slips: a wrong power of ten (km→m, kg→g), decimal instead of
                // sexagesimal (hours, minutes), ten instead of twelve (feet→inches).
                let wrong = if CONVERSIONS[*conversion].2 == 12 { 10 } else { 100 };
                (amount * wrong).to_string()
            }
            Task::JsonField { object, field } => {
                let others: Vec<&String> = object.keys().filter(|k| *k != field).collect();
                match others.get((h % others.len().max(1) as u64) as usize) {
                    Some(other) => value_text(&object[*other]),
                    None => "unknown".into(),
                }
            }
            Task::Sentiment { review } => {
                if sentiment_of(review) == "positive" { "negative" } else { "positive" }.into()
            }
        }
    }

    /// Whether `response` answers the task correctly.
    pub fn check(&self, response: &str) -> bool {
        self.agrees(response, &self.answer())
    }

    /// Whether `response` gives the same answer as `reference` — right or wrong: a judge shown
    /// a reference grades against it, not against the truth.
    pub fn check_against(&self, response: &str, reference: &str) -> bool {
        let expected = match self {
            Task::Arithmetic { .. } | Task::Convert { .. } => match NUMBER.find_iter(reference).last() {
                Some(m) => m.as_str().to_string(),
                None => return false,
            },
            Task::Sentiment { .. } => {
                let lower = reference.to_lowercase();
                if lower.contains("negative") {
                    "negative"
                } else if lower.contains("positive") {
                    "positive"
                } else {
                    return false;
                }
                .to_string()
            }
            Task::JsonField { .. } => reference.trim().trim_end_matches('.').to_string(),
        };
        self.agrees(response, &expected)
    }

    fn agrees(&self, response: &str, expected: &str) -> bool {
        let expected = expected.to_string();
        match self {
            Task::Arithmetic { .. } | Task::Convert { .. } => NUMBER
                .find_iter(response)
                .last()
                .and_then(|m| m.as_str().parse::<f64>().ok())
                .zip(expected.parse::<f64>().ok())
                .is_some_and(|(got, want)| (got - want).abs() < 1e-9),
            Task::JsonField { object, field } => {
                let text = response.to_lowercase();
                text.contains(&expected.to_lowercase())
                    && object
                        .iter()
                        .filter(|(k, _)| *k != field)
                        .all(|(_, v)| !text.contains(&value_text(v).to_lowercase()))
            }
            Task::Sentiment { .. } => {
                let text = response.to_lowercase();
                let other = if expected == "positive" { "negative" } else { "positive" };
                text.contains(&expected) && !text.contains(other)
            }
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Ground truth of a review by lexicon: more positive than negative words is positive.
fn sentiment_of(review: &str) -> &'static str {
    let words: Vec<String> = review.split(|c: char| !c.is_alphabetic()).map(str::to_lowercase).collect();
    let score: i32 = words
        .iter()
        .map(|w| {
            if POSITIVE.contains(&w.as_str()) {
                1
            } else if NEGATIVE.contains(&w.as_str()) {
                -1
            } else {
                0
            }
        })
        .sum();
    if score >= 0 { "positive" } else { "negative" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_task_round_trips_and_checks() {
        for i in 0..500 {
            let task = Task::generate(7, i);
            let found = Task::find(&format!("### Question\nuser: {}\n", task.prompt()));
            assert_eq!(found.as_ref(), Some(&task), "task {i}: {}", task.prompt());
            assert!(task.check(&task.answer()), "{}", task.prompt());
            assert!(task.check(&format!("The answer is {}.", task.answer())));
            let wrong = task.wrong_answer(i);
            assert!(!task.check(&wrong), "{} wrong answer {wrong} passed", task.prompt());
        }
    }

    #[test]
    fn generation_is_deterministic_and_varied() {
        assert_eq!(Task::generate(1, 5), Task::generate(1, 5));
        let kinds: std::collections::HashSet<_> =
            (0..40).map(|i| std::mem::discriminant(&Task::generate(1, i))).collect();
        assert_eq!(kinds.len(), 4);
    }
}
