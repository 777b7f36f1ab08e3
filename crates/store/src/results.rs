use chrono::Utc;
use evaltap_core::Usage;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::{Result, Store, from_json, to_json};

/// The outcome of replaying one exchange against one candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayRecord {
    /// Experiment.
    pub experiment_id: String,
    /// `exchange` or `dataset_item`.
    pub item_kind: String,
    /// Item replayed (an exchange id, or a dataset item key).
    pub item_id: String,
    /// Candidate name.
    pub candidate: String,
    /// Model called.
    pub model: String,
    /// Response body, when the call succeeded.
    pub response: Option<Value>,
    /// Response text, when the call succeeded.
    pub output_text: Option<String>,
    /// Token usage.
    pub usage: Option<Usage>,
    /// Cost in USD.
    pub cost_usd: Option<f64>,
    /// Latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// Why the call failed, after retries (or why it was skipped).
    pub error: Option<String>,
    /// Set when the call was not attempted (the spend cap was reached).
    pub skipped: Option<String>,
}

/// One judge score (or the reason there is none).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct JudgmentRecord {
    /// Experiment.
    pub experiment_id: String,
    /// `exchange` or `dataset_item`.
    pub item_kind: String,
    /// Item judged (an exchange id, or a dataset item key).
    pub item_id: String,
    /// `baseline` or a candidate name.
    pub subject: String,
    /// Rubric name.
    pub rubric: String,
    /// '' for pointwise rubrics.
    pub position: String,
    /// Score on the rubric's scale.
    pub raw_score: Option<f64>,
    /// Score normalized to [0, 1].
    pub score: Option<f64>,
    /// The judge's reason.
    pub reason: Option<String>,
    /// Judge model.
    pub judge_model: Option<String>,
    /// Why there is no score.
    pub error: Option<String>,
    /// The judge's last answer as it came, also when it could not be read.
    pub raw_output: Option<String>,
    /// Judge prompt tokens over every call made for this judgment.
    pub input_tokens: Option<i64>,
    /// Judge completion tokens over every call made for this judgment.
    pub output_tokens: Option<i64>,
    /// What the judge calls cost, in USD.
    pub cost_usd: Option<f64>,
    /// Calls made (more than the samples when answers were unreadable and asked again).
    pub attempts: i64,
    /// With several judge samples per item: each normalized score (their mean is `score`).
    #[sqlx(json(nullable))]
    pub score_samples: Option<Vec<f64>>,
    /// Set when the judgment was not attempted (the spend cap was reached).
    pub skipped: Option<String>,
}

impl ReplayRecord {
    /// An empty record for one replay key, to be filled in.
    pub fn new(experiment_id: &str, item_kind: &str, item_id: &str, candidate: &str, model: &str) -> Self {
        ReplayRecord {
            experiment_id: experiment_id.into(),
            item_kind: item_kind.into(),
            item_id: item_id.into(),
            candidate: candidate.into(),
            model: model.into(),
            response: None,
            output_text: None,
            usage: None,
            cost_usd: None,
            latency_ms: None,
            error: None,
            skipped: None,
        }
    }
}

impl JudgmentRecord {
    /// An empty record for one judgment key, to be filled in.
    pub fn new(experiment_id: &str, item_id: &str, subject: &str, rubric: &str, position: &str) -> Self {
        JudgmentRecord {
            experiment_id: experiment_id.into(),
            item_kind: crate::ITEM_EXCHANGE.into(),
            item_id: item_id.into(),
            subject: subject.into(),
            rubric: rubric.into(),
            position: position.into(),
            raw_score: None,
            score: None,
            reason: None,
            judge_model: None,
            error: None,
            raw_output: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            attempts: 0,
            score_samples: None,
            skipped: None,
        }
    }
}

