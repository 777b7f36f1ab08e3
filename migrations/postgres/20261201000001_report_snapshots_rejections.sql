-- A finished experiment's report is computed once and kept; `fingerprint` names the stored
-- results it was computed from, so the report is rebuilt only when they change.
CREATE TABLE report_snapshots (
    experiment_id TEXT PRIMARY KEY NOT NULL REFERENCES experiments (id),
    fingerprint   TEXT NOT NULL,
    report        TEXT NOT NULL,
    computed_at   TIMESTAMPTZ NOT NULL
);

-- Why the door refused items, per source and reason (the sources page shows the commonest).
CREATE TABLE rejection_reasons (
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    count        BIGINT NOT NULL DEFAULT 0,
    last_seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, reason)
);

-- Stored traffic per source, model and hour, kept in the transaction that stores the exchanges:
-- the spend and sources pages read hundreds of rows here instead of every exchange.
CREATE TABLE traffic_hourly (
    source                 TEXT NOT NULL,
    model                  TEXT NOT NULL,
    hour                   TEXT NOT NULL,
    requests               BIGINT NOT NULL DEFAULT 0,
    priced                 BIGINT NOT NULL DEFAULT 0,
    cost_usd               DOUBLE PRECISION NOT NULL DEFAULT 0,
    unpriced_input_tokens  BIGINT NOT NULL DEFAULT 0,
    unpriced_output_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, source, model)
);
INSERT INTO traffic_hourly
SELECT source, COALESCE(model, ''), to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24'), COUNT(*),
       COUNT(cost_usd), COALESCE(SUM(cost_usd), 0),
       COALESCE(SUM(CASE WHEN cost_usd IS NULL THEN input_tokens END), 0),
       COALESCE(SUM(CASE WHEN cost_usd IS NULL THEN output_tokens END), 0)
FROM exchanges GROUP BY 1, 2, 3;
