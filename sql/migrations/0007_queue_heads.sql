-- pgcc schema, version 7: queue heads kept in a table of their own, so that a
-- claim's cost does not grow with the queues that wait.
--
-- Until now every claim walked every queue that had a queued job (one index
-- probe each), however many of them could not run: heads of a task no worker
-- has, not yet due, or behind a running job. queue_heads holds one row per
-- queue whose first queued job could start now if it were due and a worker
-- had its task: no row for a queue whose job runs, or that has nothing
-- queued. A claim reads it by (task, run_at), so blocked queues cost nothing.
--
-- Who keeps it right: only workers, and only while holding the queue's
-- advisory lock, so a claim never waits on it and an enqueuer never locks it.
-- A claim removes the row of each queue it takes a head of. A worker's
-- outcomes (done, failed, retried, put back) refresh the heads of their
-- queues in the same transaction (the query refresh_heads). Whatever else
-- changes a queue's jobs (an enqueue, a reap, a cancel) marks the job
-- queue_touched; each claim first takes in the touched jobs of the queues it
-- can lock (take_in_touched_queues), recomputing their heads from what is
-- committed.

ALTER TABLE jobs ADD COLUMN queue_touched boolean NOT NULL DEFAULT false;
ALTER TABLE jobs ALTER COLUMN queue_touched SET DEFAULT true;
CREATE INDEX jobs_touched_queues ON jobs (id) WHERE queue_touched AND queue IS NOT NULL;
-- next_due reads queue_heads now.
DROP INDEX jobs_queued_run_at;

CREATE TABLE queue_heads (
    queue text PRIMARY KEY,
    job_id bigint NOT NULL,
    task text NOT NULL,
    run_at timestamptz NOT NULL
);
-- Room for priorities: (task, priority, run_at) when they come.
CREATE INDEX queue_heads_ready ON queue_heads (task, run_at);

-- A queue that becomes claimable wakes the idle workers, as a new job does:
-- the worker that took in a bulk enqueue, or one that could not go on with
-- a queue's next job, leaves heads for the others.
CREATE FUNCTION notify_new_heads() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM added) THEN
        PERFORM pg_notify('pgcc.' || TG_TABLE_SCHEMA, '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER queue_heads_notify AFTER INSERT ON queue_heads
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION notify_new_heads();

-- Jobs queued before this version: each free queue's head.
INSERT INTO queue_heads (queue, job_id, task, run_at)
SELECT DISTINCT ON (j.queue) j.queue, j.id, j.task, j.run_at
FROM jobs j
WHERE j.state = 'queued' AND j.queue IS NOT NULL
  AND NOT EXISTS (SELECT FROM queue_locks l WHERE l.queue = j.queue)
ORDER BY j.queue, j.scheduled_at, j.id;

-- The heads of the named queues, recomputed from what is committed, under
-- the queues' advisory locks (taken in order; the caller may hold some
-- already). The recomputation is a statement of its own, after the locks: it
-- sees all that committed before they were taken.
CREATE FUNCTION refresh_queue_heads(space integer, queues text[]) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
BEGIN
    IF cardinality(queues) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(space, hashtext(n))
    FROM (SELECT DISTINCT n FROM unnest(queues) AS n ORDER BY n) d;
    WITH heads AS (
        SELECT q.name, h.id, h.task, h.run_at
        FROM (SELECT DISTINCT n FROM unnest(queues) AS n) AS q(name)
        LEFT JOIN LATERAL (
            SELECT j.id, j.task, j.run_at FROM jobs j
            WHERE j.queue = q.name AND j.state = 'queued'
              AND NOT EXISTS (SELECT FROM queue_locks l WHERE l.queue = q.name)
            ORDER BY j.scheduled_at, j.id LIMIT 1
        ) h ON true
    ), emptied AS (
        DELETE FROM queue_heads d USING heads h WHERE d.queue = h.name AND h.id IS NULL
    )
    INSERT INTO queue_heads AS d (queue, job_id, task, run_at)
    SELECT name, id, task, run_at FROM heads WHERE id IS NOT NULL
    ON CONFLICT (queue) DO UPDATE
    SET job_id = excluded.job_id, task = excluded.task, run_at = excluded.run_at
    WHERE (d.job_id, d.task, d.run_at) IS DISTINCT FROM
          (excluded.job_id, excluded.task, excluded.run_at);
END;
$$;

-- Takes in up to `batch` touched jobs: the heads of their queues are
-- recomputed and the jobs no longer touched. A queue whose advisory lock is
-- held elsewhere (a claim of it, an outcome of its job) is left for the next
-- call, and so are touched jobs another call has locked: it never waits.
-- Returns how many touched jobs it found.
CREATE FUNCTION take_in_touched_queues(space integer, batch integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    ids bigint[];
    names text[];
    locked text[];
BEGIN
    SELECT array_agg(t.id), array_agg(DISTINCT t.queue) INTO ids, names
    FROM (SELECT j.id, j.queue FROM jobs j
          WHERE j.queue_touched AND j.queue IS NOT NULL
          ORDER BY j.id LIMIT batch
          FOR NO KEY UPDATE SKIP LOCKED) t;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    SELECT array_agg(n) INTO locked FROM (SELECT n FROM unnest(names) AS n ORDER BY n) q
    WHERE pg_try_advisory_xact_lock(space, hashtext(n));
    IF locked IS NOT NULL THEN
        PERFORM refresh_queue_heads(space, locked);
        UPDATE jobs SET queue_touched = false WHERE id = ANY(ids) AND queue = ANY(locked);
    END IF;
    RETURN cardinality(ids);
END;
$$;

-- Claimed jobs start: running on `worker` with a token no claim had before,
-- and the task module's max_attempts when the job set none. The one place a
-- job starts, for the claim and for a queue's next job in a response's write.
CREATE FUNCTION start_jobs(job_ids bigint[], by_worker bigint, worker_tasks text[],
                           tasks_max_attempts integer[])
RETURNS TABLE (id bigint, task text, parameters text, queue text, attempts integer,
               run_at timestamptz, token bigint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE jobs j
    SET state = 'running', attempts = j.attempts + 1, token = new_token(),
        started_at = now(), heartbeat_at = now(), worker_id = by_worker, finished_at = NULL,
        max_attempts = coalesce(j.max_attempts, (
            SELECT t.allowed FROM unnest(worker_tasks, tasks_max_attempts) AS t(name, allowed)
            WHERE t.name = j.task))
    WHERE j.id = ANY(job_ids) AND j.state = 'queued'
    RETURNING j.id, j.task, j.parameters::text, j.queue, j.attempts, j.run_at, j.token;
END;
$$;

-- A cancel changes its queue's head: the job is marked touched.
CREATE OR REPLACE FUNCTION cancel_job(job_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    UPDATE jobs SET state = 'cancelled', finished_at = now(), queue_touched = true
    WHERE id = job_id AND state = 'queued'
    RETURNING true;
$$;

DO $migration$
DECLARE
    here text := current_schema();
BEGIN
    EXECUTE format('ALTER FUNCTION %1$I.cancel_job(bigint)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('REVOKE ALL ON FUNCTION %1$I.refresh_queue_heads(integer, text[]),'
                   ' %1$I.notify_new_heads(),'
                   ' %1$I.start_jobs(bigint[], bigint, text[], integer[]),'
                   ' %1$I.take_in_touched_queues(integer, integer) FROM PUBLIC', here);
END;
$migration$;
