-- What each source has sent, updated in the same transaction as the exchanges it stored.
CREATE TABLE source_stats (
    source       TEXT PRIMARY KEY NOT NULL,
    received     INTEGER NOT NULL DEFAULT 0,
    accepted     INTEGER NOT NULL DEFAULT 0,
    sampled_out  INTEGER NOT NULL DEFAULT 0,
    duplicates   INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0,
    redactions   INTEGER NOT NULL DEFAULT 0,
    last_seen_at TEXT
);
