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
    /// Whether answers to computations (arithmetic, conversions) are a bare value rather than a
    /// sentence; lookups every model answers in a sentence.
    pub terse: bool,
    /// Whether each answer goes on to explain itself at length (many times longer than the
    /// production model's): the candidate that tests what a spend cap holds against.
    pub rambling: bool,
    /// How far the accuracy differs by task family: lookups (JSON fields, sentiment) are
    /// answered correctly with `accuracy + family_spread`, computations (arithmetic, unit
    /// conversion) with `accuracy − family_spread`, so `accuracy` stays the average over the
    /// family's even mix. Non-zero for a model good enough on one route and not on another.
    pub family_spread: f64,
}

impl SimModel {
    /// The probability of answering `task` correctly when the model's overall accuracy is
    /// `accuracy` (its catalog value, or one set while the server runs).
    pub fn accuracy_on(&self, accuracy: f64, task: &crate::Task) -> f64 {
        let spread = match task.family() {
            crate::tasks::Family::Lookup => self.family_spread,
            crate::tasks::Family::Compute => -self.family_spread,
        };
        (accuracy + spread).clamp(0.0, 1.0)
    }
}

/// The built-in catalog: a strong expensive production model, a cheap model about as good, a
/// cheap model clearly worse overall (as good as production on lookups, far worse on
/// arithmetic and conversions), a model whose accuracy tests change on purpose (drift), a pricey
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
        family_spread: 0.0,
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
        family_spread: 0.0,
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
        family_spread: 0.32,
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
        family_spread: 0.0,
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
        family_spread: 0.0,
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
        family_spread: 0.0,
    },
];

/// The catalog model with this id.
pub fn find(id: &str) -> Option<&'static SimModel> {
    CATALOG.iter().find(|m| m.id == id)
}
