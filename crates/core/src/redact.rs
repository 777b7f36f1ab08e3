//! Redaction before anything is written: personal data and credentials in every string of an
//! exchange are replaced by `[REDACTED:<kind>]`, and object keys that carry credentials
//! (some gateways forward the client's headers, provider keys included) are dropped.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde_json::Value;

/// Keys (case-insensitive) whose values are credentials wherever they appear.
pub const CREDENTIAL_KEYS: [&str; 16] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "api_key",
    "apikey",
    "x-portkey-config",
    "x-portkey-api-key",
    "cookie",
    "set-cookie",
    "openai-api-key",
    "anthropic-api-key",
    "x-goog-api-key",
    "helicone-auth",
    "cf-aig-authorization",
    "x-amz-security-token",
];

/// Name fragments (case-insensitive) that mark a credential in any key, with any prefix:
/// `metadata.api_key`, `openai_api_key`, `Ocp-Apim-Subscription-Key`, `client_secret`…
const CREDENTIAL_FRAGMENTS: [&str; 12] = [
    "authorization",
    "api_key",
    "api-key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "subscription-key",
    "subscription_key",
    "credential",
    "cookie",
    "private_key",
];

/// Whether a key names a credential: an exact known header, a credential fragment, or a
/// `token`/`auth` word (`access_token`, `X-Auth-Token`, `api_token`; not `max_tokens`).
pub fn is_credential_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    CREDENTIAL_KEYS.iter().any(|c| *c == lower)
        || CREDENTIAL_FRAGMENTS.iter().any(|f| lower.contains(f))
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "auth" || word == "token" || (word.ends_with("token") && word.len() > 5))
}

struct Pattern {
    kind: &'static str,
    regex: Regex,
    luhn: bool,
}

/// The built-in patterns: (kind, regex, whether a match must pass the Luhn check).
const BUILTIN_PATTERNS: [(&str, &str, bool); 12] = [
    ("bearer", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", false),
    ("basic_auth", r"(?i)\bbasic\s+[A-Za-z0-9+/]{8,}={0,2}", false),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", false),
    ("api_key", r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}", false),
    ("api_key", r"\bAKIA[0-9A-Z]{16}\b", false),
    ("api_key", r"\bgh[pousr]_[A-Za-z0-9]{20,}\b", false),
    ("api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", false),
    ("api_key", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", false),
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", false),
    ("card", r"\b\d(?:[ -]?\d){12,18}\b", true),
    ("phone", r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b", false),
    ("phone", r"\+\d{1,3}(?:[\s.-]?\d{2,4}){2,5}\b", false),
];

static BUILTIN: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    BUILTIN_PATTERNS
        .iter()
        .map(|(kind, re, luhn)| Pattern {
            kind,
            regex: Regex::new(re).expect("valid builtin regex"),
            luhn: *luhn,
        })
        .collect()
});

/// All built-in patterns in one automaton: most texts match none, and one pass over them says
/// so (instead of one pass per pattern).
static BUILTIN_ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(BUILTIN_PATTERNS.iter().map(|(_, re, _)| re)).expect("valid builtin regexes")
});

