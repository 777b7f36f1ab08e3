//! Schedules, their runs (claimed slot by slot), alerts and alert deliveries.

use crate::Columns;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::with_pool;
use crate::{Result, Store, StoreError, from_json, to_json};

/// What a schedule runs, besides its dataset and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Judge rubrics.
    #[serde(default)]
    pub rubrics: Vec<String>,
    /// Run-level checks (JSON definitions).
    #[serde(default)]
    pub checks: Vec<Value>,
    /// Non-inferiority margin: a drop beyond it (and significant) alerts; back within it closes.
    pub margin: f64,
    /// A guard instead of a golden set: each run replays the route's new production traffic
    /// against the former production model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardSpec>,
}

/// What a guard watches: after a route was switched to a new model, the route's traffic from
/// that model is replayed against the former production model, and the new model alerts when
/// it turns out worse than the margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    /// The tag that names the route (`route`).
    pub tag: String,
    /// The route's value of it (`support`).
    pub route: String,
    /// The model now serving the route, as the gateway reports it.
    pub model: String,
    /// The candidate (from evaltap.toml) that calls the former production model.
    pub former: String,
    /// Only traffic from this source.
    #[serde(default)]
    pub source: Option<String>,
    /// Most exchanges replayed per run.
    pub sample: usize,
    /// The experiment whose recommendation the switch followed.
    #[serde(default)]
    pub experiment: Option<String>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// Row id.
    pub id: String,
    /// `dataset:candidate` unless named otherwise.
    pub name: String,
    /// Dataset.
    pub dataset: String,
    /// Dataset version pinned at creation.
    pub version: String,
    /// Candidate (from evaltap.toml) run each time.
    pub candidate: String,
    /// Period.
    pub every_seconds: i64,
    /// Rubrics, checks, margin.
    pub spec: ScheduleSpec,
    /// Paused schedules start no runs.
    pub paused: bool,
    /// The first of the reference runs later runs are compared with, once done.
    pub reference_experiment: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A started run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRun {
    /// Schedule.
    pub schedule_id: String,
    /// Slot number (time / period).
    pub slot: i64,
    /// The experiment, once created.
    pub experiment_id: Option<String>,
    /// When it was evaluated (as a reference run, or against the reference runs).
    pub evaluated_at: Option<DateTime<Utc>>,
    /// What the evaluation found (JSON).
    pub outcome: Option<Value>,
}

/// An alert: a significant drop on one rubric, open until a run comes back within the margin.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// Row id.
    pub id: String,
    /// Schedule.
    pub schedule_id: String,
    /// Rubric or check.
    pub rubric: String,
    /// `open` or `closed`.
    pub status: String,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// The run that opened it.
    pub opened_run: String,
    /// When it closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// The run that closed it.
    pub closed_run: Option<String>,
    /// The statistics (JSON).
    pub details: Value,
}

fn decode_schedule(r: &impl Columns) -> Result<Schedule> {
    let spec: String = r.get("spec")?;
    Ok(Schedule {
        id: r.get("id")?,
        name: r.get("name")?,
        dataset: r.get("dataset")?,
        version: r.get("version")?,
        candidate: r.get("candidate")?,
        every_seconds: r.get("every_seconds")?,
        spec: from_json("schedules.spec", &spec)?,
        paused: r.get::<bool>("paused")?,
        reference_experiment: r.get("reference_experiment")?,
        created_at: r.get("created_at")?,
    })
}

fn decode_alert(r: &impl Columns) -> Result<Alert> {
    let details: String = r.get("details")?;
    Ok(Alert {
        id: r.get("id")?,
        schedule_id: r.get("schedule_id")?,
        rubric: r.get("rubric")?,
        status: r.get("status")?,
        opened_at: r.get("opened_at")?,
        opened_run: r.get("opened_run")?,
        closed_at: r.get("closed_at")?,
        closed_run: r.get("closed_run")?,
        details: from_json("alerts.details", &details)?,
    })
}

