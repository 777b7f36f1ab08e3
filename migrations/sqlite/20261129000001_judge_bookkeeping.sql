-- What each judge call produced and cost: the raw answer is kept (also for failures, so an
-- unparseable judge can be inspected), tokens and cost count in the experiment's spend, and
-- `attempts` records how often an unreadable answer was asked again.
ALTER TABLE judgments ADD COLUMN raw_output TEXT;
ALTER TABLE judgments ADD COLUMN input_tokens INTEGER;
ALTER TABLE judgments ADD COLUMN output_tokens INTEGER;
ALTER TABLE judgments ADD COLUMN cost_usd REAL;
ALTER TABLE judgments ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
-- With judge_samples = K, the K normalized scores averaged into `score` (JSON array).
ALTER TABLE judgments ADD COLUMN score_samples TEXT;
-- Set when the judgment was not attempted (the spend cap was reached).
ALTER TABLE judgments ADD COLUMN skipped TEXT;

-- Judge spend, apart from replay spend; both count against the experiment's cap.
ALTER TABLE experiment_spend ADD COLUMN judge_spent_usd REAL NOT NULL DEFAULT 0;

-- Judge calibrations against human labels (`evaltap judge calibrate`): the latest per rubric
-- hash is named in every report that uses that rubric.
CREATE TABLE calibrations (
    id            TEXT PRIMARY KEY NOT NULL,
    rubric        TEXT NOT NULL,
    rubric_sha256 TEXT NOT NULL,
    judge_model   TEXT NOT NULL,
    labels_file   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    result        TEXT NOT NULL
);
CREATE INDEX calibrations_rubric ON calibrations (rubric, created_at);
