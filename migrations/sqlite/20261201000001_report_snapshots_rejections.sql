-- A finished experiment's report is computed once and kept; `fingerprint` names the stored
-- results it was computed from, so the report is rebuilt only when they change.
CREATE TABLE report_snapshots (
    experiment_id TEXT PRIMARY KEY NOT NULL REFERENCES experiments (id),
    fingerprint   TEXT NOT NULL,
    report        TEXT NOT NULL,
    computed_at   TEXT NOT NULL
);

-- Why the door refused items, per source and reason (the sources page shows the commonest).
CREATE TABLE rejection_reasons (
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    count        INTEGER NOT NULL DEFAULT 0,
    last_seen_at TEXT NOT NULL,
    PRIMARY KEY (source, reason)
);
