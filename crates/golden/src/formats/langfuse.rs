//! Langfuse dataset items: `{id, input, expectedOutput, metadata}` (as the Langfuse API and
//! its dataset export give them), one JSON object a line or a JSON array.

use serde_json::{Map, Value, json};

use super::{Common, FieldMap, Format, ImportNotes, import_common, input_value};
use crate::{GoldenError, Item};

/// Langfuse.
pub struct Langfuse;

const FIELDS: Common<'static> = Common::with_reference("expectedOutput", &["expected_output"]);

impl Format for Langfuse {
    fn name(&self) -> &'static str {
        "langfuse"
    }

    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError> {
        import_common(path, text, map, &FIELDS, notes)
    }

    fn export(&self, items: &[Item]) -> Option<String> {
        Some(
            items
                .iter()
                .map(|item| {
                    let mut metadata = item.metadata.clone();
                    if !item.tags.is_empty() {
                        metadata.insert("tags".into(), json!(item.tags));
                    }
                    let mut record = Map::new();
                    record.insert("id".into(), json!(item.id));
                    record.insert("input".into(), input_value(item));
                    record.insert(
                        "expectedOutput".into(),
                        item.reference.clone().map_or(Value::Null, Value::String),
                    );
                    record.insert("metadata".into(), Value::Object(metadata));
                    format!("{}\n", Value::Object(record))
                })
                .collect(),
        )
    }
}
