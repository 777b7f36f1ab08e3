//! Who may read and change things over the API and the dashboard.

use serde::{Deserialize, Serialize};

/// API and dashboard access: bearer tokens (or the dashboard's login cookie) with a role. The
/// ingest routes authenticate with source keys instead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Serve without tokens — honoured only when bound to a loopback address.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// The tokens.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read reports, exchanges, sources and alerts.
    Read,
    /// Everything, including creating experiments (which spends money).
    Admin,
}

/// One API token, held as its SHA-256 (`evaltap tokens add` prints both).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (logs only).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: Option<String>,
    /// Environment variable holding the token itself.
    pub token_env: Option<String>,
}
