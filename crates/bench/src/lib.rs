//! evaltap's benchmarks, behind `evaltap bench …`: each runs the product's own code against the
//! simulated upstream (or a real PostgreSQL server) and returns figures with a text rendering.
//! They print figures; they assert nothing about speed (tests hold the behaviour).

pub mod cost;
pub mod dashboard;
pub mod golden;
pub mod ingest;
pub mod proxy;
pub mod stats;
