//! Spend as a ledger: each model call reserves its estimated cost first (one row, with a lease),
//! then settles it with what it cost. The cap check is one conditional update of the
//! experiment's running totals, so concurrent workers in any number of processes cannot pass it
//! together; a reservation whose caller died is released when its lease runs out.

use std::time::Duration;

use serde::Serialize;

use crate::work::now_ms;
use crate::{Columns, Result, Store};
use crate::{small_write, with_pool};

/// What a cost is for, in an experiment's spend account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendKind {
    /// A candidate replay.
    Replay,
    /// A judge call.
    Judge,
}

impl SpendKind {
    fn as_str(self) -> &'static str {
        match self {
            SpendKind::Replay => "replay",
            SpendKind::Judge => "judge",
        }
    }
}

/// What an experiment has spent. Replays and judge calls both count against the cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Spend {
    /// The cap, if any.
    pub cap_usd: Option<f64>,
    /// Settled cost of finished candidate replays.
    pub spent_usd: f64,
    /// Estimated cost of calls in flight.
    pub reserved_usd: f64,
    /// Settled cost of judge calls.
    pub judge_spent_usd: f64,
    /// Replays and judge calls together.
    pub total_spent_usd: f64,
    /// Whether a call did not fit under the cap: the experiment stopped enqueueing work.
    pub capped: bool,
}

/// A reservation held for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// Ledger row id.
    pub id: String,
    /// Experiment.
    pub experiment_id: String,
    /// The estimate reserved.
    pub estimate_usd: f64,
}

/// A waiting call's place in line is dropped once it has not asked again for this long (its
/// worker died).
const WAITER_STALE_MS: i64 = 5_000;

/// What asking to reserve a call's cost found.
#[derive(Debug, Clone, PartialEq)]
pub enum Reserve {
    /// It fits: reserved.
    Reserved(Reservation),
    /// It does not fit while calls in flight hold reservations (or an earlier item's call
    /// waits), but would fit on what is settled: ask again shortly — reservations are upper
    /// bounds, so most of them come back. The call is in line meanwhile.
    Wait,
    /// It does not fit on what is settled: the experiment is capped and nothing fits any more.
    Exhausted,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Opens experiment $1's spend account with cap $2, unless it is open.
const OPEN_SPEND: &str =
    "INSERT INTO experiment_spend (experiment_id, cap_usd) VALUES ($1, $2) ON CONFLICT DO NOTHING";

impl Store {
    /// Sets up an experiment's spend account (idempotent).
    pub async fn open_spend(&self, experiment_id: &str, cap_usd: Option<f64>) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(OPEN_SPEND)
        .bind(experiment_id)
        .bind(cap_usd)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Reserves `estimate_usd` for the call doing `work_key` if it fits under the cap, for
    /// `lease` (renewed with the work's lease). When it does not fit, [`Reserve::Wait`] if
    /// only reservations of calls in flight stand in the way; else [`Reserve::Exhausted`]: the
    /// experiment is marked capped, and from then on nothing fits — a smaller call of a later
    /// item would otherwise buy a half-finished pair while the item in flight goes without.
    pub async fn reserve_spend(
        &self,
        experiment_id: &str,
        kind: SpendKind,
        work_key: &str,
        estimate_usd: f64,
        lease: Duration,
    ) -> Result<Reserve> {
        self.open_spend(experiment_id, None).await?;
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let seq = crate::work::item_seq(experiment_id, work_key);
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            // Fits: under the cap with what calls in flight hold, and no earlier item's call
            // waiting for room (fresh within WAITER_STALE_MS).
            let fits = sqlx::query(
                "UPDATE experiment_spend SET reserved_usd = reserved_usd + $2
                 WHERE experiment_id = $1
                   AND (cap_usd IS NULL OR (capped = FALSE
                        AND spent_usd + judge_spent_usd + reserved_usd + $2 <= cap_usd
                        AND NOT EXISTS (SELECT 1 FROM spend_waiters w WHERE w.experiment_id = $1
                                          AND w.item_seq < $3 AND w.since_ms > $4)))",
            )
            .bind(experiment_id)
            .bind(estimate_usd)
            .bind(seq)
            .bind(now - WAITER_STALE_MS)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !fits {
                // It fits on what is settled: what stands in the way (calls in flight, an earlier
                // item's call in line) passes, so wait. Else the money is gone.
                let wait = sqlx::query(
                    "SELECT 1 FROM experiment_spend WHERE experiment_id = $1 AND capped = FALSE
                       AND spent_usd + judge_spent_usd + $2 <= cap_usd",
                )
                .bind(experiment_id)
                .bind(estimate_usd)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if wait {
                    sqlx::query(
                        "INSERT INTO spend_waiters (experiment_id, work_key, item_seq, since_ms) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (experiment_id, work_key) DO UPDATE SET since_ms = excluded.since_ms",
                    )
                    .bind(experiment_id)
                    .bind(work_key)
                    .bind(seq)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query("UPDATE experiment_spend SET capped = TRUE WHERE experiment_id = $1")
                        .bind(experiment_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM spend_waiters WHERE experiment_id = $1")
                        .bind(experiment_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                return Ok(if wait { Reserve::Wait } else { Reserve::Exhausted });
            }
            sqlx::query("DELETE FROM spend_waiters WHERE experiment_id = $1 AND work_key = $2")
                .bind(experiment_id)
                .bind(work_key)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO spend_reservations
                    (id, experiment_id, kind, work_key, estimate_usd, status, expires_ms, created_ms)
                 VALUES ($1, $2, $3, $4, $5, 'reserved', $6, $7)",
            )
            .bind(&id)
            .bind(experiment_id)
            .bind(kind.as_str())
            .bind(work_key)
            .bind(estimate_usd)
            .bind(now.saturating_add(millis(lease)))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Reserve::Reserved(Reservation { id, experiment_id: experiment_id.into(), estimate_usd }))
        })
    }

