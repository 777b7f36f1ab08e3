//! The judge model behind an OpenAI-compatible endpoint: asking, re-asking an unreadable
//! answer, sampling K times, and what the calls cost.

use std::time::Duration;

use evaltap_core::Usage;
use evaltap_providers::ChatClient;
use serde_json::{Value, json};

use crate::*;

/// The `seed` a judgment's calls carry, from what identifies it (experiment, item, subject,
/// rubric, position…): stable, so re-asking after a crash asks the same; 31 bits, which every
/// provider's integer `seed` accepts.
pub fn judgment_seed(parts: &[&str]) -> u64 {
    let values: Vec<Value> = parts.iter().map(|p| Value::from(*p)).collect();
    evaltap_core::sampling::content_hash(&values.iter().collect::<Vec<_>>()) >> 33
}

/// A judge model behind an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct Judge {
    client: ChatClient,
    model: String,
    temperature: f64,
    retry_delay: Duration,
    output_limit: Option<u64>,
    images: bool,
}

/// An unreadable judge answer is asked again this many times in all, with backoff.
pub const JUDGE_ATTEMPTS: u32 = 3;

/// What one judgment took: the judge's last raw answer, tokens over every call (failed ones
/// too: they were billed) and how many calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgeCalls {
    /// The last answer as it came.
    pub raw_output: Option<String>,
    /// Tokens over every call.
    pub usage: Usage,
    /// Calls made.
    pub attempts: u32,
    /// Model that judged.
    pub model: String,
}

impl JudgeCalls {
    fn add(&mut self, completion: &evaltap_providers::Completion) {
        self.raw_output = Some(completion.text.clone());
        if let Some(u) = completion.usage {
            self.usage.input_tokens += u.input_tokens;
            self.usage.output_tokens += u.output_tokens;
        }
    }
}

/// A pointwise grade: one score per judge sample; their mean is the item's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    /// One score per sample.
    pub samples: Vec<Score>,
    /// The calls.
    pub calls: JudgeCalls,
}

impl Graded {
    /// Mean raw and normalized score, and the first sample's reason.
    pub fn mean(&self) -> Score {
        let n = self.samples.len().max(1) as f64;
        Score {
            raw: self.samples.iter().map(|s| s.raw).sum::<f64>() / n,
            normalized: self.samples.iter().map(|s| s.normalized).sum::<f64>() / n,
            reason: self.samples.first().map(|s| s.reason.clone()).unwrap_or_default(),
        }
    }
}

/// A judgment that could not be made, with what the calls cost.
#[derive(Debug)]
pub struct JudgeFailure {
    /// Why.
    pub error: JudgeError,
    /// The calls made before giving up.
    pub calls: JudgeCalls,
}

impl Judge {
    /// A judge calling `model` through `client` at `temperature`.
    pub fn new(client: ChatClient, model: impl Into<String>, temperature: f64) -> Judge {
        Judge {
            client,
            model: model.into(),
            temperature,
            retry_delay: Duration::from_millis(200),
            output_limit: None,
            images: false,
        }
    }

    /// This judge showing the conversation's images with each prompt (for a judge model that
    /// takes images), or not.
    pub fn with_images(mut self, images: bool) -> Judge {
        self.images = images;
        self
    }

    /// This judge for calls paid out of a spend reservation: each call carries `max_tokens`
    /// and an attempt that may have been billed is not repeated, so a judgment costs at most
    /// [`Judge::most_calls`] calls of the prompt and `max_tokens` each.
    pub fn bounded(mut self, max_tokens: u64) -> Judge {
        self.client = self.client.paying_once();
        self.output_limit = Some(max_tokens);
        self
    }

    /// The most calls one judgment with `samples` samples makes: each sample asked again up to
    /// [`JUDGE_ATTEMPTS`] times in all when its answer does not read.
    pub fn most_calls(samples: usize) -> u64 {
        samples.max(1) as u64 * u64::from(JUDGE_ATTEMPTS)
    }

    /// This judge in batch mode: its calls are answered from what the provider's batch
    /// interface returned (by request key), and a call without an answer fails with
    /// [`evaltap_providers::ProviderError::Parked`], to be parked by the caller.
    pub fn answering_from_batches(
        mut self,
        answers: std::collections::HashMap<String, evaltap_providers::BatchAnswer>,
    ) -> Judge {
        self.client = self.client.answering_from_batches(answers);
        self
    }

