use crate::Columns;
use chrono::Utc;
use evaltap_core::Usage;
use serde::Serialize;
use serde_json::Value;

use crate::{Result, Store, from_json, to_json};
use crate::{small_write, with_pool};

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
    /// Why the answer ended, as the provider said (`stop`, `length`, `tool_calls`…).
    pub finish_reason: Option<String>,
    /// Read from the result cache (then `cost_usd` is 0): what it cost when it was paid.
    pub cached_cost_usd: Option<f64>,
}

/// One judge score (or the reason there is none).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub score_samples: Option<Vec<f64>>,
    /// Set when the judgment was not attempted (the spend cap was reached).
    pub skipped: Option<String>,
    /// Read from the result cache (then `cost_usd` is 0): what it cost when it was paid.
    pub cached_cost_usd: Option<f64>,
}

/// How the reason of a replay skipped because the candidate's API cannot carry its request
/// begins (`unsupported: anthropic-messages cannot carry this request: audio input`).
pub const UNSUPPORTED_PREFIX: &str = "unsupported: ";

/// The reason stored on a golden reference's judgment by a rubric that grades against the
/// reference: the reference is right by definition, so it gets full marks and no judge call.
pub const REFERENCE_AGAINST_ITSELF: &str =
    "the reference graded against itself: full marks by definition, the judge was not asked";

/// How a replay skipped by early stopping says why (its candidate's verdict was settled).
pub const SETTLED: &str = "settled: the candidate's verdict was reached before this item";

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
            finish_reason: None,
            cached_cost_usd: None,
        }
    }

    /// Why the replay was skipped because the candidate's API cannot carry the request, if so.
    pub fn unsupported(&self) -> Option<&str> {
        self.skipped.as_deref().and_then(|reason| reason.strip_prefix(UNSUPPORTED_PREFIX))
    }

    /// Whether early stopping skipped it.
    pub fn settled(&self) -> bool {
        self.skipped.as_deref() == Some(SETTLED)
    }

    /// Whether the answer was cut at its output-token limit.
    pub fn truncated(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
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
            cached_cost_usd: None,
        }
    }
}

/// A judgment's score without its texts.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgmentScore {
    /// Item.
    pub item_id: String,
    /// `baseline` or a candidate.
    pub subject: String,
    /// Rubric.
    pub rubric: String,
    /// `ab`, `ba` or empty.
    pub position: String,
    /// Normalized score.
    pub score: Option<f64>,
}

/// Inserts `$replay` (a [`ReplayRecord`]) on `$conn` of either engine unless one exists for
/// the same key; evaluates to the rows inserted (the store's trigger marks the work finished in
/// the same statement).
macro_rules! insert_replay_row {
    ($replay:expr, $conn:expr) => {{
        let replay: &ReplayRecord = &$replay;
        sqlx::query(
            "INSERT INTO replays (id, experiment_id, item_kind, item_id, candidate, model, response, output_text,
                 input_tokens, output_tokens, cost_usd, latency_ms, error, skipped, created_at, finish_reason,
                 cached_cost_usd)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
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
        .bind(&replay.finish_reason)
        .bind(replay.cached_cost_usd)
        .execute($conn)
        .await?
        .rows_affected()
    }};
}

impl Store {
    /// Stores a replay unless one exists for the same key; returns whether it was inserted.
    pub async fn insert_replay(&self, replay: &ReplayRecord) -> Result<bool> {
        // The store's trigger marks the work finished in the same statement.
        let replay = replay.clone();
        let done = small_write!(self, c => Ok::<_, crate::StoreError>(insert_replay_row!(replay, &mut *c)))?;
        Ok(done == 1)
    }

