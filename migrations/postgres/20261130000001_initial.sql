-- The PostgreSQL schema, equal to what migrations/sqlite builds up to 20261129000003: the same
-- tables, columns and keys, in PostgreSQL's types (BIGINT where SQLite says INTEGER, DOUBLE
-- PRECISION for REAL, BOOLEAN and TIMESTAMPTZ where SQLite stores 0/1 and RFC 3339 text).
-- JSON stays TEXT on both engines: the store reads and writes it, never queries into it.

CREATE TABLE exchanges (
    id            TEXT PRIMARY KEY NOT NULL,
    source        TEXT NOT NULL,
    dedup_key     TEXT NOT NULL,
    external_id   TEXT,
    received_at   TIMESTAMPTZ NOT NULL,
    occurred_at   TIMESTAMPTZ,
    model         TEXT,
    request       TEXT NOT NULL,
    response      TEXT NOT NULL,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    cost_usd      DOUBLE PRECISION,
    latency_ms    DOUBLE PRECISION,
    tags          TEXT NOT NULL DEFAULT '{}',
    succeeded     BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (source, dedup_key)
);
CREATE INDEX exchanges_received ON exchanges (received_at);

CREATE TABLE experiments (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    spec       TEXT NOT NULL
);

CREATE TABLE experiment_items (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    item_kind     TEXT NOT NULL,
    item_id       TEXT NOT NULL,
    PRIMARY KEY (experiment_id, item_id)
);

CREATE TABLE replays (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    item_kind     TEXT NOT NULL DEFAULT 'exchange',
    item_id       TEXT NOT NULL,
    candidate     TEXT NOT NULL,
    model         TEXT NOT NULL,
    response      TEXT,
    output_text   TEXT,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    cost_usd      DOUBLE PRECISION,
    latency_ms    DOUBLE PRECISION,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    skipped       TEXT,
    UNIQUE (experiment_id, item_id, candidate)
);

CREATE TABLE judgments (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    item_kind     TEXT NOT NULL DEFAULT 'exchange',
    item_id       TEXT NOT NULL,
    subject       TEXT NOT NULL,
    rubric        TEXT NOT NULL,
    position      TEXT NOT NULL DEFAULT '',
    raw_score     DOUBLE PRECISION,
    score         DOUBLE PRECISION,
    reason        TEXT,
    judge_model   TEXT,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    raw_output    TEXT,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    cost_usd      DOUBLE PRECISION,
    attempts      BIGINT NOT NULL DEFAULT 1,
    score_samples TEXT,
    skipped       TEXT,
    UNIQUE (experiment_id, item_id, subject, rubric, position)
);

CREATE TABLE source_stats (
    source       TEXT PRIMARY KEY NOT NULL,
    received     BIGINT NOT NULL DEFAULT 0,
    accepted     BIGINT NOT NULL DEFAULT 0,
    sampled_out  BIGINT NOT NULL DEFAULT 0,
    duplicates   BIGINT NOT NULL DEFAULT 0,
    rejected     BIGINT NOT NULL DEFAULT 0,
    redactions   BIGINT NOT NULL DEFAULT 0,
    last_seen_at TIMESTAMPTZ
);

CREATE TABLE experiment_spend (
    experiment_id   TEXT PRIMARY KEY NOT NULL REFERENCES experiments (id),
    cap_usd         DOUBLE PRECISION,
    reserved_usd    DOUBLE PRECISION NOT NULL DEFAULT 0,
    spent_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    judge_spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0
);

CREATE TABLE calibrations (
    id            TEXT PRIMARY KEY NOT NULL,
    rubric        TEXT NOT NULL,
    rubric_sha256 TEXT NOT NULL,
    judge_model   TEXT NOT NULL,
    labels_file   TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    result        TEXT NOT NULL
);
CREATE INDEX calibrations_rubric ON calibrations (rubric, created_at);

CREATE TABLE dataset_versions (
    dataset    TEXT NOT NULL,
    version    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    items      BIGINT NOT NULL,
    PRIMARY KEY (dataset, version)
);

CREATE TABLE dataset_items (
    key      TEXT PRIMARY KEY NOT NULL,
    version  TEXT NOT NULL,
    item_id  TEXT NOT NULL,
    position BIGINT NOT NULL,
    body     TEXT NOT NULL,
    UNIQUE (version, item_id)
);

CREATE TABLE schedules (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL UNIQUE,
    dataset              TEXT NOT NULL,
    version              TEXT NOT NULL,
    candidate            TEXT NOT NULL,
    every_seconds        BIGINT NOT NULL,
    spec                 TEXT NOT NULL,
    paused               BOOLEAN NOT NULL DEFAULT FALSE,
    reference_experiment TEXT,
    created_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE schedule_runs (
    schedule_id   TEXT NOT NULL REFERENCES schedules (id),
    slot          BIGINT NOT NULL,
    experiment_id TEXT,
    started_at    TIMESTAMPTZ NOT NULL,
    evaluated_at  TIMESTAMPTZ,
    outcome       TEXT,
    PRIMARY KEY (schedule_id, slot)
);

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY NOT NULL,
    schedule_id TEXT NOT NULL REFERENCES schedules (id),
    rubric      TEXT NOT NULL,
    status      TEXT NOT NULL,
    opened_at   TIMESTAMPTZ NOT NULL,
    opened_run  TEXT NOT NULL,
    closed_at   TIMESTAMPTZ,
    closed_run  TEXT,
    details     TEXT NOT NULL
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (schedule_id, rubric) WHERE status = 'open';

CREATE TABLE alert_deliveries (
    id         TEXT PRIMARY KEY NOT NULL,
    alert_id   TEXT NOT NULL REFERENCES alerts (id),
    event      TEXT NOT NULL,
    sink       TEXT NOT NULL,
    attempts   BIGINT NOT NULL,
    delivered  BOOLEAN NOT NULL,
    last_error TEXT,
    updated_at TIMESTAMPTZ NOT NULL
);
