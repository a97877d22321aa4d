-- pgcc schema, version 11: steps (ctx.step), exactly once for database effects.
--
-- A step runs a task's function in one transaction on the job's database;
-- the same transaction checks that the attempt still owns the job (its
-- fencing token) and records the step with its value, so the step's writes
-- and its record commit together or not at all. A job delivered again finds
-- its recorded steps and does not run them again (pgcc/_steps.py).
--
-- The ownership check that counts is the one in record_step, at the end of
-- the step, which locks the job's row to the commit: a reap, a cancel, or a
-- hand-over to a newer attempt either committed before it (the check fails,
-- nothing of the step commits) or waits for the step's commit (and the
-- newer attempt then finds the step recorded). The row is not locked while
-- the step's function runs: the worker's heartbeat updates its running
-- jobs' rows, and a lock held through a long step would stop the lease from
-- being renewed. step_begin checks ownership too, only so that a lost
-- attempt stops before it runs the function at all.

CREATE TABLE steps (
    job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name       text NOT NULL,
    -- The function's value as JSON (JSON null for None, never SQL NULL).
    value      jsonb NOT NULL,
    -- The attempt (jobs.attempts, which a retry_job counts from 0 again) and
    -- the claim (jobs.token) that recorded it.
    attempt    integer NOT NULL,
    token      bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, name)
);

-- Raises PC001 (pgcc's own code: the attempt has lost its job), saying why.
CREATE FUNCTION raise_job_lost(of_job bigint) RETURNS void
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    job record;
BEGIN
    SELECT j.state, j.cancel_requested_at INTO job FROM jobs j WHERE j.id = of_job;
    RAISE EXCEPTION 'job % %; this attempt has lost it and its step did not commit', of_job,
        CASE
            WHEN NOT FOUND THEN 'no longer exists'
            WHEN job.state = 'cancelled' OR job.cancel_requested_at IS NOT NULL
                THEN 'was cancelled'
            WHEN job.state = 'running' THEN 'was handed to a newer attempt'
            ELSE format('is %s now', job.state)
        END
        USING ERRCODE = 'PC001';
END;
$$;

-- The start of a step: its recorded value as JSON text, or NULL when it is
-- not recorded and the attempt holding `attempt_token` still owns the job
-- (PC001 when it does not). A recorded step is returned whoever owns the job:
-- it is done.
CREATE FUNCTION step_begin(of_job bigint, attempt_token bigint, step_name text)
RETURNS text
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    recorded text;
BEGIN
    SELECT s.value::text INTO recorded FROM steps s
    WHERE s.job_id = of_job AND s.name = step_name;
    IF recorded IS NULL AND NOT EXISTS (
            SELECT FROM jobs j
            WHERE j.id = of_job AND j.token = attempt_token AND j.state = 'running'
              AND j.cancel_requested_at IS NULL) THEN
        PERFORM raise_job_lost(of_job);
    END IF;
    RETURN recorded;
END;
$$;

-- The end of a step, in its transaction, just before its commit: checks that
-- the attempt still owns the job, locking the job's row to the commit, and
-- records the step. Raises 22023 for a bad name or value, PC001 when the
-- attempt has lost the job.
CREATE FUNCTION record_step(of_job bigint, attempt_token bigint, step_name text,
                            step_value jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    attempt_no integer;
    limit_bytes bigint;
    size_bytes bigint;
BEGIN
    PERFORM check_name('step name', step_name);
    IF step_value IS NULL THEN
        RAISE EXCEPTION 'a step''s value must be JSON (JSON null for none), not SQL NULL'
            USING ERRCODE = '22023';
    END IF;
    SELECT value::bigint INTO limit_bytes FROM settings WHERE key = 'max_parameters_bytes';
    size_bytes := octet_length(step_value::text);
    IF size_bytes > limit_bytes THEN
        RAISE EXCEPTION 'step % value is % bytes; the limit is % bytes (max_parameters_bytes)',
            step_name, size_bytes, limit_bytes USING ERRCODE = '22023';
    END IF;
    -- FOR SHARE conflicts with every UPDATE of the row: what would take the
    -- job from this attempt waits for this transaction, or has committed and
    -- is seen here (READ COMMITTED rechecks the newest row version).
    SELECT j.attempts INTO attempt_no FROM jobs j
    WHERE j.id = of_job AND j.token = attempt_token AND j.state = 'running'
      AND j.cancel_requested_at IS NULL
    FOR SHARE OF j;
    IF NOT FOUND THEN
        PERFORM raise_job_lost(of_job);
    END IF;
    INSERT INTO steps (job_id, name, value, attempt, token)
    VALUES (of_job, step_name, step_value, attempt_no, attempt_token);
END;
$$;

-- Steps outlive a retry (retry_job): a job retried after it failed or died
-- midway resumes after its last recorded step instead of doing again what
-- already committed, which is the point of a step. A job meant to run every
-- step again is a new job.

REVOKE ALL ON FUNCTION raise_job_lost(bigint), step_begin(bigint, bigint, text),
    record_step(bigint, bigint, text, jsonb) FROM PUBLIC;