    /// Stores a successful replay and registers its follow-up judgments in one transaction (see
    /// [`Store::register_follow_ups`]), so that a worker stopped in between cannot leave a
    /// replay without its judgments. Returns whether the replay was inserted (if not, one
    /// stored first stands and nothing is registered) and the lease of the first follow-up.
    pub async fn insert_replay_with_follow_ups(
        &self,
        replay: &ReplayRecord,
        follow_ups: &[String],
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<(bool, Option<crate::Lease>)> {
        let follow_ups = crate::work::FollowUps::new(&replay.experiment_id, follow_ups, owner, lease);
        let (record, rows) = (replay.clone(), follow_ups.clone());
        // A transaction of its own on PostgreSQL, a savepoint inside SQLite's group commit.
        let inserted: Option<Vec<String>> = small_write!(self, c => {
            let mut tx = sqlx::Connection::begin(&mut *c).await?;
            if insert_replay_row!(record, &mut *tx) != 1 {
                return Ok::<_, crate::StoreError>(None);
            }
            let inserted = crate::work::register_follow_ups_in!(rows, &mut *tx)?;
            tx.commit().await?;
            Ok(Some(inserted))
        })?;
        Ok(match inserted {
            Some(keys) => (true, follow_ups.first_lease(&keys)),
            None => (false, None),
        })
    }

    /// The replay of one exchange by one candidate.
    pub async fn replay(
        &self,
        experiment_id: &str,
        item_id: &str,
        candidate: &str,
    ) -> Result<Option<ReplayRecord>> {
        with_pool!(&self.pool, p => {
        let row =
            sqlx::query("SELECT * FROM replays WHERE experiment_id = $1 AND item_id = $2 AND candidate = $3")
                .bind(experiment_id)
                .bind(item_id)
                .bind(candidate)
                .fetch_optional(p)
                .await?;
        row.map(|r| decode_replay(&r)).transpose()
        })
    }

    /// All replays of an experiment.
    pub async fn replays(&self, experiment_id: &str) -> Result<Vec<ReplayRecord>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query("SELECT * FROM replays WHERE experiment_id = $1 ORDER BY item_id, candidate")
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
        rows.iter().map(decode_replay).collect()
        })
    }

    /// The scores of an experiment's judgments without their texts: (item, subject, rubric,
    /// position, normalized score; `None` when the judgment failed or was skipped).
    pub async fn judgment_scores(&self, experiment_id: &str) -> Result<Vec<JudgmentScore>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT item_id, subject, rubric, position, score FROM judgments WHERE experiment_id = $1",
            )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(JudgmentScore {
                        item_id: r.get("item_id")?,
                        subject: r.get("subject")?,
                        rubric: r.get("rubric")?,
                        position: r.get("position")?,
                        score: r.get("score")?,
                    })
                })
                .collect()
        })
    }

    /// (item, candidate) of the replays that failed (not those skipped at the cap).
    pub async fn failed_replays(&self, experiment_id: &str) -> Result<Vec<(String, String)>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT item_id, candidate FROM replays
                 WHERE experiment_id = $1 AND error IS NOT NULL AND skipped IS NULL",
            )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
            rows.iter().map(|r| Ok((r.get("item_id")?, r.get("candidate")?))).collect()
        })
    }

    /// The replays of one item of an experiment, by candidate.
    pub async fn item_replays(&self, experiment_id: &str, item_id: &str) -> Result<Vec<ReplayRecord>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT * FROM replays WHERE experiment_id = $1 AND item_id = $2 ORDER BY candidate",
            )
            .bind(experiment_id)
            .bind(item_id)
            .fetch_all(p)
            .await?;
            rows.iter().map(decode_replay).collect()
        })
    }

    /// The judgments of one item of an experiment.
    pub async fn item_judgments(&self, experiment_id: &str, item_id: &str) -> Result<Vec<JudgmentRecord>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT * FROM judgments WHERE experiment_id = $1 AND item_id = $2
                 ORDER BY rubric, subject, position",
            )
            .bind(experiment_id)
            .bind(item_id)
            .fetch_all(p)
            .await?;
            rows.iter().map(decode_judgment).collect()
        })
    }

    /// All replays of an experiment without their response bodies (`response` is `None`):
    /// what statistics need, without parsing every stored answer's JSON.
    pub async fn replays_without_bodies(&self, experiment_id: &str) -> Result<Vec<ReplayRecord>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT experiment_id, item_kind, item_id, candidate, model, CAST(NULL AS TEXT) AS response,
                    output_text, input_tokens, output_tokens, cost_usd, latency_ms, error, skipped, finish_reason,
                    cached_cost_usd
             FROM replays WHERE experiment_id = $1 ORDER BY item_id, candidate",
        )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
        rows.iter().map(decode_replay).collect()
        })
    }

    /// Stores a judgment unless one exists for the same key; returns whether it was inserted.
    pub async fn insert_judgment(&self, judgment: &JudgmentRecord) -> Result<bool> {
        // The store's trigger marks the work finished in the same statement.
        let judgment = judgment.clone();
        let done = small_write!(self, c => Ok::<_, crate::StoreError>(sqlx::query(
            "INSERT INTO judgments (id, experiment_id, item_kind, item_id, subject, rubric, position,
                 raw_score, score, reason, judge_model, error, raw_output, input_tokens, output_tokens,
                 cost_usd, attempts, score_samples, skipped, created_at, cached_cost_usd)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
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
        .bind(judgment.cached_cost_usd)
        .execute(&mut *c).await?.rows_affected()))?;
        Ok(done == 1)
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
        let found: bool = with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM judgments WHERE experiment_id = $1 AND item_id = $2 AND subject = $3
               AND rubric = $4 AND position = $5)",
        )
        .bind(experiment_id)
        .bind(item_id)
        .bind(subject)
        .bind(rubric)
        .bind(position)
        .fetch_one(p).await)?;
        Ok(found)
    }

    /// All judgments of an experiment, in the order they were stored.
    pub async fn judgments(&self, experiment_id: &str) -> Result<Vec<JudgmentRecord>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query("SELECT * FROM judgments WHERE experiment_id = $1 ORDER BY created_at, id")
                .bind(experiment_id)
                .fetch_all(p)
                .await?;
            rows.iter().map(decode_judgment).collect()
        })
    }

    /// All judgments of an experiment in the order they were stored, without the judge's raw
    /// output and reason (`None`): what statistics need.
    pub async fn judgments_without_texts(&self, experiment_id: &str) -> Result<Vec<JudgmentRecord>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT experiment_id, item_kind, item_id, subject, rubric, position, raw_score, score,
                        CAST(NULL AS TEXT) AS reason, judge_model, error, CAST(NULL AS TEXT) AS raw_output,
                        input_tokens, output_tokens, cost_usd, attempts, score_samples, skipped, cached_cost_usd
                 FROM judgments WHERE experiment_id = $1 ORDER BY created_at, id",
            )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
            rows.iter().map(decode_judgment).collect()
        })
    }
}

