use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evaltap_core::{CandidateConfig, Config, JudgeConfig};
use evaltap_judge::{Judge, JudgeError, Rubrics};
use evaltap_providers::{ChatClient, HttpClient, ProviderError, RetryPolicy, http_client};
use evaltap_store::{Experiment, ExperimentSpec, Store, StoreError};

/// What jobs need: the store, rubrics, the judge and model clients.
#[derive(Debug, Clone)]
pub struct Services {
    /// The database.
    pub store: Store,
    /// Loaded rubrics.
    pub rubrics: Rubrics,
    /// The judge configured now (experiments use the one they froze, see [`Services::judge_for`]).
    pub judge: Option<JudgeConfig>,
    http: HttpClient,
    /// One client per candidate or judge endpoint, so each keeps its own concurrency limit.
    clients: Arc<Mutex<HashMap<String, ChatClient>>>,
    /// Rubrics as frozen by each experiment, parsed once.
    frozen_rubrics: Arc<Mutex<HashMap<String, Rubrics>>>,
    /// Experiments by id: frozen at creation, so read and parsed once per process.
    experiments: Arc<Mutex<HashMap<String, Arc<Experiment>>>>,
    /// Each experiment's candidates settled by early stopping, as last read, and when.
    settled: Arc<Mutex<HashMap<String, SettledRead>>>,
    /// This process's name on the claims it holds.
    pub owner: String,
    /// How long a claim (and its spend reservation) lasts unless renewed.
    pub lease: Duration,
    /// How results split into segments: early stopping waits for every segment's verdict.
    pub recommend: evaltap_core::RecommendConfig,
    /// How long a cached replay or judgment stays reusable.
    pub cache_max_age: Duration,
    /// How calls parked for batch interfaces are grouped and polled.
    pub batching: Batching,
}

/// How calls parked for a provider's batch interface are grouped and polled (`[worker]`).
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// The most requests in one batch.
    pub max_requests: usize,
    /// How long a parked call waits for company before its batch goes out.
    pub wait: Duration,
    /// How often a submitted batch is polled.
    pub poll: Duration,
}

/// An experiment's settled candidates as read, and when.
type SettledRead = (std::time::Instant, std::collections::HashSet<String>);

/// How long a read of an experiment's settled candidates is used before it is read again.
pub const SETTLED_FRESH: Duration = Duration::from_millis(250);

/// A backstop on any one HTTP request; attempts are bounded tighter by each endpoint's
/// `attempt_timeout_secs` (and calls by `deadline_secs`).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

fn api_key(env_var: Option<&String>) -> Option<String> {
    env_var.and_then(|var| std::env::var(var).ok()).filter(|k| !k.is_empty())
}

impl Services {
    /// Services for `config` over `store` with `rubrics`.
    pub fn new(config: &Config, store: Store, rubrics: Rubrics) -> Result<Services, ProviderError> {
        let http = http_client(CALL_TIMEOUT)?;
        Ok(Services {
            store,
            rubrics,
            judge: config.judge.clone(),
            http,
            clients: Arc::default(),
            frozen_rubrics: Arc::default(),
            experiments: Arc::default(),
            settled: Arc::default(),
            owner: format!("evaltap-{}-{}", std::process::id(), uuid::Uuid::now_v7()),
            lease: config.worker.lease(),
            recommend: config.recommend.clone(),
            cache_max_age: Duration::from_secs(config.cache_max_age_hours.saturating_mul(3600)),
            batching: Batching {
                max_requests: config.worker.batch_max_requests.max(1),
                wait: config.worker.batch_wait(),
                poll: config.worker.batch_poll(),
            },
        })
    }

