//! Deterministic checks: pass/fail on an answer, no judge needed. Each is validated when it is
//! read (a regex too large for the engine's limits, or an invalid JSON Schema, is an error
//! before any run starts).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization as _;

/// Why a check definition is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(pub String);

fn yes() -> bool {
    true
}

/// One deterministic check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The answer is valid JSON (a fenced ```json block counts).
    JsonValid,
    /// The answer is JSON valid against this JSON Schema.
    JsonSchema {
        /// The schema.
        schema: Value,
    },
    /// The answer matches this regular expression (RE2 syntax, linear time).
    Regex {
        /// The pattern.
        pattern: String,
    },
    /// The answer contains this text.
    Contains {
        /// Text to find.
        value: String,
        /// Compare case-sensitively.
        #[serde(default)]
        case_sensitive: bool,
    },
    /// The answer equals this text (by default, the item's reference), after normalisation.
    Equals {
        /// Expected text; the reference when absent.
        #[serde(default)]
        value: Option<String>,
        /// Trim surrounding whitespace first.
        #[serde(default = "yes")]
        trim: bool,
        /// Compare case-sensitively.
        #[serde(default)]
        case_sensitive: bool,
        /// Compare in Unicode NFKC form.
        #[serde(default = "yes")]
        unicode: bool,
    },
    /// The answer has at most this many characters.
    MaxLength {
        /// Characters.
        chars: usize,
    },
    /// The answer calls this tool with these arguments (by default, those in the reference,
    /// given as `{"name", "arguments"}` JSON).
    ToolCall {
        /// Function name.
        #[serde(default)]
        name: Option<String>,
        /// Arguments (compared as JSON values).
        #[serde(default)]
        arguments: Option<Value>,
    },
    /// The answer refuses (or, with `expected: false`, does not refuse).
    Refusal {
        /// Whether a refusal is the right answer.
        #[serde(default = "yes")]
        expected: bool,
    },
    /// The answer meets the request's own `response_format`: valid against its JSON schema
    /// (`json_schema`), or valid JSON (`json_object`). Resolved per item by [`Check::for_request`];
    /// not applicable to a request that sets none.
    ResponseFormat,
    /// Every tool call of the answer names a tool the request offers, with arguments valid
    /// against that tool's parameter schema. Resolved per item by [`Check::for_request`]; not
    /// applicable to a request that offers no tools.
    ToolArgumentsValid {
        /// Tool name → its parameter schema (filled from the request).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<serde_json::Map<String, Value>>,
    },
}

/// Longest compiled regex program accepted (the `regex` crate's size limit).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn compile_regex(pattern: &str) -> Result<regex::Regex, CheckError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| CheckError(format!("regex `{}`: {e}", pattern.chars().take(80).collect::<String>())))
}

fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, CheckError> {
    jsonschema::validator_for(schema).map_err(|e| CheckError(format!("json_schema: invalid schema: {e}")))
}

/// Phrases a refusal starts with or contains.
const REFUSALS: [&str; 12] = [
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i'm sorry, but",
    "i must decline",
    "as an ai",
];

impl Check {
    /// Reads and validates a check definition.
    pub fn parse(value: &Value) -> Result<Check, CheckError> {
        let check: Check = serde_json::from_value(value.clone()).map_err(|e| CheckError(e.to_string()))?;
        check.validate()?;
        Ok(check)
    }

