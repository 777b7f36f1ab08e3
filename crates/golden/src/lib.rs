//! Golden datasets: the cases a team cares about, kept as JSONL files in git, versioned by
//! content hash, scored against reference answers and deterministic checks.
//!
//! A dataset is one file, `datasets/NAME.jsonl`, one [`Item`] a line. Reading is strict: a bad
//! line is reported with its number and field, and nothing of the file is taken.

pub mod checks;
pub mod formats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use checks::{Check, CheckError};
pub use formats::{FieldMap, Format, ImportNotes};

/// Why a dataset could not be read, written or imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A line (or record) is not a valid item.
    #[error("{path}:{line}: {field}: {reason}")]
    Invalid {
        /// File.
        path: String,
        /// Line or record number (1-based).
        line: usize,
        /// The field at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A request that cannot be carried out (duplicate id, bad option…).
    #[error("{0}")]
    Refused(String),
    /// The dataset does not exist.
    #[error("{0}")]
    Missing(String),
}

/// One golden case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stable id within the dataset.
    pub id: String,
    /// The chat messages of the request.
    pub messages: Vec<Value>,
    /// The reference answer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Deterministic checks the answer must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// Tags (`k=v`), for filtering and stratifying.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Anything else the item carries.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The reference is a draft (promoted from production traffic) until accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
}

impl Item {
    /// An item asking `input` as one user message.
    pub fn from_input(id: impl Into<String>, input: &str) -> Item {
        Item {
            id: id.into(),
            messages: vec![json!({"role": "user", "content": input})],
            reference: None,
            checks: Vec::new(),
            tags: BTreeMap::new(),
            metadata: Map::new(),
            draft: false,
        }
    }

    /// The chat-completions request of this item (messages only: the model is the replay's).
    pub fn request(&self) -> Value {
        json!({"messages": self.messages})
    }

    /// The text of the last user message.
    pub fn input_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    }
}

/// The shape items are read from: `messages` or `input`, the rest as in [`Item`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeLine {
    id: Option<Value>,
    messages: Option<Value>,
    input: Option<Value>,
    reference: Option<Value>,
    #[serde(default)]
    checks: Vec<Value>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    draft: bool,
}

/// Messages from an `input` that is a string, a list of chat messages, or an object holding
/// `messages`.
pub fn messages_from_input(input: &Value) -> Result<Vec<Value>, String> {
    match input {
        Value::String(text) => Ok(vec![json!({"role": "user", "content": text})]),
        Value::Array(messages) => validate_messages(messages),
        Value::Object(map) => match map.get("messages") {
            Some(Value::Array(messages)) => validate_messages(messages),
            _ => Ok(vec![json!({"role": "user", "content": Value::Object(map.clone()).to_string()})]),
        },
        Value::Null => Err("is empty".into()),
        other => Ok(vec![json!({"role": "user", "content": other.to_string()})]),
    }
}

fn validate_messages(messages: &[Value]) -> Result<Vec<Value>, String> {
    if messages.is_empty() {
        return Err("has no messages".into());
    }
    for (i, m) in messages.iter().enumerate() {
        if m.get("role").and_then(Value::as_str).is_none() {
            return Err(format!("message {i} has no `role`"));
        }
        if m.get("content").is_none() && m.get("tool_calls").is_none() {
            return Err(format!("message {i} has no `content`"));
        }
    }
    Ok(messages.to_vec())
}

/// Reference text from a string, a number, or a list (the first; all kept by the caller).
pub fn reference_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list.first().and_then(reference_text),
        other => Some(other.to_string()),
    }
}

/// Tags from a `{k: v}` object or a list of names (each becomes `name=true`).
pub fn tags_from(value: &Value) -> Result<BTreeMap<String, String>, String> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect()),
        Value::Array(list) => list
            .iter()
            .map(|t| t.as_str().map(|s| (s.to_string(), "true".to_string())).ok_or("tags must be strings"))
            .collect::<Result<_, _>>()
            .map_err(str::to_owned),
        _ => Err("must be an object or a list of names".into()),
    }
}

fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses native JSONL; `path` names the file in errors. Ids must be unique; a missing id gets
/// `line-N`.
pub fn parse_native(path: &str, text: &str) -> Result<Vec<Item>, GoldenError> {
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = index + 1;
        let invalid = |field: &str, reason: String| GoldenError::Invalid {
            path: path.into(),
            line: n,
            field: field.into(),
            reason,
        };
        let raw: NativeLine = serde_json::from_str(line).map_err(|e| invalid("line", e.to_string()))?;
        let messages = match (&raw.messages, &raw.input) {
            (Some(m), None) => messages_from_input(m).map_err(|r| invalid("messages", r))?,
            (None, Some(i)) => messages_from_input(i).map_err(|r| invalid("input", r))?,
            (Some(_), Some(_)) => {
                return Err(invalid("input", "give `messages` or `input`, not both".into()));
            }
            (None, None) => return Err(invalid("messages", "an item needs `messages` or `input`".into())),
        };
        let checks = raw
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| Check::parse(c).map_err(|e| invalid(&format!("checks[{i}]"), e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = match raw.metadata {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid("metadata", "must be an object".into())),
        };
        let item = Item {
            id: id_text(raw.id.as_ref()).unwrap_or_else(|| format!("line-{n}")),
            messages,
            reference: raw.reference.as_ref().and_then(reference_text),
            checks,
            tags: tags_from(raw.tags.as_ref().unwrap_or(&Value::Null)).map_err(|r| invalid("tags", r))?,
            metadata,
            draft: raw.draft,
        };
        items.push(item);
    }
    check_unique(path, &items)?;
    Ok(items)
}

/// Fails when two items share an id.
pub fn check_unique(path: &str, items: &[Item]) -> Result<(), GoldenError> {
    let mut seen = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(first) = seen.insert(item.id.as_str(), i) {
            return Err(GoldenError::Invalid {
                path: path.into(),
                line: i + 1,
                field: "id".into(),
                reason: format!("`{}` is also item {}", item.id, first + 1),
            });
        }
    }
    Ok(())
}

/// Native JSONL, one item a line (the form datasets are kept in).
pub fn to_native(items: &[Item]) -> String {
    items.iter().map(|item| format!("{}\n", serde_json::to_string(item).unwrap_or_default())).collect()
}

/// The version of a dataset: hex SHA-256 of its items in native form. The same items give the
/// same version whatever the file's formatting.
pub fn version_of(items: &[Item]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(to_native(items).as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The folder of dataset files.
#[derive(Debug, Clone)]
pub struct DatasetDir {
    root: PathBuf,
}

/// A dataset name: letters, digits, `-`, `_` and `.`, so it is a safe file name.
pub fn valid_name(name: &str) -> Result<(), GoldenError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(GoldenError::Refused(format!(
            "`{name}` is not a dataset name (letters, digits, `-`, `_`, `.`; not starting with `.`)"
        )))
    }
}

/// A dataset's own settings, kept beside its items in `NAME.toml` so they travel with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSettings {
    /// The non-inferiority margin runs of this dataset use unless told otherwise: a small set
    /// can only show wide margins (see `golden run`'s note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
}

impl DatasetDir {
    /// Datasets under `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> DatasetDir {
        DatasetDir { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of dataset `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, GoldenError> {
        valid_name(name)?;
        Ok(self.root.join(format!("{name}.jsonl")))
    }

    /// Dataset names (files `*.jsonl` directly under the folder), sorted.
    pub fn names(&self) -> Result<Vec<String>, GoldenError> {
        let io = |source| GoldenError::Io { path: self.root.display().to_string(), source };
        if !self.root.is_dir() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "jsonl")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && valid_name(stem).is_ok()
            {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The settings file of dataset `name`.
    pub fn settings_path(&self, name: &str) -> Result<PathBuf, GoldenError> {
        valid_name(name)?;
        Ok(self.root.join(format!("{name}.toml")))
    }

    /// Dataset `name`'s settings (the defaults when it has no settings file).
    pub fn settings(&self, name: &str) -> Result<DatasetSettings, GoldenError> {
        let path = self.settings_path(name)?;
        if !path.is_file() {
            return Ok(DatasetSettings::default());
        }
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|source| GoldenError::Io { path: shown.clone(), source })?;
        let settings: DatasetSettings = toml::from_str(&text).map_err(|e| GoldenError::Invalid {
            path: shown.clone(),
            line: 1,
            field: "settings".into(),
            reason: e.to_string(),
        })?;
        if let Some(margin) = settings.margin
            && !(0.0..1.0).contains(&margin)
        {
            return Err(GoldenError::Invalid {
                path: shown,
                line: 1,
                field: "margin".into(),
                reason: format!("must be within [0, 1), got {margin}"),
            });
        }
        Ok(settings)
    }

    /// Writes dataset `name`'s settings.
    pub fn write_settings(&self, name: &str, settings: &DatasetSettings) -> Result<(), GoldenError> {
        if let Some(margin) = settings.margin
            && !(0.0..1.0).contains(&margin)
        {
            return Err(GoldenError::Refused(format!("a margin must be within [0, 1), got {margin}")));
        }
        let path = self.settings_path(name)?;
        let io = |source| GoldenError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let text = toml::to_string(settings).map_err(|e| GoldenError::Refused(e.to_string()))?;
        std::fs::write(&path, text).map_err(io)
    }

    /// Whether dataset `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.path(name).is_ok_and(|p| p.is_file())
    }