fn decode_replay(r: &impl Columns) -> Result<ReplayRecord> {
    let response: Option<String> = r.get("response")?;
    let input: Option<i64> = r.get("input_tokens")?;
    let output: Option<i64> = r.get("output_tokens")?;
    Ok(ReplayRecord {
        experiment_id: r.get("experiment_id")?,
        item_kind: r.get("item_kind")?,
        item_id: r.get("item_id")?,
        candidate: r.get("candidate")?,
        model: r.get("model")?,
        response: response.map(|text| from_json("replays.response", &text)).transpose()?,
        output_text: r.get("output_text")?,
        usage: crate::usage_from_columns(input, output),
        cost_usd: r.get("cost_usd")?,
        latency_ms: r.get("latency_ms")?,
        error: r.get("error")?,
        skipped: r.get("skipped")?,
        finish_reason: r.get("finish_reason")?,
        cached_cost_usd: r.get("cached_cost_usd")?,
    })
}

fn decode_judgment(r: &impl Columns) -> Result<JudgmentRecord> {
    let samples: Option<String> = r.get("score_samples")?;
    Ok(JudgmentRecord {
        experiment_id: r.get("experiment_id")?,
        item_kind: r.get("item_kind")?,
        item_id: r.get("item_id")?,
        subject: r.get("subject")?,
        rubric: r.get("rubric")?,
        position: r.get("position")?,
        raw_score: r.get("raw_score")?,
        score: r.get("score")?,
        reason: r.get("reason")?,
        judge_model: r.get("judge_model")?,
        error: r.get("error")?,
        raw_output: r.get("raw_output")?,
        input_tokens: r.get("input_tokens")?,
        output_tokens: r.get("output_tokens")?,
        cost_usd: r.get("cost_usd")?,
        attempts: r.get("attempts")?,
        score_samples: samples.map(|text| from_json("judgments.score_samples", &text)).transpose()?,
        skipped: r.get("skipped")?,
        cached_cost_usd: r.get("cached_cost_usd")?,
    })
}
