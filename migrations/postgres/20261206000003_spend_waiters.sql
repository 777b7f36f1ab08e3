-- Calls waiting for room under a spend cap that calls in flight hold. A reservation for a later
-- item (a larger item_seq, the claim order) does not fit while an earlier item's call waits, so
-- money goes to finishing the items already started. A row is refreshed while its caller waits
-- and ignored once stale (a caller that died).
CREATE TABLE spend_waiters (
    experiment_id TEXT NOT NULL,
    work_key      TEXT NOT NULL,
    item_seq      BIGINT NOT NULL,
    since_ms      BIGINT NOT NULL,
    PRIMARY KEY (experiment_id, work_key)
);
