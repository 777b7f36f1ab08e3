-- Per-experiment spend on candidate replays: a call reserves its estimated cost first and
-- settles the actual cost after, so concurrent workers cannot overrun the cap together.
CREATE TABLE experiment_spend (
    experiment_id TEXT PRIMARY KEY NOT NULL REFERENCES experiments (id),
    cap_usd       REAL,
    reserved_usd  REAL NOT NULL DEFAULT 0,
    spent_usd     REAL NOT NULL DEFAULT 0
);

-- Why a replay was not attempted (e.g. the spend cap), as opposed to `error` for failed calls.
ALTER TABLE replays ADD COLUMN skipped TEXT;
