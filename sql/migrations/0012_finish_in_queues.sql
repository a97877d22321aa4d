-- pgcc schema, version 12: a queue job's response written in one statement.
--
-- The worker wrote the responses of queue jobs with two statements in one
-- transaction: the queues' advisory locks first, then the write (which goes
-- on with each queue's next job), so that the write's snapshot came after
-- the locks. Two statements cost a pipeline and a statement more on the
-- serial queues' path (each job of a queue waits for its predecessor's
-- write). finish_in_queues is now one function: its first statement takes
-- the locks and its second, which in a VOLATILE function takes a snapshot
-- of its own, sees what was committed once they were held, as before.
-- The parts for jobs of another priority than 0 run only when the worker
-- says such jobs wait (`prioritized`, see the worker's exchange); when it
-- does not, they cost a test of the flag: they live in outranked_priority,
-- whose plan is made only when it is first called.

-- The highest priority above 0 among the due work of these tasks that is
-- not in a running queue: a queue's next job of a lower priority is not
-- handed over but waits as its queue's head, for the claims to order.
CREATE FUNCTION outranked_priority(worker_tasks text[]) RETURNS integer
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    RETURN greatest(
        (SELECT max(q.priority) FROM queue_heads q
         WHERE q.priority <> 0 AND q.run_at <= now() AND q.task = ANY(worker_tasks)),
        (SELECT j.priority FROM jobs j
         WHERE j.state = 'queued' AND j.queue IS NULL AND j.priority <> 0
           AND j.run_at <= now() AND j.task = ANY(worker_tasks)
         ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1));
END;
$$;

-- Records responses (done or failed; `outcomes` as the finish query takes
-- them: a JSON array of [id, token, state, result as JSON text or null,
-- error or null]) of a worker's jobs, when some of them had a queue.
-- A queue whose job ended goes on at once: its next job, if due and of this
-- worker's tasks, starts on this worker (at most `hand_limit` such, the room
-- its children have), keeping the queue's lock; any other freed queue is
-- unlocked and its head recorded (see migration 0007). Rows back: each
-- finished id (started false), then each job started, as the claim returns
-- them. Each row is fenced by the token of its claim: a late answer of a
-- stale claim matches nothing.
CREATE FUNCTION finish_in_queues(space integer, by_worker bigint, outcomes jsonb,
                                 worker_tasks text[], tasks_max_attempts integer[],
                                 hand_limit integer, prioritized boolean)
RETURNS TABLE (started boolean, id bigint, task text, parameters text, queue text,
               attempts integer, run_at text, token bigint, timeout double precision,
               priority smallint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    -- The locks of the queues whose jobs this worker runs among them, in
    -- order: the statement below then sees those queues as they are, and
    -- nothing else changes them meanwhile.
    PERFORM lock_queue(space, q.queue)
    FROM (SELECT DISTINCT j.queue FROM jobs j
          WHERE j.id IN (SELECT (o ->> 0)::bigint FROM jsonb_array_elements(outcomes) AS o)
            AND j.queue IS NOT NULL AND j.state = 'running' AND j.worker_id = by_worker
          ORDER BY j.queue) q;
    RETURN QUERY
    WITH outcome AS (
        SELECT (o ->> 0)::bigint AS id, (o ->> 1)::bigint AS token, o ->> 2 AS state,
               (o ->> 3)::jsonb AS result, o ->> 4 AS error
        FROM jsonb_array_elements(outcomes) AS o
    ), finished AS (
        UPDATE jobs j
        SET state = o.state, result = o.result, error = o.error, finished_at = now(),
            heartbeat_at = NULL
        FROM outcome o
        WHERE j.id = o.id AND j.token = o.token AND j.state = 'running'
          AND j.worker_id = by_worker
        RETURNING j.id, j.queue
    ), next AS (
        -- A paused queue has no next job.
        SELECT f.queue, f.id AS ended, n.id, n.task, n.run_at, n.attempts, n.priority
        FROM finished f LEFT JOIN LATERAL (
            SELECT j.id, j.task, j.run_at, j.attempts, j.priority FROM jobs j
            WHERE j.queue = f.queue AND j.state = 'queued'
              AND f.queue <> ALL(ARRAY(SELECT p.queue FROM paused_queues p))
            ORDER BY j.scheduled_at, j.id LIMIT 1
        ) n ON true
        WHERE f.queue IS NOT NULL
    ), handed AS (
        -- Not a next job of a priority below 0: lower than any default job,
        -- it always waits for a claim (when none of another priority waits,
        -- there is none).
        SELECT n.id FROM next n
        WHERE n.run_at <= now() AND n.task = ANY(worker_tasks) AND n.attempts < 1000000
          AND (NOT prioritized
               OR n.priority >= greatest(0, (SELECT outranked_priority(worker_tasks))))
        ORDER BY n.run_at, n.id LIMIT hand_limit
    ), started AS (
        SELECT * FROM start_jobs(ARRAY(SELECT id FROM handed), by_worker,
                                 worker_tasks, tasks_max_attempts)
    ), relocked AS (
        UPDATE queue_locks l SET job_id = s.id, worker_id = by_worker, locked_at = now()
        FROM started s WHERE l.queue = s.queue
    ), unlocked AS (
        DELETE FROM queue_locks l USING next n
        WHERE l.queue = n.queue AND l.job_id = n.ended
          AND n.queue NOT IN (SELECT queue FROM started)
    ), headed AS (
        INSERT INTO queue_heads AS h (queue, job_id, task, run_at, priority)
        SELECT n.queue, n.id, n.task, n.run_at, n.priority FROM next n
        WHERE n.id IS NOT NULL AND n.queue NOT IN (SELECT queue FROM started)
        ON CONFLICT (queue) DO UPDATE
        SET job_id = excluded.job_id, task = excluded.task, run_at = excluded.run_at,
            priority = excluded.priority
    )
    SELECT false, f.id, NULL::text, NULL::text, NULL::text, NULL::int, NULL::text,
           NULL::bigint, NULL::float8, NULL::smallint
    FROM finished f
    UNION ALL
    SELECT true, s.id, s.task, s.parameters, s.queue, s.attempts, s.run_at::text, s.token,
           s.timeout, s.priority
    FROM started s;
END;
$$;

REVOKE ALL ON FUNCTION outranked_priority(text[]),
    finish_in_queues(integer, bigint, jsonb, text[], integer[], integer, boolean) FROM PUBLIC;

-- A worker role (pgcc grant worker) has every function and table: the new
-- ones too, and those of migration 0011 (steps), which that migration did not
-- give to the roles granted before it.
DO $migration$
DECLARE
    here text := current_schema();
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT r.rolname FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = here AND p.proname = 'new_token' AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %1$I TO %2$I', here, grantee);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.steps TO %2$I',
                       here, grantee);
    END LOOP;
END;
$migration$;
