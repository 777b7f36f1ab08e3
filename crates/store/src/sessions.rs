//! Dashboard sessions: a random id in the browser's cookie, its hash here with the hash of the
//! API token that opened it and an expiry; several `serve` processes share them through the
//! database.

use crate::{Columns as _, Result, Store, with_pool};

impl Store {
    /// Opens a session `id_sha256` for the token `token_sha256` until `expires_ms`; sessions
    /// that have expired by `now_ms` are removed on the way.
    pub async fn open_session(
        &self,
        id_sha256: &str,
        token_sha256: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()> {
        with_pool!(&self.pool, p => {
            sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1").bind(now_ms).execute(p).await?;
            sqlx::query("INSERT INTO sessions (id_sha256, token_sha256, expires_ms) VALUES ($1, $2, $3)")
                .bind(id_sha256)
                .bind(token_sha256)
                .bind(expires_ms)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// The token hash of session `id_sha256` while it has not expired at `now_ms`.
    pub async fn session_token(&self, id_sha256: &str, now_ms: i64) -> Result<Option<String>> {
        with_pool!(&self.pool, p => {
            let row = sqlx::query("SELECT token_sha256 FROM sessions WHERE id_sha256 = $1 AND expires_ms > $2")
                .bind(id_sha256)
                .bind(now_ms)
                .fetch_optional(p)
                .await?;
            row.map(|r| r.get::<String>("token_sha256")).transpose()
        })
    }

    /// Ends session `id_sha256` (signing out); ending one that does not exist is not an error.
    pub async fn close_session(&self, id_sha256: &str) -> Result<()> {
        with_pool!(&self.pool, p => {
            sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1").bind(id_sha256).execute(p).await?;
            Ok(())
        })
    }
}
