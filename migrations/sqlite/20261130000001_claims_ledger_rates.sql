-- Claim before call: one row per unit of work (a replay or a judgment), created when the work
-- is first enqueued (so it is enqueued once) and claimed with a lease by the one worker that
-- calls the model. A crashed claimant's lease expires and another worker takes it over; a
-- finished row is never claimed again. Times are Unix milliseconds on both engines.
CREATE TABLE work_claims (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    work_key      TEXT NOT NULL,
    owner         TEXT NOT NULL DEFAULT '',
    expires_ms    INTEGER NOT NULL DEFAULT 0,
    claims        INTEGER NOT NULL DEFAULT 0,
    finished      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, work_key)
);

-- Work stored before claims existed is finished work (keys as the store writes them: compact
-- JSON arrays, which json_array produces).
INSERT INTO work_claims (experiment_id, work_key, finished)
    SELECT experiment_id, json_array('replay', item_id, candidate), 1 FROM replays;
INSERT INTO work_claims (experiment_id, work_key, finished)
    SELECT experiment_id, json_array('judge', item_id, subject, rubric, position), 1 FROM judgments;

-- Storing a result finishes its work, in the same statement: the key is built as the store
-- builds it (a compact JSON array).
CREATE TRIGGER replays_finish_work AFTER INSERT ON replays BEGIN
    INSERT INTO work_claims (experiment_id, work_key, finished)
    VALUES (NEW.experiment_id, json_array('replay', NEW.item_id, NEW.candidate), 1)
    ON CONFLICT (experiment_id, work_key) DO UPDATE SET finished = 1;
END;
CREATE TRIGGER judgments_finish_work AFTER INSERT ON judgments BEGIN
    INSERT INTO work_claims (experiment_id, work_key, finished)
    VALUES (NEW.experiment_id,
            json_array('judge', NEW.item_id, NEW.subject, NEW.rubric, NEW.position), 1)
    ON CONFLICT (experiment_id, work_key) DO UPDATE SET finished = 1;
END;

-- Spend as a ledger: one reservation per model call, settled with its actual cost, released
-- when its lease expires unsettled (a crashed caller). experiment_spend keeps the running
-- totals that make the cap check one atomic statement.
CREATE TABLE spend_reservations (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    kind          TEXT NOT NULL,
    work_key      TEXT NOT NULL,
    estimate_usd  REAL NOT NULL,
    actual_usd    REAL,
    status        TEXT NOT NULL,
    expires_ms    INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX spend_reservations_open ON spend_reservations (status, expires_ms);

-- Set when a reservation did not fit under the cap: no more work is enqueued.
ALTER TABLE experiment_spend ADD COLUMN capped INTEGER NOT NULL DEFAULT 0;

-- Per-minute ingest caps, shared by every serve process on the database.
CREATE TABLE rate_windows (
    source   TEXT NOT NULL,
    minute   INTEGER NOT NULL,
    admitted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, minute)
);

-- What the tee proxy could not mirror, per process-independent counter.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL DEFAULT 0
);
