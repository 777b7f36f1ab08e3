-- Replays and judgments point at an item of a kind: a production `exchange`, or a golden
-- `dataset_item`. The exchange foreign keys go (a dataset item is not an exchange); the
-- columns become (item_kind, item_id).

-- Every version of every golden dataset, by content hash; a run records the version it used,
-- and a changed file is a new version, never an edit of an old one.
CREATE TABLE dataset_versions (
    dataset    TEXT NOT NULL,
    version    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    items      INTEGER NOT NULL,
    PRIMARY KEY (dataset, version)
);

-- Items of a version (the same content in two datasets is one set of rows). `key` is the id
-- replays and judgments use: `<version>/<item id>`.
CREATE TABLE dataset_items (
    key      TEXT PRIMARY KEY NOT NULL,
    version  TEXT NOT NULL,
    item_id  TEXT NOT NULL,
    position INTEGER NOT NULL,
    body     TEXT NOT NULL,
    UNIQUE (version, item_id)
);

CREATE TABLE experiment_items (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    item_kind     TEXT NOT NULL,
    item_id       TEXT NOT NULL,
    PRIMARY KEY (experiment_id, item_id)
);
INSERT INTO experiment_items (experiment_id, item_kind, item_id)
    SELECT experiment_id, 'exchange', exchange_id FROM experiment_exchanges;
DROP TABLE experiment_exchanges;

CREATE TABLE replays_v2 (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    item_kind     TEXT NOT NULL DEFAULT 'exchange',
    item_id       TEXT NOT NULL,
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
    skipped       TEXT,
    UNIQUE (experiment_id, item_id, candidate)
);
INSERT INTO replays_v2 (id, experiment_id, item_kind, item_id, candidate, model, response, output_text,
        input_tokens, output_tokens, cost_usd, latency_ms, error, created_at, skipped)
    SELECT id, experiment_id, 'exchange', exchange_id, candidate, model, response, output_text,
        input_tokens, output_tokens, cost_usd, latency_ms, error, created_at, skipped FROM replays;
DROP TABLE replays;
ALTER TABLE replays_v2 RENAME TO replays;

CREATE TABLE judgments_v2 (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    item_kind     TEXT NOT NULL DEFAULT 'exchange',
    item_id       TEXT NOT NULL,
    subject       TEXT NOT NULL,
    rubric        TEXT NOT NULL,
    position      TEXT NOT NULL DEFAULT '',
    raw_score     REAL,
    score         REAL,
    reason        TEXT,
    judge_model   TEXT,
    error         TEXT,
    created_at    TEXT NOT NULL,
    raw_output    TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      REAL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    score_samples TEXT,
    skipped       TEXT,
    UNIQUE (experiment_id, item_id, subject, rubric, position)
);
INSERT INTO judgments_v2 (id, experiment_id, item_kind, item_id, subject, rubric, position, raw_score, score,
        reason, judge_model, error, created_at, raw_output, input_tokens, output_tokens, cost_usd, attempts,
        score_samples, skipped)
    SELECT id, experiment_id, 'exchange', exchange_id, subject, rubric, position, raw_score, score,
        reason, judge_model, error, created_at, raw_output, input_tokens, output_tokens, cost_usd, attempts,
        score_samples, skipped FROM judgments;
DROP TABLE judgments;
ALTER TABLE judgments_v2 RENAME TO judgments;
