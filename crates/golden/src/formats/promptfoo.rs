//! promptfoo test cases: YAML, JSON or JSONL lists of `{description, vars, assert, metadata}`,
//! or CSV whose columns are vars plus `__expected` (an assertion: a plain value is `equals`,
//! else `contains:…`, `icontains:…`, `regex:…`, `is-json`), `__description` and
//! `__metadata:KEY`. The input is `vars.input` (or the only var; `--map input=VAR` otherwise),
//! the reference `vars.expected` or the `equals` assertion's value. Assertions evaltap cannot
//! run (model-graded ones, JavaScript) are kept in `metadata.promptfoo_asserts`.

use serde_json::{Map, Value, json};

use super::{FieldMap, Format, ImportNotes, Records, input_value};
use crate::{Check, GoldenError, Item};

/// promptfoo.
pub struct Promptfoo;

fn assertion_from_expected(expected: &str) -> Value {
    let (kind, value) = match expected.split_once(':') {
        Some((k @ ("contains" | "icontains" | "regex" | "equals" | "starts-with"), v)) => (k, v.to_string()),
        _ if expected.trim() == "is-json" => return json!({"type": "is-json"}),
        _ => ("equals", expected.to_string()),
    };
    json!({"type": kind, "value": value})
}

fn parse_csv(path: &str, text: &str) -> Result<Records, GoldenError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let invalid = |line: usize, reason: String| GoldenError::Invalid {
        path: path.into(),
        line,
        field: "row".into(),
        reason,
    };
    let headers = reader.headers().map_err(|e| invalid(1, e.to_string()))?.clone();
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| invalid(line, e.to_string()))?;
        let (mut vars, mut metadata, mut asserts) = (Map::new(), Map::new(), Vec::new());
        let mut description = None;
        for (header, cell) in headers.iter().zip(row.iter()) {
            match header {
                "__expected" if !cell.is_empty() => asserts.push(assertion_from_expected(cell)),
                h if h.starts_with("__expected") && !cell.is_empty() => {
                    asserts.push(assertion_from_expected(cell))
                }
                "__description" => description = Some(cell.to_string()),
                h if h.starts_with("__metadata:") => {
                    metadata.insert(h["__metadata:".len()..].to_string(), json!(cell));
                }
                h if h.starts_with("__") => {}
                h => {
                    vars.insert(h.to_string(), json!(cell));
                }
            }
        }
        let mut test = Map::new();
        test.insert("vars".into(), Value::Object(vars));
        test.insert("assert".into(), Value::Array(asserts));
        test.insert("metadata".into(), Value::Object(metadata));
        if let Some(d) = description {
            test.insert("description".into(), json!(d));
        }
        out.push((line, test));
    }
    Ok(out)
}

fn parse_yaml(path: &str, text: &str) -> Result<Records, GoldenError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| GoldenError::Invalid {
        path: path.into(),
        line: e.location().map_or(1, |l| l.line()),
        field: "yaml".into(),
        reason: e.to_string(),
    })?;
    // A promptfoo config file holds its tests under `tests`.
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut config) => match config.remove("tests") {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(GoldenError::Invalid {
                    path: path.into(),
                    line: 1,
                    field: "tests".into(),
                    reason: "expected a list of tests (or a config with `tests:`)".into(),
                });
            }
        },
        _ => Vec::new(),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(m) => Ok((i + 1, m)),
            _ => Err(GoldenError::Invalid {
                path: path.into(),
                line: i + 1,
                field: "test".into(),
                reason: "must be a mapping".into(),
            }),
        })
        .collect()
}