fn luhn(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A redaction policy: the built-in patterns (optionally off) plus custom regexes.
#[derive(Debug, Clone)]
pub struct Redactor {
    builtin: bool,
    custom: Vec<Regex>,
}

/// Why a redaction policy is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid redaction pattern `{pattern}`: {source}")]
pub struct RedactError {
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub source: regex::Error,
}

impl Redactor {
    /// Built-in patterns (when `builtin`) plus `custom` regexes.
    pub fn new(builtin: bool, custom: &[String]) -> Result<Redactor, RedactError> {
        let custom = custom
            .iter()
            .map(|p| Regex::new(p).map_err(|source| RedactError { pattern: p.clone(), source }))
            .collect::<Result<_, _>>()?;
        Ok(Redactor { builtin, custom })
    }

    /// Redacts one text; returns the number of replacements.
    pub fn redact_text(&self, text: &mut String) -> usize {
        let mut count = 0;
        if self.builtin && BUILTIN_ANY.is_match(text) {
            for pattern in BUILTIN.iter() {
                if !pattern.regex.is_match(text) {
                    continue;
                }
                let replaced = pattern.regex.replace_all(text, |caps: &regex::Captures<'_>| {
                    let found = &caps[0];
                    if pattern.luhn && !luhn(found) {
                        found.to_string()
                    } else {
                        count += 1;
                        format!("[REDACTED:{}]", pattern.kind)
                    }
                });
                *text = replaced.into_owned();
            }
        }
        for regex in &self.custom {
            let matches = regex.find_iter(text).count();
            if matches > 0 {
                count += matches;
                *text = regex.replace_all(text, "[REDACTED:custom]").into_owned();
            }
        }
        count
    }

    /// Redacts every string in a JSON value and drops credential keys; returns the count.
    pub fn redact_value(&self, value: &mut Value) -> usize {
        match value {
            Value::String(text) => self.redact_text(text),
            Value::Array(items) => items.iter_mut().map(|v| self.redact_value(v)).sum(),
            Value::Object(map) => {
                let before = map.len();
                // Known credential headers go whatever they hold; other credential-named keys go
                // when they hold a text (a `password` property in a tool's JSON Schema is an
                // object, and stays, its strings redacted like any other).
                map.retain(|k, v| {
                    let exact = CREDENTIAL_KEYS.iter().any(|c| c.eq_ignore_ascii_case(k));
                    !(exact || (matches!(v, Value::String(_)) && is_credential_key(k)))
                });
                let dropped = before - map.len();
                dropped + map.values_mut().map(|v| self.redact_value(v)).sum::<usize>()
            }
            _ => 0,
        }
    }

    /// Redacts an exchange's request, response and tags; returns the count.
    pub fn redact_exchange(&self, exchange: &mut crate::Exchange) -> usize {
        self.redact_value(&mut exchange.request)
            + self.redact_value(&mut exchange.response)
            + self.redact_value(&mut exchange.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(text: &str) -> (String, usize) {
        let mut s = text.to_string();
        let n = Redactor::new(true, &[]).expect("valid").redact_text(&mut s);
        (s, n)
    }

    #[test]
    fn redacts_personal_data_and_secrets() {
        let (out, n) = redact(
            "Mail jane.doe@example.co.uk or call +1 415-555-0100, card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnopqrstuv, Bearer eyJhbGciOiJIUzI1NiJ9.x",
        );
        assert_eq!(n, 5, "{out}");
        for kind in ["email", "phone", "card", "api_key", "bearer"] {
            assert!(out.contains(&format!("[REDACTED:{kind}]")), "{kind} in {out}");
        }
        assert!(!out.contains("4111") && !out.contains("jane") && !out.contains("sk-proj"));
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        for text in [
            "What is 97 * 49? 4753",
            "Convert 250 km to m: 250000",
            "order 1234567890123 (not Luhn)",
            "v1.2.3 at 10:30",
        ] {
            assert_eq!(redact(text), (text.to_string(), 0), "{text}");
        }
    }

    /// Every credential shape found surviving redaction in the door audit, under prefixed and
    /// cased names, at any depth.
    #[test]
    fn credential_names_with_any_prefix_and_credential_values_are_removed() {
        let redactor = Redactor::new(true, &[]).expect("valid");
        let planted = [
            ("metadata", json!({"authorization": "m1-secret-value", "api_key": "m2-secret-value"})),
            (
                "headers",
                json!({"cf-aig-api-key": "m3-secret-value", "Ocp-Apim-Subscription-Key": "m4-secret-value",
                               "X-Auth-Token": "m5-secret-value", "x-custom-token": "m6-secret-value",
                               "X-Api-Token": "m7-secret-value"}),
            ),
            (
                "litellm",
                json!({"openai_api_key": "m8-secret-value", "access_token": "m9-secret-value",
                               "client_secret": "m10-secret-value", "password": "m11-secret-value",
                               "token": "m12-secret-value", "aws_secret_access_key": "m13-secret-value",
                               "api_token": "m14-secret-value", "auth_token": "m15-secret-value"}),
            ),
        ];
        let mut value = json!({"deep": {"deeper": planted.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>()},
            "text": "use Basic dXNlcjpwYXNzd29yZA== and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlX3h5eg",
            "usage": {"prompt_tokens": 12, "max_tokens": 100, "token_count": 3},
            "tools": [{"function": {"parameters": {"properties": {"password": {"type": "string"}}}}}]});
        redactor.redact_value(&mut value);
        let text = value.to_string();
        for i in 1..=15 {
            assert!(!text.contains(&format!("m{i}-secret-value")), "marker m{i} survived: {text}");
        }
        assert!(!text.contains("dXNlcjpwYXNzd29yZA") && !text.contains("c2lnbmF0dXJl"), "{text}");
        // Counts and schemas are not credentials.
        assert_eq!(value["usage"], json!({"prompt_tokens": 12, "max_tokens": 100, "token_count": 3}));
        assert!(value["tools"][0]["function"]["parameters"]["properties"]["password"].is_object());
        assert!(!is_credential_key("max_tokens") && !is_credential_key("completion_tokens"));
        assert!(is_credential_key("refreshToken") && is_credential_key("x-amz-security-token"));
    }

    #[test]
    fn custom_patterns_and_credential_keys() {
        let redactor = Redactor::new(true, &["ACC-\\d{6}".into()]).expect("valid");
        let mut value = json!({"headers": {"Authorization": "Bearer abcdefghijkl", "x-app": "trivia", "X-Portkey-Config": "{}"},
                               "messages": [{"role": "user", "content": "account ACC-123456, mail a@b.io"}]});
        let n = redactor.redact_value(&mut value);
        assert_eq!(n, 4);
        assert_eq!(value["headers"], json!({"x-app": "trivia"}));
        assert_eq!(value["messages"][0]["content"], "account [REDACTED:custom], mail [REDACTED:email]");
        assert!(Redactor::new(true, &["(".into()]).is_err());
    }
}
