-- Drift: golden datasets run on a schedule against a model, each run compared item by item
-- with a pinned reference run; a significant drop opens an alert, the first run back within
-- the margin closes it.
CREATE TABLE schedules (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL UNIQUE,
    dataset              TEXT NOT NULL,
    version              TEXT NOT NULL,
    candidate            TEXT NOT NULL,
    every_seconds        INTEGER NOT NULL,
    spec                 TEXT NOT NULL,
    paused               INTEGER NOT NULL DEFAULT 0,
    reference_experiment TEXT,
    created_at           TEXT NOT NULL
);

-- One row per started slot: the primary key is the claim, so two processes never start the
-- same slot twice.
CREATE TABLE schedule_runs (
    schedule_id   TEXT NOT NULL REFERENCES schedules (id),
    slot          INTEGER NOT NULL,
    experiment_id TEXT,
    started_at    TEXT NOT NULL,
    evaluated_at  TEXT,
    outcome       TEXT,
    PRIMARY KEY (schedule_id, slot)
);

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY NOT NULL,
    schedule_id TEXT NOT NULL REFERENCES schedules (id),
    rubric      TEXT NOT NULL,
    status      TEXT NOT NULL,
    opened_at   TEXT NOT NULL,
    opened_run  TEXT NOT NULL,
    closed_at   TEXT,
    closed_run  TEXT,
    details     TEXT NOT NULL
);
-- One open alert per regression, never one per run.
CREATE UNIQUE INDEX alerts_one_open ON alerts (schedule_id, rubric) WHERE status = 'open';

CREATE TABLE alert_deliveries (
    id         TEXT PRIMARY KEY NOT NULL,
    alert_id   TEXT NOT NULL REFERENCES alerts (id),
    event      TEXT NOT NULL,
    sink       TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    delivered  INTEGER NOT NULL,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
