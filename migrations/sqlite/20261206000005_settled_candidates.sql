-- Early stopping: a candidate whose every rubric reached a settled always-valid verdict while
-- its experiment ran. Its replays not yet made are stored as skipped (`settled`), never paid.
CREATE TABLE settled_candidates (
    experiment_id TEXT NOT NULL,
    candidate     TEXT NOT NULL,
    settled_ms    BIGINT NOT NULL,
    pairs         BIGINT NOT NULL,
    PRIMARY KEY (experiment_id, candidate)
);
