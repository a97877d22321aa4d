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

-- name: writes_table
-- W9's table: one row per job, written by the job (plainly or as a step).
CREATE TABLE {schema}.bench_rows (job_id bigint PRIMARY KEY,
                                  at timestamptz NOT NULL DEFAULT now());

-- name: enqueue_writes
INSERT INTO {schema}.jobs (task, parameters)
SELECT %(task)s, jsonb_build_object('i', i, 'schema', %(schema)s::text)
FROM generate_series(1, %(count)s) AS i;

-- name: write_times
-- Per-job write time (ms) the tasks measured, and how many rows they wrote.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (result ->> 'ms')::float8),
       (SELECT count(*) FROM {schema}.bench_rows),
       count(*) FILTER (WHERE state <> 'done')
FROM {schema}.jobs WHERE task = %(task)s;
