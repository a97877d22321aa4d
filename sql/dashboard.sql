-- dashboard: the named queries of `pgcc dashboard` (pgcc/_dashboard), read
-- through pgcc._queries.for_schema(schema, "dashboard.sql"). Same rules as
-- queries.sql: {schema} is the environment's quoted schema, values are bound.

-- name: counts
SELECT state, count(*) AS jobs FROM {schema}.jobs GROUP BY state;

-- name: running
-- Running jobs, longest-running first, with how long they have run.
SELECT id, task, queue, attempts, worker_id,
       extract(epoch FROM now() - started_at)::float8 AS running_for
FROM {schema}.jobs WHERE state = 'running'
ORDER BY started_at, id LIMIT 200;

-- name: queues
-- Queues with queued or running jobs: how many wait, the head (first queued
-- job in queue order) and the running job, if any. Each part reads its own
-- partial index (jobs_claim_queued, jobs_one_running_per_queue), never the
-- finished jobs.
SELECT q.queue, q.waiting,
       (SELECT j.id FROM {schema}.jobs j
        WHERE j.state = 'queued' AND j.queue = q.queue
        ORDER BY j.scheduled_at, j.id LIMIT 1) AS head_id,
       (SELECT j.id FROM {schema}.jobs j
        WHERE j.state = 'running' AND j.queue = q.queue) AS running_id
FROM (SELECT queue, sum(waiting)::bigint AS waiting
      FROM (SELECT queue, 1 AS waiting FROM {schema}.jobs
            WHERE state = 'queued' AND queue IS NOT NULL
            UNION ALL
            SELECT queue, 0 FROM {schema}.jobs
            WHERE state = 'running' AND queue IS NOT NULL) live
      GROUP BY queue) q
ORDER BY q.queue LIMIT 200;

-- name: workers
-- Live workers: those whose lease has not run out.
SELECT w.id, w.hostname, w.pid, w.concurrency, w.tasks,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       extract(epoch FROM now() - w.started_at)::float8 AS up_for,
       (SELECT count(*) FROM {schema}.jobs j WHERE j.worker_id = w.id AND j.state = 'running')
           AS running
FROM {schema}.workers w
WHERE w.heartbeat_at + w.lease > now()
ORDER BY w.id;

-- name: leader
-- Who gives back dead workers' jobs and prunes, while its lease lasts.
SELECT leader_id, extract(epoch FROM now() - elected_at)::float8 AS leading_for
FROM {schema}.leader WHERE expires_at > now();

-- name: jobs_page
-- One page of the job list, newest first, by keyset: the jobs with an id
-- below %(before)s (NULL: from the newest), filtered by state, task and queue
-- when given. Reads the primary key backwards; no OFFSET, so every page costs
-- the same however deep it is.
SELECT id, task, queue, state, attempts, max_attempts, run_at, created_at, finished_at
FROM {schema}.jobs
WHERE (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: newer_page
-- The page before: jobs newer than %(after)s, oldest first (the caller
-- reverses them).
SELECT id FROM {schema}.jobs
WHERE id > %(after)s::bigint
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id
LIMIT %(limit)s;

-- name: job
SELECT id, task, parameters, queue, state, scheduled_at, run_at, attempts, max_attempts,
       created_at, started_at, finished_at, heartbeat_at, worker_id, error, result,
       attempt_errors, cancel_requested_at, history
FROM {schema}.jobs WHERE id = %(job_id)s;

-- name: retry_job
SELECT coalesce({schema}.retry_job(%(job_id)s), false) AS changed;

-- name: cancel_job
SELECT coalesce({schema}.cancel_job(%(job_id)s), false) AS changed;

-- ---- paused queues (issue 16) ----------------------------------------------------

-- name: paused_queues
-- Paused queues (pause_queue), with how many jobs each holds back.
SELECT p.queue, p.paused_at,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.state = 'queued' AND j.queue = p.queue) AS waiting
FROM {schema}.paused_queues p ORDER BY p.queue LIMIT 200;

-- name: steps
-- The job's recorded steps (ctx.step), in the order they committed.
SELECT name, value, attempt, created_at FROM {schema}.steps
WHERE job_id = %(job_id)s ORDER BY created_at, name;
