use std::collections::BTreeMap;

use crate::Columns;
use chrono::{DateTime, Utc};
use evaltap_core::{CandidateConfig, JudgeConfig, Price};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::with_pool;
use crate::{Result, Store, StoreError, from_json, to_json};

/// Which stored exchanges an experiment draws from. Failed calls are never baselines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only this source.
    pub source: Option<String>,
    /// Only exchanges served by this model.
    pub model: Option<String>,
    /// Only exchanges received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only exchanges received before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only exchanges whose tags have these values (`{"route": "support"}`); a number or a
    /// boolean tag matches its text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Filter {
    /// Whether an exchange's `tags` carry every value the filter asks for.
    pub fn tags_match(&self, tags: &Value) -> bool {
        self.tags.iter().all(|(key, wanted)| {
            tags.get(key).and_then(evaltap_core::exchange::tag_text).is_some_and(|text| &text == wanted)
        })
    }
}

/// Everything that defines an experiment, frozen when it is created so that later config edits
/// cannot change what its report means.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Unique name.
    pub name: String,
    /// Exchanges to draw from.
    #[serde(default)]
    pub filter: Filter,
    /// Candidates, with endpoints and prices as configured at creation.
    pub candidates: Vec<CandidateConfig>,
    /// Rubric names.
    pub rubrics: Vec<String>,
    /// Those of `rubrics` that are pairwise (frozen: a rubric file may change later).
    #[serde(default)]
    pub pairwise_rubrics: Vec<String>,
    /// How many exchanges to sample (all matching when absent).
    pub sample_size: Option<usize>,
    /// Non-inferiority margin on the [0, 1] score scale.
    pub margin: f64,
    /// Most to spend on candidate replays, in USD (judge calls are not counted).
    pub spend_cap_usd: Option<f64>,
    /// Prices of production models, for exchanges whose gateway reported no cost.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// Each rubric's full definition as it was when the experiment was created: jobs judge with
    /// these, so editing a rubric file later cannot mix two judges in one delta. (Empty for
    /// experiments created before rubrics were frozen: they use the loaded files.)
    #[serde(default)]
    pub rubric_definitions: Vec<FrozenRubric>,
    /// The judge (endpoint, model, parameters, price) as configured at creation.
    #[serde(default)]
    pub judge: Option<JudgeConfig>,
    /// Judge calls averaged per item and rubric (1 unless asked for more).
    #[serde(default = "one")]
    pub judge_samples: usize,
    /// A golden run: the dataset version whose items are replayed (production exchanges
    /// otherwise).
    #[serde(default)]
    pub dataset: Option<DatasetRef>,
    /// What candidates are compared with.
    #[serde(default)]
    pub baseline: BaselineSpec,
    /// Deterministic checks applied to every item (JSON definitions), beside each item's own.
    #[serde(default)]
    pub checks: Vec<serde_json::Value>,
    /// Stop each candidate once every rubric has a settled always-valid verdict (off for
    /// experiments made before early stopping existed).
    #[serde(default)]
    pub early_stop: bool,
    /// What early stopping waits for (every segment's verdicts too, for experiments made
    /// before the choice existed).
    #[serde(default)]
    pub early_stop_on: StopOn,
    /// Read replays and judgments already paid for from the result cache (off for experiments
    /// made before the cache existed, drift runs and guards).
    #[serde(default)]
    pub use_cache: bool,
}

/// What settles a candidate under early stopping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopOn {
    /// Its verdicts on the whole sample and on every segment of `[recommend] segment_by`: a
    /// per-segment recommendation needs each segment's evidence, so a candidate as good as
    /// production runs most of the sample when its segments are small.
    #[default]
    Segments,
    /// Its verdicts on the whole sample alone: cheaper, and a segment's recommendation then
    /// rests on the pairs made before the stop (often too few to show anything).
    Verdicts,
}

/// The dataset version a golden run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    /// Dataset name.
    pub name: String,
    /// Content hash.
    pub version: String,
}

/// The baseline candidates are compared with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BaselineSpec {
    /// The production response stored with each exchange.
    #[default]
    Production,
    /// The replies of this candidate (a model replayed like the others).
    Candidate {
        /// Candidate name.
        name: String,
    },
    /// Each dataset item's reference answer.
    Reference,
    /// No baseline: absolute scores only (scheduled drift runs, compared with each other).
    None,
}

