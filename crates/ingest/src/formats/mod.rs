//! The registry of wire formats. Adding one is, exactly:
//!
//! 1. `formats/<name>.rs`: a unit struct implementing [`Adapter`](crate::Adapter);
//! 2. its `pub mod <name>;` line and one entry in [`ADAPTERS`] below;
//! 3. fixtures in `crates/ingest/tests/fixtures/<name>/` — payloads as the gateway sends them,
//!    each beside `<payload>.expected.json` (`EVALTAP_BLESS=1 cargo test --test evaltap
//!    format_harness` writes them; read them before committing) — and a row in the README's
//!    gateway table naming `<url>/v1/mirror/<name>`.
//!
//! Everything else follows from the registry: `POST /v1/mirror/<name>`, `evaltap sources add
//! --format <name>` and its help, the fuzz test and the format harness.

pub mod cloudflare;
pub mod helicone;
pub mod kong;
pub mod litellm;
pub mod native;
pub mod openrouter;
pub mod otlp;
pub mod otlp_wire;
pub mod portkey;

use crate::Adapter;

/// Every supported format.
pub static ADAPTERS: &[&dyn Adapter] = &[
    &native::Native,
    &litellm::LiteLlm,
    &openrouter::OpenRouter,
    &portkey::Portkey,
    &helicone::Helicone,
    &kong::Kong,
    &cloudflare::Cloudflare,
    &otlp::Otlp,
];

/// The adapter serving `POST /v1/mirror/{name}`.
pub fn adapter(name: &str) -> Option<&'static dyn Adapter> {
    ADAPTERS.iter().copied().find(|a| a.name() == name)
}
