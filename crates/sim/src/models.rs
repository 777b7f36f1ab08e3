//! The simulated models: each answers the task family correctly with a known probability.

use serde::Serialize;

/// What a simulated model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Answers user prompts.
    Assistant,
    /// Reads judge prompts and scores the answers in them.
    Judge,
}

/// One simulated model.
#[derive(Debug, Clone, Serialize)]
pub struct SimModel {
    /// Model id served at `/v1/models`.
    pub id: &'static str,
    /// Assistant or judge.
    pub role: Role,
    /// Probability of answering a task correctly.
    pub accuracy: f64,
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// Simulated time to answer, in milliseconds (scaled by the server's latency scale).
    pub latency_ms: u64,
    /// Whether answers are a bare value or a sentence.
    pub terse: bool,
    /// Whether each answer goes on to explain itself at length (many times longer than the
    /// production model's): the candidate that tests what a spend cap holds against.
    pub rambling: bool,
}

/// The built-in catalog: a strong expensive production model, a cheap model about as good, a
/// cheap model clearly worse, a model whose accuracy tests change on purpose (drift), a pricey
/// model as good as production that writes far longer answers, slowly, and a judge.
pub const CATALOG: [SimModel; 6] = [
    SimModel {
        id: "sim-large",
        role: Role::Assistant,
        accuracy: 0.92,
        input_per_mtok: 2.50,
        output_per_mtok: 10.00,
        latency_ms: 40,
        terse: false,
        rambling: false,
    },
    SimModel {
        id: "sim-medium",
        role: Role::Assistant,
        accuracy: 0.92,
        input_per_mtok: 0.40,
        output_per_mtok: 1.60,
        latency_ms: 20,
        terse: false,
        rambling: false,
    },
    SimModel {
        id: "sim-small",
        role: Role::Assistant,
        accuracy: 0.60,
        input_per_mtok: 0.10,
        output_per_mtok: 0.40,
        latency_ms: 10,
        terse: true,
        rambling: false,
    },
    SimModel {
        id: "sim-drift",
        role: Role::Assistant,
        accuracy: 0.92,
        input_per_mtok: 0.40,
        output_per_mtok: 1.60,
        latency_ms: 20,
        terse: false,
        rambling: false,
    },
    SimModel {
        id: "sim-verbose",
        role: Role::Assistant,
        accuracy: 0.92,
        input_per_mtok: 3.00,
        output_per_mtok: 15.00,
        latency_ms: 60,
        terse: false,
        rambling: true,
    },
    SimModel {
        id: "sim-judge",
        role: Role::Judge,
        accuracy: 1.0,
        input_per_mtok: 1.00,
        output_per_mtok: 4.00,
        latency_ms: 5,
        terse: false,
        rambling: false,
    },
];

/// The catalog model with this id.
pub fn find(id: &str) -> Option<&'static SimModel> {
    CATALOG.iter().find(|m| m.id == id)
}