impl BaselineSpec {
    /// Whether the baseline's text is on the item (judged as subject `baseline`), rather than a
    /// replay judged under the candidate's own name.
    pub fn is_judged_on_items(&self) -> bool {
        matches!(self, BaselineSpec::Production | BaselineSpec::Reference)
    }
}

fn one() -> usize {
    1
}

/// A rubric frozen into an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrozenRubric {
    /// Rubric name.
    pub name: String,
    /// `pointwise` or `pairwise`.
    pub mode: String,
    /// Score range of a pointwise rubric.
    pub scale_min: f64,
    /// See `scale_min`.
    pub scale_max: f64,
    /// Judge model the rubric names, if it overrides the experiment's judge.
    pub judge_model: Option<String>,
    /// Hex SHA-256 of `source`.
    pub sha256: String,
    /// The rubric file's full text.
    pub source: String,
}

impl ExperimentSpec {
    /// Whether `rubric` is pairwise in this experiment.
    pub fn is_pairwise(&self, rubric: &str) -> bool {
        self.pairwise_rubrics.iter().any(|r| r == rubric)
    }

    /// The frozen definition of `rubric`, if this experiment froze one.
    pub fn frozen_rubric(&self, rubric: &str) -> Option<&FrozenRubric> {
        self.rubric_definitions.iter().find(|r| r.name == rubric)
    }

    /// The frozen `rubric` when the baseline is the references and the rubric grades against the
    /// reference: the reference graded against itself gets full marks by definition, and the
    /// judge is never asked.
    pub fn reference_by_definition(&self, rubric: &str) -> Option<&FrozenRubric> {
        if self.baseline != BaselineSpec::Reference {
            return None;
        }
        self.frozen_rubric(rubric).filter(|frozen| frozen.mode == "reference")
    }

    /// The candidate whose replies are the baseline, if the baseline is a model.
    pub fn baseline_candidate(&self) -> Option<&str> {
        match &self.baseline {
            BaselineSpec::Candidate { name } => Some(name),
            _ => None,
        }
    }

    /// The candidates compared with the baseline: every candidate but the one whose replies are
    /// the baseline.
    pub fn compared_candidates(&self) -> impl Iterator<Item = &CandidateConfig> {
        let baseline = self.baseline_candidate().unwrap_or(crate::BASELINE);
        self.candidates.iter().filter(move |c| c.name != baseline)
    }

    /// The kind of item this experiment replays.
    pub fn item_kind(&self) -> &'static str {
        if self.dataset.is_some() { crate::ITEM_DATASET } else { crate::ITEM_EXCHANGE }
    }

    /// (pointwise, pairwise) rubric counts.
    pub fn rubric_counts(&self) -> (u64, u64) {
        let pairwise = self.rubrics.iter().filter(|r| self.is_pairwise(r)).count() as u64;
        (self.rubrics.len() as u64 - pairwise, pairwise)
    }
}

/// A stored experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    /// Row id.
    pub id: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Its definition.
    pub spec: ExperimentSpec,
}

impl Store {
    /// Creates an experiment and freezes its sample (see [`Store::sample_item_ids`]).
    pub async fn create_experiment(&self, spec: ExperimentSpec) -> Result<Experiment> {
        let ids = self.sample_item_ids(&spec).await?;
        let experiment = Experiment { id: uuid::Uuid::now_v7().to_string(), created_at: Utc::now(), spec };
        self.store_experiment(experiment, ids).await
    }

