-- Named queries pgcc runs. Each block starts with "-- name: NAME".
-- {schema} is filled with the environment's schema as a quoted identifier
-- (psycopg.sql.Identifier), and {default_max_attempts} with the constant of
-- pgcc.tasks (see pgcc.queries.CONSTANTS); values are always bound as
-- parameters. Braces appear nowhere else in this file. Whole-line comments are for the
-- reader and are not sent (pgcc/queries.py).

-- name: schedule_task
SELECT {schema}.schedule_task(%(task)s, %(parameters)s::jsonb, %(at)s, %(after)s, %(queue)s,
                              %(key)s, %(priority)s, %(max_attempts)s, %(timeout)s);

-- name: schedule_tasks
SELECT {schema}.schedule_tasks(%(jobs)s::jsonb);

-- name: cancel_job
SELECT coalesce({schema}.cancel_job(%(job_id)s), false);

-- name: get_job
SELECT id, task, parameters, queue, state, scheduled_at, run_at, attempts, max_attempts,
       created_at, started_at, finished_at, heartbeat_at, worker_id, error, result,
       attempt_errors, cancel_requested_at, history, key, priority, timeout
FROM {schema}.jobs WHERE id = %(job_id)s;

-- ---- seeing and acting on jobs (issue 15) ------------------------------------

-- name: list_jobs
-- The newest jobs first, each filter optional (NULL: any).
SELECT id, task, parameters, queue, state, scheduled_at, run_at, attempts, max_attempts,
       created_at, started_at, finished_at, heartbeat_at, worker_id, error, result,
       attempt_errors, cancel_requested_at, history, key, priority, timeout
FROM {schema}.jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_state
SELECT state FROM {schema}.jobs WHERE id = %(job_id)s;

-- name: retry_job
SELECT {schema}.retry_job(%(job_id)s);

-- name: retry_jobs_where
-- Every finished job of one state (and task, queue when given) run again, in
-- their queue order: each goes behind the one retried before it.
SELECT j.id FROM (
    SELECT id FROM {schema}.jobs
    WHERE state = %(state)s::text
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY scheduled_at, id
) j
WHERE {schema}.retry_job(j.id);

-- ---- end of seeing and acting on jobs ----------------------------------------

-- ---- paused queues (issue 16, migration 0009) --------------------------------

-- name: pause_queue
SELECT {schema}.pause_queue(%(queue)s);

-- name: resume_queue
SELECT {schema}.resume_queue(%(queue)s);

-- name: paused_queues
SELECT queue, paused_at FROM {schema}.paused_queues ORDER BY queue;

-- ---- end of paused queues ----------------------------------------------------

