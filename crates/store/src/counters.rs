//! What several `serve` processes share at the door: each source's per-minute admissions, and
//! counters (exchanges turned away, say) that every process adds to.

use crate::{Result, Store, with_pool};

impl Store {
    /// Takes up to `wanted` admissions from `source`'s per-minute cap for minute `minute`;
    /// returns how many fit. Every serve process on the database shares the window.
    pub async fn take_rate(&self, source: &str, minute: i64, wanted: u64, cap: u64) -> Result<u64> {
        let wanted = i64::try_from(wanted).unwrap_or(i64::MAX);
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            // The no-op update takes the row's lock (PostgreSQL) or the write lock (SQLite)
            // before reading, so two processes cannot both see room for the same slot.
            let admitted: i64 = sqlx::query_scalar(
                "INSERT INTO rate_windows (source, minute, admitted) VALUES ($1, $2, 0)
                 ON CONFLICT (source, minute) DO UPDATE SET admitted = rate_windows.admitted
                 RETURNING admitted",
            )
            .bind(source)
            .bind(minute)
            .fetch_one(&mut *tx)
            .await?;
            let granted = wanted.min((cap - admitted).max(0));
            if granted > 0 {
                sqlx::query("UPDATE rate_windows SET admitted = admitted + $3 WHERE source = $1 AND minute = $2")
                    .bind(source)
                    .bind(minute)
                    .bind(granted)
                    .execute(&mut *tx)
                    .await?;
            }
            // Old windows are history.
            sqlx::query("DELETE FROM rate_windows WHERE source = $1 AND minute < $2")
                .bind(source)
                .bind(minute - 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(u64::try_from(granted).unwrap_or(0))
        })
    }

    /// Adds `by` to the shared counter `name`.
    pub async fn add_to_counter(&self, name: &str, by: u64) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
        )
        .bind(name)
        .bind(i64::try_from(by).unwrap_or(i64::MAX))
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The shared counter `name` (0 if never added to).
    pub async fn counter(&self, name: &str) -> Result<u64> {
        let value: Option<i64> = with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT value FROM counters WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(p)
        .await)?;
        Ok(value.unwrap_or(0).max(0) as u64)
    }
}