    /// Records what a call cost: settles its reservation (if it still holds one; one released
    /// after its lease ran out only adds the cost) or, without a cap, just adds the cost.
    pub async fn settle_spend(
        &self,
        experiment_id: &str,
        kind: SpendKind,
        reservation: Option<&Reservation>,
        actual_usd: f64,
    ) -> Result<()> {
        let add = match kind {
            SpendKind::Replay => {
                "UPDATE experiment_spend
                 SET reserved_usd = CASE WHEN reserved_usd > $2 THEN reserved_usd - $2 ELSE 0 END,
                     spent_usd = spent_usd + $3
                 WHERE experiment_id = $1"
            }
            SpendKind::Judge => {
                "UPDATE experiment_spend
                 SET reserved_usd = CASE WHEN reserved_usd > $2 THEN reserved_usd - $2 ELSE 0 END,
                     judge_spent_usd = judge_spent_usd + $3
                 WHERE experiment_id = $1"
            }
        };
        let Some(reservation) = reservation else {
            // Nothing reserved (no cap): one statement, the account opened if it is missing.
            let experiment = experiment_id.to_string();
            return small_write!(self, c => {
                let updated =
                    sqlx::query(add).bind(&experiment).bind(0.0).bind(actual_usd).execute(&mut *c).await?;
                if updated.rows_affected() == 0 {
                    sqlx::query(OPEN_SPEND).bind(&experiment).bind(None::<f64>).execute(&mut *c).await?;
                    sqlx::query(add).bind(&experiment).bind(0.0).bind(actual_usd).execute(&mut *c).await?;
                }
                Ok::<_, crate::StoreError>(())
            });
        };
        self.open_spend(experiment_id, None).await?;
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let mut held = 0.0;
            {
                let settled = sqlx::query(
                    "UPDATE spend_reservations SET status = 'settled', actual_usd = $2
                     WHERE id = $1 AND status = 'reserved'",
                )
                .bind(&reservation.id)
                .bind(actual_usd)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if settled == 1 {
                    held = reservation.estimate_usd;
                } else {
                    sqlx::query("UPDATE spend_reservations SET actual_usd = $2 WHERE id = $1")
                        .bind(&reservation.id)
                        .bind(actual_usd)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query(add).bind(experiment_id).bind(held).bind(actual_usd).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Releases reservations whose lease ran out unsettled (their caller died); returns how
    /// many. Any process may run this; each reservation is released once.
    pub async fn release_expired_reservations(&self) -> Result<usize> {
        let now = now_ms();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let released: Vec<(String, f64)> = sqlx::query_as(
                "UPDATE spend_reservations SET status = 'released'
                 WHERE status = 'reserved' AND expires_ms < $1
                 RETURNING experiment_id, estimate_usd",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (experiment_id, estimate) in &released {
                sqlx::query(
                    "UPDATE experiment_spend
                     SET reserved_usd = CASE WHEN reserved_usd > $2 THEN reserved_usd - $2 ELSE 0 END
                     WHERE experiment_id = $1",
                )
                .bind(experiment_id)
                .bind(estimate)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(released.len())
        })
    }

    /// Reservations of an experiment by status: (status, count, estimated USD).
    pub async fn reservations(&self, experiment_id: &str) -> Result<Vec<(String, i64, f64)>> {
        Ok(with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT status, COUNT(*), CAST(COALESCE(SUM(estimate_usd), 0) AS DOUBLE PRECISION)
             FROM spend_reservations WHERE experiment_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(experiment_id)
        .fetch_all(p)
        .await)?)
    }

    /// The experiment's spend account.
    pub async fn spend(&self, experiment_id: &str) -> Result<Spend> {
        with_pool!(&self.pool, p => {
            let row = sqlx::query(
                "SELECT cap_usd, spent_usd, reserved_usd, judge_spent_usd, capped FROM experiment_spend
                 WHERE experiment_id = $1",
            )
            .bind(experiment_id)
            .fetch_optional(p)
            .await?;
            row.as_ref().map_or(Ok(Spend::default()), decode_spend)
        })
    }
}

fn decode_spend(r: &impl Columns) -> Result<Spend> {
    let (spent_usd, judge_spent_usd): (f64, f64) = (r.get("spent_usd")?, r.get("judge_spent_usd")?);
    Ok(Spend {
        cap_usd: r.get("cap_usd")?,
        spent_usd,
        reserved_usd: r.get("reserved_usd")?,
        judge_spent_usd,
        total_spent_usd: spent_usd + judge_spent_usd,
        capped: r.get("capped")?,
    })
}