    /// Reads `--check` arguments: `json_valid`, `regex=PATTERN`, `contains=TEXT`, `equals`,
    /// `equals=TEXT`, `max_length=N`, `refusal`, `no_refusal`, or a JSON object.
    pub fn parse_arg(arg: &str) -> Result<Check, CheckError> {
        if arg.trim_start().starts_with('{') {
            let value: Value =
                serde_json::from_str(arg).map_err(|e| CheckError(format!("--check {arg}: {e}")))?;
            return Check::parse(&value);
        }
        let (kind, value) = match arg.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.to_string())),
            None => (arg.trim(), None),
        };
        let check = match (kind, value) {
            ("json_valid", None) => Check::JsonValid,
            ("regex", Some(pattern)) => Check::Regex { pattern },
            ("contains", Some(value)) => Check::Contains { value, case_sensitive: false },
            ("equals", value) => Check::Equals { value, trim: true, case_sensitive: false, unicode: true },
            ("max_length", Some(n)) => Check::MaxLength {
                chars: n
                    .trim()
                    .parse()
                    .map_err(|_| CheckError(format!("max_length=`{n}` is not a number")))?,
            },
            ("tool_call", None) => Check::ToolCall { name: None, arguments: None },
            ("response_format", None) => Check::ResponseFormat,
            ("tool_arguments_valid", None) => Check::ToolArgumentsValid { tools: None },
            ("refusal", None) => Check::Refusal { expected: true },
            ("no_refusal", None) => Check::Refusal { expected: false },
            _ => {
                return Err(CheckError(format!(
                    "unknown check `{arg}` (json_valid, json_schema as JSON, regex=…, contains=…, equals[=…], \
                     max_length=N, tool_call, tool_arguments_valid, response_format, refusal, no_refusal)"
                )));
            }
        };
        check.validate()?;
        Ok(check)
    }

    /// Rejects what cannot run: a regex over the engine's limits, an invalid schema.
    pub fn validate(&self) -> Result<(), CheckError> {
        match self {
            Check::Regex { pattern } => compile_regex(pattern).map(drop),
            Check::JsonSchema { schema } => compile_schema(schema).map(drop),
            _ => Ok(()),
        }
    }

    /// The name a check is reported under (one pass/fail "rubric" per name).
    pub fn name(&self) -> &'static str {
        match self {
            Check::JsonValid => "json_valid",
            Check::JsonSchema { .. } => "json_schema",
            Check::Regex { .. } => "regex",
            Check::Contains { .. } => "contains",
            Check::Equals { .. } => "equals",
            Check::MaxLength { .. } => "max_length",
            Check::ToolCall { .. } => "tool_call",
            Check::Refusal { .. } => "refusal",
            Check::ResponseFormat => "response_format",
            Check::ToolArgumentsValid { .. } => "tool_arguments_valid",
        }
    }

    /// This check as it applies to an item whose request is `request`: the request's own
    /// response format or tool schemas filled in; `None` when it does not apply to the item
    /// (no response format, no tools).
    pub fn for_request(&self, request: &Value) -> Option<Check> {
        match self {
            Check::ResponseFormat => {
                let format = request.get("response_format")?;
                match format.get("type").and_then(Value::as_str)? {
                    "json_schema" => {
                        let schema = format.pointer("/json_schema/schema")?.clone();
                        Some(Check::JsonSchema { schema })
                    }
                    "json_object" => Some(Check::JsonValid),
                    _ => None,
                }
            }
            Check::ToolArgumentsValid { tools: None } => {
                let tools: serde_json::Map<String, Value> = request
                    .get("tools")?
                    .as_array()?
                    .iter()
                    .filter_map(|tool| {
                        let function = tool.get("function").unwrap_or(tool);
                        let name = function.get("name")?.as_str()?.to_string();
                        let schema =
                            function.get("parameters").cloned().unwrap_or_else(|| serde_json::json!({}));
                        Some((name, schema))
                    })
                    .collect();
                (!tools.is_empty()).then_some(Check::ToolArgumentsValid { tools: Some(tools) })
            }
            other => Some(other.clone()),
        }
    }

    /// Whether the answer passes. `text` is the answer's text, `response` the whole
    /// chat-completions response when there is one (for tool calls), `reference` the item's.
    pub fn passes(
        &self,
        text: &str,
        response: Option<&Value>,
        reference: Option<&str>,
    ) -> Result<bool, CheckError> {
        Ok(match self {
            Check::JsonValid => json_in(text).is_some(),
            Check::JsonSchema { schema } => {
                let validator = compile_schema(schema)?;
                json_in(text).is_some_and(|v| validator.is_valid(&v))
            }
            Check::Regex { pattern } => compile_regex(pattern)?.is_match(text),
            Check::Contains { value, case_sensitive } => {
                if *case_sensitive {
                    text.contains(value.as_str())
                } else {
                    text.to_lowercase().contains(&value.to_lowercase())
                }
            }
            Check::Equals { value, trim, case_sensitive, unicode } => {
                let expected = value
                    .as_deref()
                    .or(reference)
                    .ok_or_else(|| CheckError("equals: no `value` and the item has no reference".into()))?;
                let norm = |s: &str| {
                    let s = if *trim { s.trim() } else { s };
                    let s: String = if *unicode { s.nfkc().collect() } else { s.to_string() };
                    if *case_sensitive { s } else { s.to_lowercase() }
                };
                norm(text) == norm(expected)
            }
            Check::MaxLength { chars } => text.chars().count() <= *chars,
            Check::ToolCall { name, arguments } => {
                let (want_name, want_args) = match (name, arguments) {
                    (Some(n), args) => (n.clone(), args.clone()),
                    (None, _) => {
                        let reference = reference
                            .and_then(|r| serde_json::from_str::<Value>(r).ok())
                            .ok_or_else(|| CheckError("tool_call: no `name` and the reference is not `{\"name\", \"arguments\"}` JSON".into()))?;
                        let name = reference
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| CheckError("tool_call: the reference has no `name`".into()))?;
                        (name.to_string(), reference.get("arguments").cloned())
                    }
                };
                tool_calls(response).iter().any(|(n, args)| {
                    *n == want_name
                        && want_args.as_ref().is_none_or(|want| same_json(&argument_value(want), args))
                })
            }
            Check::Refusal { expected } => {
                let lower = text.to_lowercase();
                REFUSALS.iter().any(|p| lower.contains(p)) == *expected
            }
            Check::ResponseFormat | Check::ToolArgumentsValid { tools: None } => {
                return Err(CheckError(format!("{}: resolve it against the request first", self.name())));
            }
            Check::ToolArgumentsValid { tools: Some(tools) } => {
                let calls = tool_calls(response);
                !calls.is_empty()
                    && calls.iter().all(|(name, args)| {
                        tools
                            .get(name)
                            .and_then(|schema| jsonschema::validator_for(schema).ok())
                            .is_some_and(|validator| validator.is_valid(args))
                    })
            }
        })
    }
}

