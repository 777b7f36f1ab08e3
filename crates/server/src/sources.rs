//! Sources as the door sees them: hashed keys, signatures, sampling with rules and a
//! per-minute cap, and redaction.

use std::collections::HashMap;
use std::sync::Arc;

use evaltap_core::redact::Redactor;
use evaltap_core::{Exchange, SourceConfig, sampling};
use evaltap_store::DeliveryCounts;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Minutes since the epoch: the window of the per-minute caps.
pub fn current_minute() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

/// Hex SHA-256 of a key: keys are compared and held only in this form.
pub fn key_hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One source, ready to admit traffic.
#[derive(Debug)]
pub struct Source {
    /// Its configuration.
    pub config: SourceConfig,
    redactor: Redactor,
    hmac_secret: Option<Vec<u8>>,
}

impl Source {
    fn new(config: SourceConfig) -> Source {
        // The configuration was validated, so the patterns compile; fall back to built-ins only.
        let redactor = Redactor::new(config.redact, &config.redact_patterns)
            .unwrap_or_else(|_| Redactor::new(config.redact, &[]).expect("built-in patterns compile"));
        let hmac_secret = config
            .hmac_secret_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|s| !s.is_empty())
            .map(String::into_bytes);
        if config.hmac_secret_env.is_some() && hmac_secret.is_none() {
            tracing::warn!(source = %config.name, "hmac_secret_env is not set: every delivery will be refused");
        }
        Source { config, redactor, hmac_secret }
    }

    /// Whether deliveries must carry a valid signature.
    pub fn requires_signature(&self) -> bool {
        self.config.hmac_secret_env.is_some()
    }

    /// Checks a hex HMAC-SHA256 `signature` (optionally prefixed `sha256=`) of `body`.
    pub fn signature_valid(&self, body: &[u8], signature: Option<&str>) -> bool {
        let (Some(secret), Some(signature)) = (&self.hmac_secret, signature) else { return false };
        let signature = signature.trim().trim_start_matches("sha256=");
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(secret) else { return false };
        mac.update(body);
        let Some(expected) = (0..signature.len())
            .step_by(2)
            .map(|i| signature.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        mac.verify_slice(&expected).is_ok()
    }

    /// Redacts an exchange in place; returns the number of redactions.
    pub fn redact(&self, exchange: &mut Exchange) -> usize {
        self.redactor.redact_exchange(exchange)
    }

    /// Redacts and samples a delivery's exchanges (`rejected` more were malformed): what to
    /// store, and the counts to record with it.
    pub fn admit(
        &self,
        exchanges: impl IntoIterator<Item = Exchange>,
        rejected: usize,
    ) -> (Vec<Exchange>, DeliveryCounts) {
        let mut counts = DeliveryCounts { rejected, received: rejected, ..DeliveryCounts::default() };
        let mut kept = Vec::new();
        for mut exchange in exchanges {
            counts.received += 1;
            counts.redactions += self.redact(&mut exchange);
            if self.keep(&exchange) {
                kept.push(exchange);
            } else {
                counts.sampled_out += 1;
            }
        }
        (kept, counts)
    }

    /// Whether sampling keeps this exchange: the stable hash against the rate of the first
    /// matching rule (or the source's). The per-minute cap is applied after, in the store
    /// (the writer's, per delivery), so that every serve process shares it.
    pub fn keep(&self, exchange: &Exchange) -> bool {
        let route = exchange.tags.get("route").and_then(|v| v.as_str());
        let model =
            exchange.model.as_deref().or_else(|| exchange.request.get("model").and_then(|m| m.as_str()));
        sampling::keep(&self.config.name, &exchange.dedup_key(), self.config.rate_for(model, route))
    }
}

/// All sources, by key hash and by name.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    by_key_hash: Arc<HashMap<String, Arc<Source>>>,
    by_name: Arc<HashMap<String, Arc<Source>>>,
}

impl Sources {
    /// Sources of a configuration; plaintext keys are hashed and dropped.
    pub fn new(configs: &[SourceConfig]) -> Sources {
        let mut by_key_hash = HashMap::new();
        let mut by_name = HashMap::new();
        for config in configs {
            let hash = config
                .key_sha256
                .clone()
                .map(|h| h.to_lowercase())
                .or_else(|| config.resolve_key().map(|k| key_hash(&k)));
            let mut config = config.clone();
            config.key = None;
            let source = Arc::new(Source::new(config));
            match hash {
                Some(hash) => {
                    by_key_hash.insert(hash, source.clone());
                }
                None if source.requires_signature() => {}
                None => {
                    tracing::warn!(source = %source.config.name, "source has no key set; it cannot send traffic")
                }
            }
            by_name.insert(source.config.name.clone(), source);
        }
        Sources { by_key_hash: Arc::new(by_key_hash), by_name: Arc::new(by_name) }
    }

    /// The source a bearer key belongs to.
    pub fn by_key(&self, key: &str) -> Option<Arc<Source>> {
        self.by_key_hash.get(&key_hash(key)).cloned()
    }

    /// The source with this name.
    pub fn by_name(&self, name: &str) -> Option<Arc<Source>> {
        self.by_name.get(name).cloned()
    }
}
