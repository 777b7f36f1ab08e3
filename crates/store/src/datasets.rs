//! Golden dataset versions and their items, as runs use them. Versions are immutable: a
//! changed file is registered as a new version.

use crate::Columns;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::with_pool;
use crate::{Result, Store, from_json, to_json};

/// A stored dataset version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetVersion {
    /// Dataset name.
    pub dataset: String,
    /// Content hash.
    pub version: String,
    /// When it was first registered.
    pub created_at: DateTime<Utc>,
    /// Items.
    pub items: i64,
}

/// One item of a version, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetItemRow {
    /// The key replays and judgments use.
    pub key: String,
    /// Version.
    pub version: String,
    /// The item's id in its dataset.
    pub item_id: String,
    /// The item (native JSON form).
    pub body: Value,
}

/// The key of item `item_id` of `version`.
pub fn dataset_item_key(version: &str, item_id: &str) -> String {
    format!("{version}/{item_id}")
}

impl Store {
    /// Registers a version of dataset `name` with its items (id, body) in order; returns whether
    /// it was new. Idempotent.
    pub async fn register_dataset_version(
        &self,
        name: &str,
        version: &str,
        items: &[(String, Value)],
    ) -> Result<bool> {
        with_pool!(&self.pool, p => {
        let mut tx = p.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO dataset_versions (dataset, version, created_at, items) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(version)
        .bind(Utc::now())
        .bind(items.len() as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        for (position, (item_id, body)) in items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO dataset_items (key, version, item_id, position, body) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(dataset_item_key(version, item_id))
            .bind(version)
            .bind(item_id)
            .bind(position as i64)
            .bind(to_json(body))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
        })
    }

    /// Versions of a dataset, newest first.
    pub async fn dataset_versions(&self, name: &str) -> Result<Vec<DatasetVersion>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT dataset, version, created_at, items FROM dataset_versions WHERE dataset = $1
             ORDER BY created_at DESC, version",
        )
        .bind(name)
        .fetch_all(p)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DatasetVersion {
                    dataset: r.get("dataset")?,
                    version: r.get("version")?,
                    created_at: r.get("created_at")?,
                    items: r.get("items")?,
                })
            })
            .collect()
        })
    }

    /// Items of a version, in file order.
    pub async fn dataset_items(&self, version: &str) -> Result<Vec<DatasetItemRow>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT key, version, item_id, body FROM dataset_items WHERE version = $1 ORDER BY position",
        )
        .bind(version)
        .fetch_all(p)
        .await?;
        rows.iter().map(decode_item).collect()
        })
    }

    /// One dataset item by key.
    pub async fn dataset_item(&self, key: &str) -> Result<Option<DatasetItemRow>> {
        with_pool!(&self.pool, p => {
        let row = sqlx::query("SELECT key, version, item_id, body FROM dataset_items WHERE key = $1")
            .bind(key)
            .fetch_optional(p)
            .await?;
        row.as_ref().map(decode_item).transpose()
        })
    }
}

fn decode_item(r: &impl Columns) -> Result<DatasetItemRow> {
    let body: String = r.get("body")?;
    Ok(DatasetItemRow {
        key: r.get("key")?,
        version: r.get("version")?,
        item_id: r.get("item_id")?,
        body: from_json("dataset_items.body", &body)?,
    })
}
