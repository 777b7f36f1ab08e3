//! Where alerts are delivered and how hard delivery is retried.

use serde::{Deserialize, Serialize};

/// Alert sinks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Webhooks receiving a JSON body signed with `X-Evaltap-Signature: sha256=<hex>`.
    #[serde(default)]
    pub webhooks: Vec<WebhookSink>,
    /// Slack-compatible incoming webhooks (`{"text": …}`).
    #[serde(default)]
    pub slack: Vec<SlackSink>,
    /// Delivery attempts per event and sink, with exponential backoff between them.
    #[serde(default = "default_alert_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds (doubled each time).
    #[serde(default = "default_alert_backoff_ms")]
    pub backoff_ms: u64,
}

/// A JSON webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    /// URL.
    pub url: String,
    /// Environment variable holding the HMAC-SHA256 signing secret.
    pub secret_env: Option<String>,
    /// The secret itself; for local setups only.
    pub secret: Option<String>,
}

impl WebhookSink {
    /// The signing secret, if one is configured and set.
    pub fn resolve_secret(&self) -> Option<String> {
        self.secret
            .clone()
            .or_else(|| std::env::var(self.secret_env.as_ref()?).ok().filter(|s| !s.is_empty()))
    }
}

/// A Slack-compatible incoming webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSink {
    /// URL.
    pub url: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhooks: Vec::new(),
            slack: Vec::new(),
            max_attempts: default_alert_attempts(),
            backoff_ms: default_alert_backoff_ms(),
        }
    }
}

fn default_alert_attempts() -> u32 {
    5
}
fn default_alert_backoff_ms() -> u64 {
    500
}
