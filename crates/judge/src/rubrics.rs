//! Rubric files: their templates, rendering the judge prompt, and parsing the judge's answer
//! into a score on the rubric's scale.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, context};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::*;

/// How a rubric asks the judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One response, a score on the rubric's scale.
    Pointwise,
    /// Two responses (`response_a`, `response_b`); the judge names the better one. evaltap asks
    /// in both orders.
    Pairwise,
    /// One response graded against the item's reference answer (`reference`), a score on the
    /// rubric's scale. Items without a reference cannot be graded with it.
    Reference,
}

/// The range of a pointwise score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Worst score.
    pub min: f64,
    /// Best score.
    pub max: f64,
}

/// One rubric file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    /// Name experiments refer to.
    pub name: String,
    /// What it measures.
    #[serde(default)]
    pub description: String,
    /// Pointwise or pairwise.
    pub mode: Mode,
    /// Score range (pointwise rubrics).
    #[serde(default = "default_scale")]
    pub scale: Scale,
    /// Judge model overriding the configured one.
    pub judge_model: Option<String>,
    /// minijinja template of the judge prompt.
    pub template: String,
    /// The file's full text, as read.
    #[serde(skip)]
    pub source: String,
    /// Hex SHA-256 of `source`: what an experiment freezes and a calibration refers to.
    #[serde(skip)]
    pub sha256: String,
}

fn default_scale() -> Scale {
    Scale { min: 1.0, max: 10.0 }
}

/// Which response a pairwise judge preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    /// The first response.
    A,
    /// The second response.
    B,
    /// Neither.
    Tie,
}

/// A parsed judge answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Score on the rubric's scale.
    pub raw: f64,
    /// Score mapped to [0, 1].
    pub normalized: f64,
    /// The judge's reason.
    pub reason: String,
}

/// What a judge is asked to grade.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The chat-completions request that was answered.
    pub request: &'a Value,
    /// The response text to grade.
    pub response: &'a str,
    /// A reference answer, when one is known.
    pub reference: Option<&'a str>,
}

/// The shipped rubrics, used when no rubric folder exists (e.g. `evaltap demo` run elsewhere).
const BUILTIN: [(&str, &str); 9] = [
    ("conciseness.toml", include_str!("../../../rubrics/conciseness.toml")),
    ("correctness.toml", include_str!("../../../rubrics/correctness.toml")),
    ("faithfulness.toml", include_str!("../../../rubrics/faithfulness.toml")),
    ("helpfulness.toml", include_str!("../../../rubrics/helpfulness.toml")),
    ("instruction_following.toml", include_str!("../../../rubrics/instruction_following.toml")),
    ("correctness_vs_reference.toml", include_str!("../../../rubrics/correctness_vs_reference.toml")),
    ("preference.toml", include_str!("../../../rubrics/preference.toml")),
    ("safety.toml", include_str!("../../../rubrics/safety.toml")),
    ("tool_use.toml", include_str!("../../../rubrics/tool_use.toml")),
];

/// Hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// "file:line: reason" for a template error, so a broken rubric points at its line.
fn template_error(path: &str, template: &str, source_text: &str, err: &minijinja::Error) -> String {
    // The template starts some lines into the file (after `template = """`): find where.
    let offset = source_text
        .find(template.lines().next().unwrap_or_default())
        .map(|at| source_text[..at].matches('\n').count())
        .unwrap_or(0);
    let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
    match err.line() {
        Some(line) => format!("{path}:{}: template error: {}{detail}", line + offset, err.kind()),
        None => format!("{path}: template error: {}{detail}", err.kind()),
    }
}

/// A set of loaded rubrics with their compiled templates; cheap to clone (shared, read-only —
/// the server's state is cloned per request and the worker's per job).
#[derive(Debug, Clone)]
pub struct Rubrics {
    rubrics: Arc<BTreeMap<String, Rubric>>,
    env: Arc<Environment<'static>>,
}

