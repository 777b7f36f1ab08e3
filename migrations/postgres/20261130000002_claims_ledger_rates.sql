-- Claim before call: one row per unit of work (a replay or a judgment), created when the work
-- is first enqueued (so it is enqueued once) and claimed with a lease by the one worker that
-- calls the model. A crashed claimant's lease expires and another worker takes it over; a
-- finished row is never claimed again. Times are Unix milliseconds on both engines.
CREATE TABLE work_claims (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    work_key      TEXT NOT NULL,
    owner         TEXT NOT NULL DEFAULT '',
    expires_ms    BIGINT NOT NULL DEFAULT 0,
    claims        BIGINT NOT NULL DEFAULT 0,
    finished      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (experiment_id, work_key)
);

-- Storing a result finishes its work, in the same statement: the key is built as the store
-- builds it (a compact JSON array, which to_json of a text array produces).
CREATE FUNCTION evaltap_finish_replay_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO work_claims (experiment_id, work_key, finished)
    VALUES (NEW.experiment_id, to_json(ARRAY['replay', NEW.item_id, NEW.candidate])::text, TRUE)
    ON CONFLICT (experiment_id, work_key) DO UPDATE SET finished = TRUE;
    RETURN NULL;
END
$$;
CREATE TRIGGER replays_finish_work AFTER INSERT ON replays
    FOR EACH ROW EXECUTE FUNCTION evaltap_finish_replay_work();

CREATE FUNCTION evaltap_finish_judgment_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO work_claims (experiment_id, work_key, finished)
    VALUES (NEW.experiment_id,
            to_json(ARRAY['judge', NEW.item_id, NEW.subject, NEW.rubric, NEW.position])::text, TRUE)
    ON CONFLICT (experiment_id, work_key) DO UPDATE SET finished = TRUE;
    RETURN NULL;
END
$$;
CREATE TRIGGER judgments_finish_work AFTER INSERT ON judgments
    FOR EACH ROW EXECUTE FUNCTION evaltap_finish_judgment_work();

-- Spend as a ledger: one reservation per model call, settled with its actual cost, released
-- when its lease expires unsettled (a crashed caller). experiment_spend keeps the running
-- totals that make the cap check one atomic statement.
CREATE TABLE spend_reservations (
    id            TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    kind          TEXT NOT NULL,
    work_key      TEXT NOT NULL,
    estimate_usd  DOUBLE PRECISION NOT NULL,
    actual_usd    DOUBLE PRECISION,
    status        TEXT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL
);
CREATE INDEX spend_reservations_open ON spend_reservations (status, expires_ms);

-- Set when a reservation did not fit under the cap: no more work is enqueued.
ALTER TABLE experiment_spend ADD COLUMN capped BOOLEAN NOT NULL DEFAULT FALSE;

-- Per-minute ingest caps, shared by every serve process on the database.
CREATE TABLE rate_windows (
    source   TEXT NOT NULL,
    minute   BIGINT NOT NULL,
    admitted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source, minute)
);

-- What the tee proxy could not mirror, per process-independent counter.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL DEFAULT 0
);