/// Equal as JSON: objects whatever their key order, numbers whatever their format (`1`, `1.0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Arguments as a JSON value (OpenAI sends them as a JSON string).
fn argument_value(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}

/// (name, arguments) of the tool calls in a chat-completions response.
fn tool_calls(response: Option<&Value>) -> Vec<(String, Value)> {
    response
        .and_then(|r| r.pointer("/choices/0/message/tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| {
                    let f = c.get("function")?;
                    let name = f.get("name")?.as_str()?.to_string();
                    Some((name, f.get("arguments").map(argument_value).unwrap_or(Value::Null)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON an answer holds: the whole text, else a fenced ```json block.
fn json_in(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Some(v);
    }
    let start = trimmed.find("```")?;
    let rest = &trimmed[start + 3..];
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    let end = rest.find("```")?;
    serde_json::from_str(rest[..end].trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value) -> Check {
        Check::parse(&value).expect("valid check")
    }

    #[test]
    fn live_traffic_checks_read_the_request() {
        let call = |name: &str, args: &str| {
            json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": name, "arguments": args}}]}}]})
        };
        // tool_call against production's call: key order and number format do not matter.
        let production = r#"{"name": "get_weather", "arguments": {"city": "Rome", "days": 1}}"#;
        let tool_call = Check::ToolCall { name: None, arguments: None };
        assert!(
            tool_call
                .passes("", Some(&call("get_weather", r#"{"days": 1.0, "city": "Rome"}"#)), Some(production))
                .expect("runs")
        );
        assert!(
            !tool_call
                .passes("", Some(&call("get_weather", r#"{"city": "Paris", "days": 1}"#)), Some(production))
                .expect("runs")
        );
        assert!(
            !tool_call
                .passes("", Some(&call("get_time", r#"{"city": "Rome", "days": 1}"#)), Some(production))
                .expect("runs")
        );
        // Arguments valid against the tool's own schema.
        let request = json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters":
            {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]});
        let valid = Check::ToolArgumentsValid { tools: None }.for_request(&request).expect("applies");
        assert!(valid.passes("", Some(&call("get_weather", r#"{"city": "Rome"}"#)), None).expect("runs"));
        assert!(!valid.passes("", Some(&call("get_weather", r#"{"days": 2}"#)), None).expect("runs"));
        assert!(!valid.passes("", Some(&call("get_time", r#"{"city": "Rome"}"#)), None).expect("runs"));
        assert!(Check::ToolArgumentsValid { tools: None }.for_request(&json!({"messages": []})).is_none());
        // The request's response format.
        let schema_request = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "c",
            "schema": {"type": "object", "required": ["city"]}}}});
        let format = Check::ResponseFormat.for_request(&schema_request).expect("applies");
        assert!(format.passes("{\"city\": \"Oslo\"}", None, None).expect("runs"));
        assert!(!format.passes("{\"town\": \"Oslo\"}", None, None).expect("runs"));
        assert_eq!(
            Check::ResponseFormat.for_request(&json!({"response_format": {"type": "json_object"}})),
            Some(Check::JsonValid)
        );
        assert!(Check::ResponseFormat.for_request(&json!({})).is_none());
        assert!(Check::ResponseFormat.passes("{}", None, None).is_err(), "unresolved");
    }

    #[test]
    fn each_check_passes_and_fails() {
        assert!(check(json!({"type": "json_valid"})).passes("{\"a\": 1}", None, None).expect("runs"));
        assert!(check(json!({"type": "json_valid"})).passes("```json\n[1]\n```", None, None).expect("runs"));
        assert!(!check(json!({"type": "json_valid"})).passes("{a: 1}", None, None).expect("runs"));
        let schema = check(json!({"type": "json_schema", "schema": {"type": "object", "required": ["city"],
            "properties": {"city": {"type": "string"}}}}));
        assert!(schema.passes("{\"city\": \"Oslo\"}", None, None).expect("runs"));
        assert!(!schema.passes("{\"town\": \"Oslo\"}", None, None).expect("runs"));
        assert!(check(json!({"type": "regex", "pattern": "^\\d+$"})).passes("42", None, None).expect("runs"));
        assert!(
            check(json!({"type": "contains", "value": "OSLO"})).passes("in oslo", None, None).expect("runs")
        );
        assert!(
            !check(json!({"type": "contains", "value": "OSLO", "case_sensitive": true}))
                .passes("in oslo", None, None)
                .expect("runs")
        );
        let equals = check(json!({"type": "equals"}));
        assert!(equals.passes("  Ｏｓｌｏ \n", None, Some("oslo")).expect("runs"), "NFKC, trim, case");
        assert!(equals.passes("Bergen", None, None).is_err(), "no reference to compare with");
        assert!(check(json!({"type": "max_length", "chars": 3})).passes("abc", None, None).expect("runs"));
        assert!(!check(json!({"type": "max_length", "chars": 3})).passes("abcd", None, None).expect("runs"));
        let refusal = check(json!({"type": "refusal"}));
        assert!(refusal.passes("I'm sorry, but I can't help with that.", None, None).expect("runs"));
        assert!(!refusal.passes("Sure: 4.", None, None).expect("runs"));
        assert!(
            check(json!({"type": "refusal", "expected": false}))
                .passes("Sure: 4.", None, None)
                .expect("runs")
        );
    }

    #[test]
    fn tool_calls_compare_name_and_arguments_with_the_reference() {
        let response = json!({"choices": [{"message": {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]}}]});
        let reference = r#"{"name": "get_weather", "arguments": {"city": "Oslo"}}"#;
        let tool = check(json!({"type": "tool_call"}));
        assert!(tool.passes("", Some(&response), Some(reference)).expect("runs"));
        let other = r#"{"name": "get_weather", "arguments": {"city": "Bergen"}}"#;
        assert!(!tool.passes("", Some(&response), Some(other)).expect("runs"));
        assert!(!tool.passes("", None, Some(reference)).expect("runs"));
    }

    #[test]
    fn pathological_patterns_and_schemas_are_rejected_before_a_run() {
        let huge =
            format!("({})", (0..2000).map(|i| format!("a{{{}}}", 100 + i)).collect::<Vec<_>>().join("|"));
        let err = Check::parse(&json!({"type": "regex", "pattern": huge})).expect_err("too big");
        assert!(err.0.contains("regex"), "{err}");
        assert!(Check::parse(&json!({"type": "regex", "pattern": "(unclosed"})).is_err());
        let err = Check::parse(&json!({"type": "json_schema", "schema": {"type": "no-such-type"}}))
            .expect_err("bad");
        assert!(err.0.contains("invalid schema"), "{err}");
        assert!(Check::parse_arg("max_length=ten").is_err());
        assert!(Check::parse_arg("telepathy").is_err());
        assert_eq!(Check::parse_arg("contains=Oslo").expect("ok").name(), "contains");
    }
}
