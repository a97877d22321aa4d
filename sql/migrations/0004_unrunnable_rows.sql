-- pgcc schema, version 4: rows no worker could run are refused, and the
-- backoff cannot overflow.

-- The backoff after the n-th attempt: about 2^(n-1) s, capped at 5 minutes.
-- The exponent is capped before the power is taken, so any n is safe
-- (power(2, n) overflows double precision past n = 1024).
CREATE OR REPLACE FUNCTION retry_delay(attempts integer) RETURNS interval
LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs => least(300, power(2, least(greatest(attempts, 1) - 1, 16)))
                                 * (0.9 + random() * 0.2));
$$;

-- Rows written before these rules, by hand, that break them end failed with
-- why, so that the constraints below can be validated.
UPDATE jobs
SET state = 'failed', finished_at = now(), worker_id = NULL, heartbeat_at = NULL,
    error = 'this row could not be run: '
        || concat_ws(', ',
            CASE WHEN NOT isfinite(run_at) THEN format('run_at was %s', run_at) END,
            CASE WHEN NOT isfinite(scheduled_at) THEN format('scheduled_at was %s', scheduled_at) END,
            CASE WHEN attempts NOT BETWEEN 0 AND 1000000 THEN format('attempts was %s', attempts) END,
            CASE WHEN max_attempts > 1000 THEN format('max_attempts was %s', max_attempts) END),
    run_at = CASE WHEN isfinite(run_at) THEN run_at ELSE now() END,
    scheduled_at = CASE WHEN isfinite(scheduled_at) THEN scheduled_at ELSE now() END,
    attempts = least(greatest(attempts, 0), 1000000),
    max_attempts = least(max_attempts, 1000)
WHERE NOT isfinite(run_at) OR NOT isfinite(scheduled_at)
   OR attempts NOT BETWEEN 0 AND 1000000 OR max_attempts > 1000;
DELETE FROM queue_locks l
WHERE NOT EXISTS (SELECT FROM jobs j WHERE j.id = l.job_id AND j.state = 'running');

ALTER TABLE jobs
    ADD CONSTRAINT jobs_times_finite CHECK (isfinite(run_at) AND isfinite(scheduled_at)),
    -- attempts counts claims; a worker adds one per claim. max_attempts is at
    -- most 1000, so a million leaves room for any number of put-backs.
    ADD CONSTRAINT jobs_attempts_range CHECK (attempts BETWEEN 0 AND 1000000),
    ADD CONSTRAINT jobs_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 1000);
ALTER TABLE jobs DROP CONSTRAINT jobs_max_attempts_positive;
