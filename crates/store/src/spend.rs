//! Spend as a ledger: each model call reserves its estimated cost first (one row, with a lease),
//! then settles it with what it cost. The cap check is one conditional update of the
//! experiment's running totals, so concurrent workers in any number of processes cannot pass it
//! together. Reservations are upper bounds (the calls carry their output limit), so settling
//! only ever gives money back; a reservation whose caller died may have been paid, so when its
//! lease runs out it is settled at its reserved amount as `presumed`, never released to zero.

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

    /// Settles a call of this kind in experiment $1's account: $2 of reservation released, $3
    /// added to the kind's spend, $4 and $5 to the presumed amount and count.
    fn settle_sql(self) -> &'static str {
        match self {
            SpendKind::Replay => {
                "UPDATE experiment_spend
                 SET reserved_usd = CASE WHEN reserved_usd > $2 THEN reserved_usd - $2 ELSE 0 END,
                     spent_usd = spent_usd + $3, presumed_usd = presumed_usd + $4,
                     presumed_calls = presumed_calls + $5
                 WHERE experiment_id = $1"
            }
            SpendKind::Judge => {
                "UPDATE experiment_spend
                 SET reserved_usd = CASE WHEN reserved_usd > $2 THEN reserved_usd - $2 ELSE 0 END,
                     judge_spent_usd = judge_spent_usd + $3, presumed_usd = presumed_usd + $4,
                     presumed_calls = presumed_calls + $5
                 WHERE experiment_id = $1"
            }
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
    /// Of the spend, calls counted at their reserved bound because whether (and what) they were
    /// billed is unknown: their caller died mid-call, or their answer was lost after sending.
    #[serde(default)]
    pub presumed_usd: f64,
    /// How many calls `presumed_usd` counts.
    #[serde(default)]
    pub presumed_calls: i64,
}

/// What a finished call is settled at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Paid {
    /// Its cost, known from the usage the provider reported (0 for a call refused unbilled).
    Actual(f64),
    /// Its answer was lost after it was sent, so it may have been billed: counted at this bound
    /// and marked presumed.
    Presumed(f64),
}

impl Paid {
    fn usd(self) -> f64 {
        match self {
            Paid::Actual(usd) | Paid::Presumed(usd) => usd,
        }
    }
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

    /// Records what a call cost: settles its reservation (if it still holds one; one already
    /// presumed paid after its lease ran out has the presumed amount replaced by this one) or,
    /// without a cap, just adds the cost.
    pub async fn settle_spend(
        &self,
        experiment_id: &str,
        kind: SpendKind,
        reservation: Option<&Reservation>,
        paid: Paid,
    ) -> Result<()> {
        let add = SpendKind::settle_sql(kind);
        let (presumed_usd, presumed_calls) = match paid {
            Paid::Presumed(usd) => (usd, 1_i64),
            Paid::Actual(_) => (0.0, 0),
        };
        let Some(reservation) = reservation else {
            // Nothing reserved (no cap): one statement, the account opened if it is missing.
            let experiment = experiment_id.to_string();
            return small_write!(self, c => {
                for attempt in 0..2 {
                    let updated = sqlx::query(add)
                        .bind(&experiment)
                        .bind(0.0)
                        .bind(paid.usd())
                        .bind(presumed_usd)
                        .bind(presumed_calls)
                        .execute(&mut *c)
                        .await?;
                    if updated.rows_affected() == 1 || attempt == 1 {
                        break;
                    }
                    sqlx::query(OPEN_SPEND).bind(&experiment).bind(None::<f64>).execute(&mut *c).await?;
                }
                Ok::<_, crate::StoreError>(())
            });
        };
        self.open_spend(experiment_id, None).await?;
        let status = match paid {
            Paid::Actual(_) => "settled",
            Paid::Presumed(_) => "presumed",
        };
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            // Held: still reserved, so its reservation comes back. Presumed when its lease ran
            // out: the presumed amount is taken back out of the spend in favour of this one.
            let mut was = None;
            for before in ["reserved", "presumed"] {
                let changed = sqlx::query(
                    "UPDATE spend_reservations SET status = $3, actual_usd = $2 WHERE id = $1 AND status = $4",
                )
                .bind(&reservation.id)
                .bind(paid.usd())
                .bind(status)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 1 {
                    was = Some(before);
                    break;
                }
            }
            let (held, spent, presumed, calls) = match was {
                Some("reserved") => (reservation.estimate_usd, paid.usd(), presumed_usd, presumed_calls),
                Some(_) => (
                    0.0,
                    paid.usd() - reservation.estimate_usd,
                    presumed_usd - reservation.estimate_usd,
                    presumed_calls - 1,
                ),
                // Settled already (by an earlier attempt of this call): only the cost is added.
                None => (0.0, paid.usd(), presumed_usd, presumed_calls),
            };
            sqlx::query(add)
                .bind(experiment_id)
                .bind(held)
                .bind(spent)
                .bind(presumed)
                .bind(calls)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Settles reservations whose lease ran out unsettled (their caller died, maybe after the
    /// provider billed the call) at their reserved amount, as `presumed`; returns how many. Any
    /// process may run this; each reservation is settled once.
    pub async fn presume_expired_reservations(&self) -> Result<usize> {
        let now = now_ms();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let presumed: Vec<(String, String, f64)> = sqlx::query_as(
                "UPDATE spend_reservations SET status = 'presumed', actual_usd = estimate_usd
                 WHERE status = 'reserved' AND expires_ms < $1
                 RETURNING experiment_id, kind, estimate_usd",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (experiment_id, kind, estimate) in &presumed {
                let kind = if kind == SpendKind::Judge.as_str() { SpendKind::Judge } else { SpendKind::Replay };
                sqlx::query(SpendKind::settle_sql(kind))
                    .bind(experiment_id)
                    .bind(estimate)
                    .bind(estimate)
                    .bind(estimate)
                    .bind(1_i64)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(presumed.len())
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
                "SELECT cap_usd, spent_usd, reserved_usd, judge_spent_usd, capped, presumed_usd, presumed_calls
                 FROM experiment_spend
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
        presumed_usd: r.get("presumed_usd")?,
        presumed_calls: r.get("presumed_calls")?,
    })
}
