//! `evaltap sources`: what each source has sent, and `sources add`: a new source's key and the
//! exact configuration to paste into the gateway.

use clap::Subcommand;
use rand::RngExt as _;

use evaltap_app::App;

#[derive(Debug, Subcommand)]
pub(crate) enum SourcesCommand {
    /// Generate a key for a new source and print the evaltap.toml entry and the exact
    /// gateway configuration to paste.
    Add {
        /// Source name.
        #[arg(long)]
        name: String,
        /// What the gateway sends (one of the registered formats, or `proxy` for the tee proxy).
        #[arg(long, default_value = "native",
              value_parser = clap::builder::PossibleValuesParser::new(crate::sources_cmd::formats()))]
        format: String,
        /// evaltap's URL as the gateway reaches it.
        #[arg(long, default_value = "http://127.0.0.1:7077")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// The tokens evaltap.toml configures: name, role and how each is held (never the token).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate a token and print the `[[auth.tokens]]` entry (its SHA-256) for evaltap.toml.
    Add {
        /// Who holds it.
        #[arg(long)]
        name: String,
        /// `admin` (everything) or `read` (reports, exchanges, sources, alerts).
        #[arg(long, default_value = "read")]
        role: String,
    },
}

/// Formats `sources add` knows how to configure: every registered adapter, and the tee proxy.
pub fn formats() -> Vec<&'static str> {
    evaltap_ingest::formats::ADAPTERS.iter().map(|a| a.name()).chain(["proxy"]).collect()
}

/// One source as `evaltap sources` lists it.
#[derive(Debug, serde::Serialize)]
pub struct SourceRow {
    /// Source name.
    pub name: String,
    /// Its format, or `(removed)` when it sent traffic but is no longer configured.
    pub format: String,
    /// Its sample rate, when configured.
    pub sample_rate: Option<f64>,
    /// Everything it has sent, counted at the door.
    #[serde(flatten)]
    pub stats: evaltap_store::SourceStats,
}

/// Every configured source, and any that sent traffic before it was removed.
pub async fn rows(app: &App) -> anyhow::Result<Vec<SourceRow>> {
    let stats = app.store.source_stats().await?;
    let mut names: Vec<&str> = app.config.sources.iter().map(|s| s.name.as_str()).collect();
    for s in &stats {
        if !names.contains(&s.source.as_str()) {
            names.push(&s.source);
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let config = app.config.sources.iter().find(|s| s.name == name);
            let mut stats = stats.iter().find(|s| s.source == name).cloned().unwrap_or_default();
            stats.source = name.to_string();
            SourceRow {
                name: name.to_string(),
                format: config.map_or("(removed)".to_string(), |c| c.format.clone()),
                sample_rate: config.map(|c| c.sample_rate),
                stats,
            }
        })
        .collect())
}

/// The table printed by `evaltap sources`.
pub fn render(rows: &[SourceRow]) -> String {
    let mut out = format!(
        "{:<16} {:<11} {:>6} {:>9} {:>9} {:>11} {:>10} {:>8} {:>10}  last seen\n",
        "source",
        "format",
        "rate",
        "received",
        "accepted",
        "sampled out",
        "duplicates",
        "rejected",
        "redactions"
    );
    for row in rows {
        let s = &row.stats;
        out.push_str(&format!(
            "{:<16} {:<11} {:>6} {:>9} {:>9} {:>11} {:>10} {:>8} {:>10}  {}\n",
            row.name,
            row.format,
            row.sample_rate.map_or("-".to_string(), |r| r.to_string()),
            s.received,
            s.accepted,
            s.sampled_out,
            s.duplicates,
            s.rejected,
            s.redactions,
            s.last_seen_at.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        ));
    }
    out
}

