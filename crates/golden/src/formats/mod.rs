//! Other eval tools' dataset shapes, one file each behind [`Format`]: what `golden import` reads
//! and `golden export` writes. Every importer is strict: a bad record names its line (or record
//! number) and field, and nothing of the file is imported.

mod braintrust;
mod inspect;
mod langfuse;
mod native;
mod openai_evals;
mod promptfoo;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{GoldenError, Item};

/// Source field names that differ from a format's defaults: ours (`id`, `input`, `reference`,
/// `metadata`, `tags`) → theirs, from `--map ours=theirs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldMap(pub BTreeMap<String, String>);

impl FieldMap {
    /// Parses `ours=theirs` pairs.
    pub fn parse(pairs: &[String]) -> Result<FieldMap, GoldenError> {
        let mut map = BTreeMap::new();
        for pair in pairs {
            let (ours, theirs) = pair.split_once('=').ok_or_else(|| {
                GoldenError::Refused(format!("--map `{pair}`: write it as ours=theirs, e.g. input=question"))
            })?;
            if !["id", "input", "reference", "metadata", "tags"].contains(&ours.trim()) {
                return Err(GoldenError::Refused(format!(
                    "--map `{pair}`: `{ours}` is not a field (id, input, reference, metadata, tags)"
                )));
            }
            map.insert(ours.trim().to_string(), theirs.trim().to_string());
        }
        Ok(FieldMap(map))
    }

    /// The source field name for `ours`, `default` unless mapped.
    pub fn name<'a>(&'a self, ours: &str, default: &'a str) -> &'a str {
        self.0.get(ours).map_or(default, String::as_str)
    }

    /// The value of `ours` in a record (by its mapped or default name).
    pub fn get<'a>(&self, record: &'a Map<String, Value>, ours: &str, default: &str) -> Option<&'a Value> {
        record.get(self.name(ours, default)).filter(|v| !v.is_null())
    }
}

/// What an import did with the source's fields: what each became, and what it left out and
/// why — so nothing is dropped without a word.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportNotes {
    /// Source field → (what it became, records that had it).
    pub mapped: BTreeMap<String, (String, usize)>,
    /// Source field (or assertion) → (why it was not imported, records that had it).
    pub skipped: BTreeMap<String, (String, usize)>,
}

impl ImportNotes {
    /// `theirs` became `ours` in one more record.
    pub fn map(&mut self, theirs: &str, ours: &str) {
        self.mapped.entry(theirs.to_string()).or_insert_with(|| (ours.to_string(), 0)).1 += 1;
    }

    /// `theirs` was left out of one more record, for `why`.
    pub fn skip(&mut self, theirs: &str, why: &str) {
        self.skipped.entry(theirs.to_string()).or_insert_with(|| (why.to_string(), 0)).1 += 1;
    }

    /// One line per field: `mapped expectedOutput → reference (2 records)`,
    /// `skipped expected_output: not a field langfuse maps (2 records)`.
    pub fn lines(&self) -> Vec<String> {
        let records = |n: usize| if n == 1 { "1 record".to_string() } else { format!("{n} records") };
        self.mapped
            .iter()
            .map(|(theirs, (ours, n))| format!("mapped {theirs} → {ours} ({})", records(*n)))
            .chain(
                self.skipped
                    .iter()
                    .map(|(theirs, (why, n))| format!("skipped {theirs}: {why} ({})", records(*n))),
            )
            .collect()
    }
}

/// One tool's dataset shape.
pub trait Format: Sync {
    /// Its name on the command line.
    fn name(&self) -> &'static str;
    /// Reads a file's text into items, saying in `notes` what each field became.
    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError>;
    /// Reads a file's text into items.
    fn import(&self, path: &str, text: &str, map: &FieldMap) -> Result<Vec<Item>, GoldenError> {
        self.import_noting(path, text, map, &mut ImportNotes::default())
    }
    /// Writes items in this shape, if the tool can read them back.
    fn export(&self, _items: &[Item]) -> Option<String> {
        None
    }
}

static FORMATS: [&dyn Format; 6] = [
    &native::Native,
    &langfuse::Langfuse,
    &braintrust::Braintrust,
    &promptfoo::Promptfoo,
    &openai_evals::OpenAiEvals,
    &inspect::Inspect,
];

/// The format called `name`.
pub fn by_name(name: &str) -> Result<&'static dyn Format, GoldenError> {
    FORMATS.iter().copied().find(|f| f.name() == name).ok_or_else(|| {
        let names: Vec<&str> = FORMATS.iter().map(|f| f.name()).collect();
        GoldenError::Refused(format!("unknown format `{name}` (known: {})", names.join(", ")))
    })
}

/// Guesses a file's format from its extension and first record's fields.
pub fn detect(path: &str, text: &str) -> &'static str {
    let lower = path.to_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return "promptfoo";
    }
    let first: Option<Map<String, Value>> = match text.trim_start().chars().next() {
        Some('[') => serde_json::from_str::<Vec<Value>>(text)
            .ok()
            .and_then(|v| v.into_iter().next())
            .and_then(|v| v.as_object().cloned()),
        _ => text.lines().find(|l| !l.trim().is_empty()).and_then(|l| serde_json::from_str(l).ok()),
    };
    let Some(first) = first else { return "native" };
    let has = |k: &str| first.contains_key(k);
    if has("vars") || has("assert") {
        "promptfoo"
    } else if has("expectedOutput") || has("expected_output") {
        "langfuse"
    } else if has("expected") {
        "braintrust"
    } else if has("ideal") {
        "openai-evals"
    } else if has("target") {
        "inspect"
    } else {
        "native"
    }
}