    /// Reads dataset `name`.
    pub fn read(&self, name: &str) -> Result<Vec<Item>, GoldenError> {
        let path = self.path(name)?;
        if !path.is_file() {
            return Err(GoldenError::Missing(format!(
                "no dataset `{name}` ({} does not exist; `evaltap golden new {name}` creates it)",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| GoldenError::Io { path: path.display().to_string(), source })?;
        parse_native(&path.display().to_string(), &text)
    }

    /// Replaces dataset `name` with `items`, atomically (write a sibling, then rename), so a
    /// failure leaves the old file whole.
    pub fn write(&self, name: &str, items: &[Item]) -> Result<(), GoldenError> {
        let path = self.path(name)?;
        check_unique(&path.display().to_string(), items)?;
        let io = |source| GoldenError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, to_native(items)).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Creates an empty dataset; refuses to overwrite one.
    pub fn create(&self, name: &str) -> Result<(), GoldenError> {
        if self.exists(name) {
            return Err(GoldenError::Refused(format!("dataset `{name}` already exists")));
        }
        self.write(name, &[])
    }

    /// Deletes dataset `name`'s file (versions already stored stay, with the runs that used them).
    pub fn remove(&self, name: &str) -> Result<(), GoldenError> {
        let path = self.path(name)?;
        std::fs::remove_file(&path)
            .map_err(|source| GoldenError::Io { path: path.display().to_string(), source })?;
        let settings = self.settings_path(name)?;
        if settings.is_file() {
            std::fs::remove_file(&settings)
                .map_err(|source| GoldenError::Io { path: settings.display().to_string(), source })?;
        }
        Ok(())
    }

    /// Appends items to a dataset (creating it), refusing ids it already has.
    pub fn append(&self, name: &str, new: Vec<Item>) -> Result<Vec<Item>, GoldenError> {
        let mut items = if self.exists(name) { self.read(name)? } else { Vec::new() };
        let existing: std::collections::HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
        if let Some(dup) = new.iter().find(|i| existing.contains(i.id.as_str())) {
            return Err(GoldenError::Refused(format!("dataset `{name}` already has an item `{}`", dup.id)));
        }
        items.extend(new);
        self.write(name, &items)?;
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_lines_parse_with_input_or_messages_and_name_bad_fields() {
        let text = r#"{"id": "a", "input": "2+2?", "reference": "4", "tags": {"area": "math"}}
{"id": 7, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "checks": [{"type": "max_length", "chars": 10}]}
"#;
        let items = parse_native("d.jsonl", text).expect("valid");
        assert_eq!(items[0].input_text(), "2+2?");
        assert_eq!(items[0].reference.as_deref(), Some("4"));
        assert_eq!(items[1].id, "7");
        assert_eq!(items[1].checks.len(), 1);
        let bad = "{\"id\": \"a\", \"input\": \"x\"}\n{\"id\": \"b\", \"messages\": [{\"content\": \"no role\"}]}\n";
        let err = parse_native("d.jsonl", bad).expect_err("bad");
        assert_eq!(err.to_string(), "d.jsonl:2: messages: message 0 has no `role`");
        let dup = "{\"id\": \"a\", \"input\": \"x\"}\n{\"id\": \"a\", \"input\": \"y\"}\n";
        assert!(parse_native("d.jsonl", dup).expect_err("dup").to_string().contains("d.jsonl:2: id"));
        let unknown = "{\"id\": \"a\", \"input\": \"x\", \"refrence\": \"typo\"}\n";
        assert!(parse_native("d.jsonl", unknown).expect_err("typo").to_string().contains("refrence"));
    }

    #[test]
    fn versions_follow_content_not_formatting() {
        let a = parse_native("x", "{\"id\":\"a\",\"input\":\"q\"}\n").expect("valid");
        let b = parse_native("x", "{ \"input\" : \"q\", \"id\" : \"a\" }\n\n").expect("valid");
        assert_eq!(version_of(&a), version_of(&b));
        let c = parse_native("x", "{\"id\":\"a\",\"input\":\"q2\"}\n").expect("valid");
        assert_ne!(version_of(&a), version_of(&c));
        assert_eq!(parse_native("x", &to_native(&a)).expect("round trip"), a);
    }

    #[test]
    fn dataset_names_are_safe_file_names() {
        assert!(valid_name("support-v2.1").is_ok());
        for bad in ["", "../etc", "a/b", ".hidden", "sp ace"] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
    }
}
