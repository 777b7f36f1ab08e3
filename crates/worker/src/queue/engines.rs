//! The apalis queue on either engine: apalis-sqlite or apalis-postgres over the store's own
//! pool. Everything that differs by engine sits here; the rest of the queue is one code path.

use std::future::Future;

use apalis::layers::retry::RetryPolicy;
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use evaltap_core::WorkerConfig;
use evaltap_store::{Pool, Store};

use super::{QUEUE_POLL_EVERY, WorkerState, handle};
use crate::WorkerError;
use crate::jobs::EvalJob;

/// The job queue, on whichever engine the store runs.
#[derive(Clone)]
pub enum Queue {
    /// apalis-sqlite.
    Sqlite(SqliteStorage<EvalJob>),
    /// apalis-postgres.
    Postgres(PostgresStorage<EvalJob>),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Sqlite(_) => "Queue::Sqlite",
            Queue::Postgres(_) => "Queue::Postgres",
        })
    }
}

/// A stable queue name: apalis defaults to the Rust type path, which a refactor would change,
/// orphaning queued jobs.
pub const QUEUE_NAME: &str = "evaltap.eval";

/// Jobs fetched per poll.
const BATCH_SIZE: usize = 64;

/// The same settings for either engine's queue (two configuration types of the same shape).
macro_rules! queue_config {
    ($config:ty, $settings:expr) => {
        <$config>::default()
            .queue(QUEUE_NAME)
            .batch_size(BATCH_SIZE)
            .heartbeat_interval($settings.heartbeat())
            .missed_heartbeats($settings.missed_heartbeats.max(1))
    };
}

/// Creates apalis's tables (idempotent) and returns the queue.
pub async fn open(store: &Store, settings: &WorkerConfig) -> Result<Queue, WorkerError> {
    let failed =
        |e: sqlx::migrate::MigrateError| WorkerError::Queue(format!("creating the queue's tables: {e}"));
    Ok(match store.pool() {
        Pool::Sqlite(pool) => {
            // apalis' own `setup` also runs `PRAGMA synchronous = OFF` on whichever pooled
            // connection it gets, which would let a power loss take back acknowledged writes:
            // run only its migrations (the store's connections are WAL with synchronous = FULL).
            SqliteStorage::<()>::migrations().run(pool).await.map_err(failed)?;
            Queue::Sqlite(
                SqliteStorage::new(pool).with_config(queue_config!(apalis_sqlite::Config, settings)),
            )
        }
        Pool::Postgres(pool) => {
            PostgresStorage::<()>::migrations().run(pool).await.map_err(failed)?;
            Queue::Postgres(
                PostgresStorage::new(pool).with_config(queue_config!(apalis_postgres::Config, settings)),
            )
        }
    })
}

impl Queue {
    /// Pushes `tasks` in one go.
    pub(super) async fn push_all(
        &self,
        tasks: impl futures::Stream<Item = Task<EvalJob>> + Unpin + Send,
    ) -> Result<(), WorkerError> {
        let pushed = match self.clone() {
            Queue::Sqlite(mut storage) => storage.push_all(tasks).await.map_err(|e| e.to_string()),
            Queue::Postgres(mut storage) => storage.push_all(tasks).await.map_err(|e| e.to_string()),
        };
        pushed.map_err(WorkerError::Queue)
    }

    /// Runs an apalis worker named `name` on this queue until `until` completes or its stream
    /// fails.
    pub(super) async fn run_worker(
        &self,
        name: String,
        state: WorkerState,
        concurrency: usize,
        retry: RetryPolicy,
        until: impl Future<Output = Result<(), std::io::Error>> + Send + 'static,
    ) -> Result<(), WorkerError> {
        // The same worker over either engine's storage (two backend types).
        macro_rules! run_on {
            ($storage:expr) => {
                WorkerBuilder::new(name)
                    .backend($storage.clone().poll_with_interval(QUEUE_POLL_EVERY))
                    .data(state)
                    .concurrency(concurrency)
                    .retry(retry)
                    .build(handle)
                    .run_until(until)
                    .await
            };
        }
        match self {
            Queue::Sqlite(storage) => run_on!(storage),
            Queue::Postgres(storage) => run_on!(storage),
        }
        .map_err(|e| WorkerError::Queue(e.to_string()))
    }
}
