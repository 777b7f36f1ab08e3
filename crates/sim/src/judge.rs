//! The simulated judge. It reads the prompt evaltap rendered from a rubric, finds the task and
//! the answer(s) in it, checks them itself, and answers in the judge JSON format. It never
//! sees a label: only the text a real judge would see.
//!
//! Conventions it relies on (the shipped rubrics follow them): answers sit under markdown
//! headings that contain `Response` (`### Response`, or `### Response A` / `### Response B` for
//! pairwise), and a heading closes at the next heading. A prompt stating a scale "from X to Y"
//! is scored on that scale, else on 1–10.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use crate::tasks::Task;
use crate::unit;

/// Noise and bias of the simulated judge.
#[derive(Debug, Clone, Copy)]
pub struct JudgeBehavior {
    /// Probability that a pointwise score is replaced by a random one, drawn afresh for every
    /// call (from the request's `seed` when it has one), as a judge sampled at temperature > 0.
    pub noise: f64,
    /// Probability that a pairwise verdict is "A" whatever the answers.
    pub position_bias: f64,
    /// Probability that the judge answers in prose with no JSON when the graded answer is long
    /// (more than one word): a judge whose failures depend on the answer.
    pub unreadable_long: f64,
}

impl Default for JudgeBehavior {
    fn default() -> Self {
        JudgeBehavior { noise: 0.05, position_bias: 0.1, unreadable_long: 0.0 }
    }
}

static HEADING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^#{1,6}\s*(.+?)\s*$").expect("valid regex"));
static SCALE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"from (\d+) to (\d+)").expect("valid regex"));

/// Sections of a prompt by heading title, in order.
fn sections(prompt: &str) -> Vec<(String, String)> {
    let heads: Vec<_> = HEADING.captures_iter(prompt).collect();
    heads
        .iter()
        .enumerate()
        .map(|(i, cap)| {
            let whole = cap.get(0).map_or(0..0, |m| m.range());
            let end = heads.get(i + 1).and_then(|n| n.get(0)).map_or(prompt.len(), |m| m.start());
            (cap[1].to_string(), prompt[whole.end..end].trim().to_string())
        })
        .collect()
}

fn response_section<'a>(sections: &'a [(String, String)], label: &str) -> Option<&'a str> {
    sections
        .iter()
        .find(|(title, _)| {
            let words: Vec<&str> = title.split_whitespace().collect();
            words.first().is_some_and(|w| w.eq_ignore_ascii_case("response"))
                && words.get(1).copied().unwrap_or("") == label
        })
        .map(|(_, body)| body.as_str())
}

static WEATHER_IN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"weather in ([A-Z][a-z]+)").expect("valid regex"));
static CALLED_CITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\[calls \w+\(\{"city":"([A-Za-z]+)"\}\)\]"#).expect("valid regex"));

/// The simulated tool task in a judge prompt: the city the conversation's last question asks
/// the weather of, and the city the graded answer's call names (`None`: it calls nothing).
/// `None` when the prompt shows no tools.
fn tool_task(sections: &[(String, String)], answer: &str) -> Option<(String, Option<String>)> {
    sections.iter().find(|(title, _)| title.to_lowercase().contains("tools"))?;
    let conversation = sections.iter().find(|(title, _)| title.to_lowercase().contains("conversation"))?;
    let city = WEATHER_IN.captures_iter(&conversation.1).last()?[1].to_string();
    let called = CALLED_CITY.captures(answer).map(|c| c[1].to_string());
    Some((city, called))
}

/// A ninth of a scale's span: what a wrong answer scores above the bottom.
fn span_ninth(low: i64, high: i64) -> i64 {
    (high - low) / 9
}

/// The judge's reply text (a JSON object) to a rendered rubric prompt.
pub fn judge(model: &str, prompt: &str, behavior: JudgeBehavior) -> String {
    let sections = sections(prompt);
    let task = Task::find(prompt);
    let (Some(a), Some(b)) = (response_section(&sections, "A"), response_section(&sections, "B")) else {
        return match pointwise(model, prompt, &sections, task, behavior) {
            Value::String(prose) => prose,
            object => object.to_string(),
        };
    };
    let Some(task) = task else {
        return json!({"winner": "tie", "reason": "could not identify the task to check"}).to_string();
    };
    if unit(model, prompt, "position") < behavior.position_bias {
        return json!({"winner": "A", "reason": "Response A reads better."}).to_string();
    }
    let winner = match (task.check(a), task.check(b)) {
        (true, false) => "A",
        (false, true) => "B",
        _ => "tie",
    };
    json!({"winner": winner, "reason": format!("the correct answer is {}", task.answer())}).to_string()
}

