//! PostgreSQL: one database shared by any number of `serve` and `worker` processes.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::Result;

/// Connects to the database at `url` and applies `migrations/postgres`. Several processes may
/// start at once: the migrator serialises them with an advisory lock.
pub(crate) async fn connect(url: &str) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10))
        // Silence `NOTICE: relation … already exists, skipping` from idempotent DDL.
        .options([("client_min_messages", "warning")]);
    let port = options.get_port();
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |_conn, _meta| {
            Box::pin(async move {
                no_delay_to(port);
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    let mut migrator = sqlx::migrate!("../../migrations/postgres");
    // The queue's migrations are apalis' own, in its `apalis` schema and table.
    migrator.dangerous_set_table_name("_evaltap_migrations");
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Turns Nagle's algorithm off on this process's TCP connections to `port`. sqlx 0.9.0 did not
/// set `TCP_NODELAY` on its sockets (sqlx issue #4335; 0.9.1 does again, this stays): a
/// statement larger than one TCP segment — a batch of exchanges — then waits for the server's
/// delayed ACK, ~40 ms each time (`evaltap bench ingest`: 2,270 rows/s over TCP against
/// 105,000 over a Unix socket for the same batched inserts). sqlx gives no handle on its
/// socket, so each new connection's socket is found among the process's descriptors (a
/// duplicate of each, by `pidfd_getfd`; the option belongs to the socket, so it holds for
/// sqlx's descriptor too). Best effort: where this cannot run, connections work as before.
fn no_delay_to(port: u16) {
    #[cfg(target_os = "linux")]
    if let Err(err) = nagle::disable_to_port(port) {
        log::debug!("could not turn Nagle's algorithm off on PostgreSQL sockets: {err}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = port;
}

/// Finding and setting the sockets (Linux: `/proc/self/fd`, `pidfd_getfd`).
#[cfg(target_os = "linux")]
pub(crate) mod nagle {
    use rustix::net::sockopt;
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    /// Calls `each` with a duplicate of every TCP socket of this process connected to `port`.
    fn for_each_socket_to(port: u16, mut each: impl FnMut(&std::os::fd::OwnedFd)) -> std::io::Result<()> {
        let me = pidfd_open(getpid(), PidfdFlags::empty())?;
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let entry = entry?;
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if !std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")) {
                continue;
            }
            // A descriptor closed meanwhile, or not a TCP socket: not ours to change.
            let Ok(socket) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else { continue };
            let peer = rustix::net::getpeername(&socket)
                .ok()
                .flatten()
                .and_then(|a| std::net::SocketAddr::try_from(a).ok());
            if peer.is_some_and(|peer| peer.port() == port) {
                each(&socket);
            }
        }
        Ok(())
    }

    /// Sets `TCP_NODELAY` on every TCP connection of this process to `port`.
    pub(crate) fn disable_to_port(port: u16) -> std::io::Result<()> {
        for_each_socket_to(port, |socket| {
            let _ = sockopt::set_tcp_nodelay(socket, true);
        })
    }

    /// How many TCP connections of this process to `port` still have Nagle's algorithm on.
    pub fn delayed_sockets_to(port: u16) -> std::io::Result<usize> {
        let mut delayed = 0;
        for_each_socket_to(port, |socket| {
            if !sockopt::tcp_nodelay(socket).unwrap_or(true) {
                delayed += 1;
            }
        })?;
        Ok(delayed)
    }
}

/// Claims ready work on PostgreSQL: rows another worker is claiming are skipped, not waited for.
pub(crate) const CLAIM_READY: &str =
    "UPDATE work_claims w SET owner = $1, expires_ms = $2, claims = w.claims + 1
     FROM (SELECT experiment_id, work_key FROM work_claims
           WHERE finished = FALSE AND expires_ms < $3
           ORDER BY expires_ms, item_seq LIMIT $4 FOR UPDATE SKIP LOCKED) ready
     WHERE w.experiment_id = ready.experiment_id AND w.work_key = ready.work_key
     RETURNING w.experiment_id, w.work_key, w.claims";

/// Deletes finished jobs from apalis-postgres' table.
pub(crate) async fn purge_finished_queue_jobs(pool: &PgPool) -> Result<u64> {
    let done =
        sqlx::query("DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed')").execute(pool).await?;
    Ok(done.rows_affected())
}

/// Jobs of the queue ready for at least `secs` seconds that no worker has taken.
pub(crate) async fn stalled_queue_jobs(pool: &PgPool, secs: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Pending' AND lock_by IS NULL
           AND run_at <= now() - make_interval(secs => $1::double precision)",
    )
    .bind(secs)
    .fetch_one(pool)
    .await?)
}

/// Creates a new, empty database named `<prefix>_<uuid>` on the server `admin_url` connects to;
/// returns its URL and name. (Benchmarks and tests each get a database of their own.)
pub async fn create_scratch_database(admin_url: &str, prefix: &str) -> Result<(String, String)> {
    use sqlx::Connection as _;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(crate::StoreError::Conflict(format!("`{name}` is not a plain database name")));
    }
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    // The same server and parameters (`?host=/run/postgresql`, `?sslmode=…`), another database.
    let (address, query) = admin_url.split_once('?').map_or((admin_url, None), |(a, q)| (a, Some(q)));
    let base = address.rsplit_once('/').map_or(address, |(base, _)| base);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Ok((format!("{base}/{name}{query}"), name))
}

/// Drops a database made by [`create_scratch_database`], closing its connections.
pub async fn drop_scratch_database(admin_url: &str, name: &str) -> Result<()> {
    use sqlx::Connection as _;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(crate::StoreError::Conflict(format!("`{name}` is not a plain database name")));
    }
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// One `INSERT … SELECT FROM UNNEST(arrays)` whatever the row count: one statement to plan,
/// where a multi-row `VALUES` would be planned anew for each row count and parameter list.
impl crate::InsertExchangeRows for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn insert_exchange_rows(
        &mut self,
        rows: &[crate::exchanges::ExchangeRow],
    ) -> Result<Vec<(String, String)>> {
        fn column<T>(
            rows: &[crate::exchanges::ExchangeRow],
            f: impl Fn(&crate::exchanges::ExchangeRow) -> T,
        ) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        Ok(sqlx::query_as(
            "INSERT INTO exchanges (id, source, dedup_key, external_id, received_at, occurred_at,
                 model, request, response, input_tokens, output_tokens, cost_usd, latency_ms, tags,
                 succeeded)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                 $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[],
                 $12::float8[], $13::float8[], $14::text[], $15::bool[])
             ON CONFLICT (source, dedup_key) DO NOTHING RETURNING source, dedup_key",
        )
        .bind(column(rows, |r| r.id.clone()))
        .bind(column(rows, |r| r.source.clone()))
        .bind(column(rows, |r| r.dedup_key.clone()))
        .bind(column(rows, |r| r.external_id.clone()))
        .bind(column(rows, |r| r.received_at))
        .bind(column(rows, |r| r.occurred_at))
        .bind(column(rows, |r| r.model.clone()))
        .bind(column(rows, |r| r.request.clone()))
        .bind(column(rows, |r| r.response.clone()))
        .bind(column(rows, |r| r.input_tokens))
        .bind(column(rows, |r| r.output_tokens))
        .bind(column(rows, |r| r.cost_usd))
        .bind(column(rows, |r| r.latency_ms))
        .bind(column(rows, |r| r.tags.clone()))
        .bind(column(rows, |r| r.succeeded))
        .fetch_all(&mut **self)
        .await?)
    }
}
