//! The experiment report: per candidate, cost and latency against the baseline, and per rubric
//! the paired quality comparison (fixed-n and sequential statistics, Holm-adjusted verdict).
//!
//! The JSON field names are a contract (`evaltap report --json`, the API, CI gates): fields may
//! be added, never renamed.

mod batches;
pub mod chart;
mod compute;
pub mod early_stop;
pub mod examples;
mod inputs;
mod model;
mod pairwise;
mod reuse;
pub mod savings;
pub mod segments;
mod text;

pub use batches::BatchUse;
pub use compute::*;
pub use inputs::*;
pub use model::*;
pub use pairwise::pairwise_outcome;
pub(crate) use pairwise::pairwise_summary;
pub use reuse::{CacheUse, StoppedEarly, VerdictsRestOn};
pub use text::*;

/// Significance level of the report's tests and intervals.
pub const ALPHA: f64 = 0.05;

/// Tags that tie exchanges into clusters (one conversation, session or user), in order of
/// preference; clustered exchanges are not independent, and their standard errors say so.
pub const CLUSTER_TAGS: [&str; 6] =
    ["conversation_id", "session_id", "thread_id", "user_id", "user", "session"];