/// `evaltap tokens list`: the configured tokens, never a token itself.
pub fn tokens(config: &evaltap_core::Config, json: bool) -> anyhow::Result<String> {
    let rows: Vec<serde_json::Value> = config
        .auth
        .tokens
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "role": t.role,
                "held_as": match (&t.sha256, &t.token_env) {
                    (Some(_), _) => "sha256".to_string(),
                    (None, Some(var)) => format!("env {var}"),
                    (None, None) => "nothing (ignored)".to_string(),
                },
            })
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    if rows.is_empty() {
        return Ok(
            "no API tokens configured (`evaltap tokens add --name you --role admin` makes one)\n".into()
        );
    }
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "{:<20} {:<6} {}\n",
                r["name"].as_str().unwrap_or(""),
                r["role"].as_str().unwrap_or(""),
                r["held_as"].as_str().unwrap_or("")
            )
        })
        .collect())
}

/// Prefix of source keys: a leaked string says what it is.
pub const SOURCE_KEY_PREFIX: &str = "evaltap_source_";

/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "evaltap_token_";

fn random_secret(prefix: &str) -> String {
    let mut rng = rand::rng();
    let bytes: [u8; 24] = rng.random();
    format!("{prefix}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A new random source key (for a gateway to send exchanges).
pub fn new_source_key() -> String {
    random_secret(SOURCE_KEY_PREFIX)
}

/// A new random API token (for people and CI to read or change what evaltap holds).
pub fn new_api_token() -> String {
    random_secret(API_TOKEN_PREFIX)
}

/// What to paste where for a new source named `name` sending `format` to evaltap at `url`.
pub fn add(name: &str, format: &str, url: &str, key: &str) -> anyhow::Result<String> {
    if !formats().contains(&format) {
        anyhow::bail!("unknown format `{format}` (known: {})", formats().join(", "));
    }
    let url = url.trim_end_matches('/');
    let hash = evaltap_server::sources::key_hash(key);
    let toml_format = if format == "proxy" { "native" } else { format };
    let mut toml = format!(
        "[[sources]]\nname = \"{name}\"\nformat = \"{toml_format}\"\nkey_sha256 = \"{hash}\"\nsample_rate = 1.0\n"
    );
    if format == "helicone" {
        toml.push_str("hmac_secret_env = \"HELICONE_WEBHOOK_SECRET\"   # the webhook's HMAC key\n");
    }
    if format == "proxy" {
        toml.push_str("upstream = \"https://api.openai.com/v1\"   # where the proxy forwards\n");
    }
    let gateway = match format {
        "native" => format!(
            "POST each exchange (one object, a JSON array, or NDJSON) to {url}/v1/mirror:\n\n  curl -X POST {url}/v1/mirror -H 'Authorization: Bearer {key}' \\\n    -d '{{\"request\": {{...chat request...}}, \"response\": {{...chat response...}}, \"id\": \"req-1\"}}'\n"
        ),
        "litellm" => format!(
            "LiteLLM proxy config.yaml (v1.81+):\n\nlitellm_settings:\n  callbacks: [\"evaltap\"]\ncallback_settings:\n  evaltap:\n    callback_type: generic_api\n    endpoint: {url}/v1/mirror/litellm\n    headers: {{Authorization: \"Bearer {key}\"}}\n    event_types: [\"llm_api_success\", \"llm_api_failure\"]\n    log_format: json_array\n"
        ),
        "openrouter" => format!(
            "OpenRouter: Settings → Observability → Enable Broadcast → add a Webhook destination:\n\n  URL:     {url}/v1/mirror/openrouter\n  Method:  POST\n  Headers: {{\"Authorization\": \"Bearer {key}\"}}\n\n(Keep Privacy Mode off for this destination: evaltap needs prompts and completions.)\n"
        ),
        "portkey" => format!(
            "Portkey config (x-portkey-config or a saved config), as an output guardrail:\n\n{{\"output_guardrails\": [{{\"default.log\": {{\"logURL\": \"{url}/v1/mirror/portkey\",\n  \"headers\": \"{{\\\"Authorization\\\": \\\"Bearer {key}\\\"}}\", \"timeout\": 3000}}}}]}}\n\n(Streaming calls carry no response body in Portkey's log hook and are not mirrored.)\n"
        ),
        "helicone" => format!(
            "Helicone: Webhooks → add destination (must be public https):\n\n  URL: {url}/v1/mirror/helicone?source={name}\n\nand export the webhook's HMAC key as HELICONE_WEBHOOK_SECRET where evaltap runs;\ndeliveries are authenticated by their Helicone-Signature.\n"
        ),
        "kong" => format!(
            "Kong: enable logging on ai-proxy and add http-log:\n\nplugins:\n- name: ai-proxy\n  config:\n    logging: {{log_statistics: true, log_payloads: true}}\n- name: http-log\n  config:\n    http_endpoint: {url}/v1/mirror/kong\n    method: POST\n    headers: {{Authorization: \"Bearer {key}\"}}\n"
        ),
        "cloudflare" => format!(
            "Cloudflare AI Gateway → Settings → OTEL exporter:\n\n  URL:           {url}/v1/mirror/cloudflare\n  Authorization: Bearer {key}\n  Content type:  json or protobuf\n"
        ),
        "otlp" => format!(
            "Any OpenTelemetry SDK or collector (GenAI semantic conventions, with message content capture on):\n\n  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={url}/v1/traces\n  OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20{key}\n  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true\n"
        ),
        "proxy" => format!(
            "Point your OpenAI-compatible client at the tee proxy and send the source key in its own header:\n\n  base_url = \"{url}/proxy/{name}/v1\"\n  default_headers = {{\"X-Evaltap-Key\": \"{key}\"}}\n\nevaltap forwards to `upstream` with your headers (your own Authorization untouched) and mirrors each exchange after it completes.\n"
        ),
        // A format registered without a snippet of its own: its endpoint and the key.
        other => format!(
            "Have the gateway POST its logs to {url}/v1/mirror/{other} with the header\n\n  Authorization: Bearer {key}\n"
        ),
    };
    Ok(format!(
        "Source key (shown once; only its hash goes into evaltap.toml):\n\n  {key}\n\nAdd to evaltap.toml:\n\n{toml}\nThen configure the gateway:\n\n{gateway}"
    ))
}

/// A new API token and the `evaltap.toml` entry that admits it (only its hash).
pub fn add_token(name: &str, role: &str, token: &str) -> anyhow::Result<String> {
    if !["admin", "read"].contains(&role) {
        anyhow::bail!("--role must be admin or read, got `{role}`");
    }
    let hash = evaltap_server::sources::key_hash(token);
    Ok(format!(
        "API token for `{name}` ({role}; shown once, only its hash goes into evaltap.toml):\n\n  {token}\n\n\
         Add to evaltap.toml:\n\n[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{hash}\"\n\n\
         Use it as `Authorization: Bearer <token>` on /api, or sign in to the dashboard with it.\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_name_the_endpoint_and_the_key_hash() {
        for format in formats() {
            let text = add("prod", format, "http://evaltap:7077/", "etk_test").expect("known format");
            assert!(text.contains(&evaltap_server::sources::key_hash("etk_test")), "{format}");
            assert!(text.contains("http://evaltap:7077/"), "{format}");
            let toml_start = text.find("[[sources]]").expect("toml");
            let toml_end = text.find("Then configure").expect("end");
            let config =
                evaltap_core::Config::parse(&text[toml_start..toml_end], std::path::Path::new("snippet"));
            assert!(config.is_ok(), "{format}: {config:?}");
        }
        assert!(add("prod", "nope", "http://x", "k").is_err());
        assert!(new_source_key().starts_with("evaltap_source_") && new_source_key() != new_source_key());
        assert!(new_api_token().starts_with("evaltap_token_") && new_api_token() != new_api_token());
    }
}
