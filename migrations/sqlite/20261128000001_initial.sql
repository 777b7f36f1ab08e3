-- Captured production traffic. (source, dedup_key) makes gateway re-deliveries harmless.
CREATE TABLE exchanges (
    id            TEXT PRIMARY KEY NOT NULL,
    source        TEXT NOT NULL,
    dedup_key     TEXT NOT NULL,
    external_id   TEXT,
    received_at   TEXT NOT NULL,
    occurred_at   TEXT,
    model         TEXT,
    request       TEXT NOT NULL,
    response      TEXT NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      REAL,
    latency_ms    REAL,
    tags          TEXT NOT NULL DEFAULT '{}',
    succeeded     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (source, dedup_key)
);
CREATE INDEX exchanges_received ON exchanges (received_at);

-- An experiment freezes its spec (filter, candidates with prices, rubrics) when created.
CREATE TABLE experiments (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    spec       TEXT NOT NULL
);

-- The exchanges an experiment sampled, fixed at creation so re-runs see the same set.
CREATE TABLE experiment_exchanges (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    exchange_id   TEXT NOT NULL REFERENCES exchanges (id),
    PRIMARY KEY (experiment_id, exchange_id)
);

-- One replay per (experiment, exchange, candidate): retried or duplicated jobs cannot add rows.
CREATE TABLE replays (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    exchange_id   TEXT NOT NULL REFERENCES exchanges (id),
    candidate     TEXT NOT NULL,
    model         TEXT NOT NULL,
    response      TEXT,
    output_text   TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      REAL,
    latency_ms    REAL,
    error         TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (experiment_id, exchange_id, candidate)
);

-- One judgment per (experiment, exchange, subject, rubric, position). subject is `baseline`
-- or a candidate name; position is '' for pointwise rubrics.
CREATE TABLE judgments (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    exchange_id   TEXT NOT NULL REFERENCES exchanges (id),
    subject       TEXT NOT NULL,
    rubric        TEXT NOT NULL,
    position      TEXT NOT NULL DEFAULT '',
    raw_score     REAL,
    score         REAL,
    reason        TEXT,
    judge_model   TEXT,
    error         TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (experiment_id, exchange_id, subject, rubric, position)
);
