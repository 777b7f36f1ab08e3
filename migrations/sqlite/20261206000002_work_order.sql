-- Ready work is claimed item by item: every unit of an item (its replays, the baseline's and
-- the candidates' judgments) shares `item_seq`, a hash of (experiment, item), so an item's
-- work is done before the next item's starts and money buys complete pairs, in a random order
-- of items (any prefix of the claimed items is a random sample).
ALTER TABLE work_claims ADD COLUMN item_seq BIGINT NOT NULL DEFAULT 0;
DROP INDEX work_claims_ready;
CREATE INDEX work_claims_ready ON work_claims (expires_ms, item_seq) WHERE finished = FALSE;