-- name: taskstate_get
WITH created AS (
    INSERT INTO {schema}.taskstate (id) VALUES (%(id)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id, status, error, tries_remaining, data, version, created_at, updated_at
)
SELECT * FROM created
UNION ALL
SELECT id, status, error, tries_remaining, data, version, created_at, updated_at
FROM {schema}.taskstate WHERE id = %(id)s
LIMIT 1;

-- name: taskstate_save
UPDATE {schema}.taskstate
SET status = %(status)s, error = %(error)s, tries_remaining = %(tries_remaining)s,
    data = %(data)s::jsonb, version = version + 1, updated_at = now()
WHERE id = %(id)s AND version = %(version)s
RETURNING version, updated_at;

-- name: status_by_state
SELECT state, count(*) AS jobs FROM {schema}.jobs GROUP BY state ORDER BY state;

-- name: status_by_task
-- Three parts, each read through its partial index, not the whole table.
SELECT task, state, count(*) AS jobs
FROM (SELECT task, state FROM {schema}.jobs WHERE state = 'queued' AND queue IS NULL
      UNION ALL
      SELECT task, state FROM {schema}.jobs WHERE state = 'queued' AND queue IS NOT NULL
      UNION ALL
      SELECT task, state FROM {schema}.jobs WHERE state = 'running') AS live
GROUP BY task, state ORDER BY task, state;

-- name: status_by_queue
SELECT queue, count(*) FILTER (WHERE state = 'queued') AS queued,
       count(*) FILTER (WHERE state = 'running') AS running
FROM (SELECT queue, state FROM {schema}.jobs WHERE state = 'queued' AND queue IS NOT NULL
      UNION ALL
      SELECT queue, state FROM {schema}.jobs WHERE state = 'running' AND queue IS NOT NULL
     ) AS live
GROUP BY queue ORDER BY queue;

-- name: status_oldest_waiting
SELECT extract(epoch FROM now() - least(
    (SELECT min(run_at) FROM {schema}.jobs
     WHERE state = 'queued' AND queue IS NULL AND run_at <= now()),
    (SELECT min(run_at) FROM {schema}.jobs
     WHERE state = 'queued' AND queue IS NOT NULL AND run_at <= now())))::float8 AS waited;

-- name: status_workers
SELECT id, hostname, pid, concurrency, array_length(tasks, 1) AS task_count,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age,
       extract(epoch FROM lease)::float8 AS lease,
       (SELECT count(*) FROM {schema}.jobs j WHERE j.worker_id = w.id AND j.state = 'running')
           AS running
FROM {schema}.workers w ORDER BY id;

-- name: status_leader
-- Who leads the maintenance (rescuing, pruning), while their lease lasts.
SELECT leader_id, extract(epoch FROM now() - elected_at)::float8 AS leading_for,
       extract(epoch FROM expires_at - now())::float8 AS expires_in
FROM {schema}.leader WHERE expires_at > now();

-- name: register_worker
INSERT INTO {schema}.workers (hostname, pid, tasks, concurrency, lease)
VALUES (%(hostname)s, %(pid)s, %(tasks)s, %(concurrency)s, make_interval(secs => %(lease)s))
RETURNING id;

-- name: update_worker_tasks
-- pgcc worker --reload found other tasks.
UPDATE {schema}.workers SET tasks = %(tasks)s WHERE id = %(worker)s;

-- name: unregister_worker
DELETE FROM {schema}.workers WHERE id = %(worker)s;

-- name: heartbeat
-- Renews this worker's lease and its running jobs' heartbeats, and says which
-- jobs (ids and tokens) the database still gives this worker: any other job
-- the worker runs is no longer its own (cancelled, or taken back by the
-- reaper) and is stopped. No row back means the reaper already declared this
-- worker dead. A job a user asked to cancel is not given either: the worker
-- stops it, and its no-response ends it cancelled (migration 0008).
WITH renewed AS (
    UPDATE {schema}.workers SET heartbeat_at = now() WHERE id = %(worker)s RETURNING id
), jobs_renewed AS (
    UPDATE {schema}.jobs SET heartbeat_at = now()
    WHERE worker_id IN (SELECT id FROM renewed) AND state = 'running'
    RETURNING id, token, cancel_requested_at IS NULL AS kept
)
SELECT r.id,
       coalesce((SELECT array_agg(id) FROM jobs_renewed WHERE kept), ARRAY[]::bigint[])
           AS job_ids,
       coalesce((SELECT array_agg(token) FROM jobs_renewed WHERE kept), ARRAY[]::bigint[])
           AS tokens
FROM renewed r;

-- name: take_in_touched_queues
-- First in a claim's transaction; a function call only when there is work.
SELECT {schema}.take_in_touched_queues(%(queue_lock_space)s, %(batch)s)
WHERE (SELECT id FROM {schema}.jobs WHERE queue_touched AND queue IS NOT NULL
       ORDER BY id LIMIT 1) IS NOT NULL;

-- name: claim
-- Takes up to %(limit)s due jobs of this worker's tasks, highest priority
-- first (migration 0009): jobs without a queue in run_at order, and queue heads (at most %(head_limit)s of those: as many
-- as the worker has idle children, so that a queue's job never waits in a
-- busy child's line). One job per queue at most; a queue whose head is not
-- due (a retry's backoff) waits for it.
-- Queue heads come from queue_heads (see migration 0007), read per task in
-- run_at order: queues whose head cannot run cost nothing. The claim's
-- transaction has just taken in the touched queues (take_in_touched_queues).
-- Jobs without a queue are read after (%(free_after_run_at)s, %(free_after_id)s)
-- in claim order: through a backlog the worker passes the last job it took, so
-- that the scan starts past the index entries of jobs claimed since the last
-- vacuum instead of stepping over all of them; from time to time it passes
-- '-infinity' and reads from the front. Claimed rows come back in claim
-- order, each with its run_at as text, for the next such position: text, so
-- that no value of the column can fail to load in the worker.
-- The parts between "-- when prioritized:" and "-- end when" are the ones for
-- jobs of another priority than 0. The worker runs the claim without them
-- (claim/plain, see pgcc/_queries.py) while it sees no such job waiting (see
-- exchange.py): every job is then taken in run_at order, as before
-- priorities, and the claim costs what it cost before them (a plan's nodes
-- cost their set-up even when a one-time filter skips them).
WITH heads AS (
    SELECT h.job_id AS id FROM unnest(%(tasks)s::text[]) AS t(task), LATERAL (
        SELECT q.job_id FROM {schema}.queue_heads q
        WHERE q.task = t.task AND q.run_at <= now()
        ORDER BY q.run_at LIMIT %(head_scan)s
    ) h
    -- when prioritized:
    UNION ALL
    -- Heads of another priority than 0, highest first (an empty index when
    -- every job has priority 0). A head in both lists is one id twice: no
    -- matter to the = ANY below, and cheaper than a UNION's de-duplication.
    SELECT h.job_id FROM unnest(%(tasks)s::text[]) AS t(task), LATERAL (
        SELECT q.job_id FROM {schema}.queue_heads q
        WHERE q.task = t.task AND q.priority <> 0 AND q.run_at <= now()
        ORDER BY q.priority DESC, q.run_at LIMIT %(head_scan)s
    ) h
    -- end when
), free AS (
    -- Locked as they are read, so that rows another worker holds do not count
    -- towards the limit: concurrent workers each get jobs.
    SELECT j.id, j.run_at AS sort_at, j.priority FROM {schema}.jobs j
    WHERE j.state = 'queued' AND j.queue IS NULL AND j.run_at <= now() AND j.attempts < 1000000
      AND (j.run_at, j.id) > (%(free_after_run_at)s::text::timestamptz, %(free_after_id)s::bigint)
      AND j.task = ANY(%(tasks)s::text[])
      -- when prioritized:
      AND j.priority = 0
      -- end when
    ORDER BY j.run_at, j.id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
-- when prioritized:
), free_prioritized AS (
    -- Jobs of another priority than 0, highest first, from the front: not
    -- from the position, which only jobs of priority 0 move (those of
    -- another priority the claim leaves must stay ahead of it).
    SELECT j.id, j.run_at AS sort_at, j.priority FROM {schema}.jobs j
    WHERE j.state = 'queued' AND j.queue IS NULL AND j.priority <> 0 AND j.run_at <= now()
      AND j.attempts < 1000000 AND j.task = ANY(%(tasks)s::text[])
    ORDER BY j.priority DESC, j.run_at, j.id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
-- end when
), ready AS (
    -- The advisory lock is tried in order and only until enough heads are
    -- held: OFFSET 0 keeps it out of the subquery, after the sort.
    SELECT c.id, c.sort_at FROM (
        SELECT j.id, j.run_at AS sort_at, j.queue FROM {schema}.jobs j
        WHERE j.id = ANY(ARRAY(SELECT id FROM heads))
          AND j.state = 'queued' AND j.run_at <= now() AND j.task = ANY(%(tasks)s::text[])
          AND j.attempts < 1000000
        ORDER BY j.priority DESC, j.scheduled_at, j.id OFFSET 0
    ) c
    WHERE pg_try_advisory_xact_lock(%(queue_lock_space)s, hashtext(c.queue))
    LIMIT %(head_limit)s
), held_heads AS (
    -- The heads' rows locked; one a cancel is changing is left for the next
    -- claim, and one a cancel changed meanwhile is no longer queued. A claim
    -- waits for no other transaction (see lock_queue in the schema).
    SELECT j.id, j.run_at AS sort_at, j.queue, j.priority FROM {schema}.jobs j
    WHERE j.id = ANY(ARRAY(SELECT id FROM ready)) AND j.state = 'queued'
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, sort_at, priority, NULL::text AS queue FROM free
    -- when prioritized:
    UNION ALL SELECT id, sort_at, priority, NULL::text FROM free_prioritized
    -- end when
    UNION ALL SELECT id, sort_at, priority, queue FROM held_heads
    ORDER BY priority DESC, sort_at, id LIMIT %(limit)s
), locked AS (
    -- A queue's lock is taken first, against what is committed now, not what
    -- this statement's snapshot saw: a claim that committed since (of a job
    -- that committed late, ahead of the head seen here) holds it, and this
    -- head is then left alone. So the claim never trips the one-running-job
    -- index, whatever the interleaving.
    INSERT INTO {schema}.queue_locks (queue, job_id, worker_id)
    SELECT queue, id, %(worker)s FROM picked WHERE queue IS NOT NULL
    ON CONFLICT (queue) DO NOTHING
    RETURNING job_id, queue
), taken AS (
    -- A queue whose job runs has no head row; its outcome touches it again.
    DELETE FROM {schema}.queue_heads q WHERE q.queue = ANY(ARRAY(SELECT queue FROM locked))
), claimed AS (
    SELECT * FROM {schema}.start_jobs(
        ARRAY(SELECT id FROM picked WHERE queue IS NULL UNION ALL SELECT job_id FROM locked),
        %(worker)s, %(tasks)s::text[], %(max_attempts)s::int[])
)
SELECT id, task, parameters, queue, attempts, run_at::text, token, timeout, priority
FROM claimed ORDER BY run_at, id;

-- name: any_prioritized
-- Whether any job waiting for a claim has another priority than 0 (see
-- "prioritized" in the claim): two looks into partial indexes, empty in the
-- common case. Jobs not yet due count: their priority holds when they are.
SELECT EXISTS (SELECT FROM {schema}.jobs j
               WHERE j.state = 'queued' AND j.queue IS NULL AND j.priority <> 0)
    OR EXISTS (SELECT FROM {schema}.queue_heads q WHERE q.priority <> 0);

-- name: running_of_worker
SELECT id, token FROM {schema}.jobs WHERE worker_id = %(worker)s AND state = 'running';

-- name: next_due
-- In how many seconds the next job this worker could run becomes due, for its
-- wake-up timer: the first in run_at order of jobs without a queue and of
-- queue heads. Epochs are subtracted, not timestamps, so that no run_at can
-- overflow the interval type.
SELECT extract(epoch FROM least(
    (SELECT run_at FROM {schema}.jobs
     WHERE state = 'queued' AND queue IS NULL AND run_at > now()
       AND task = ANY(%(tasks)s::text[])
     ORDER BY run_at LIMIT 1),
    (SELECT min(h.run_at) FROM unnest(%(tasks)s::text[]) AS t(task), LATERAL (
        SELECT q.run_at FROM {schema}.queue_heads q
        WHERE q.task = t.task AND q.run_at > now()
        ORDER BY q.run_at LIMIT 1) h)
))::float8 - extract(epoch FROM now())::float8;

-- name: max_parameters_bytes
-- One row, NULL when the setting is removed (the SQL doors then limit nothing).
SELECT (SELECT value::bigint FROM {schema}.settings WHERE key = 'max_parameters_bytes')
    AS max_parameters_bytes;

-- name: finish
-- Records responses (done or failed) of jobs without a queue, given as one
-- JSON array of [id, token, state, result as JSON text or null, error or
-- null]: one parameter is far cheaper for the worker to send than five
-- arrays. Each row is fenced by the token of the claim it belongs to: a late
-- answer from a stale claim matches nothing. A job that had a queue all the
-- same unlocks it and is touched, for a claim to take the queue in.
WITH outcome AS (
    SELECT (o ->> 0)::bigint AS id, (o ->> 1)::bigint AS token, o ->> 2 AS state,
           (o ->> 3)::jsonb AS result, o ->> 4 AS error
    FROM jsonb_array_elements(%(outcomes)s::jsonb) AS o
), finished AS (
    UPDATE {schema}.jobs j
    SET state = o.state, result = o.result, error = o.error, finished_at = now(),
        heartbeat_at = NULL, queue_touched = j.queue IS NOT NULL
    FROM outcome o
    WHERE j.id = o.id AND j.token = o.token AND j.state = 'running'
      AND j.worker_id = %(worker)s
    RETURNING j.id, j.queue
), unlocking AS (
    SELECT {schema}.lock_queue(%(queue_lock_space)s, f.queue) AS queue, f.id
    FROM finished f WHERE f.queue IS NOT NULL
), unlocked AS (
    DELETE FROM {schema}.queue_locks l USING unlocking u
    WHERE l.queue = u.queue AND l.job_id = u.id
)
SELECT id FROM finished;

-- name: finish_in_queues
-- Records responses as finish does, when some of their jobs had a queue, and
-- goes on with each queue's next job on this worker (up to %(hand_limit)s):
-- see the function (migration 0012). Rows as HandedRow reads them.
SELECT started, id, task, parameters, queue, attempts, run_at, token, timeout, priority
FROM {schema}.finish_in_queues(%(queue_lock_space)s, %(worker)s, %(outcomes)s::jsonb,
                               %(tasks)s::text[], %(max_attempts)s::int[], %(hand_limit)s,
                               %(prioritized)s);

-- name: refresh_heads
-- Last in a transaction of retries and put-backs: the heads of the queues
-- whose jobs went back (see migration 0007). An outcome fenced off matches
-- no token and refreshes nothing.
SELECT {schema}.refresh_queue_heads(%(queue_lock_space)s, ARRAY(
    SELECT j.queue FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS o(id, token)
    JOIN {schema}.jobs j ON j.id = o.id AND j.token = o.token
    WHERE j.queue IS NOT NULL AND j.state <> 'running'));

-- name: retry
-- A running job gave no response, or its task asked for another attempt
-- (pgcc.Retry or its module's retry_on: asked, with a delay in ms or NULL):
-- back to queued after the delay or the backoff, keeping its place in its
-- queue (scheduled_at); once it has used its attempts, dead, or failed if it
-- asked (that was a response). The one place these rules live. Fenced like finish.
WITH lost AS (
    SELECT l.*, {schema}.attempts_used(j.attempts, j.attempt_errors) AS used,
           coalesce(j.max_attempts, {default_max_attempts}) AS allowed
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(reasons)s::text[],
                %(delays)s::bigint[], %(asked)s::boolean[])
        AS l(id, token, reason, delay, asked)
    JOIN {schema}.jobs j ON j.id = l.id
), moved AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN l.used < l.allowed THEN 'queued'
                     WHEN l.asked THEN 'failed' ELSE 'dead' END,
        run_at = now() + coalesce(make_interval(secs => l.delay / 1000.0),
                                  {schema}.retry_delay(l.used)),
        finished_at = CASE WHEN l.used >= l.allowed THEN now() END,
        error = l.reason,
        attempt_errors = j.attempt_errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'error', l.reason, 'at', now())),
        worker_id = NULL, heartbeat_at = NULL
    FROM lost l
    WHERE j.id = l.id AND j.token = l.token AND j.state = 'running'
      AND j.worker_id = %(worker)s
    RETURNING j.id, j.queue, j.state
), unlocking AS (
    SELECT {schema}.lock_queue(%(queue_lock_space)s, m.queue) AS queue, m.id
    FROM moved m WHERE m.queue IS NOT NULL
), unlocked AS (
    DELETE FROM {schema}.queue_locks l USING unlocking u
    WHERE l.queue = u.queue AND l.job_id = u.id
)
SELECT id, state FROM moved;