    /// The ids of the successful exchanges `f` matches (ids and tags read, no bodies).
    pub async fn matching_exchange_ids(&self, f: &crate::Filter) -> Result<Vec<String>> {
        // Tags are matched here rather than in SQL: the two engines read JSON differently.
        let rows: Vec<(String, String)> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT id, CASE WHEN $5 THEN tags ELSE '{}' END FROM exchanges WHERE succeeded = TRUE
               AND ($1 IS NULL OR source = $1) AND ($2 IS NULL OR model = $2)
               AND ($3 IS NULL OR received_at >= $3) AND ($4 IS NULL OR received_at < $4)",
        )
        .bind(&f.source)
        .bind(&f.model)
        .bind(f.since)
        .bind(f.until)
        .bind(!f.tags.is_empty())
        .fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .filter(|(_, tags)| {
                f.tags.is_empty() || serde_json::from_str::<Value>(tags).is_ok_and(|tags| f.tags_match(&tags))
            })
            .map(|(id, _)| id)
            .collect())
    }

    /// The sample an experiment of `spec` would freeze now: the dataset's items, or the
    /// matching exchanges, ordered by a hash of (experiment name, item id), the first
    /// `sample_size` kept.
    pub async fn sample_item_ids(&self, spec: &ExperimentSpec) -> Result<Vec<String>> {
        let mut ids: Vec<String> = match &spec.dataset {
            Some(dataset) => self.dataset_items(&dataset.version).await?.into_iter().map(|i| i.key).collect(),
            None => self.matching_exchange_ids(&spec.filter).await?,
        };
        if ids.is_empty() {
            return Err(StoreError::NotFound(match &spec.dataset {
                Some(d) => format!("dataset `{}` version {} has no items", d.name, d.version),
                None => format!("no stored exchanges match the filter of experiment `{}`", spec.name),
            }));
        }
        ids.sort_by_cached_key(|id| xxhash_rust::xxh3::xxh3_64(format!("{}\u{0}{id}", spec.name).as_bytes()));
        ids.truncate(spec.sample_size.unwrap_or(usize::MAX));
        Ok(ids)
    }

    /// Stores a new experiment with `ids` (from [`Store::sample_item_ids`]) as its sample.
    async fn store_experiment(&self, experiment: Experiment, ids: Vec<String>) -> Result<Experiment> {
        with_pool!(&self.pool, p => {
        let mut tx = p.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO experiments (id, name, created_at, spec) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&experiment.id)
        .bind(&experiment.spec.name)
        .bind(experiment.created_at)
        .bind(to_json(&experiment.spec))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "an experiment named `{}` already exists",
                experiment.spec.name
            )));
        }
        for id in &ids {
            sqlx::query("INSERT INTO experiment_items (experiment_id, item_kind, item_id) VALUES ($1, $2, $3)")
                .bind(&experiment.id)
                .bind(experiment.spec.item_kind())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO experiment_spend (experiment_id, cap_usd) VALUES ($1, $2)")
            .bind(&experiment.id)
            .bind(experiment.spec.spend_cap_usd)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(experiment)
        })
    }

    /// The experiment with this name (or id).
    pub async fn experiment(&self, name_or_id: &str) -> Result<Option<Experiment>> {
        with_pool!(&self.pool, p => {
        let row = sqlx::query("SELECT id, created_at, spec FROM experiments WHERE name = $1 OR id = $1")
            .bind(name_or_id)
            .fetch_optional(p)
            .await?;
        row.map(|row| decode_experiment(&row)).transpose()
        })
    }

    /// The experiment with this name (or id), or a `NotFound` error naming it.
    pub async fn require_experiment(&self, name_or_id: &str) -> Result<Experiment> {
        self.experiment(name_or_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no experiment named `{name_or_id}`")))
    }

    /// All experiments, newest first.
    pub async fn experiments(&self) -> Result<Vec<Experiment>> {
        with_pool!(&self.pool, p => {
        let rows =
            sqlx::query("SELECT id, created_at, spec FROM experiments ORDER BY created_at DESC, id DESC")
                .fetch_all(p)
                .await?;
        rows.iter().map(decode_experiment).collect()
        })
    }

    /// Whether an experiment sampled this item.
    pub async fn experiment_has_item(&self, experiment_id: &str, item_id: &str) -> Result<bool> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM experiment_items WHERE experiment_id = $1 AND item_id = $2)",
        )
        .bind(experiment_id)
        .bind(item_id)
        .fetch_one(p)
        .await)?)
    }

    /// Ids of the items (exchanges or dataset items) an experiment sampled.
    pub async fn experiment_item_ids(&self, experiment_id: &str) -> Result<Vec<String>> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT item_id FROM experiment_items WHERE experiment_id = $1 ORDER BY item_id",
        )
        .bind(experiment_id)
        .fetch_all(p).await)?)
    }
}

fn decode_experiment(row: &impl Columns) -> Result<Experiment> {
    let spec: String = row.get("spec")?;
    Ok(Experiment {
        id: row.get("id")?,
        created_at: row.get("created_at")?,
        spec: from_json("experiments.spec", &spec)?,
    })
}
