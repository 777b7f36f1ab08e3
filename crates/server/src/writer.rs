//! Group commit: deliveries that arrive while a commit is running are committed together in the
//! next one — one transaction, multi-row inserts — and each caller is answered only after the
//! commit that holds its rows. The mirror endpoint and the tee proxy share this one writer, so
//! the proxy sheds only when the store truly cannot keep up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use evaltap_core::Exchange;
use evaltap_store::{Delivery, DeliveryCounts, IngestOutcome, Store};
use tokio::sync::{mpsc, oneshot};

/// Deliveries waiting for a commit; senders wait (the mirror) or shed (the proxy) beyond this.
const QUEUE_DELIVERIES: usize = 8192;
/// Most exchanges one commit takes.
const MAX_ROWS_PER_COMMIT: usize = 2000;

/// Counter (in the store, shared by every serve process) of exchanges the proxy could not
/// mirror.
pub const PROXY_SHED_COUNTER: &str = "proxy_shed";

/// Why a delivery was not stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storing the delivery failed: {0}")]
pub struct WriteError(Arc<str>);

/// What a stored delivery gets back: the store's outcome, and its counts as finally recorded
/// (the per-minute cap may have moved exchanges to `sampled_out`).
type Reply = oneshot::Sender<Result<(IngestOutcome, DeliveryCounts), WriteError>>;

enum Message {
    Deliver {
        source: String,
        exchanges: Vec<Exchange>,
        counts: DeliveryCounts,
        /// The source's per-minute cap, applied in the store (shared by every process).
        cap_per_minute: Option<u64>,
        reply: Option<Reply>,
    },
    Flush(oneshot::Sender<()>),
}

/// The handle to the writer tasks: one on SQLite, two on PostgreSQL (see [`writers`]; measured
/// with `evaltap bench ingest`, two keep the door open through a stalled commit, while four
/// contended on the source's counter row and raised the ack p99 tenfold).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
    shed: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer task over `store`.
    pub fn start(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE_DELIVERIES);
        let shed = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            rx: tokio::sync::Mutex::new(rx),
            in_flight: tokio::sync::RwLock::new(()),
            shed: shed.clone(),
            shed_recorded: tokio::sync::Mutex::new(0),
        });
        for _ in 0..writers(&store) {
            tokio::spawn(run(store.clone(), shared.clone()));
        }
        Writer { tx, shed }
    }

    /// Stores a delivery; returns once it is committed, with its counts as recorded.
    pub async fn deliver(
        &self,
        source: &str,
        exchanges: Vec<Exchange>,
        counts: DeliveryCounts,
        cap_per_minute: Option<u64>,
    ) -> Result<(IngestOutcome, DeliveryCounts), WriteError> {
        let (reply, outcome) = oneshot::channel();
        let message =
            Message::Deliver { source: source.into(), exchanges, counts, cap_per_minute, reply: Some(reply) };
        self.tx.send(message).await.map_err(|_| WriteError("the writer has stopped".into()))?;
        outcome.await.map_err(|_| WriteError("the writer has stopped".into()))?
    }

    /// Queues a delivery nobody waits for (the proxy's mirror); false, counted as shed, when
    /// the writer is too far behind to take it.
    pub fn deliver_detached(
        &self,
        source: &str,
        exchanges: Vec<Exchange>,
        counts: DeliveryCounts,
        cap_per_minute: Option<u64>,
    ) -> bool {
        let n = exchanges.len() as u64;
        let message =
            Message::Deliver { source: source.into(), exchanges, counts, cap_per_minute, reply: None };
        let taken = self.tx.try_send(message).is_ok();
        if !taken {
            let shed = self.shed.fetch_add(n, Ordering::Relaxed) + n;
            tracing::warn!(shed, "the store is behind; exchange not mirrored");
        }
        taken
    }

    /// Returns once everything queued before it is committed.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// Exchanges this process shed.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// One queued delivery, as the writer holds it.
struct Pending {
    source: String,
    exchanges: Vec<Exchange>,
    counts: DeliveryCounts,
    cap_per_minute: Option<u64>,
    reply: Option<Reply>,
}

