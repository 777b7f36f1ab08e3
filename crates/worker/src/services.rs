use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evaltap_core::{CandidateConfig, Config};
use evaltap_judge::{Judge, Rubrics};
use evaltap_providers::{ChatClient, HttpClient, ProviderError, http_client};
use evaltap_store::Store;

/// What jobs need: the store, rubrics, the judge and model clients.
#[derive(Debug, Clone)]
pub struct Services {
    /// The database.
    pub store: Store,
    /// Loaded rubrics.
    pub rubrics: Rubrics,
    /// The judge, if one is configured.
    pub judge: Option<Judge>,
    http: HttpClient,
    /// One client per candidate endpoint, so each keeps its own concurrency limit.
    clients: Arc<Mutex<HashMap<String, ChatClient>>>,
}

/// Model calls time out after this long; the client retries within it.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

fn api_key(env_var: Option<&String>) -> Option<String> {
    env_var.and_then(|var| std::env::var(var).ok()).filter(|k| !k.is_empty())
}

impl Services {
    /// Services for `config` over `store` with `rubrics`.
    pub fn new(config: &Config, store: Store, rubrics: Rubrics) -> Result<Services, ProviderError> {
        let http = http_client(CALL_TIMEOUT)?;
        let judge = config.judge.as_ref().map(|j| {
            let client = ChatClient::new(
                http.clone(),
                &j.base_url,
                api_key(j.api_key_env.as_ref()),
                j.max_concurrency,
            );
            Judge::new(client, j.model.clone())
        });
        Ok(Services { store, rubrics, judge, http, clients: Arc::default() })
    }

    /// The client for a candidate as frozen in an experiment's spec.
    pub fn candidate_client(&self, candidate: &CandidateConfig) -> ChatClient {
        let key = format!("{}\u{0}{}\u{0}{}", candidate.name, candidate.base_url, candidate.max_concurrency);
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                ChatClient::new(
                    self.http.clone(),
                    &candidate.base_url,
                    api_key(candidate.api_key_env.as_ref()),
                    candidate.max_concurrency,
                )
            })
            .clone()
    }
}
