-- Results paid for once and reused: a replay of the same request to the same endpoint and model,
-- and a judgment of the same prompt by the same judge, are read back instead of paid again.
-- `payload` is the stored result (JSON); entries older than the configured max age are not read.
CREATE TABLE result_cache (
    kind       TEXT NOT NULL,
    cache_key  TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (kind, cache_key)
);

-- A result read from the cache costs nothing; what it cost when it was paid is kept here.
ALTER TABLE replays ADD COLUMN cached_cost_usd REAL;
ALTER TABLE judgments ADD COLUMN cached_cost_usd REAL;
