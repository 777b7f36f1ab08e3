//! Rubrics and judging: rubric files (`rubrics/*.toml`) hold a minijinja template that renders
//! the judge prompt; the judge model answers JSON, parsed here into a score on the rubric's
//! scale and its [0, 1] normalization.

pub mod calibration;
mod client;
mod rubrics;

pub use client::*;
pub use rubrics::*;

use evaltap_providers::ProviderError;

/// Why a rubric could not be loaded or a judgment made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// A rubric file could not be read.
    #[error("cannot read rubric {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A rubric file is not valid.
    #[error("invalid rubric {path}: {reason}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No rubric has this name.
    #[error("unknown rubric `{name}` (available: {available})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The rubrics there are, comma-separated.
        available: String,
    },
    /// A file of human labels is not valid.
    #[error("invalid labels file {path}: {reason}")]
    InvalidLabels {
        /// File and line.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The template failed to render.
    #[error("rendering rubric `{rubric}`: {source}")]
    Render {
        /// Rubric.
        rubric: String,
        /// Underlying error.
        source: minijinja::Error,
    },
    /// A reference rubric was asked to grade an item that has no reference.
    #[error("rubric `{0}` grades against a reference answer, and this item has none")]
    NoReference(String),
    /// The judge's answer could not be read as a score.
    #[error("unreadable judge answer for rubric `{rubric}`: {reason}: {answer}")]
    Unparseable {
        /// Rubric.
        rubric: String,
        /// Why.
        reason: String,
        /// The start of the answer.
        answer: String,
    },
    /// Calling the judge model failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}