-- name: release
-- Graceful stop: running jobs go back to queued at once, keeping their place.
-- A job that never started (it waited behind another in a child's line, or
-- the claim's answer was lost) goes back as if it had never been claimed.
WITH back AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(started)s::boolean[])
        AS b(id, token, started)
), moved AS (
    UPDATE {schema}.jobs j
    SET state = 'queued', run_at = least(j.run_at, now()), worker_id = NULL,
        heartbeat_at = NULL,
        attempts = CASE WHEN b.started THEN j.attempts ELSE j.attempts - 1 END,
        started_at = CASE WHEN b.started THEN j.started_at END,
        attempt_errors = CASE WHEN b.started THEN j.attempt_errors || jsonb_build_array(
            jsonb_build_object('attempt', j.attempts, 'error', 'worker stopped; job put back',
                               'put_back', true, 'at', now()))
            ELSE j.attempt_errors END
    FROM back b
    WHERE j.id = b.id AND j.token = b.token AND j.state = 'running'
      AND j.worker_id = %(worker)s
    RETURNING j.id, j.queue
), unlocking AS (
    SELECT {schema}.lock_queue(%(queue_lock_space)s, m.queue) AS queue, m.id
    FROM moved m WHERE m.queue IS NOT NULL
), unlocked AS (
    DELETE FROM {schema}.queue_locks l USING unlocking u
    WHERE l.queue = u.queue AND l.job_id = u.id
)
SELECT id FROM moved;