/// A judge calibration against human labels, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Rubric calibrated.
    pub rubric: String,
    /// Hash of the rubric's text at the time.
    pub rubric_sha256: String,
    /// Judge model calibrated.
    pub judge_model: String,
    /// The labels file.
    pub labels_file: String,
    /// When.
    pub created_at: chrono::DateTime<Utc>,
    /// The agreement statistics (JSON).
    pub result: Value,
}

/// What a cost is for, in an experiment's spend account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendKind {
    /// A candidate replay.
    Replay,
    /// A judge call.
    Judge,
}

/// How far an experiment has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Exchanges sampled.
    pub exchanges: u64,
    /// Replays the experiment needs (exchanges × candidates).
    pub replays_expected: u64,
    /// Replays stored (including failed ones).
    pub replays_done: u64,
    /// Replays that failed.
    pub replays_failed: u64,
    /// Judgments needed, counting pending replays as if they will succeed.
    pub judgments_expected: u64,
    /// Judgments stored (including failed ones).
    pub judgments_done: u64,
}

impl Progress {
    /// Whether every replay and judgment is stored.
    pub fn is_done(&self) -> bool {
        self.replays_done >= self.replays_expected && self.judgments_done >= self.judgments_expected
    }

    /// Units of work stored, for progress bars.
    pub fn completed(&self) -> u64 {
        self.replays_done + self.judgments_done
    }

    /// Units of work expected, for progress bars.
    pub fn total(&self) -> u64 {
        self.replays_expected + self.judgments_expected
    }
}

/// What an experiment has spent. Replays and judge calls both count against the cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
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
}

