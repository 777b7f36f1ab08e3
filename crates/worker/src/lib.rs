//! The evaluation jobs and the apalis worker that runs them.
//!
//! Each job is a plain async function over [`Services`] ([`replay`], [`judge`]) returning what
//! it did; the queue wiring in [`queue`] is thin. Jobs are idempotent: the store's unique keys
//! make a retried or duplicated job a no-op, and [`queue::enqueue_missing`] re-creates any job
//! whose result is absent, so a crashed worker loses nothing.

mod claims;
pub mod experiments;
pub mod jobs;
pub mod queue;
mod services;

pub use experiments::{CreateError, DEFAULT_MARGIN, ExperimentRequest, create_experiment};
pub use jobs::{EvalJob, JobOutcome, judge, replay};
pub use queue::{Queue, enqueue, enqueue_missing, missing_jobs, requeue_unfinished, run_worker};
pub use services::Services;

/// Why a job failed in a way worth retrying (storage trouble, missing rows). Model and judge
/// failures are not errors: they are recorded as the job's result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] evaltap_store::StoreError),
    /// The queue failed.
    #[error("job queue: {0}")]
    Queue(String),
    /// A row a job depends on is missing.
    #[error("{0}")]
    Missing(String),
}
