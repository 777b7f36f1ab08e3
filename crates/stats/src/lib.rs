//! Pure statistics for comparing a candidate model with a baseline on paired scores.
//!
//! No I/O, no async: every function takes numbers and returns numbers (or a reason why it
//! cannot). The formulas and their test vectors are in `stats-methods.md`.
//!
//! - [`paired_t`]: paired t-test and t-interval on the per-example differences.
//! - [`verdict`]: the one place that turns an interval into `better` / `worse` /
//!   `non-inferior` / `inconclusive`.
//!
//! ```
//! let baseline = [0.7, 0.6, 0.8, 0.5, 0.9];
//! let candidate = [0.8, 0.6, 0.7, 0.6, 0.9];
//! let t = evaltap_stats::paired_t(&baseline, &candidate, 0.05).expect("n >= 2");
//! assert!(t.ci_low < t.mean_delta && t.mean_delta < t.ci_high);
//! ```
#![deny(missing_docs)]

mod paired;
mod verdict;

pub use paired::{PairedT, StatsError, mean, paired_t, percentile};
pub use verdict::{Verdict, verdict};
