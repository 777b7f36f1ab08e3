//! Group commit for the workers' small writes on SQLite. A claim, a result, a cost and a
//! follow-up registration are one statement each; every job made several, each its own
//! transaction and its own sync of the WAL, one after another on SQLite's single writer
//! (`evaltap bench golden` at zero model latency: 40% of the run went to syncs). Here the writes
//! that arrive while a commit runs share the next transaction: each runs as it did (same
//! statements, same answers), and each caller is answered only once that transaction has
//! committed — what a caller is told is stored, is.

use std::future::Future;
use std::pin::Pin;

use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// A boxed future borrowing the connection.
pub(crate) type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// What runs a write's statements inside the shared transaction.
pub(crate) trait Write<T>:
    for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, Result<T>> + Send
{
}
impl<T, F> Write<T> for F where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, Result<T>> + Send
{
}

/// Answers a write's caller once the transaction's fate is known.
type Answer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A queued write: runs its statements, returns how to answer its caller.
type Op = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, Answer> + Send>;

/// Most writes one transaction takes.
const MAX_WRITES_PER_COMMIT: usize = 512;
/// How long the first write of a transaction waits for others to share it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// Writes waiting for a transaction; callers wait beyond this.
const QUEUE_WRITES: usize = 4096;

/// The handle to the group-commit task of a SQLite store.
#[derive(Debug, Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::Sender<Op>,
}

impl GroupWriter {
    /// Starts the task over `pool`; it ends when every handle is dropped.
    pub(crate) fn start(pool: SqlitePool) -> GroupWriter {
        let (tx, rx) = mpsc::channel(QUEUE_WRITES);
        tokio::spawn(run(pool, rx));
        GroupWriter { tx }
    }

    /// Runs `write` in the next shared transaction; returns its result once that transaction
    /// committed, or why it did not.
    pub(crate) async fn write<T: Send + 'static>(&self, write: impl Write<T> + 'static) -> Result<T> {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let op: Op = Box::new(move |conn| {
            Box::pin(async move {
                let result = write(conn).await;
                Box::new(move |committed: std::result::Result<(), String>| {
                    let _ = reply.send(match committed {
                        Ok(()) => result,
                        Err(err) => Err(StoreError::GroupCommit(err)),
                    });
                }) as Answer
            })
        });
        let stopped = || StoreError::GroupCommit("the group-commit task has stopped".into());
        self.tx.send(op).await.map_err(|_| stopped())?;
        // A dropped reply: the write never ran (its transaction could not start).
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::GroupCommit("its transaction could not start".into())))
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut ops = vec![first];
        // Writes that trickle in (model calls at real latency finish one by one) would each be
        // a transaction of their own; waiting a moment for company makes them share one.
        let deadline = tokio::time::Instant::now() + LINGER;
        while ops.len() < MAX_WRITES_PER_COMMIT {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(op)) => ops.push(op),
                Ok(None) | Err(_) => break,
            }
        }
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                give_back(ops, &err);
                continue;
            }
        };
        // IMMEDIATE: the write lock is taken at BEGIN, so no statement inside can meet a
        // concurrent writer half-way (other processes and the queue write the same file). The
        // transaction guard rolls back if this task stops half-way (its runtime shutting down).
        let mut tx = match sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(err) => {
                give_back(ops, &err);
                continue;
            }
        };
        // A statement that fails (a constraint, say) is undone alone by SQLite; its caller gets
        // that error and the others' writes still commit.
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            answers.push(op(&mut tx).await);
        }
        let committed = tx.commit().await.map_err(|err| {
            log::error!("a group commit of {} writes failed; none of them was stored: {err}", answers.len());
            err.to_string()
        });
        for answer in answers {
            answer(committed.clone());
        }
    }
}

/// A group whose transaction could not start: its writes are dropped unrun, which tells each
/// caller so (its reply is dropped).
fn give_back(ops: Vec<Op>, error: &sqlx::Error) {
    log::error!("a group commit of {} writes could not start: {error}", ops.len());
    drop(ops);
}