impl Store {
    /// Creates a schedule; a name already taken is a conflict.
    pub async fn create_schedule(&self, schedule: &Schedule) -> Result<()> {
        let done = with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO schedules (id, name, dataset, version, candidate, every_seconds, spec, paused, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&schedule.id)
        .bind(&schedule.name)
        .bind(&schedule.dataset)
        .bind(&schedule.version)
        .bind(&schedule.candidate)
        .bind(schedule.every_seconds)
        .bind(to_json(&schedule.spec))
        .bind(schedule.created_at)
        .execute(p).await.map(|d| d.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::Conflict(format!("a schedule named `{}` already exists", schedule.name)));
        }
        Ok(())
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query("SELECT * FROM schedules ORDER BY name").fetch_all(p).await?;
        rows.iter().map(decode_schedule).collect()
        })
    }

    /// The schedule with this name (or id).
    pub async fn schedule(&self, name_or_id: &str) -> Result<Schedule> {
        with_pool!(&self.pool, p => {
        let row = sqlx::query("SELECT * FROM schedules WHERE name = $1 OR id = $1")
            .bind(name_or_id)
            .fetch_optional(p)
            .await?;
        match row {
            Some(r) => decode_schedule(&r),
            None => Err(StoreError::NotFound(format!("no schedule named `{name_or_id}`"))),
        }
        })
    }

    /// Pauses or resumes a schedule.
    pub async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query("UPDATE schedules SET paused = $1 WHERE id = $2")
            .bind(paused)
            .bind(id)
            .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(())
    }

    /// Deletes a schedule with its runs' records and alerts (the runs' experiments stay).
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        with_pool!(&self.pool, p => {
        let mut tx = p.begin().await?;
        for sql in [
            "DELETE FROM alert_deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE schedule_id = $1)",
            "DELETE FROM alerts WHERE schedule_id = $1",
            "DELETE FROM schedule_runs WHERE schedule_id = $1",
            "DELETE FROM schedules WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
        })
    }

    /// Records the schedule's first reference run (only if none is recorded yet).
    pub async fn pin_reference_run(&self, schedule_id: &str, experiment_id: &str) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(
            "UPDATE schedules SET reference_experiment = $1 WHERE id = $2 AND reference_experiment IS NULL",
        )
        .bind(experiment_id)
        .bind(schedule_id)
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(())
    }

    /// The latest slot started, if any.
    pub async fn last_slot(&self, schedule_id: &str) -> Result<Option<i64>> {
        Ok(
            with_pool!(&self.pool, p => sqlx::query_scalar("SELECT MAX(slot) FROM schedule_runs WHERE schedule_id = $1")
            .bind(schedule_id)
            .fetch_one(p).await)?,
        )
    }

    /// Claims a slot: whether this caller is the one to start it.
    pub async fn claim_slot(&self, schedule_id: &str, slot: i64) -> Result<bool> {
        let done = with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO schedule_runs (schedule_id, slot, started_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(schedule_id)
        .bind(slot)
        .bind(Utc::now())
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(done == 1)
    }

    /// Records the experiment a claimed slot started (or why none: `outcome`).
    pub async fn set_run_experiment(
        &self,
        schedule_id: &str,
        slot: i64,
        experiment_id: Option<&str>,
        outcome: Option<&Value>,
    ) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(
            "UPDATE schedule_runs SET experiment_id = $1, outcome = $2 WHERE schedule_id = $3 AND slot = $4",
        )
        .bind(experiment_id)
        .bind(outcome.map(to_json))
        .bind(schedule_id)
        .bind(slot)
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(())
    }

    /// Runs with an experiment that have not been evaluated yet, oldest first.
    pub async fn unevaluated_runs(&self) -> Result<Vec<ScheduleRun>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT * FROM schedule_runs WHERE experiment_id IS NOT NULL AND evaluated_at IS NULL
             ORDER BY schedule_id, slot",
        )
        .fetch_all(p)
        .await?;
        rows.iter().map(decode_run).collect()
        })
    }

    /// Marks a run evaluated, unless another process did first; returns whether this caller did.
    pub async fn finish_run_evaluation(&self, schedule_id: &str, slot: i64, outcome: &Value) -> Result<bool> {
        let done = with_pool!(&self.pool, p => sqlx::query(
            "UPDATE schedule_runs SET evaluated_at = $1, outcome = $2
             WHERE schedule_id = $3 AND slot = $4 AND evaluated_at IS NULL",
        )
        .bind(Utc::now())
        .bind(to_json(outcome))
        .bind(schedule_id)
        .bind(slot)
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(done == 1)
    }

    /// Every run of a schedule, by slot.
    pub async fn schedule_runs(&self, schedule_id: &str) -> Result<Vec<ScheduleRun>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query("SELECT * FROM schedule_runs WHERE schedule_id = $1 ORDER BY slot")
            .bind(schedule_id)
            .fetch_all(p)
            .await?;
        rows.iter().map(decode_run).collect()
        })
    }

    /// Opens an alert unless one is open for the same schedule and rubric; returns it if opened.
    pub async fn open_alert(
        &self,
        schedule_id: &str,
        rubric: &str,
        run: &str,
        details: &Value,
    ) -> Result<Option<Alert>> {
        let id = uuid::Uuid::now_v7().to_string();
        let done = with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO alerts (id, schedule_id, rubric, status, opened_at, opened_run, details)
             VALUES ($1, $2, $3, 'open', $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(schedule_id)
        .bind(rubric)
        .bind(Utc::now())
        .bind(run)
        .bind(to_json(details))
        .execute(p).await.map(|d| d.rows_affected()))?;
        if done == 0 {
            return Ok(None);
        }
        self.alert(&id).await
    }

    /// The open alert of a schedule's rubric.
    pub async fn open_alert_for(&self, schedule_id: &str, rubric: &str) -> Result<Option<Alert>> {
        with_pool!(&self.pool, p => {
        let row =
            sqlx::query("SELECT * FROM alerts WHERE schedule_id = $1 AND rubric = $2 AND status = 'open'")
                .bind(schedule_id)
                .bind(rubric)
                .fetch_optional(p)
                .await?;
        row.as_ref().map(decode_alert).transpose()
        })
    }

    /// Closes an open alert; returns it closed, or `None` if it was not open.
    pub async fn close_alert(&self, id: &str, run: &str) -> Result<Option<Alert>> {
        let done = with_pool!(&self.pool, p => sqlx::query(
            "UPDATE alerts SET status = 'closed', closed_at = $1, closed_run = $2 WHERE id = $3 AND status = 'open'",
        )
        .bind(Utc::now())
        .bind(run)
        .bind(id)
        .execute(p).await.map(|d| d.rows_affected()))?;
        if done == 0 {
            return Ok(None);
        }
        self.alert(id).await
    }

    async fn alert(&self, id: &str) -> Result<Option<Alert>> {
        with_pool!(&self.pool, p => {
        let row =
            sqlx::query("SELECT * FROM alerts WHERE id = $1").bind(id).fetch_optional(p).await?;
        row.as_ref().map(decode_alert).transpose()
        })
    }

    /// Every alert, newest first.
    pub async fn alerts(&self) -> Result<Vec<Alert>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query("SELECT * FROM alerts ORDER BY opened_at DESC, id DESC")
            .fetch_all(p)
            .await?;
        rows.iter().map(decode_alert).collect()
        })
    }

    /// Records how delivering one alert event to one sink went.
    pub async fn record_delivery_attempt(
        &self,
        alert_id: &str,
        event: &str,
        sink: &str,
        attempts: u32,
        delivered: bool,
        last_error: Option<&str>,
    ) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO alert_deliveries (id, alert_id, event, sink, attempts, delivered, last_error, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(alert_id)
        .bind(event)
        .bind(sink)
        .bind(i64::from(attempts))
        .bind(delivered)
        .bind(last_error)
        .bind(Utc::now())
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(())
    }

    /// Deliveries of an alert: (event, sink, attempts, delivered).
    pub async fn alert_deliveries(&self, alert_id: &str) -> Result<Vec<(String, String, i64, bool)>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT event, sink, attempts, delivered FROM alert_deliveries WHERE alert_id = $1 ORDER BY updated_at, id",
        )
        .bind(alert_id)
        .fetch_all(p)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get("event")?,
                    r.get("sink")?,
                    r.get("attempts")?,
                    r.get::<bool>("delivered")?,
                ))
            })
            .collect()
        })
    }
}

fn decode_run(r: &impl Columns) -> Result<ScheduleRun> {
    let outcome: Option<String> = r.get("outcome")?;
    Ok(ScheduleRun {
        schedule_id: r.get("schedule_id")?,
        slot: r.get("slot")?,
        experiment_id: r.get("experiment_id")?,
        evaluated_at: r.get("evaluated_at")?,
        outcome: outcome.map(|o| from_json("schedule_runs.outcome", &o)).transpose()?,
    })
}