    /// The experiment with this id (its spec never changes after creation, so it is cached).
    pub async fn experiment(&self, id: &str) -> Result<Arc<Experiment>, StoreError> {
        if let Some(found) = self.experiments.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(found.clone());
        }
        let experiment = Arc::new(self.store.require_experiment(id).await?);
        let mut cache = self.experiments.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(id.to_string(), experiment.clone());
        Ok(experiment)
    }

    /// Whether early stopping settled `candidate` of an experiment, read from the store at most
    /// every [`SETTLED_FRESH`] per experiment (not once per replay): a candidate settled just
    /// now may make a few more replays, as the work in flight when it settled does anyway.
    pub async fn is_settled(&self, experiment_id: &str, candidate: &str) -> Result<bool, StoreError> {
        if let Some((read_at, settled)) =
            self.settled.lock().unwrap_or_else(|p| p.into_inner()).get(experiment_id)
            && read_at.elapsed() < SETTLED_FRESH
        {
            return Ok(settled.contains(candidate));
        }
        let settled: std::collections::HashSet<String> =
            self.store.settled_candidates(experiment_id).await?.into_iter().map(|s| s.candidate).collect();
        let found = settled.contains(candidate);
        let mut cache = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(experiment_id.to_string(), (std::time::Instant::now(), settled));
        Ok(found)
    }

    fn client(
        &self,
        key: String,
        base_url: &str,
        api_key_env: Option<&String>,
        concurrency: usize,
        timeouts: (Option<u64>, Option<u64>),
    ) -> ChatClient {
        let mut retry = RetryPolicy::default();
        if let Some(secs) = timeouts.0 {
            retry.attempt_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = timeouts.1 {
            retry.deadline = Duration::from_secs(secs.max(1));
        }
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                ChatClient::new(self.http.clone(), base_url, api_key(api_key_env), concurrency)
                    .with_retry(retry)
            })
            .clone()
    }

    /// The client for a candidate as frozen in an experiment's spec.
    pub fn candidate_client(&self, candidate: &CandidateConfig) -> ChatClient {
        let key = format!("{}\u{0}{}\u{0}{}", candidate.name, candidate.base_url, candidate.max_concurrency);
        let timeouts = (candidate.attempt_timeout_secs, candidate.deadline_secs);
        self.client(
            key,
            &candidate.base_url,
            candidate.api_key_env.as_ref(),
            candidate.max_concurrency,
            timeouts,
        )
        .over(candidate.api)
    }

    /// The client of the batch interface `endpoint` (a candidate's name, or '' for the judge)
    /// of an experiment sends its batches to.
    pub fn batch_client(
        &self,
        spec: &ExperimentSpec,
        endpoint: &str,
    ) -> Option<evaltap_providers::BatchClient> {
        if endpoint.is_empty() {
            let (_, judge) = self.judge_for(spec)?;
            let key = api_key(judge.api_key_env.as_ref());
            return Some(evaltap_providers::BatchClient::new(
                self.http.clone(),
                &judge.base_url,
                key,
                evaltap_core::ModelApi::OpenaiChat,
            ));
        }
        let candidate = spec.candidates.iter().find(|c| c.name == endpoint)?;
        let key = api_key(candidate.api_key_env.as_ref());
        Some(evaltap_providers::BatchClient::new(self.http.clone(), &candidate.base_url, key, candidate.api))
    }

    /// The judge an experiment froze (older experiments: the one configured now), with its
    /// configuration.
    pub fn judge_for(&self, spec: &ExperimentSpec) -> Option<(Judge, JudgeConfig)> {
        let config = self.judge_config(spec)?.clone();
        Some((self.judge_with(&config), config))
    }

    /// The judge configuration an experiment froze (older experiments: the one configured now).
    pub fn judge_config<'a>(&'a self, spec: &'a ExperimentSpec) -> Option<&'a JudgeConfig> {
        spec.judge.as_ref().or(self.judge.as_ref())
    }

    /// A judge calling the endpoint `config` describes (one client per endpoint).
    pub fn judge_with(&self, config: &JudgeConfig) -> Judge {
        let key = format!("judge\u{0}{}\u{0}{}", config.base_url, config.max_concurrency);
        let timeouts = (config.attempt_timeout_secs, config.deadline_secs);
        let client =
            self.client(key, &config.base_url, config.api_key_env.as_ref(), config.max_concurrency, timeouts);
        Judge::new(client, config.model.clone(), config.temperature).with_images(config.images)
    }

    /// The rubrics an experiment froze (older experiments: the files loaded now).
    pub fn rubrics_for(&self, experiment_id: &str, spec: &ExperimentSpec) -> Result<Rubrics, JudgeError> {
        if spec.rubric_definitions.is_empty() {
            return Ok(self.rubrics.clone());
        }
        let mut cache = self.frozen_rubrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(rubrics) = cache.get(experiment_id) {
            return Ok(rubrics.clone());
        }
        let rubrics =
            Rubrics::from_sources(spec.rubric_definitions.iter().map(|r| {
                (format!("rubric `{}` frozen in experiment {}", r.name, spec.name), r.source.clone())
            }))?;
        cache.insert(experiment_id.to_string(), rubrics.clone());
        Ok(rubrics)
    }
}