impl Rubrics {
    /// Loads every `*.toml` in `dir`, or the shipped rubrics when `dir` does not exist.
    pub fn load(dir: &Path) -> Result<Rubrics, JudgeError> {
        if !dir.is_dir() {
            return Rubrics::from_sources(BUILTIN.iter().map(|(p, s)| (p.to_string(), s.to_string())));
        }
        let read_err = |source| JudgeError::Read { path: dir.display().to_string(), source };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| JudgeError::Read { path: path.display().to_string(), source })?;
                files.push((path.display().to_string(), text));
            }
        }
        files.sort();
        Rubrics::from_sources(files)
    }

    /// Parses rubric files given as (path, text) pairs.
    pub fn from_sources(files: impl IntoIterator<Item = (String, String)>) -> Result<Rubrics, JudgeError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut rubrics = BTreeMap::new();
        for (path, text) in files {
            let invalid = |reason: String| JudgeError::Invalid { path: path.clone(), reason };
            let mut rubric: Rubric = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            if rubric.scale.min.partial_cmp(&rubric.scale.max) != Some(std::cmp::Ordering::Less) {
                return Err(invalid("scale.min must be below scale.max".into()));
            }
            env.add_template_owned(rubric.name.clone(), rubric.template.clone())
                .map_err(|e| invalid(template_error(&path, &rubric.template, &text, &e)))?;
            rubric.sha256 = sha256_hex(&text);
            rubric.source = text;
            if rubrics.insert(rubric.name.clone(), rubric).is_some() {
                return Err(invalid("another rubric has the same name".into()));
            }
        }
        Ok(Rubrics { rubrics: Arc::new(rubrics), env: Arc::new(env) })
    }

    /// The rubric with this name.
    pub fn get(&self, name: &str) -> Result<&Rubric, JudgeError> {
        self.rubrics
            .get(name)
            .ok_or_else(|| JudgeError::Unknown { name: name.into(), available: self.names().join(", ") })
    }

    /// Names of all rubrics.
    pub fn names(&self) -> Vec<String> {
        self.rubrics.keys().cloned().collect()
    }

    /// Renders every rubric with a sample exchange, so a template that parses but fails when
    /// rendered (an unknown variable, a bad filter) is reported before any experiment runs.
    /// Returns one message per broken rubric.
    pub fn check(&self) -> Vec<String> {
        let request = json!({"messages": [{"role": "user", "content": "What is 2 + 2?"}]});
        let subject = Subject { request: &request, response: "4", reference: Some("4") };
        self.rubrics
            .values()
            .filter_map(|rubric| {
                let rendered = match rubric.mode {
                    Mode::Pointwise | Mode::Reference => self.render(&rubric.name, subject),
                    Mode::Pairwise => self.render_pair(&rubric.name, &request, "4", "5"),
                };
                match rendered {
                    Err(JudgeError::Render { source, .. }) => Some(template_error(
                        &format!("rubric `{}`", rubric.name),
                        &rubric.template,
                        &rubric.source,
                        &source,
                    )),
                    Err(other) => Some(other.to_string()),
                    Ok(_) => None,
                }
            })
            .collect()
    }

    /// The judge prompt comparing two responses to the same request with pairwise rubric `name`.
    pub fn render_pair(
        &self,
        name: &str,
        request: &Value,
        response_a: &str,
        response_b: &str,
    ) -> Result<String, JudgeError> {
        let render_err = |source| JudgeError::Render { rubric: name.into(), source };
        let template = self.env.get_template(name).map_err(render_err)?;
        template
            .render(context! {
                conversation => evaltap_core::chat::transcript(request),
                tools => evaltap_core::chat::tools_text(request),
                question => evaltap_core::chat::last_user_text(request),
                response_a => response_a,
                response_b => response_b,
                reference => None::<String>,
                request => Serde(request),
            })
            .map_err(render_err)
    }

    /// The judge prompt for grading `subject` with rubric `name`.
    pub fn render(&self, name: &str, subject: Subject<'_>) -> Result<String, JudgeError> {
        let rubric = self.get(name)?;
        if rubric.mode == Mode::Reference && subject.reference.is_none_or(|r| r.trim().is_empty()) {
            return Err(JudgeError::NoReference(name.into()));
        }
        let render_err = |source| JudgeError::Render { rubric: name.into(), source };
        let template = self.env.get_template(name).map_err(render_err)?;
        template
            .render(context! {
                conversation => evaltap_core::chat::transcript(subject.request),
                tools => evaltap_core::chat::tools_text(subject.request),
                question => evaltap_core::chat::last_user_text(subject.request),
                response => subject.response,
                reference => subject.reference,
                request => Serde(subject.request),
                scale => Serde(json!({"min": display_number(rubric.scale.min), "max": display_number(rubric.scale.max)})),
            })
            .map_err(render_err)
    }
}

