//! The registry of wire formats. To add one: write `formats/<name>.rs` with a unit struct
//! implementing [`Adapter`](crate::Adapter), add its `mod` line and one entry in [`ADAPTERS`].

pub mod native;

use crate::Adapter;

/// Every supported format.
pub static ADAPTERS: &[&dyn Adapter] = &[&native::Native];

/// The adapter serving `POST /v1/mirror/{name}`.
pub fn adapter(name: &str) -> Option<&'static dyn Adapter> {
    ADAPTERS.iter().copied().find(|a| a.name() == name)
}