/// Records of a source file, each with its line (or position) for error messages.
pub(crate) type Records = Vec<(usize, Map<String, Value>)>;

/// The records of a JSON array or JSONL text, each with its line (JSONL) or position (array).
pub(crate) fn records(path: &str, text: &str) -> Result<Records, GoldenError> {
    let invalid = |line: usize, reason: String| GoldenError::Invalid {
        path: path.into(),
        line,
        field: "record".into(),
        reason,
    };
    if text.trim_start().starts_with('[') {
        let list: Vec<Value> = serde_json::from_str(text).map_err(|e| invalid(e.line(), e.to_string()))?;
        return list
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => Ok((i + 1, m)),
                _ => Err(invalid(i + 1, "must be a JSON object".into())),
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => out.push((i + 1, m)),
            Ok(_) => return Err(invalid(i + 1, "must be a JSON object".into())),
            Err(e) => return Err(invalid(i + 1, e.to_string())),
        }
    }
    Ok(out)
}

/// An item from the common shape most tools share: an id, an input, a reference (the first of
/// a list; the others kept in metadata), metadata and tags, under their names in `fields`.
pub(crate) struct Common<'a> {
    pub id: &'a str,
    pub input: &'a str,
    pub reference: &'a str,
    /// Other names the tool's exports use for the reference (read when the first is absent).
    pub reference_aliases: &'a [&'a str],
    pub metadata: &'a str,
    pub tags: &'a str,
}

impl Common<'static> {
    /// The shape most tools share — `id`, `input`, `metadata`, `tags` — with the tool's own
    /// name for the reference (and the other names its exports use).
    pub(crate) const fn with_reference(reference: &'static str, aliases: &'static [&'static str]) -> Self {
        Common {
            id: "id",
            input: "input",
            reference,
            reference_aliases: aliases,
            metadata: "metadata",
            tags: "tags",
        }
    }
}

impl Common<'_> {
    pub(crate) fn item(
        &self,
        path: &str,
        line: usize,
        record: &Map<String, Value>,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Item, GoldenError> {
        let invalid = |field: &str, reason: String| GoldenError::Invalid {
            path: path.into(),
            line,
            field: field.into(),
            reason,
        };
        let input_name = map.name("input", self.input);
        let input =
            map.get(record, "input", self.input).ok_or_else(|| invalid(input_name, "is missing".into()))?;
        let messages = crate::messages_from_input(input).map_err(|r| invalid(input_name, r))?;
        let mut metadata = match map.get(record, "metadata", self.metadata) {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid(map.name("metadata", self.metadata), "must be an object".into())),
        };
        let reference_name = match map.0.get("reference") {
            Some(mapped) => mapped.as_str(),
            None => std::iter::once(self.reference)
                .chain(self.reference_aliases.iter().copied())
                .find(|name| record.get(*name).is_some_and(|v| !v.is_null()))
                .unwrap_or(self.reference),
        };
        let reference_value = record.get(reference_name).filter(|v| !v.is_null());
        // Say what became of every field of the record.
        let ours = [
            (map.name("id", self.id), "id"),
            (input_name, "input"),
            (reference_name, "reference"),
            (map.name("metadata", self.metadata), "metadata"),
            (map.name("tags", self.tags), "tags"),
        ];
        for (key, value) in record {
            match ours.iter().find(|(theirs, _)| theirs == key) {
                Some((_, "reference")) if value.is_object() => {
                    notes.map(key, "reference (an object: kept as its JSON text)")
                }
                Some((_, ours)) => notes.map(key, ours),
                None if value.is_null() => {}
                None => notes.skip(key, "not a field this format reads (--map ours=theirs reads it)"),
            }
        }
        if let Some(Value::Array(all)) = reference_value
            && all.len() > 1
        {
            metadata.insert("references".into(), Value::Array(all.clone()));
        }
        let tags = match map.get(record, "tags", self.tags) {
            Some(v) => crate::tags_from(v).map_err(|r| invalid(map.name("tags", self.tags), r))?,
            None => Default::default(),
        };
        let id = match map.get(record, "id", self.id) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line-{line}"),
        };
        Ok(Item {
            id,
            messages,
            reference: reference_value.and_then(crate::reference_text),
            checks: Vec::new(),
            tags,
            metadata,
            draft: false,
        })
    }
}

/// Imports every record with `common`, then checks ids are unique.
pub(crate) fn import_common(
    path: &str,
    text: &str,
    map: &FieldMap,
    common: &Common<'_>,
    notes: &mut ImportNotes,
) -> Result<Vec<Item>, GoldenError> {
    let items = records(path, text)?
        .iter()
        .map(|(line, record)| common.item(path, *line, record, map, notes))
        .collect::<Result<Vec<_>, _>>()?;
    crate::check_unique(path, &items)?;
    Ok(items)
}

/// An item's input for tools that take one: the text of a lone user message, else the messages.
pub(crate) fn input_value(item: &Item) -> Value {
    match item.messages.as_slice() {
        [only] if only.get("role").and_then(Value::as_str) == Some("user") => {
            only.get("content").cloned().unwrap_or(Value::Null)
        }
        messages => Value::Array(messages.to_vec()),
    }
}
