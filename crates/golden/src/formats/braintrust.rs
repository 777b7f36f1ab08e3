//! Braintrust dataset records: `{id, input, expected, metadata, tags}`.

use super::{Common, FieldMap, Format, ImportNotes, import_common};
use crate::{GoldenError, Item};

/// Braintrust.
pub struct Braintrust;

impl Format for Braintrust {
    fn name(&self) -> &'static str {
        "braintrust"
    }

    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError> {
        import_common(path, text, map, &Common::with_reference("expected", &[]), notes)
    }
}
