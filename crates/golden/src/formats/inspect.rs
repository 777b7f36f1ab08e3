//! Inspect (UK AISI) samples: `{id, input, target, metadata}`, `input` a string or chat
//! messages, `target` a string or a list.

use super::{Common, FieldMap, Format, import_common};
use crate::{GoldenError, Item};

/// Inspect.
pub struct Inspect;

impl Format for Inspect {
    fn name(&self) -> &'static str {
        "inspect"
    }

    fn import(&self, path: &str, text: &str, map: &FieldMap) -> Result<Vec<Item>, GoldenError> {
        let fields =
            Common { id: "id", input: "input", reference: "target", metadata: "metadata", tags: "tags" };
        import_common(path, text, map, &fields)
    }
}
