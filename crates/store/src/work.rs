//! Claim before call: each unit of work (one replay, one judgment) has a row that is created
//! when the work is first enqueued and claimed, with a lease, by the one worker that calls the
//! model. Unique keys protect rows; claims protect money: a duplicated or retried job finds the
//! work claimed or finished and calls nothing.

use std::time::Duration;

use serde_json::json;

use crate::{Result, Store};
use crate::{small_write, with_pool};

/// The key of the replay of `item_id` by `candidate`.
pub fn replay_work_key(item_id: &str, candidate: &str) -> String {
    json!(["replay", item_id, candidate]).to_string()
}

/// The key of one judgment (`position` is '' for pointwise rubrics).
pub fn judgment_work_key(item_id: &str, subject: &str, rubric: &str, position: &str) -> String {
    json!(["judge", item_id, subject, rubric, position]).to_string()
}

/// The owner of work handed back to the job queue (see [`Store::release_lease`]); it matches
/// the literal in [`Store::claim_work`]'s statement.
pub const QUEUED: &str = "queued";

/// The claim order of a unit of work: every unit of one item shares it (a hash of the
/// experiment and the item), so ready work is claimed item by item, in a random order of items.
pub fn item_seq(experiment_id: &str, work_key: &str) -> i64 {
    let item = serde_json::from_str::<serde_json::Value>(work_key)
        .ok()
        .and_then(|key| key.get(1).and_then(serde_json::Value::as_str).map(str::to_string))
        .unwrap_or_else(|| work_key.to_string());
    // Non-negative, so the order reads the same on both engines.
    (xxhash_rust::xxh3::xxh3_64(format!("{experiment_id}\u{0}{item}").as_bytes()) >> 1) as i64
}

/// Milliseconds since the Unix epoch (lease times on both engines).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A held claim: only its holder calls the model for this work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Experiment.
    pub experiment_id: String,
    /// Work key.
    pub work_key: String,
    /// Who holds it (a worker's id).
    pub owner: String,
    /// How many claims this work has had, this one included (more than one: a takeover).
    pub claims: i64,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the work.
    Claimed(Lease),
    /// The work is finished; nothing to call.
    Finished,
    /// Another worker holds an unexpired lease until `expires_ms`.
    HeldElsewhere {
        /// When the lease runs out unless renewed.
        expires_ms: i64,
    },
}

impl Store {
    /// Registers units of work of an experiment; returns, per key, whether it was new — only
    /// new work is enqueued, so re-running an experiment or restarting a process enqueues
    /// nothing that is queued or done.
    pub async fn register_work(&self, experiment_id: &str, keys: &[String]) -> Result<Vec<bool>> {
        let mut new = Vec::with_capacity(keys.len());
        // One statement per chunk: a job's follow-ups take one round trip, not one per key.
        for chunk in keys.chunks(500) {
            let (experiment, chunk_keys) = (experiment_id.to_string(), chunk.to_vec());
            let inserted: Vec<String> = small_write!(self, c => {
                let mut insert =
                    sqlx::QueryBuilder::new("INSERT INTO work_claims (experiment_id, work_key, item_seq) ");
                insert.push_values(&chunk_keys, |mut row, key| {
                    row.push_bind(&experiment).push_bind(key).push_bind(item_seq(&experiment, key));
                });
                insert.push(" ON CONFLICT DO NOTHING RETURNING work_key");
                Ok::<_, crate::StoreError>(insert.build_query_scalar().fetch_all(&mut *c).await?)
            })?;
            let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
            new.extend(chunk.iter().map(|key| inserted.contains(key)));
        }
        Ok(new)
    }

