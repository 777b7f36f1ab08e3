//! The result cache: a replay or a judgment paid for once is read back by any later one with
//! the same key (the caller builds it from everything that decides the result), while younger
//! than the caller's max age.

use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Result, Store, from_json, to_json, with_pool};

/// Entries of replays.
pub const REPLAY_CACHE: &str = "replay";
/// Entries of judgments.
pub const JUDGMENT_CACHE: &str = "judgment";

impl Store {
    /// The cached result of `kind` under `key`, unless older than `max_age`.
    pub async fn cached<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
        max_age: std::time::Duration,
    ) -> Result<Option<T>> {
        let oldest = Utc::now().timestamp_millis() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let payload: Option<String> = with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT payload FROM result_cache WHERE kind = $1 AND cache_key = $2 AND created_ms >= $3",
        )
        .bind(kind)
        .bind(key)
        .bind(oldest)
        .fetch_optional(p).await)?;
        payload.map(|text| from_json("result_cache.payload", &text)).transpose()
    }

    /// Keeps a paid result for reuse (the newest result under a key replaces an older one).
    pub async fn cache_result(&self, kind: &str, key: &str, result: &impl Serialize) -> Result<()> {
        let payload = to_json(result);
        let now = Utc::now().timestamp_millis();
        with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO result_cache (kind, cache_key, created_ms, payload) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, cache_key) DO UPDATE SET created_ms = EXCLUDED.created_ms, payload = EXCLUDED.payload",
        )
        .bind(kind)
        .bind(key)
        .bind(now)
        .bind(&payload)
        .execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Entries in the cache (for tests and `evaltap` status).
    pub async fn cache_entries(&self, kind: &str) -> Result<i64> {
        let count: i64 = with_pool!(&self.pool, p => sqlx::query_scalar("SELECT COUNT(*) FROM result_cache WHERE kind = $1")
            .bind(kind)
            .fetch_one(p).await)?;
        Ok(count)
    }
}
