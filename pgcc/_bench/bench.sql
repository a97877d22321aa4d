-- Named queries of `pgcc bench` (see sql/queries.sql for the conventions).

-- name: enqueue_noops
-- Fills a queue fast with a plain INSERT, which the contract allows as a door.
INSERT INTO {schema}.jobs (task, parameters)
SELECT %(task)s, jsonb_build_object('i', i) FROM generate_series(1, %(count)s) AS i;

-- name: vacuum_jobs
VACUUM ANALYZE {schema}.jobs;

-- name: workers_registered
SELECT count(*) FROM {schema}.workers;

-- name: jobs_final
SELECT count(*) FROM {schema}.jobs WHERE state NOT IN ('queued', 'running');

-- name: jobs_final_of
SELECT count(*) FROM {schema}.jobs WHERE state NOT IN ('queued', 'running') AND task = %(task)s;

-- name: jobs_done
SELECT count(*), extract(epoch FROM clock_timestamp())::float8
FROM {schema}.jobs WHERE state = 'done';

-- name: server_clock
SELECT extract(epoch FROM clock_timestamp())::float8;

-- name: run_span
SELECT extract(epoch FROM min(started_at))::float8, extract(epoch FROM max(finished_at))::float8
FROM {schema}.jobs;

-- name: first_start
SELECT extract(epoch FROM min(started_at))::float8 FROM {schema}.jobs;

-- name: latencies_ms
SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM {schema}.jobs;

-- name: serial_runs
SELECT id, queue, state, (result ->> 'start')::float8, (result ->> 'end')::float8, worker_id
FROM {schema}.jobs WHERE task = 'serial_probe' ORDER BY queue, id;

-- name: enqueue_blocked_queues
-- Queues whose head no worker can run: a task no worker has.
INSERT INTO {schema}.jobs (task, parameters, queue)
SELECT 'no_worker_has_this', '{{}}', 'blocked-' || i FROM generate_series(1, %(count)s) AS i;

-- name: run_span_of
SELECT extract(epoch FROM min(started_at))::float8, extract(epoch FROM max(finished_at))::float8
FROM {schema}.jobs WHERE task = %(task)s;

-- name: drop_schema
DROP SCHEMA {schema} CASCADE;

-- name: ref_reset
-- Refills the REF table: the rows pgbench's claim-and-complete cycle consumes.
TRUNCATE {schema}.ref_jobs;

-- name: ref_fill
INSERT INTO {schema}.ref_jobs (state, payload)
SELECT 'queued', jsonb_build_object() FROM generate_series(1, %(count)s);

-- name: ref_vacuum
VACUUM ANALYZE {schema}.ref_jobs;