impl Rubric {
    /// Reads a pairwise judge's answer: a JSON object whose `winner` is "A", "B" or "tie".
    pub fn parse_winner(&self, answer: &str) -> Result<(Winner, String), JudgeError> {
        let fail = |reason: &str| JudgeError::Unparseable {
            rubric: self.name.clone(),
            reason: reason.into(),
            answer: answer.chars().take(200).collect(),
        };
        let object = extract_json_object(answer).ok_or_else(|| fail("no JSON object"))?;
        let winner = match object
            .get("winner")
            .and_then(Value::as_str)
            .map(|w| w.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("a") => Winner::A,
            Some("b") => Winner::B,
            Some("tie") | Some("none") | Some("equal") => Winner::Tie,
            _ => return Err(fail("`winner` must be \"A\", \"B\" or \"tie\"")),
        };
        Ok((winner, object.get("reason").and_then(Value::as_str).unwrap_or_default().to_string()))
    }

    /// Reads the judge's answer: a JSON object with a numeric `score` within the scale.
    pub fn parse_score(&self, answer: &str) -> Result<Score, JudgeError> {
        let fail = |reason: &str| JudgeError::Unparseable {
            rubric: self.name.clone(),
            reason: reason.into(),
            answer: answer.chars().take(200).collect(),
        };
        let object = extract_json_object(answer).ok_or_else(|| fail("no JSON object"))?;
        let raw = match object.get("score") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| fail("no numeric `score`"))?;
        if !(self.scale.min..=self.scale.max).contains(&raw) {
            return Err(fail("score outside the rubric's scale"));
        }
        Ok(Score {
            raw,
            normalized: (raw - self.scale.min) / (self.scale.max - self.scale.min),
            reason: object.get("reason").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
    }
}

/// Whole numbers as integers, so a 1–10 scale reads "1 to 10" in a prompt, not "1.0 to 10.0".
fn display_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 { json!(x as i64) } else { json!(x) }
}