-- name: lead
-- Takes the maintenance leadership's lease for %(lease)s seconds, or renews
-- it; a row back means this candidate (%(me)s) leads. Another candidate's
-- lease is taken over only once it has expired, by the server's clock. While
-- another leads, as for most candidates most of the time, it writes nothing
-- and locks nothing.
INSERT INTO {schema}.leader AS l (name, leader_id, elected_at, expires_at)
SELECT 'maintenance', %(me)s, now(), now() + make_interval(secs => %(lease)s::float8)
WHERE NOT EXISTS (SELECT FROM {schema}.leader
                  WHERE leader_id <> %(me)s AND expires_at >= now())
ON CONFLICT (name) DO UPDATE
SET leader_id = excluded.leader_id,
    elected_at = CASE WHEN l.leader_id = excluded.leader_id THEN l.elected_at
                      ELSE excluded.elected_at END,
    expires_at = excluded.expires_at
WHERE l.leader_id = excluded.leader_id OR l.expires_at < now()
RETURNING l.elected_at;

-- name: resign
DELETE FROM {schema}.leader WHERE leader_id = %(me)s;

-- name: reap
-- Running jobs whose worker stopped heartbeating for longer than its own
-- lease (or whose worker row is gone) go back to queued, or dead.
WITH expired AS (
    SELECT w.id FROM {schema}.workers w
    WHERE w.heartbeat_at < now() - w.lease
    FOR UPDATE SKIP LOCKED
), orphans AS (
    SELECT j.id, j.worker_id, {schema}.attempts_used(j.attempts, j.attempt_errors) AS used,
           coalesce(j.max_attempts, {default_max_attempts}) AS allowed
    FROM {schema}.jobs j
    WHERE j.state = 'running'
      AND (j.worker_id IN (SELECT id FROM expired)
           OR NOT EXISTS (SELECT FROM {schema}.workers w WHERE w.id = j.worker_id))
    FOR UPDATE OF j SKIP LOCKED
), moved AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN o.used >= o.allowed THEN 'dead' ELSE 'queued' END,
        run_at = now() + {schema}.retry_delay(o.used),
        finished_at = CASE WHEN o.used >= o.allowed THEN now() END,
        error = format('worker %%s stopped heartbeating (no response)', o.worker_id),
        attempt_errors = j.attempt_errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts,
            'error', format('worker %%s stopped heartbeating (no response)', o.worker_id),
            'at', now())),
        worker_id = NULL, heartbeat_at = NULL, queue_touched = true
    FROM orphans o
    WHERE j.id = o.id
    RETURNING j.id, j.queue, j.state
), unlocking AS (
    SELECT {schema}.lock_queue(%(queue_lock_space)s, m.queue) AS queue, m.id
    FROM moved m WHERE m.queue IS NOT NULL
), unlocked AS (
    DELETE FROM {schema}.queue_locks l USING unlocking u
    WHERE l.queue = u.queue AND l.job_id = u.id
), removed AS (
    DELETE FROM {schema}.workers w USING expired e WHERE w.id = e.id RETURNING w.id
)
SELECT (SELECT count(*) FROM moved WHERE state = 'queued') AS requeued,
       (SELECT count(*) FROM moved WHERE state = 'dead') AS dead,
       (SELECT count(*) FROM removed) AS workers_removed;

