//! The two migration histories cannot drift apart: SQLite and PostgreSQL, each migrated from
//! empty, end with the same tables, columns (PostgreSQL's types mapped to how SQLite stores
//! them: timestamps as text, booleans as integers), nullability, primary keys and indexes.

use std::collections::BTreeSet;

use evaltap_store::{Engine, Pool, Store};
use sqlx::Row;

use crate::common::{ENGINE, TempDir, postgres_or_skip};

/// What a column holds, as both engines mean it.
fn class(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t == "bigserial" || t == "serial" {
        "integer"
    } else if t.contains("double") || t.contains("real") || t.contains("float") || t.contains("numeric") {
        "float"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("timestamp") || t.contains("datetime") {
        "timestamp"
    } else if t.contains("text") || t.contains("char") || t.contains("json") || t == "uuid" {
        "text"
    } else if t.contains("bytea") || t.contains("blob") {
        "bytes"
    } else {
        "other"
    }
}

/// A PostgreSQL type as SQLite stores it: sqlx writes a timestamp as ISO-8601 text and a
/// boolean as 0/1 (SQLite has neither type).
fn class_as_sqlite_stores_it(postgres: &str) -> &'static str {
    match class(postgres) {
        "timestamp" => "text",
        "boolean" => "integer",
        other => other,
    }
}

/// One table's shape: columns (name, class, nullable), its primary key, and its indexes as
/// (unique, columns).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Table {
    name: String,
    columns: BTreeSet<(String, &'static str, bool)>,
    primary_key: Vec<String>,
    indexes: BTreeSet<(bool, Vec<String>)>,
}

/// Tables of evaltap's own migrations: not the queue library's, not the migrators' bookkeeping
/// (`_…`), not SQLite's own.
fn ours(name: &str) -> bool {
    !name.starts_with('_')
        && !name.starts_with("sqlite_")
        && !name.eq_ignore_ascii_case("jobs")
        && !name.eq_ignore_ascii_case("workers")
}

async fn sqlite_tables(pool: &sqlx::SqlitePool) -> BTreeSet<Table> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(pool)
        .await
        .expect("tables");
    let mut tables = BTreeSet::new();
    for name in names.into_iter().filter(|n| ours(n)) {
        let info = sqlx::query("SELECT * FROM pragma_table_info($1)")
            .bind(&name)
            .fetch_all(pool)
            .await
            .expect("columns");
        let mut key: Vec<(i64, String)> = Vec::new();
        let mut columns = BTreeSet::new();
        for c in &info {
            let column: String = c.get("name");
            let pk: i64 = c.get("pk");
            // SQLite lets a primary-key column hold NULL unless declared NOT NULL; PostgreSQL
            // never does: a key column counts as NOT NULL on both.
            let nullable = c.get::<i64, _>("notnull") == 0 && pk == 0;
            columns.insert((column.clone(), class(&c.get::<String, _>("type")), nullable));
            if pk > 0 {
                key.push((pk, column));
            }
        }
        key.sort();
        let mut indexes = BTreeSet::new();
        let list = sqlx::query("SELECT * FROM pragma_index_list($1)")
            .bind(&name)
            .fetch_all(pool)
            .await
            .expect("indexes");
        for index in &list {
            let origin: String = index.get("origin");
            if origin == "pk" {
                continue;
            }
            let index_name: String = index.get("name");
            let mut cols: Vec<(i64, String)> = sqlx::query("SELECT * FROM pragma_index_info($1)")
                .bind(&index_name)
                .fetch_all(pool)
                .await
                .expect("index columns")
                .iter()
                .map(|r| (r.get::<i64, _>("seqno"), r.get::<Option<String>, _>("name").unwrap_or_default()))
                .collect();
            cols.sort();
            indexes.insert((index.get::<i64, _>("unique") == 1, cols.into_iter().map(|(_, c)| c).collect()));
        }
        tables.insert(Table {
            name,
            columns,
            primary_key: key.into_iter().map(|(_, c)| c).collect(),
            indexes,
        });
    }
    tables
}

async fn postgres_tables(pool: &sqlx::PgPool) -> BTreeSet<Table> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut tables = BTreeSet::new();
    for name in names.into_iter().filter(|n| ours(n)) {
        let columns = sqlx::query(
            "SELECT column_name::text AS name, data_type::text AS type, is_nullable::text AS nullable
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .expect("columns")
        .iter()
        .map(|c| {
            let declared = c.get::<String, _>("type");
            (
                c.get::<String, _>("name"),
                class_as_sqlite_stores_it(&declared),
                c.get::<String, _>("nullable") == "YES",
            )
        })
        .collect();
        // Every index with its columns in order, whether it is unique and whether it is the key.
        let rows = sqlx::query(
            "SELECT i.indisunique AS is_unique, i.indisprimary AS is_primary,
                    array_agg(a.attname::text ORDER BY k.ordinality) AS cols
             FROM pg_index i
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             WHERE t.relname = $1
             GROUP BY i.indexrelid, i.indisunique, i.indisprimary",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .expect("indexes");
        let mut primary_key = Vec::new();
        let mut indexes = BTreeSet::new();
        for row in &rows {
            let cols: Vec<String> = row.get("cols");
            if row.get::<bool, _>("is_primary") {
                primary_key = cols;
            } else {
                indexes.insert((row.get::<bool, _>("is_unique"), cols));
            }
        }
        tables.insert(Table { name, columns, primary_key, indexes });
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrate_to_the_same_schema() {
    if !postgres_or_skip() {
        return;
    }
    let mut sqlite_dir = TempDir::new("parity-sqlite");
    let sqlite_url = ENGINE.scope(Engine::Sqlite, async { sqlite_dir.database_url() }).await;
    let mut postgres_dir = TempDir::new("parity-postgres");
    let postgres_url = ENGINE.scope(Engine::Postgres, async { postgres_dir.database_url() }).await;
    let sqlite = Store::connect(&sqlite_url).await.expect("sqlite");
    let postgres = Store::connect(&postgres_url).await.expect("postgres");
    let (Pool::Sqlite(lite), Pool::Postgres(pg)) = (sqlite.pool(), postgres.pool()) else {
        panic!("engines");
    };
    let (lite, pg) = (sqlite_tables(lite).await, postgres_tables(pg).await);
    assert!(lite.len() >= 10, "{lite:#?}");
    let names = |t: &BTreeSet<Table>| t.iter().map(|t| t.name.clone()).collect::<BTreeSet<_>>();
    assert_eq!(names(&lite), names(&pg), "the same tables");
    let mut differences = Vec::new();
    for (a, b) in lite.iter().zip(&pg) {
        if a != b {
            differences.push(format!(
                "{}:\n  sqlite only: {:?} {:?}\n  postgres only: {:?} {:?}\n  keys {:?} vs {:?}",
                a.name,
                a.columns.difference(&b.columns).collect::<Vec<_>>(),
                a.indexes.difference(&b.indexes).collect::<Vec<_>>(),
                b.columns.difference(&a.columns).collect::<Vec<_>>(),
                b.indexes.difference(&a.indexes).collect::<Vec<_>>(),
                a.primary_key,
                b.primary_key,
            ));
        }
    }
    assert!(differences.is_empty(), "the engines' schemas differ:\n{}", differences.join("\n"));
}