    /// Replaces the delay before the first re-ask of an unreadable answer (doubled after).
    pub fn with_retry_delay(mut self, delay: Duration) -> Judge {
        self.retry_delay = delay;
        self
    }

    /// The judge model used for `rubric`: the rubric's own, else this judge's.
    pub fn model_for(&self, rubric: &Rubric) -> String {
        rubric.judge_model.clone().unwrap_or_else(|| self.model.clone())
    }

    /// Asks `prompt` until `parse` reads the answer, at most [`JUDGE_ATTEMPTS`] times.
    async fn ask<T>(
        &self,
        model: &str,
        prompt: &str,
        request: &Value,
        seed: u64,
        calls: &mut JudgeCalls,
        parse: impl Fn(&str) -> Result<T, JudgeError>,
    ) -> Result<T, JudgeError> {
        let images = if self.images { evaltap_core::chat::image_parts(request) } else { Vec::new() };
        let content = if images.is_empty() {
            json!(prompt)
        } else {
            let mut parts = vec![json!({"type": "text", "text": prompt})];
            parts.extend(images);
            Value::Array(parts)
        };
        let mut body = json!({"model": model, "temperature": self.temperature, "seed": seed,
            "messages": [{"role": "user", "content": content}]});
        if let Some(limit) = self.output_limit {
            body["max_tokens"] = json!(limit);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            calls.attempts += 1;
            let completion = self.client.chat(&body).await?;
            calls.add(&completion);
            match parse(&completion.text) {
                Ok(parsed) => return Ok(parsed),
                Err(err) if attempt >= JUDGE_ATTEMPTS => return Err(err),
                Err(err) => {
                    tracing::debug!(%err, attempt, "unreadable judge answer; asking again");
                    tokio::time::sleep(self.retry_delay * 2u32.pow(attempt - 1)).await;
                }
            }
        }
    }

    /// Grades `subject` with pointwise `rubric`, averaging `samples` judge calls. Call k carries
    /// `seed + k`: a judgment asked again (after a crash) is asked as before, while different
    /// judgments (and samples) draw the judge's sampling noise independently.
    pub async fn grade(
        &self,
        rubrics: &Rubrics,
        rubric: &str,
        subject: Subject<'_>,
        samples: usize,
        seed: u64,
    ) -> Result<Graded, JudgeFailure> {
        let mut calls = JudgeCalls::default();
        let fail = |error: JudgeError, calls: JudgeCalls| JudgeFailure { error, calls };
        let definition = match rubrics.get(rubric) {
            Ok(d) => d,
            Err(e) => return Err(fail(e, calls)),
        };
        let prompt = match rubrics.render(rubric, subject) {
            Ok(p) => p,
            Err(e) => return Err(fail(e, calls)),
        };
        calls.model = self.model_for(definition);
        let model = calls.model.clone();
        let mut scores = Vec::with_capacity(samples.max(1));
        for k in 0..samples.max(1) {
            let seed = seed.wrapping_add(k as u64);
            match self
                .ask(&model, &prompt, subject.request, seed, &mut calls, |a| definition.parse_score(a))
                .await
            {
                Ok(score) => scores.push(score),
                Err(e) => return Err(fail(e, calls)),
            }
        }
        Ok(Graded { samples: scores, calls })
    }

    /// Asks pairwise `rubric` which of two responses is better (in this order), with the
    /// call's `seed` (see [`Judge::grade`]).
    pub async fn prefer(
        &self,
        rubrics: &Rubrics,
        rubric: &str,
        request: &Value,
        (response_a, response_b): (&str, &str),
        seed: u64,
    ) -> Result<(Winner, String, JudgeCalls), JudgeFailure> {
        let mut calls = JudgeCalls::default();
        let fail = |error: JudgeError, calls: JudgeCalls| JudgeFailure { error, calls };
        let definition = match rubrics.get(rubric) {
            Ok(d) => d,
            Err(e) => return Err(fail(e, calls)),
        };
        let prompt = match rubrics.render_pair(rubric, request, response_a, response_b) {
            Ok(p) => p,
            Err(e) => return Err(fail(e, calls)),
        };
        calls.model = self.model_for(definition);
        let model = calls.model.clone();
        match self.ask(&model, &prompt, request, seed, &mut calls, |a| definition.parse_winner(a)).await {
            Ok((winner, reason)) => Ok((winner, reason, calls)),
            Err(e) => Err(fail(e, calls)),
        }
    }
}