fn pointwise(
    model: &str,
    prompt: &str,
    sections: &[(String, String)],
    task: Option<Task>,
    behavior: JudgeBehavior,
) -> Value {
    let (low, high) = SCALE
        .captures(prompt)
        .and_then(|c| Some((c[1].parse::<i64>().ok()?, c[2].parse::<i64>().ok()?)))
        .filter(|(l, h)| l < h)
        .unwrap_or((1, 10));
    let Some(answer) = response_section(sections, "") else {
        return json!({"score": low, "reason": "no response section to grade"});
    };
    if let Some((city, called)) = tool_task(sections, answer) {
        // The simulated tool task: the right call names the city asked about.
        return if called.as_deref() == Some(city.as_str()) {
            json!({"score": high, "reason": format!("calls get_weather for {city}")})
        } else {
            json!({"score": low + span_ninth(low, high), "reason": format!("the call should ask about {city}")})
        };
    }
    let Some(task) = task else {
        return json!({"score": (low + high) / 2, "reason": "could not identify the task to check"});
    };
    if answer.split_whitespace().count() > 1 && unit(model, prompt, "unreadable") < behavior.unreadable_long {
        return Value::String("Let me think about this answer step by step before I grade it.".into());
    }
    if unit(model, prompt, "noise") < behavior.noise {
        let span = (high - low + 1) as f64;
        let score = low + (unit(model, prompt, "noise-score") * span) as i64;
        return json!({"score": score.min(high), "reason": "hard to say"});
    }
    let span = high - low;
    // A reference shown in the prompt is what the answer is graded against.
    let reference = sections
        .iter()
        .find(|(title, _)| title.to_lowercase().contains("reference"))
        .map(|(_, b)| b.as_str());
    let correct = match reference {
        Some(reference) => task.check_against(answer, reference),
        None => task.check(answer),
    };
    if correct {
        // Terse answers lose a little on style; correctness dominates.
        let score = if answer.split_whitespace().count() > 1 { high } else { high - span / 9 };
        json!({"score": score, "reason": format!("correct: the answer is {}", task.answer())})
    } else {
        json!({"score": low + span / 9, "reason": format!("incorrect: the answer is {}", task.answer())})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

    fn prompt(answer: &str) -> String {
        format!(
            "Rate the response on a scale from 1 to 10.\n### Question\nuser: What is 2 + 3? Reply with the number.\n### Response\n{answer}\n"
        )
    }

    #[test]
    fn tool_calls_are_graded_by_the_city_they_ask_about() {
        let prompt = |answer: &str| {
            format!(
                "Rate the response on a scale from 1 to 10.\n### Tools the assistant could call\nget_weather: Weather.\n\
                 ### Conversation\nuser: What is the weather in Rome today?\n### Response\n{answer}\n"
            )
        };
        let score = |answer: &str| {
            serde_json::from_str::<Value>(&judge("j", &prompt(answer), QUIET)).expect("json")["score"].clone()
        };
        assert_eq!(score(r#"[calls get_weather({"city":"Rome"})]"#), 10);
        assert_eq!(score(r#"[calls get_weather({"city":"Oslo"})]"#), 2);
        assert_eq!(score("It is sunny."), 2, "a text answer to a tool request");
    }

    #[test]
    fn pointwise_checks_the_answer() {
        let good: Value =
            serde_json::from_str(&judge("j", &prompt("The answer is 5."), QUIET)).expect("json");
        let bad: Value = serde_json::from_str(&judge("j", &prompt("The answer is 6."), QUIET)).expect("json");
        assert_eq!(good["score"], 10);
        assert_eq!(bad["score"], 2);
    }

    #[test]
    fn a_reference_in_the_prompt_is_graded_against_even_when_wrong() {
        let with_reference = |reference: &str, answer: &str| {
            format!(
                "Rate the response on a scale from 1 to 10.\n### Conversation\nuser: What is 2 + 3? Reply with the number.\n### Reference answer\n{reference}\n### Response\n{answer}\n"
            )
        };
        let score =
            |p: String| serde_json::from_str::<Value>(&judge("j", &p, QUIET)).expect("json")["score"].clone();
        assert_eq!(score(with_reference("The answer is 6.", "The answer is 6.")), 10);
        assert_eq!(score(with_reference("The answer is 6.", "The answer is 5.")), 2);
    }

    #[test]
    fn pairwise_prefers_the_correct_answer_in_either_position() {
        let p = |a: &str, b: &str| {
            format!("### Question\nWhat is 2 + 3?\n### Response A\n{a}\n### Response B\n{b}\n")
        };
        let first: Value = serde_json::from_str(&judge("j", &p("5", "7"), QUIET)).expect("json");
        let second: Value = serde_json::from_str(&judge("j", &p("7", "5"), QUIET)).expect("json");
        assert_eq!((first["winner"].as_str(), second["winner"].as_str()), (Some("A"), Some("B")));
    }
}
