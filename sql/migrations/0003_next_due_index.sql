-- The worker asks, after each claim that found fewer jobs than it wanted, when
-- the next job becomes due. Jobs without a queue answer that from
-- jobs_claim_free; this index answers it for jobs in a queue, so the question
-- costs two index probes however many jobs the table holds.
CREATE INDEX jobs_queued_run_at ON jobs (run_at) WHERE state = 'queued' AND queue IS NOT NULL;
