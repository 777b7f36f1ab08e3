//! The registry of wire formats. To add one: write `formats/<name>.rs` with a unit struct
//! implementing [`Adapter`](crate::Adapter), add its `mod` line and one entry in [`ADAPTERS`],
//! and fixtures under `crates/ingest/tests/fixtures/<name>/`.

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