impl Store {
    /// Sets up an experiment's spend account (idempotent).
    pub async fn open_spend(&self, experiment_id: &str, cap_usd: Option<f64>) -> Result<()> {
        sqlx::query(
            "INSERT INTO experiment_spend (experiment_id, cap_usd) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(experiment_id)
        .bind(cap_usd)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reserves `estimate_usd` if it fits under the cap; returns whether it did. Without a cap
    /// every reservation fits.
    pub async fn reserve_spend(&self, experiment_id: &str, estimate_usd: f64) -> Result<bool> {
        self.open_spend(experiment_id, None).await?;
        let done = sqlx::query(
            "UPDATE experiment_spend SET reserved_usd = reserved_usd + ?2
             WHERE experiment_id = ?1
               AND (cap_usd IS NULL OR spent_usd + judge_spent_usd + reserved_usd + ?2 <= cap_usd)",
        )
        .bind(experiment_id)
        .bind(estimate_usd)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a reservation by the actual cost of a replay or a judge call.
    pub async fn settle_spend(
        &self,
        experiment_id: &str,
        kind: SpendKind,
        estimate_usd: f64,
        actual_usd: f64,
    ) -> Result<()> {
        let sql = match kind {
            SpendKind::Replay => {
                "UPDATE experiment_spend SET reserved_usd = MAX(0, reserved_usd - ?2), spent_usd = spent_usd + ?3
                 WHERE experiment_id = ?1"
            }
            SpendKind::Judge => {
                "UPDATE experiment_spend
                 SET reserved_usd = MAX(0, reserved_usd - ?2), judge_spent_usd = judge_spent_usd + ?3
                 WHERE experiment_id = ?1"
            }
        };
        sqlx::query(sql).bind(experiment_id).bind(estimate_usd).bind(actual_usd).execute(&self.pool).await?;
        Ok(())
    }

    /// The experiment's spend account.
    pub async fn spend(&self, experiment_id: &str) -> Result<Spend> {
        let row = sqlx::query(
            "SELECT cap_usd, spent_usd, reserved_usd, judge_spent_usd FROM experiment_spend
             WHERE experiment_id = ?",
        )
        .bind(experiment_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => {
                let (spent_usd, judge_spent_usd): (f64, f64) =
                    (r.try_get("spent_usd")?, r.try_get("judge_spent_usd")?);
                Spend {
                    cap_usd: r.try_get("cap_usd")?,
                    spent_usd,
                    reserved_usd: r.try_get("reserved_usd")?,
                    judge_spent_usd,
                    total_spent_usd: spent_usd + judge_spent_usd,
                }
            }
            None => Spend::default(),
        })
    }

    /// Stores a replay unless one exists for the same key; returns whether it was inserted.
    pub async fn insert_replay(&self, replay: &ReplayRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO replays (id, experiment_id, item_kind, item_id, candidate, model, response, output_text,
                 input_tokens, output_tokens, cost_usd, latency_ms, error, skipped, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (experiment_id, item_id, candidate) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&replay.experiment_id)
        .bind(&replay.item_kind)
        .bind(&replay.item_id)
        .bind(&replay.candidate)
        .bind(&replay.model)
        .bind(replay.response.as_ref().map(to_json))
        .bind(&replay.output_text)
        .bind(replay.usage.map(|u| u.input_tokens as i64))
        .bind(replay.usage.map(|u| u.output_tokens as i64))
        .bind(replay.cost_usd)
        .bind(replay.latency_ms)
        .bind(&replay.error)
        .bind(&replay.skipped)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The replay of one exchange by one candidate.
    pub async fn replay(
        &self,
        experiment_id: &str,
        item_id: &str,
        candidate: &str,
    ) -> Result<Option<ReplayRecord>> {
        let row =
            sqlx::query("SELECT * FROM replays WHERE experiment_id = ? AND item_id = ? AND candidate = ?")
                .bind(experiment_id)
                .bind(item_id)
                .bind(candidate)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| decode_replay(&r)).transpose()
    }

    /// All replays of an experiment.
    pub async fn replays(&self, experiment_id: &str) -> Result<Vec<ReplayRecord>> {
        let rows = sqlx::query("SELECT * FROM replays WHERE experiment_id = ? ORDER BY item_id, candidate")
            .bind(experiment_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_replay).collect()
    }

    /// Stores a judgment unless one exists for the same key; returns whether it was inserted.
    pub async fn insert_judgment(&self, judgment: &JudgmentRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO judgments (id, experiment_id, item_kind, item_id, subject, rubric, position,
                 raw_score, score, reason, judge_model, error, raw_output, input_tokens, output_tokens,
                 cost_usd, attempts, score_samples, skipped, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (experiment_id, item_id, subject, rubric, position) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&judgment.experiment_id)
        .bind(&judgment.item_kind)
        .bind(&judgment.item_id)
        .bind(&judgment.subject)
        .bind(&judgment.rubric)
        .bind(&judgment.position)
        .bind(judgment.raw_score)
        .bind(judgment.score)
        .bind(&judgment.reason)
        .bind(&judgment.judge_model)
        .bind(&judgment.error)
        .bind(&judgment.raw_output)
        .bind(judgment.input_tokens)
        .bind(judgment.output_tokens)
        .bind(judgment.cost_usd)
        .bind(judgment.attempts)
        .bind(judgment.score_samples.as_ref().map(to_json))
        .bind(&judgment.skipped)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether this judgment is already stored (`position` is '' for pointwise rubrics).
    pub async fn judgment_exists(
        &self,
        experiment_id: &str,
        item_id: &str,
        subject: &str,
        rubric: &str,
        position: &str,
    ) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM judgments WHERE experiment_id = ? AND item_id = ? AND subject = ?
               AND rubric = ? AND position = ?",
        )
        .bind(experiment_id)
        .bind(item_id)
        .bind(subject)
        .bind(rubric)
        .bind(position)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// All judgments of an experiment, in the order they were stored.
    pub async fn judgments(&self, experiment_id: &str) -> Result<Vec<JudgmentRecord>> {
        Ok(sqlx::query_as("SELECT * FROM judgments WHERE experiment_id = ? ORDER BY created_at, id")
            .bind(experiment_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Stores a calibration result.
    pub async fn insert_calibration(&self, calibration: &Calibration) -> Result<()> {
        sqlx::query(
            "INSERT INTO calibrations (id, rubric, rubric_sha256, judge_model, labels_file, created_at, result)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&calibration.rubric)
        .bind(&calibration.rubric_sha256)
        .bind(&calibration.judge_model)
        .bind(&calibration.labels_file)
        .bind(calibration.created_at)
        .bind(to_json(&calibration.result))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest calibration of `rubric` (any version of its text), newest first.
    pub async fn latest_calibration(&self, rubric: &str) -> Result<Option<Calibration>> {
        let row = sqlx::query(
            "SELECT rubric, rubric_sha256, judge_model, labels_file, created_at, result FROM calibrations
             WHERE rubric = ? ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(rubric)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<Calibration> {
            let result: String = r.try_get("result")?;
            Ok(Calibration {
                rubric: r.try_get("rubric")?,
                rubric_sha256: r.try_get("rubric_sha256")?,
                judge_model: r.try_get("judge_model")?,
                labels_file: r.try_get("labels_file")?,
                created_at: r.try_get("created_at")?,
                result: from_json("calibrations.result", &result)?,
            })
        })
        .transpose()
    }

    /// How far an experiment has got.
    pub async fn experiment_progress(&self, experiment: &crate::Experiment) -> Result<Progress> {
        let (pointwise, pairwise) = experiment.spec.rubric_counts();
        let baseline_judged = experiment.spec.baseline.is_judged_on_items();
        self.progress(
            &experiment.id,
            experiment.spec.candidates.len() as u64,
            pointwise,
            pairwise,
            baseline_judged,
        )
        .await
    }

    /// Counts of stored and expected work for an experiment with `candidates`, `pointwise`
    /// rubrics (judged on each candidate, and on the baseline when `baseline_judged`: its text
    /// is on the item, not a replay) and `pairwise` rubrics (judged per candidate in both
    /// orders).
    pub async fn progress(
        &self,
        experiment_id: &str,
        candidates: u64,
        pointwise: u64,
        pairwise: u64,
        baseline_judged: bool,
    ) -> Result<Progress> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM experiment_items WHERE experiment_id = ?1) AS exchanges,
               (SELECT COUNT(*) FROM replays WHERE experiment_id = ?1) AS replays,
               (SELECT COUNT(*) FROM replays WHERE experiment_id = ?1 AND error IS NOT NULL) AS failed,
               (SELECT COUNT(*) FROM judgments WHERE experiment_id = ?1) AS judgments",
        )
        .bind(experiment_id)
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(name)?.max(0) as u64) };
        let exchanges = count("exchanges")?;
        let replays_done = count("replays")?;
        let replays_failed = count("failed")?;
        let replays_expected = exchanges * candidates;
        // Baseline judgments, plus one set per replay that succeeded or is still pending.
        let replays_judged = replays_expected.saturating_sub(replays_failed);
        Ok(Progress {
            exchanges,
            replays_expected,
            replays_done,
            replays_failed,
            judgments_expected: (if baseline_judged { exchanges } else { 0 } + replays_judged) * pointwise
                + replays_judged * pairwise * 2,
            judgments_done: count("judgments")?,
        })
    }
}

fn decode_replay(r: &sqlx::sqlite::SqliteRow) -> Result<ReplayRecord> {
    let response: Option<String> = r.try_get("response")?;
    let input: Option<i64> = r.try_get("input_tokens")?;
    let output: Option<i64> = r.try_get("output_tokens")?;
    Ok(ReplayRecord {
        experiment_id: r.try_get("experiment_id")?,
        item_kind: r.try_get("item_kind")?,
        item_id: r.try_get("item_id")?,
        candidate: r.try_get("candidate")?,
        model: r.try_get("model")?,
        response: response.map(|text| from_json("replays.response", &text)).transpose()?,
        output_text: r.try_get("output_text")?,
        usage: crate::usage_from_columns(input, output),
        cost_usd: r.try_get("cost_usd")?,
        latency_ms: r.try_get("latency_ms")?,
        error: r.try_get("error")?,
        skipped: r.try_get("skipped")?,
    })
}