    /// Claims a unit of work for `owner` for `lease` (one statement: insert if absent, take
    /// over if the previous lease ran out, never if finished).
    pub async fn claim_work(
        &self,
        experiment_id: &str,
        work_key: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim> {
        let now = now_ms();
        let expires_ms = now.saturating_add(millis(lease));
        let (experiment, work, holder) = (experiment_id.to_string(), work_key.to_string(), owner.to_string());
        // One write: insert or take over; else whether it is finished, and until when it is held.
        let claimed: std::result::Result<i64, (bool, i64)> = small_write!(self, c => {
            let claimed: Option<i64> = sqlx::query_scalar(
                "INSERT INTO work_claims (experiment_id, work_key, owner, expires_ms, claims, finished, item_seq)
                 VALUES ($1, $2, $3, $4, 1, FALSE, $6)
                 ON CONFLICT (experiment_id, work_key) DO UPDATE
                    SET owner = excluded.owner, expires_ms = excluded.expires_ms, claims = work_claims.claims + 1
                  WHERE work_claims.finished = FALSE
                    AND (work_claims.expires_ms < $5 OR work_claims.owner = 'queued')
                 RETURNING claims",
            )
            .bind(&experiment)
            .bind(&work)
            .bind(&holder)
            .bind(expires_ms)
            .bind(now)
            .bind(item_seq(&experiment, &work))
            .fetch_optional(&mut *c)
            .await?;
            Ok::<_, crate::StoreError>(match claimed {
                Some(claims) => Ok(claims),
                None => Err(sqlx::query_as::<_, (bool, i64)>(
                    "SELECT finished, expires_ms FROM work_claims WHERE experiment_id = $1 AND work_key = $2",
                )
                .bind(&experiment)
                .bind(&work)
                .fetch_one(&mut *c)
                .await?),
            })
        })?;
        Ok(match claimed {
            Ok(claims) => Claim::Claimed(Lease {
                experiment_id: experiment_id.into(),
                work_key: work_key.into(),
                owner: owner.into(),
                claims,
            }),
            Err((true, _)) => Claim::Finished,
            Err((false, expires_ms)) => Claim::HeldElsewhere { expires_ms },
        })
    }

    /// Claims up to `limit` units of ready work for `owner` for `lease`, in one statement:
    /// registered work never claimed, and work whose claimant's lease ran out (a takeover:
    /// `claims` above 1). Work handed back to the job queue ([`Store::release_lease`]) is not
    /// ready: the queue's job for it claims it.
    pub async fn claim_ready_work(&self, owner: &str, lease: Duration, limit: usize) -> Result<Vec<Lease>> {
        let now = now_ms();
        let expires_ms = now.saturating_add(millis(lease));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let holder = owner.to_string();
        let sql = match &self.pool {
            crate::Pool::Sqlite(_) => crate::sqlite::CLAIM_READY,
            crate::Pool::Postgres(_) => crate::postgres::CLAIM_READY,
        };
        let claimed: Vec<(String, String, i64)> = small_write!(self, c => {
            Ok::<_, crate::StoreError>(sqlx::query_as(sql)
                .bind(&holder)
                .bind(expires_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *c)
                .await?)
        })?;
        Ok(claimed
            .into_iter()
            .map(|(experiment_id, work_key, claims)| Lease {
                experiment_id,
                work_key,
                owner: owner.into(),
                claims,
            })
            .collect())
    }

    /// Whether any work is ready to claim (a read: idle workers poll with it, so that an
    /// empty queue costs no write).
    pub async fn has_ready_work(&self) -> Result<bool> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM work_claims WHERE finished = FALSE AND expires_ms < $1)",
        )
        .bind(now_ms())
        .fetch_one(p)
        .await)?)
    }

    /// Registers follow-up work of an experiment (a replay's judgments), the first unit already
    /// claimed by `owner` — the replay's worker makes it next — and the rest ready for any
    /// worker's claim: one statement, and a worker holds one unit at a time, so one that dies
    /// leaves at most one unit per slot to take over. Returns the lease of the first unit if
    /// it was new; work registered before is left to whoever claims it.
    pub async fn register_follow_ups(
        &self,
        experiment_id: &str,
        keys: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Lease>> {
        let follow_ups = FollowUps::new(experiment_id, keys, owner, lease);
        let rows = follow_ups.clone();
        let inserted = small_write!(self, c => register_follow_ups_in!(rows, &mut *c))?;
        Ok(follow_ups.first_lease(&inserted))
    }

    /// Extends a held lease (and the spend reservation made under it); false if it was lost.
    pub async fn renew_lease(&self, lease: &Lease, duration: Duration) -> Result<bool> {
        let expires = now_ms().saturating_add(millis(duration));
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let held = sqlx::query(
                "UPDATE work_claims SET expires_ms = $1
                 WHERE experiment_id = $2 AND work_key = $3 AND owner = $4 AND finished = FALSE",
            )
            .bind(expires)
            .bind(&lease.experiment_id)
            .bind(&lease.work_key)
            .bind(&lease.owner)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            // Only while the work is held: a parked call's reservation lasts as long as its
            // batch, not one lease.
            if held {
                sqlx::query(
                    "UPDATE spend_reservations SET expires_ms = $1
                     WHERE experiment_id = $2 AND work_key = $3 AND status = 'reserved'",
                )
                .bind(expires)
                .bind(&lease.experiment_id)
                .bind(&lease.work_key)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(held)
        })
    }

    /// Gives a claim up unfinished (the call could not be made or stored) to the job queue:
    /// the queue's job for it (retried a few times, then given up) claims it next,
    /// not the workers claiming ready work, so a unit that keeps failing is not tried in a loop.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        small_write!(self, c => {
            sqlx::query(
                "UPDATE work_claims SET owner = $4, expires_ms = $5
                 WHERE experiment_id = $1 AND work_key = $2 AND owner = $3 AND finished = FALSE",
            )
            .bind(&lease.experiment_id)
            .bind(&lease.work_key)
            .bind(&lease.owner)
            .bind(QUEUED)
            .bind(i64::MAX)
            .execute(&mut *c)
            .await?;
            Ok::<_, crate::StoreError>(())
        })
    }

    /// Gives held work back unfinished until `until_ms`, when it is ready for any claim again;
    /// the claim it had is not counted (it called nothing). For work that waits on something
    /// else, such as room under the spend cap.
    pub async fn defer_lease(&self, lease: &Lease, until_ms: i64) -> Result<()> {
        let lease = lease.clone();
        small_write!(self, c => {
            sqlx::query(
                "UPDATE work_claims SET owner = '', expires_ms = $4, claims = claims - 1
                 WHERE experiment_id = $1 AND work_key = $2 AND owner = $3 AND finished = FALSE",
            )
            .bind(&lease.experiment_id)
            .bind(&lease.work_key)
            .bind(&lease.owner)
            .bind(until_ms)
            .execute(&mut *c)
            .await?;
            Ok::<_, crate::StoreError>(())
        })
    }

    /// How many of the job queue's jobs have been ready for `secs` seconds or more with no
    /// worker taking them: a queue worker that stopped fetching.
    pub async fn stalled_queue_jobs(&self, secs: i64) -> Result<i64> {
        Ok(match &self.pool {
            crate::Pool::Sqlite(pool) => crate::sqlite::stalled_queue_jobs(pool, secs).await?,
            crate::Pool::Postgres(pool) => crate::postgres::stalled_queue_jobs(pool, secs).await?,
        })
    }

    /// Deletes finished jobs from the job queue's table (results live in evaltap's tables).
    pub async fn purge_finished_queue_jobs(&self) -> Result<u64> {
        Ok(match &self.pool {
            crate::Pool::Sqlite(pool) => crate::sqlite::purge_finished_queue_jobs(pool).await?,
            crate::Pool::Postgres(pool) => crate::postgres::purge_finished_queue_jobs(pool).await?,
        })
    }

    /// Work of an experiment that is not finished: (key, claims so far).
    pub async fn unfinished_work(&self, experiment_id: &str) -> Result<Vec<(String, i64)>> {
        Ok(with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT work_key, claims FROM work_claims WHERE experiment_id = $1 AND finished = FALSE ORDER BY work_key",
        )
        .bind(experiment_id)
        .fetch_all(p)
        .await)?)
    }

    /// How many units of work of an experiment were claimed more than once (a claimant died or
    /// lost its lease mid-call and another took over): the only calls that may have been paid
    /// twice.
    pub async fn work_takeovers(&self, experiment_id: &str) -> Result<i64> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM work_claims WHERE experiment_id = $1 AND claims > 1",
        )
        .bind(experiment_id)
        .fetch_one(p)
        .await)?)
    }
}