/// Group-commit tasks: one on SQLite (it has one writer at a time anyway); two on PostgreSQL,
/// so that one group's rows travel while the other's commit waits on the server.
fn writers(store: &Store) -> usize {
    match store.engine() {
        evaltap_store::Engine::Sqlite => 1,
        evaltap_store::Engine::Postgres => 2,
    }
}

/// What the writer tasks share: the queue, and the commits in flight (each holds a read guard
/// from before it leaves the queue until its commit is done; a flush takes the write guard, so
/// it is answered only after every group taken before it has committed).
struct Shared {
    rx: tokio::sync::Mutex<mpsc::Receiver<Message>>,
    in_flight: tokio::sync::RwLock<()>,
    shed: Arc<AtomicU64>,
    /// Of `shed`, how much the store's counter holds.
    shed_recorded: tokio::sync::Mutex<u64>,
}

/// One writer task.
async fn run(store: Store, shared: Arc<Shared>) {
    loop {
        // Take what is waiting (those arrived while the last commits ran), then let another
        // writer take the next group while this one commits.
        let mut group = Vec::new();
        let mut flushes = Vec::new();
        let committing = {
            let mut rx = shared.rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut rows = 0;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Deliver { source, exchanges, counts, cap_per_minute, reply } => {
                        rows += exchanges.len();
                        group.push(Pending { source, exchanges, counts, cap_per_minute, reply });
                    }
                    Message::Flush(done) => flushes.push(done),
                }
                if rows < MAX_ROWS_PER_COMMIT && flushes.is_empty() {
                    next = rx.try_recv().ok();
                }
            }
            shared.in_flight.read().await
        };
        commit(&store, group).await;
        drop(committing);
        let shed_now = shared.shed.load(Ordering::Relaxed);
        let mut shed_recorded = shared.shed_recorded.lock().await;
        if shed_now > *shed_recorded {
            match store.add_to_counter(PROXY_SHED_COUNTER, shed_now - *shed_recorded).await {
                Ok(()) => *shed_recorded = shed_now,
                Err(err) => tracing::warn!(%err, "recording shed exchanges failed; will retry"),
            }
        }
        drop(shed_recorded);
        if !flushes.is_empty() {
            let _all_committed = shared.in_flight.write().await;
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
}

/// Commits a group and answers each delivery.
async fn commit(store: &Store, group: Vec<Pending>) {
    if group.is_empty() {
        return;
    }
    let mut capped = Vec::with_capacity(group.len());
    for mut pending in group {
        match apply_cap(store, &mut pending).await {
            Ok(()) => capped.push(pending),
            Err(err) => {
                if let Some(reply) = pending.reply.take() {
                    let _ = reply.send(Err(WriteError(err.to_string().into())));
                }
            }
        }
    }
    let group = capped;
    let deliveries: Vec<Delivery<'_>> = group
        .iter()
        .map(|p| Delivery { source: &p.source, exchanges: &p.exchanges, counts: p.counts })
        .collect();
    let result = store.record_deliveries(&deliveries).await;
    match result {
        Ok(outcomes) => {
            for (pending, outcome) in group.into_iter().zip(outcomes) {
                if let Some(reply) = pending.reply {
                    let _ = reply.send(Ok((outcome, pending.counts)));
                }
            }
        }
        Err(err) => {
            tracing::error!(%err, deliveries = group.len(), "a group commit failed; nothing of it was stored");
            let error = WriteError(err.to_string().into());
            for pending in group {
                if let Some(reply) = pending.reply {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Keeps what fits under the source's per-minute cap; the rest counts as sampled out.
async fn apply_cap(store: &Store, pending: &mut Pending) -> Result<(), evaltap_store::StoreError> {
    let (Some(cap), false) = (pending.cap_per_minute, pending.exchanges.is_empty()) else { return Ok(()) };
    let minute = i64::try_from(crate::sources::current_minute()).unwrap_or(i64::MAX);
    let wanted = pending.exchanges.len();
    let granted = store.take_rate(&pending.source, minute, wanted as u64, cap).await?;
    let granted = usize::try_from(granted).unwrap_or(usize::MAX).min(wanted);
    pending.counts.sampled_out += wanted - granted;
    pending.exchanges.truncate(granted);
    Ok(())
}
