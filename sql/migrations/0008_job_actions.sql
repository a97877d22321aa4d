-- pgcc schema, version 8: acting on single jobs (retry_job; cancel_job of a
-- running job).
--
-- Cancelling a running job cannot end it at once: its child still runs, and
-- its queue must stay locked until the child is gone. cancel_job marks the
-- job (cancel_requested_at) and wakes the workers (NOTIFY on the channel
-- they listen on, payload 'cancel'); the job stays running. The worker that
-- runs it learns it at its next heartbeat (which it renews at once on that
-- notification): the heartbeat no longer gives it the job, so the worker
-- kills the child and, once the child is gone, writes its no-response as
-- usual, fenced by its token. Whatever would put a cancel-requested job back
-- to queued (or dead) - that no-response, a graceful stop's put-back, the
-- reaper - ends it cancelled instead (the trigger jobs_cancel_running), in
-- the same statement that releases its queue's lock. A response the job
-- gave before it could be stopped (done, failed) is kept: it did finish.
--
-- Retrying a finished job keeps its row and id; what its earlier run left
-- (state, attempts, worker, times, error, result, attempt errors) moves to
-- `history`, a JSON array with one object per earlier run, oldest first.
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE jobs ADD COLUMN history jsonb NOT NULL DEFAULT '[]';

CREATE FUNCTION end_cancelled_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.state := 'cancelled';
    NEW.finished_at := now();
    NEW.error := 'cancelled while running';
    NEW.worker_id := NULL;
    NEW.heartbeat_at := NULL;
    NEW.queue_touched := true;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_cancel_running BEFORE UPDATE OF state ON jobs
    FOR EACH ROW
    WHEN (OLD.state = 'running' AND OLD.cancel_requested_at IS NOT NULL
          AND NEW.state IN ('queued', 'dead'))
    EXECUTE FUNCTION end_cancelled_run();

-- A queued job is cancelled at once; a running one is asked to stop (above).
-- True when the job is cancelled or being cancelled; false (never NULL) for
-- an unknown id or a finished job.
CREATE OR REPLACE FUNCTION cancel_job(job_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE jobs SET state = 'cancelled', finished_at = now(), queue_touched = true
    WHERE id = job_id AND state = 'queued';
    IF FOUND THEN
        RETURN true;
    END IF;
    UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, now())
    WHERE id = job_id AND state = 'running';
    IF FOUND THEN
        PERFORM pg_notify('pgcc.' || current_schema(), 'cancel');
        RETURN true;
    END IF;
    RETURN false;
END;
$$;

-- A finished job (done, failed, dead, cancelled) runs again: queued, due now,
-- behind every job of its queue that is due by now (queue order is
-- scheduled_at, id), with attempts back to 0 (a full max_attempts; fencing
-- tokens are drawn anew by each claim, so no token comes back). Its earlier
-- run moves to history. False (never NULL) for an unknown id or a job that is
-- not finished.
CREATE FUNCTION retry_job(job_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_queue text;
    behind timestamptz;
BEGIN
    SELECT j.queue INTO found_queue FROM jobs j
    WHERE j.id = job_id AND j.state IN ('done', 'failed', 'dead', 'cancelled')
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF found_queue IS NOT NULL THEN
        SELECT max(j.scheduled_at) INTO behind FROM jobs j
        WHERE j.queue = found_queue AND j.state IN ('queued', 'running')
          AND j.scheduled_at <= now();
    END IF;
    UPDATE jobs j
    SET history = j.history || jsonb_build_array(jsonb_build_object(
            'state', j.state, 'attempts', j.attempts, 'worker_id', j.worker_id,
            'started_at', j.started_at, 'finished_at', j.finished_at, 'error', j.error,
            'result', j.result, 'attempt_errors', j.attempt_errors, 'retried_at', now())),
        state = 'queued',
        scheduled_at = greatest(now(), behind + interval '1 microsecond'),
        run_at = now(), attempts = 0, token = NULL, started_at = NULL, finished_at = NULL,
        heartbeat_at = NULL, worker_id = NULL, error = NULL, result = NULL,
        attempt_errors = '[]', cancel_requested_at = NULL, queue_touched = true
    WHERE j.id = job_id;
    PERFORM pg_notify('pgcc.' || current_schema(), '');
    RETURN true;
END;
$$;

DO $migration$
DECLARE
    here text := current_schema();
BEGIN
    EXECUTE format('ALTER FUNCTION %1$I.cancel_job(bigint)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.retry_job(bigint)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('REVOKE ALL ON FUNCTION %1$I.retry_job(bigint),'
                   ' %1$I.end_cancelled_run() FROM PUBLIC', here);
END;
$migration$;