/// Follow-up work to register (see [`Store::register_follow_ups`]), as one statement on either
/// engine — alone, or in the transaction that stores the replay it follows.
#[derive(Debug, Clone)]
pub(crate) struct FollowUps {
    pub(crate) experiment_id: String,
    pub(crate) keys: Vec<String>,
    pub(crate) owner: String,
    pub(crate) expires_ms: i64,
}

impl FollowUps {
    pub(crate) fn new(experiment_id: &str, keys: &[String], owner: &str, lease: Duration) -> FollowUps {
        FollowUps {
            experiment_id: experiment_id.into(),
            keys: keys.to_vec(),
            owner: owner.into(),
            expires_ms: now_ms().saturating_add(millis(lease)),
        }
    }

    /// The lease of the first unit, if `inserted` holds it.
    pub(crate) fn first_lease(&self, inserted: &[String]) -> Option<Lease> {
        let first = self.keys.first()?;
        inserted.contains(first).then(|| Lease {
            experiment_id: self.experiment_id.clone(),
            work_key: first.clone(),
            owner: self.owner.clone(),
            claims: 1,
        })
    }
}

/// Inserts the rows of a [`FollowUps`] not registered yet (the first claimed) on `$conn`, of
/// either engine; evaluates to the keys inserted.
macro_rules! register_follow_ups_in {
    ($follow_ups:expr, $conn:expr) => {{
        let follow_ups: &$crate::work::FollowUps = &$follow_ups;
        if follow_ups.keys.is_empty() {
            Ok::<Vec<String>, $crate::StoreError>(Vec::new())
        } else {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO work_claims (experiment_id, work_key, owner, expires_ms, claims, item_seq) ",
            );
            insert.push_values(follow_ups.keys.iter().enumerate(), |mut row, (i, key)| {
                let (owner, expires, claims) = if i == 0 {
                    (follow_ups.owner.as_str(), follow_ups.expires_ms, 1_i64)
                } else {
                    ("", 0, 0)
                };
                row.push_bind(&follow_ups.experiment_id)
                    .push_bind(key)
                    .push_bind(owner)
                    .push_bind(expires)
                    .push_bind(claims)
                    .push_bind($crate::work::item_seq(&follow_ups.experiment_id, key));
            });
            insert.push(" ON CONFLICT DO NOTHING RETURNING work_key");
            Ok(insert.build_query_scalar().fetch_all($conn).await?)
        }
    }};
}
pub(crate) use register_follow_ups_in;