fn check_from_assert(assertion: &Value) -> Option<Result<Check, String>> {
    let kind = assertion.get("type")?.as_str()?;
    let value = assertion.get("value");
    let text = || {
        value
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{kind}` needs a string `value`"))
    };
    Some(
        match kind {
            "equals" => text().map(|v| Check::Equals {
                value: Some(v),
                trim: true,
                case_sensitive: true,
                unicode: false,
            }),
            "contains" => text().map(|v| Check::Contains { value: v, case_sensitive: true }),
            "icontains" => text().map(|v| Check::Contains { value: v, case_sensitive: false }),
            "regex" => text().map(|v| Check::Regex { pattern: v }),
            "is-json" => Ok(match value {
                Some(schema @ Value::Object(_)) => Check::JsonSchema { schema: schema.clone() },
                _ => Check::JsonValid,
            }),
            _ => return None,
        }
        .and_then(|c| c.validate().map(|()| c).map_err(|e| e.0)),
    )
}

/// The `metric` of assertions evaltap writes for its checks: on import beside
/// `metadata.evaltap_checks` they are those checks, not more of them.
const CHECK_METRIC: &str = "evaltap:";

/// The promptfoo assertion that runs `check` (its own type where promptfoo has one, JavaScript
/// over the output where not), tagged with `metric` `evaltap:<check>`; `None` for what promptfoo
/// cannot express (an `equals` with no value and no reference).
fn assert_from_check(check: &Check, reference: Option<&str>) -> Option<Value> {
    let mut assertion = promptfoo_assertion(check, reference)?;
    assertion["metric"] = json!(format!("{CHECK_METRIC}{}", check.name()));
    Some(assertion)
}

fn promptfoo_assertion(check: &Check, reference: Option<&str>) -> Option<Value> {
    let js = |body: String| Some(json!({"type": "javascript", "value": body}));
    match check {
        Check::JsonValid => Some(json!({"type": "is-json"})),
        Check::JsonSchema { schema } => Some(json!({"type": "is-json", "value": schema})),
        Check::Regex { pattern } => Some(json!({"type": "regex", "value": pattern})),
        Check::Contains { value, case_sensitive: true } => Some(json!({"type": "contains", "value": value})),
        Check::Contains { value, case_sensitive: false } => {
            Some(json!({"type": "icontains", "value": value}))
        }
        Check::Equals { value, .. } => {
            let expected = value.as_deref().or(reference)?;
            Some(json!({"type": "equals", "value": expected}))
        }
        Check::MaxLength { chars } => js(format!("output.length <= {chars}")),
        Check::ToolCall { name, .. } => match name {
            Some(name) => js(format!(
                "(Array.isArray(output) ? output : [output]).some(c => (c.function || c).name === {})",
                json!(name)
            )),
            None => js("typeof output === 'object' && output !== null".to_string()),
        },
        // Live-traffic checks that read the request: no promptfoo assertion says that.
        Check::ResponseFormat | Check::ToolArgumentsValid { .. } => None,
        Check::Refusal { expected } => js(format!(
            "/\\b(i can't|i cannot|i can not|i won't|i will not|i'm not able|i am not able|i'm unable|i am unable|sorry)\\b/i.test(output) === {expected}"
        )),
    }
}

/// Whether `assertion` is one evaltap wrote for one of its checks.
fn is_own_check(assertion: &Value) -> bool {
    assertion.get("metric").and_then(Value::as_str).is_some_and(|m| m.starts_with(CHECK_METRIC))
}

impl Format for Promptfoo {
    fn name(&self) -> &'static str {
        "promptfoo"
    }

    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError> {
        let lower = path.to_lowercase();
        let records = if lower.ends_with(".csv") {
            parse_csv(path, text)?
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            parse_yaml(path, text)?
        } else {
            super::records(path, text)?
        };
        let mut items = Vec::new();
        for (line, test) in records {
            let invalid = |field: &str, reason: String| GoldenError::Invalid {
                path: path.into(),
                line,
                field: field.into(),
                reason,
            };
            let vars = match test.get("vars") {
                Some(Value::Object(v)) => v.clone(),
                None => Map::new(),
                Some(_) => return Err(invalid("vars", "must be a mapping".into())),
            };
            let input_name = map.name("input", "input");
            let input = match vars.get(input_name) {
                Some(v) => v.clone(),
                None => {
                    let others: Vec<&String> = vars.keys().filter(|k| *k != "expected").collect();
                    match others.as_slice() {
                        [only] => vars[*only].clone(),
                        _ => {
                            return Err(invalid(
                                &format!("vars.{input_name}"),
                                format!(
                                    "is missing; vars are {:?} (pick one with --map input=VAR)",
                                    vars.keys().collect::<Vec<_>>()
                                ),
                            ));
                        }
                    }
                }
            };
            let messages =
                crate::messages_from_input(&input).map_err(|r| invalid(&format!("vars.{input_name}"), r))?;
            let input_var =
                vars.iter().find(|(_, v)| **v == input).map(|(k, _)| k.clone()).unwrap_or_default();
            let reference_var = map.name("reference", "expected").to_string();
            for key in vars.keys() {
                if *key == input_var {
                    notes.map(&format!("vars.{key}"), "input");
                } else if *key == reference_var {
                    notes.map(&format!("vars.{key}"), "reference");
                } else {
                    notes.skip(
                        &format!("vars.{key}"),
                        "a var that is neither the input nor `expected` (kept nowhere)",
                    );
                }
            }
            if test.get("description").is_some() {
                notes.map("description", "id");
            }
            let mut metadata = match test.get("metadata") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            let tags = match metadata.remove("tags") {
                Some(v) => crate::tags_from(&v).map_err(|r| invalid("metadata.tags", r))?,
                None => Default::default(),
            };
            // evaltap's own export carries its checks here too: then the asserts beside them are
            // the same checks in promptfoo's words, not more of them.
            let own_checks = metadata.contains_key("evaltap_checks");
            let mut checks = match metadata.remove("evaltap_checks") {
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        Check::parse(c).map_err(|e| invalid(&format!("metadata.evaltap_checks[{i}]"), e.0))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            };
            let mut reference = vars.get(map.name("reference", "expected")).and_then(crate::reference_text);
            let mut unsupported = Vec::new();
            let asserts = match test.get("assert") {
                Some(Value::Array(a)) => a.clone(),
                None => Vec::new(),
                Some(_) => return Err(invalid("assert", "must be a list".into())),
            };
            for (i, assertion) in asserts.iter().enumerate() {
                let kind = assertion.get("type").and_then(Value::as_str).unwrap_or("(no type)");
                match check_from_assert(assertion) {
                    Some(Ok(Check::Equals { value: Some(v), .. })) if reference.is_none() => {
                        notes.map(&format!("assert {kind}"), "reference");
                        reference = Some(v)
                    }
                    _ if own_checks && is_own_check(assertion) => {
                        notes.map(&format!("assert {kind}"), "check (from evaltap_checks)")
                    }
                    Some(Ok(check)) => {
                        notes.map(&format!("assert {kind}"), &format!("check {}", check.name()));
                        checks.push(check)
                    }
                    Some(Err(reason)) => return Err(invalid(&format!("assert[{i}]"), reason)),
                    None => {
                        notes.skip(
                            &format!("assert {kind}"),
                            "evaltap cannot run it (model-graded or code); kept in metadata.promptfoo_asserts, not run",
                        );
                        unsupported.push(assertion.clone())
                    }
                }
            }
            if !unsupported.is_empty() {
                metadata.insert("promptfoo_asserts".into(), Value::Array(unsupported));
            }
            let id = test
                .get("description")
                .and_then(Value::as_str)
                .filter(|d| !d.trim().is_empty())
                .map_or_else(|| format!("line-{line}"), |d| d.trim().to_string());
            items.push(Item { id, messages, reference, checks, tags, metadata, draft: false });
        }
        crate::check_unique(path, &items)?;
        Ok(items)
    }

    fn export(&self, items: &[Item]) -> Option<String> {
        Some(
            items
                .iter()
                .map(|item| {
                    let mut vars = Map::new();
                    vars.insert("input".into(), input_value(item));
                    if let Some(r) = &item.reference {
                        vars.insert("expected".into(), json!(r));
                    }
                    let mut metadata = item.metadata.clone();
                    if !item.tags.is_empty() {
                        metadata.insert("tags".into(), json!(item.tags));
                    }
                    // Each check as the promptfoo assertion that runs it, and all of them in
                    // evaltap's words for the way back.
                    let mut asserts: Vec<Value> =
                        item.checks.iter().filter_map(|c| assert_from_check(c, item.reference.as_deref())).collect();
                    // The assertions evaltap could not run go back where promptfoo runs them.
                    if let Some(Value::Array(kept)) = metadata.remove("promptfoo_asserts") {
                        asserts.extend(kept);
                    }
                    if !item.checks.is_empty() {
                        metadata.insert("evaltap_checks".into(), json!(item.checks));
                    }
                    let test = json!({"description": item.id, "vars": vars, "assert": asserts, "metadata": metadata});
                    format!("{test}\n")
                })
                .collect(),
        )
    }
}
