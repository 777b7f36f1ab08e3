//! The evaluation jobs and the worker that runs them: units of work claimed in batches from
//! the store's work table, retries through the apalis queue ([`queue`]).
//!
//! Each job is a plain async function over [`Services`] ([`replay`], [`judge`]) returning what
//! it did. Jobs are idempotent: claims make a retried or duplicated job a no-op, and a worker
//! that dies leaves its claims to run out, to be taken over, so a crashed worker loses nothing.

mod batches;
mod cache;
mod claims;
mod early_stop;
pub mod estimate;
pub mod experiments;
pub mod jobs;
pub mod queue;
mod services;

pub use estimate::{CostEstimate, estimate_cost};
pub use experiments::{CreateError, DEFAULT_MARGIN, ExperimentRequest, create_experiment, plan_experiment};
pub use jobs::{EvalJob, JobOutcome, run};
pub use queue::{Queue, Requeued, enqueue, enqueue_missing, missing_jobs, requeue_unfinished, run_worker};
pub use services::{Batching, Services};

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
