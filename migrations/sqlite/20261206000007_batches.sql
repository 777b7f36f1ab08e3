-- Calls parked for a provider's batch interface (candidates and judges with `batch = true`):
-- each is one request of a unit of work, keyed by the SHA-256 of its body; grouped into a
-- batch, then answered (response or error) when the batch ends, and its work made ready again.
CREATE TABLE batch_calls (
    experiment_id TEXT NOT NULL,
    work_key      TEXT NOT NULL,
    request_key   TEXT NOT NULL,
    -- The candidate's name, or '' for the judge.
    endpoint      TEXT NOT NULL,
    custom_id     TEXT NOT NULL,
    body          TEXT NOT NULL,
    parked_ms     BIGINT NOT NULL,
    batch_id      TEXT,
    answered      INTEGER NOT NULL DEFAULT 0,
    response      TEXT,
    error         TEXT,
    PRIMARY KEY (experiment_id, work_key, request_key)
);
CREATE INDEX batch_calls_ungrouped ON batch_calls (experiment_id, endpoint, parked_ms) WHERE batch_id IS NULL;
CREATE INDEX batch_calls_batch ON batch_calls (batch_id, custom_id);

-- Batches: `new` (grouped), `submitting` (a worker is creating it at the provider: a worker
-- taking it over looks for it there first — by its id in the batch's metadata on OpenAI's
-- interface, by its size and time on Anthropic's, checked on its results), `submitted`
-- (polled), `ended`. Driven by one worker at a time, under a lease.
CREATE TABLE batches (
    id              TEXT PRIMARY KEY,
    experiment_id   TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    status          TEXT NOT NULL,
    provider_id     TEXT,
    provider_status TEXT,
    requests        BIGINT NOT NULL DEFAULT 0,
    submissions     BIGINT NOT NULL DEFAULT 0,
    owner           TEXT NOT NULL DEFAULT '',
    expires_ms      BIGINT NOT NULL DEFAULT 0,
    created_ms      BIGINT NOT NULL,
    -- When a worker last started submitting it (a batch found at the provider must be no older).
    submitting_ms   BIGINT,
    submitted_ms    BIGINT,
    ended_ms        BIGINT
);
CREATE INDEX batches_open ON batches (expires_ms) WHERE status <> 'ended';
CREATE INDEX batches_experiment ON batches (experiment_id);