-- name: clear_stale_queue_locks
-- A queue lock whose job is no longer running would block its queue forever.
-- Checked again once the queue's advisory lock is held; the queue's waiting
-- jobs are touched, so that the next claim finds its head.
WITH stale AS (
    SELECT {schema}.lock_queue(%(queue_lock_space)s, l.queue) AS queue
    FROM {schema}.queue_locks l
    WHERE NOT EXISTS (
        SELECT FROM {schema}.jobs j
        WHERE j.id = l.job_id AND j.state = 'running' AND j.queue = l.queue)
), cleared AS (
    DELETE FROM {schema}.queue_locks l USING stale s
    WHERE l.queue = s.queue AND NOT EXISTS (
        SELECT FROM {schema}.jobs j
        WHERE j.id = l.job_id AND j.state = 'running' AND j.queue = l.queue)
    RETURNING l.queue
)
UPDATE {schema}.jobs j SET queue_touched = true
FROM cleared c WHERE j.queue = c.queue AND j.state = 'queued';

-- name: prune
-- One small batch of finished jobs past the retention; SKIP LOCKED so it never
-- waits on (or blocks) a claim. The reaper repeats it until a batch comes back short.
-- The retention is %(retention)s seconds if given (--retention), else the
-- schema's setting retention_seconds; with neither, nothing is pruned.
DELETE FROM {schema}.jobs WHERE id IN (
    SELECT id FROM {schema}.jobs
    WHERE state IN ('done', 'failed', 'dead', 'cancelled')
      AND finished_at < now() - make_interval(secs => coalesce(%(retention)s::float8, (
          SELECT value::float8 FROM {schema}.settings WHERE key = 'retention_seconds')))
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- ---- pgcc status: what runs, what waits, what failed (issue 15) --------------
-- Each reads through a partial index of the jobs it asks about (running,
-- queued, finished), never the whole table.

-- name: status_running
SELECT id, task, queue, worker_id, attempts,
       extract(epoch FROM now() - started_at)::float8 AS running_for
FROM {schema}.jobs WHERE state = 'running'
ORDER BY started_at NULLS LAST, id LIMIT %(limit)s;

-- name: status_scheduled
SELECT id, task, queue, run_at, extract(epoch FROM run_at - now())::float8 AS due_in
FROM ((SELECT id, task, queue, run_at FROM {schema}.jobs
       WHERE state = 'queued' AND queue IS NULL AND run_at > now()
       ORDER BY run_at, id LIMIT %(limit)s)
      UNION ALL
      (SELECT id, task, queue, run_at FROM {schema}.jobs
       WHERE state = 'queued' AND queue IS NOT NULL AND run_at > now()
       ORDER BY run_at, id LIMIT %(limit)s)) AS later
ORDER BY run_at, id LIMIT %(limit)s;

-- name: status_scheduled_count
SELECT (SELECT count(*) FROM {schema}.jobs
        WHERE state = 'queued' AND queue IS NULL AND run_at > now())
     + (SELECT count(*) FROM {schema}.jobs
        WHERE state = 'queued' AND queue IS NOT NULL AND run_at > now()) AS jobs;

-- name: status_failed_recent
SELECT id, task, queue, state, extract(epoch FROM now() - finished_at)::float8 AS ago,
       split_part(coalesce(error, ''), E'\n', 1) AS error
FROM {schema}.jobs
WHERE state IN ('failed', 'dead') AND finished_at > now() - interval '1 hour'
ORDER BY finished_at DESC, id DESC LIMIT %(limit)s;

-- name: status_failed_recent_by_task
SELECT task, count(*) AS jobs FROM {schema}.jobs
WHERE state IN ('failed', 'dead') AND finished_at > now() - interval '1 hour'
GROUP BY task ORDER BY task;

-- name: status_worker_tasks
SELECT id, tasks, heartbeat_at > now() - lease AS live FROM {schema}.workers ORDER BY id;

-- name: status_task_served
SELECT EXISTS (SELECT 1 FROM {schema}.workers
               WHERE heartbeat_at > now() - lease AND %(task)s = ANY (tasks)) AS served;

-- ---- metrics (pgcc worker --metrics; pgcc/_worker/metrics.py) ----------------

-- name: metrics_queues
-- Queued jobs by task: due now, not due yet, and how long the oldest due one
-- has waited. Every queued job is in one of the two partial claim indexes.
SELECT task,
       count(*) FILTER (WHERE run_at <= now()) AS due,
       count(*) FILTER (WHERE run_at > now()) AS later,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 AS oldest
FROM {schema}.jobs
WHERE state = 'queued'
GROUP BY task
ORDER BY task;

-- ---- periodic tasks (migration 0010) -------------------------------------------

-- name: periodic_declare
-- A worker's schedules (arrays, one element per periodic task). A schedule
-- that is new, changed or active again counts its ticks from now.
INSERT INTO {schema}.periodic AS p (task, schedule, timezone, parameters)
SELECT * FROM unnest(%(tasks)s::text[], %(schedules)s::text[], %(timezones)s::text[],
                     %(parameters)s::jsonb[])
ON CONFLICT (task) DO UPDATE SET
    due_after = CASE WHEN p.active AND p.schedule = excluded.schedule
                          AND p.timezone = excluded.timezone
                     THEN p.due_after ELSE greatest(p.due_after, now()) END,
    schedule = excluded.schedule, timezone = excluded.timezone,
    parameters = excluded.parameters, active = true, declared_at = now();

-- name: periodic_retire
-- A worker's tasks that have no schedule (any more).
UPDATE {schema}.periodic SET active = false, declared_at = now()
WHERE task = ANY(%(tasks)s::text[]) AND active;

-- name: periodic_due
-- The active schedules of these tasks, and the database's clock, which all
-- workers share.
SELECT task, schedule, timezone, due_after, now() AS now
FROM {schema}.periodic WHERE task = ANY(%(tasks)s::text[]) AND active;

-- name: periodic_tick
SELECT {schema}.periodic_tick(%(task)s, %(schedule)s, %(timezone)s, %(tick)s);

-- name: periodic_list
SELECT p.task, p.schedule, p.timezone, p.parameters::text AS parameters, p.active,
       p.due_after, p.last_tick, p.last_job_id, j.state AS last_job_state, p.declared_at,
       now() AS now
FROM {schema}.periodic p LEFT JOIN {schema}.jobs j ON j.id = p.last_job_id
ORDER BY p.task;

-- ---- steps (ctx.step, issue 17) ----------------------------------------------

-- name: get_steps
-- A job's recorded steps, in the order they committed.
SELECT name, value, attempt, created_at FROM {schema}.steps
WHERE job_id = %(job_id)s ORDER BY created_at, name;
