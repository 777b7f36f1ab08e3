//! How workers hold work and drive batches: leases, the queue's heartbeats, batch sizes and
//! timing.

use serde::{Deserialize, Serialize};

/// Worker timing: leases on claimed work, the queue's heartbeats, and how batches are formed
/// and polled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Seconds a claim on a replay or judgment (and its spend reservation) lasts unless
    /// renewed; a worker renews it every third of this while its call runs. When a worker
    /// dies, its work is taken over this long after its last renewal.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: f64,
    /// Seconds between a worker's heartbeats to the queue.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: f64,
    /// Heartbeats a worker may miss before the queue hands its jobs to other workers.
    #[serde(default = "default_missed_heartbeats")]
    pub missed_heartbeats: usize,
    /// The most requests in one batch file (for candidates and judges with `batch = true`).
    #[serde(default = "default_batch_max_requests")]
    pub batch_max_requests: usize,
    /// Seconds a parked call waits for company before its batch is submitted short of
    /// `batch_max_requests`.
    #[serde(default = "default_batch_wait_secs")]
    pub batch_wait_secs: f64,
    /// Seconds between polls of a submitted batch.
    #[serde(default = "default_batch_poll_secs")]
    pub batch_poll_secs: f64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease_secs: default_lease_secs(),
            heartbeat_secs: default_heartbeat_secs(),
            missed_heartbeats: default_missed_heartbeats(),
            batch_max_requests: default_batch_max_requests(),
            batch_wait_secs: default_batch_wait_secs(),
            batch_poll_secs: default_batch_poll_secs(),
        }
    }
}

impl WorkerConfig {
    /// The lease on claimed work.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.lease_secs.clamp(0.5, 86_400.0))
    }

    /// How long a parked call waits for company before its batch goes out.
    pub fn batch_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.batch_wait_secs.clamp(0.01, 86_400.0))
    }

    /// How often a submitted batch is polled.
    pub fn batch_poll(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.batch_poll_secs.clamp(0.01, 3_600.0))
    }

    /// The interval between queue heartbeats.
    pub fn heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.heartbeat_secs.clamp(0.2, 3_600.0))
    }
}

fn default_batch_max_requests() -> usize {
    1_000
}

fn default_batch_wait_secs() -> f64 {
    60.0
}

fn default_batch_poll_secs() -> f64 {
    30.0
}

fn default_lease_secs() -> f64 {
    60.0
}

fn default_heartbeat_secs() -> f64 {
    5.0
}

fn default_missed_heartbeats() -> usize {
    3
}
