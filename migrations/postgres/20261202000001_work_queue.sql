-- Workers claim ready work straight from work_claims, in batches: unfinished rows whose lease
-- ran out (0 when never claimed). Work handed back to the job queue has expires_ms at its
-- maximum and is out of this range.
CREATE INDEX work_claims_ready ON work_claims (expires_ms) WHERE finished = FALSE;
