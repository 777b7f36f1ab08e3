//! OpenAI evals JSONL samples: `{input, ideal}`, `input` a list of chat messages (or a string),
//! `ideal` a string or a list of acceptable answers (the first is the reference, all are kept
//! in metadata).

use super::{Common, FieldMap, Format, ImportNotes, import_common};
use crate::{GoldenError, Item};

/// OpenAI evals.
pub struct OpenAiEvals;

impl Format for OpenAiEvals {
    fn name(&self) -> &'static str {
        "openai-evals"
    }

    fn import_noting(
        &self,
        path: &str,
        text: &str,
        map: &FieldMap,
        notes: &mut ImportNotes,
    ) -> Result<Vec<Item>, GoldenError> {
        import_common(path, text, map, &Common::with_reference("ideal", &[]), notes)
    }
}