/// The first JSON object in a text, tolerating prose or a code fence around it.
fn extract_json_object(text: &str) -> Option<serde_json::Map<String, Value>> {
    let mut start = text.find('{');
    while let Some(from) = start {
        let mut stream = serde_json::Deserializer::from_str(&text[from..]).into_iter::<Value>();
        if let Some(Ok(Value::Object(map))) = stream.next() {
            return Some(map);
        }
        start = text[from + 1..].find('{').map(|i| i + from + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Rubrics {
        Rubrics::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rubrics")))
            .expect("shipped rubrics load")
    }

    #[test]
    fn a_tool_call_answer_shows_the_tools_the_calls_and_the_call_made() {
        let rubrics = shipped();
        let request = json!({
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "You are a travel assistant."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\":18}"},
            {"role": "user", "content": "And in Rome?"}
        ]});
        let response = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]}}]});
        let answer = evaltap_core::chat::answer_text(&response);
        for name in ["correctness", "helpfulness", "tool_use"] {
            let prompt = rubrics
                .render(name, Subject { request: &request, response: &answer, reference: None })
                .expect("renders");
            assert!(
                prompt.contains(
                    "### Tools the assistant could call\nget_weather: Weather for a city. parameters {"
                ),
                "{name}: {prompt}"
            );
            assert!(
                prompt.contains(
                    "assistant: [calls get_weather({\"city\":\"Paris\"})]\ntool (c1): {\"temp_c\":18}"
                ),
                "{name}: {prompt}"
            );
            assert!(
                prompt.contains("### Response\n[calls get_weather({\"city\":\"Rome\"})]"),
                "{name}: {prompt}"
            );
        }
        // Without tools, the shipped rubrics say nothing of them.
        let plain = json!({"messages": [{"role": "user", "content": "2+2?"}]});
        let prompt = rubrics
            .render("correctness", Subject { request: &plain, response: "4", reference: None })
            .expect("renders");
        assert!(!prompt.contains("Tools"), "{prompt}");
    }

    #[test]
    fn renders_with_and_without_reference() {
        let rubrics = shipped();
        assert_eq!(
            rubrics.names(),
            [
                "conciseness",
                "correctness",
                "correctness_vs_reference",
                "faithfulness",
                "helpfulness",
                "instruction_following",
                "preference",
                "safety",
                "tool_use"
            ]
        );
        assert!(rubrics.check().is_empty(), "{:?}", rubrics.check());
        let request = json!({"messages": [{"role": "user", "content": "What is 2 + 2?"}]});
        let subject = Subject { request: &request, response: "4", reference: None };
        let prompt = rubrics.render("correctness", subject).expect("renders");
        assert!(prompt.contains("user: What is 2 + 2?") && prompt.contains("### Response\n4"));
        assert!(prompt.contains("scale from 1 to 10") && !prompt.contains("Reference answer"));
        let with_ref =
            rubrics.render("correctness", Subject { reference: Some("4"), ..subject }).expect("renders");
        assert!(with_ref.contains("### Reference answer\n4"));
    }

    #[test]
    fn parses_scores_in_prose_and_fences() {
        let rubrics = shipped();
        let rubric = rubrics.get("correctness").expect("exists");
        let score =
            rubric.parse_score("Sure!\n```json\n{\"score\": 7, \"reason\": \"ok\"}\n```").expect("parses");
        assert_eq!((score.raw, score.reason.as_str()), (7.0, "ok"));
        assert!((score.normalized - 6.0 / 9.0).abs() < 1e-12);
        assert!(rubric.parse_score("{\"score\": \"10\"}").is_ok());
        for bad in ["no json here", "{\"reason\": \"x\"}", "{\"score\": 11}"] {
            let err = rubric.parse_score(bad).expect_err(bad);
            assert!(err.to_string().contains("correctness"), "{err}");
        }
    }

    #[test]
    fn pairwise_renders_both_responses_and_parses_the_winner() {
        let rubrics = shipped();
        let request = json!({"messages": [{"role": "user", "content": "What is 2 + 2?"}]});
        let prompt = rubrics.render_pair("preference", &request, "4", "5").expect("renders");
        assert!(prompt.contains("### Response A\n4") && prompt.contains("### Response B\n5"), "{prompt}");
        let rubric = rubrics.get("preference").expect("exists");
        assert_eq!(rubric.mode, Mode::Pairwise);
        assert_eq!(
            rubric.parse_winner("{\"winner\": \"B\", \"reason\": \"r\"}").expect("parses").0,
            Winner::B
        );
        assert_eq!(rubric.parse_winner("{\"winner\": \"Tie\"}").expect("parses").0, Winner::Tie);
        assert!(rubric.parse_winner("{\"winner\": \"C\"}").is_err());
    }

    #[test]
    fn invalid_rubrics_are_rejected_with_the_file_named() {
        let bad_template = "name='x'\nmode='pointwise'\nscale={min=1,max=5}\ntemplate='{% if %}'";
        let err = Rubrics::from_sources([("x.toml".to_string(), bad_template.to_string())]).expect_err("bad");
        assert!(err.to_string().contains("x.toml:4: template error"), "{err}");
        // Parses, but fails when rendered: `rubric check` reports it with its line.
        let unknown_var = "name='y'\nmode='pointwise'\ntemplate=\"\"\"\nline one\n{{ respnse }}\n\"\"\"";
        let rubrics =
            Rubrics::from_sources([("y.toml".to_string(), unknown_var.to_string())]).expect("parses");
        let problems = rubrics.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("rubric `y`:5: template error: undefined value"), "{problems:?}");
        let bad_scale = "name='x'\nmode='pointwise'\nscale={min=5,max=1}\ntemplate='t'";
        assert!(Rubrics::from_sources([("y.toml".to_string(), bad_scale.to_string())]).is_err());
    }
}
