//! What an experiment sent through the providers' batch interfaces, per endpoint.

use serde::{Deserialize, Serialize};

/// What one endpoint sent through its provider's batch interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchUse {
    /// The candidate's name, or `judge`.
    pub endpoint: String,
    /// Batches formed.
    pub batches: usize,
    /// Of those, ended (the rest are out at the provider, or about to be submitted).
    pub ended: usize,
    /// Requests in them.
    pub requests: i64,
    /// Requests a batch returned no answer for (an error, or the batch expired or was
    /// cancelled before they ran: not billed).
    pub unanswered: i64,
}

impl BatchUse {
    /// Per endpoint, from an experiment's batches.
    pub fn of(batches: &[evaltap_store::BatchSummary]) -> Vec<BatchUse> {
        let mut uses: Vec<BatchUse> = Vec::new();
        for batch in batches {
            let endpoint = if batch.endpoint.is_empty() { "judge" } else { batch.endpoint.as_str() };
            let index = match uses.iter().position(|u| u.endpoint == endpoint) {
                Some(index) => index,
                None => {
                    uses.push(BatchUse { endpoint: endpoint.into(), ..Default::default() });
                    uses.len() - 1
                }
            };
            let entry = &mut uses[index];
            entry.batches += 1;
            entry.ended += usize::from(batch.status == "ended");
            entry.requests += batch.requests;
            entry.unanswered += batch.failed;
        }
        uses
    }
}
