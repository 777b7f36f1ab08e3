-- A reservation whose caller died may have been paid: it is settled at its reserved amount, as
-- `presumed` (its status, and presumed_usd / presumed_calls here), never released to zero. A call
-- whose answer was lost after it was sent (a timeout) is presumed paid at its bound the same way.
-- Presumed amounts are part of spent_usd / judge_spent_usd, so the cap counts them.
ALTER TABLE experiment_spend ADD COLUMN presumed_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE experiment_spend ADD COLUMN presumed_calls BIGINT NOT NULL DEFAULT 0;
-- Why a replay's answer ended (`stop`, `length`, `tool_calls`…): answers cut at the output bound
-- (`length`) are counted per candidate, since a cut answer may score lower for being cut.
ALTER TABLE replays ADD COLUMN finish_reason TEXT;
