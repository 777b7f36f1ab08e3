//! Inspect (UK AISI) samples: `{id, input, target, metadata}`, `input` a string or chat
//! messages, `target` a string or a list.

use super::{Common, FieldMap, Format, ImportNotes, import_common};
use crate::{GoldenError, Item};

/// Inspect.
pub struct Inspect;

impl Format for Inspect {
    fn name(&self) -> &'static str {
        "inspect"
    }

    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError> {
        import_common(path, text, map, &Common::with_reference("target", &[]), notes)
    }
}
