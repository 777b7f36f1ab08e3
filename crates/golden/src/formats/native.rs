//! evaltap's own JSONL (see the crate docs).

use super::{FieldMap, Format, ImportNotes};
use crate::{GoldenError, Item};

/// evaltap's JSONL.
pub struct Native;

impl Format for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        _notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError> {
        if !map.0.is_empty() {
            return Err(GoldenError::Refused("--map applies to foreign formats, not native JSONL".into()));
        }
        crate::parse_native(path, text)
    }

    fn export(&self, items: &[Item]) -> Option<String> {
        Some(crate::to_native(items))
    }
}
