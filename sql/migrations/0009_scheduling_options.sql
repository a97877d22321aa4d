-- pgcc schema, version 9: scheduling options (key, priority, max_attempts,
-- timeout per job) and paused queues.
--
-- key: while a job with a key is queued or running, scheduling another with
-- that key writes nothing and returns the first one's id. The partial unique
-- index is what enforces it, whatever the interleaving: two transactions
-- that insert one key meet in it, and the second waits for the first to
-- commit or roll back (ON CONFLICT ... DO NOTHING, then a look-up).
-- timeout: seconds; NULL runs the job with its task module's timeout.
ALTER TABLE jobs ADD COLUMN key text;
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN timeout double precision;
ALTER TABLE jobs ADD CONSTRAINT jobs_priority_range CHECK (priority BETWEEN -100 AND 100);
ALTER TABLE jobs ADD CONSTRAINT jobs_timeout_range CHECK (timeout > 0 AND timeout < 31622400);
CREATE UNIQUE INDEX jobs_live_key ON jobs (key)
    WHERE key IS NOT NULL AND state IN ('queued', 'running');
-- Raises 22023 (invalid_parameter_value) when a scheduling option breaks the
-- rules; `what` prefixes the option's name ('' or 'jobs[3].').
CREATE FUNCTION check_options(what text, key text, priority integer, max_attempts integer,
                              timeout double precision) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF key IS NOT NULL THEN
        PERFORM check_name(what || 'key', key);
    END IF;
    IF priority IS NOT NULL AND priority NOT BETWEEN -100 AND 100 THEN
        RAISE EXCEPTION '%priority must be from -100 to 100, got %', what, priority
            USING ERRCODE = '22023';
    END IF;
    IF max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION '%max_attempts must be from 1 to 1000, got %', what, max_attempts
            USING ERRCODE = '22023';
    END IF;
    -- The bound of a task module's timeout (pgcc/_tasks.py MAX_TIMEOUT, a year).
    IF timeout <= 0 OR timeout >= 31622400 OR timeout = 'NaN' THEN
        RAISE EXCEPTION '%timeout must be more than 0 and less than 31622400 seconds, got %',
            what, timeout USING ERRCODE = '22023';
    END IF;
END;
$$;

-- The options of one element of a bulk request, type-checked (22023 naming
-- the element), then range-checked as schedule_task checks them.
CREATE FUNCTION check_bulk_options(ord bigint, j jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
DECLARE
    what text := format('jobs[%s].', ord);
BEGIN
    IF j ? 'key' AND jsonb_typeof(j -> 'key') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION '%key must be a string, not %', what, jsonb_typeof(j -> 'key')
            USING ERRCODE = '22023';
    END IF;
    IF (j ? 'priority' AND jsonb_typeof(j -> 'priority') NOT IN ('number', 'null'))
       OR (jsonb_typeof(j -> 'priority') = 'number' AND (j ->> 'priority') !~ '^-?[0-9]{1,9}$') THEN
        RAISE EXCEPTION '%priority must be a whole number from -100 to 100', what
            USING ERRCODE = '22023';
    END IF;
    IF (j ? 'max_attempts' AND jsonb_typeof(j -> 'max_attempts') NOT IN ('number', 'null'))
       OR (jsonb_typeof(j -> 'max_attempts') = 'number'
           AND (j ->> 'max_attempts') !~ '^-?[0-9]{1,9}$') THEN
        RAISE EXCEPTION '%max_attempts must be a whole number from 1 to 1000', what
            USING ERRCODE = '22023';
    END IF;
    IF j ? 'timeout' AND jsonb_typeof(j -> 'timeout') NOT IN ('number', 'null') THEN
        RAISE EXCEPTION '%timeout must be a number of seconds', what USING ERRCODE = '22023';
    END IF;
    -- Out of double precision's range: refused before the cast below overflows.
    IF (j ->> 'timeout')::numeric NOT BETWEEN -1e9 AND 1e9 THEN
        RAISE EXCEPTION '%timeout must be more than 0 and less than 31622400 seconds, got %',
            what, j ->> 'timeout' USING ERRCODE = '22023';
    END IF;
    PERFORM check_options(what, j ->> 'key', (j ->> 'priority')::integer,
                          (j ->> 'max_attempts')::integer, (j ->> 'timeout')::double precision);
END;
$$;

-- The SQL door for one job (see migration 0002 for its fast path). A job
-- with a key is inserted unless a queued or running job holds the key
-- (jobs_live_key), and that job's id comes back instead: ON CONFLICT waits
-- for a transaction that inserted the key and has not committed, then skips.
-- If the holder finished between the insert and the look-up, the key is free
-- again and the insert is tried anew.
DROP FUNCTION schedule_task(text, jsonb, timestamptz, bigint, text);
DO $migration$
BEGIN
    EXECUTE format($create$
CREATE FUNCTION schedule_task(
    task text,
    parameters jsonb DEFAULT '{}',
    at timestamptz DEFAULT NULL,
    after bigint DEFAULT NULL,
    queue text DEFAULT NULL,
    key text DEFAULT NULL,
    priority integer DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    timeout double precision DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $body$
#variable_conflict use_column
DECLARE
    due timestamptz;
    limit_bytes bigint;
    job_id bigint;
BEGIN
    -- A superset of check_job's conditions (the size limit aside), as one
    -- simple expression; check_job raises the first rule broken.
    IF $1 IS NULL OR btrim($1) = '' OR char_length($1) > 200 OR $1 ~ '[\x01-\x1f\x7f-\x9f]'
       OR ($5 IS NOT NULL AND (btrim($5) = '' OR char_length($5) > 200
                               OR $5 ~ '[\x01-\x1f\x7f-\x9f]'))
       OR jsonb_typeof($2) IS DISTINCT FROM 'object'
       OR ($3 IS NOT NULL AND ($4 IS NOT NULL OR NOT isfinite($3)))
       OR $4 < 0 OR $4 > 3155760000000 THEN
        PERFORM %1$I.check_job($1, $2, $3, $4, $5);
    END IF;
    IF ($6 IS NOT NULL AND (btrim($6) = '' OR char_length($6) > 200
                            OR $6 ~ '[\x01-\x1f\x7f-\x9f]'))
       OR $7 NOT BETWEEN -100 AND 100 OR $8 NOT BETWEEN 1 AND 1000
       OR $9 <= 0 OR $9 >= 31622400 THEN
        PERFORM %1$I.check_options('', $6, $7, $8, $9);
    END IF;
    SELECT value::bigint INTO limit_bytes FROM %1$I.settings WHERE key = 'max_parameters_bytes';
    IF octet_length($2::text) > limit_bytes THEN
        PERFORM %1$I.check_job($1, $2, $3, $4, $5);
    END IF;
    due := greatest(now(), coalesce($3, now() + make_interval(secs => coalesce($4, 0) / 1000.0)));
    IF $6 IS NULL THEN
        INSERT INTO %1$I.jobs (task, parameters, queue, scheduled_at, run_at, priority,
                               max_attempts, timeout)
        VALUES ($1, $2, $5, due, due, coalesce($7, 0), $8, $9)
        RETURNING id INTO job_id;
        IF $7 <> 0 THEN
            -- Tells idle workers that claim in plain order to order by priority.
            PERFORM pg_notify('pgcc.' || current_schema(), 'priority');
        END IF;
        RETURN job_id;
    END IF;
    LOOP
        INSERT INTO %1$I.jobs AS j (task, parameters, queue, scheduled_at, run_at, priority,
                                    max_attempts, timeout, key)
        VALUES ($1, $2, $5, due, due, coalesce($7, 0), $8, $9, $6)
        ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
        RETURNING id INTO job_id;
        IF job_id IS NOT NULL THEN
            IF $7 <> 0 THEN
                PERFORM pg_notify('pgcc.' || current_schema(), 'priority');
            END IF;
            RETURN job_id;
        END IF;
        SELECT j.id INTO job_id FROM %1$I.jobs j
        WHERE j.key = $6 AND j.state IN ('queued', 'running');
        IF job_id IS NOT NULL THEN
            RETURN job_id;
        END IF;
    END LOOP;
END;
$body$
$create$, current_schema());
END;
$migration$;

-- The jobs of a keyed bulk request that were not inserted (their key is held,
-- by a job before this request or by an element before them in it): each
-- gets the holder's id, as schedule_task gives it. `ids` are the ids given to
-- the elements, in order; returns them with the holders' ids in place.
CREATE FUNCTION settle_bulk_keys(jobs jsonb, ids bigint[], inserted bigint[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT b.ord, b.j, b.task, b.parameters, b.at_text, b.after_json, b.queue
             FROM bulk_elements(jobs) b
             WHERE NOT ids[b.ord + 1] = ANY(inserted) ORDER BY b.ord LOOP
        ids[e.ord + 1] := schedule_task(
            e.task, e.parameters, e.at_text::timestamptz,
            (e.after_json #>> '{}')::bigint, e.queue, e.j ->> 'key',
            coalesce((e.j ->> 'priority')::integer, 0), (e.j ->> 'max_attempts')::integer,
            (e.j ->> 'timeout')::double precision);
    END LOOP;
    RETURN ids;
END;
$$;

CREATE OR REPLACE FUNCTION schedule_tasks(jobs jsonb) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    ids bigint[];
    given bigint[];
    bad record;
    limit_bytes bigint;
    infinite boolean;
    suspect boolean;
    prioritized boolean;
BEGIN
    IF jobs IS NULL OR jsonb_typeof(jobs) <> 'array' THEN
        RAISE EXCEPTION 'jobs must be a JSON array of job objects' USING ERRCODE = '22023';
    END IF;
    -- One pass over the elements with every rule but the size limit (checked
    -- below, only when it could be broken): a superset of the rules. Only when
    -- it finds something do the per-rule scans run, to name the first
    -- offending element of the first rule broken.
    suspect := EXISTS (
        SELECT FROM jsonb_array_elements(jobs) AS e(j)
        WHERE CASE WHEN jsonb_typeof(j) <> 'object' THEN true ELSE
            (j - ARRAY['task', 'parameters', 'at', 'after', 'queue', 'key', 'priority',
                      'max_attempts', 'timeout']) <> '{}'
            OR jsonb_typeof(j -> 'task') IS DISTINCT FROM 'string'
            OR btrim(j ->> 'task') = '' OR char_length(j ->> 'task') > 200
            OR (j ->> 'task') ~ '[\x01-\x1f\x7f-\x9f]'
            OR (j ? 'queue' AND jsonb_typeof(j -> 'queue') NOT IN ('string', 'null'))
            OR btrim(j ->> 'queue') = '' OR char_length(j ->> 'queue') > 200
            OR (j ->> 'queue') ~ '[\x01-\x1f\x7f-\x9f]'
            OR (j ? 'parameters' AND jsonb_typeof(j -> 'parameters') <> 'object')
            OR (j ? 'at' AND jsonb_typeof(j -> 'at') NOT IN ('string', 'null'))
            OR (j ->> 'at') !~* '(z|[+-][0-9]{2}(:?[0-9]{2})?)$'
            OR (j ? 'after' AND jsonb_typeof(j -> 'after') NOT IN ('number', 'null'))
            OR CASE WHEN jsonb_typeof(j -> 'after') = 'number' THEN
                   (j ->> 'after') !~ '^-?[0-9]+$'
                   OR (j ->> 'after')::numeric NOT BETWEEN 0 AND 3155760000000
                   OR (j ->> 'at') IS NOT NULL
               ELSE false END
            OR (j ? 'key' AND (jsonb_typeof(j -> 'key') NOT IN ('string', 'null')
                               OR btrim(j ->> 'key') = '' OR char_length(j ->> 'key') > 200
                               OR (j ->> 'key') ~ '[\x01-\x1f\x7f-\x9f]'))
            OR (j ? 'priority' AND (jsonb_typeof(j -> 'priority') NOT IN ('number', 'null')
                                    OR (j ->> 'priority') !~ '^-?[0-9]{1,3}$'
                                    OR (j ->> 'priority')::integer NOT BETWEEN -100 AND 100))
            OR (j ? 'max_attempts' AND (jsonb_typeof(j -> 'max_attempts') NOT IN ('number', 'null')
                                        OR (j ->> 'max_attempts') !~ '^[0-9]{1,4}$'
                                        OR (j ->> 'max_attempts')::integer NOT BETWEEN 1 AND 1000))
            OR (j ? 'timeout' AND (jsonb_typeof(j -> 'timeout') NOT IN ('number', 'null')
                                   OR (j ->> 'timeout')::numeric <= 0
                                   OR (j ->> 'timeout')::numeric >= 31622400))
        END
    );
    IF suspect THEN
        SELECT ord INTO bad FROM bulk_elements(jobs) WHERE jsonb_typeof(j) <> 'object' ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%] must be a JSON object', bad.ord USING ERRCODE = '22023';
        END IF;
        SELECT ord, (SELECT min(k) FROM jsonb_object_keys(rest) AS k) AS k INTO bad
        FROM (SELECT ord, j - ARRAY['task', 'parameters', 'at', 'after', 'queue', 'key', 'priority',
                      'max_attempts', 'timeout'] AS rest
              FROM bulk_elements(jobs)) AS extra
        WHERE rest <> '{}' ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%]: unknown key "%"', bad.ord, bad.k USING ERRCODE = '22023';
        END IF;
        SELECT ord, key, jsonb_typeof(j -> key) AS type INTO bad
        FROM bulk_elements(jobs), unnest(ARRAY['task', 'queue', 'at']) AS key
        WHERE j ? key AND jsonb_typeof(j -> key) NOT IN ('string', 'null')
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].% must be a string, not %', bad.ord, bad.key, bad.type
                USING ERRCODE = '22023';
        END IF;
        SELECT ord INTO bad FROM bulk_elements(jobs)
        WHERE j ? 'after' AND jsonb_typeof(j -> 'after') <> 'null'
          AND (jsonb_typeof(j -> 'after') <> 'number' OR (j ->> 'after') !~ '^-?[0-9]+$')
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].after must be a whole number of milliseconds', bad.ord
                USING ERRCODE = '22023';
        END IF;
        SELECT ord INTO bad FROM bulk_elements(jobs)
        WHERE j ->> 'at' IS NOT NULL
          AND (j ->> 'at') !~* '(z|[+-][0-9]{2}(:?[0-9]{2})?)$'
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].at must be an ISO 8601 time with a UTC offset', bad.ord
                USING ERRCODE = '22023';
        END IF;

        SELECT ord, task INTO bad FROM bulk_elements(jobs)
        WHERE task IS NULL OR btrim(task) = '' OR char_length(task) > 200
           OR task ~ '[\x01-\x1f\x7f-\x9f]'
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            PERFORM check_name(format('jobs[%s].task', bad.ord), bad.task);
        END IF;
        SELECT ord, queue INTO bad FROM bulk_elements(jobs)
        WHERE queue IS NOT NULL
          AND (btrim(queue) = '' OR char_length(queue) > 200 OR queue ~ '[\x01-\x1f\x7f-\x9f]')
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            PERFORM check_name(format('jobs[%s].queue', bad.ord), bad.queue);
        END IF;
        SELECT ord, jsonb_typeof(parameters) AS type INTO bad FROM bulk_elements(jobs)
        WHERE jsonb_typeof(parameters) <> 'object' ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].parameters must be a JSON object, not %', bad.ord, bad.type
                USING ERRCODE = '22023';
        END IF;
        PERFORM check_bulk_options(ord, j) FROM bulk_elements(jobs)
        WHERE j ?| ARRAY['key', 'priority', 'max_attempts', 'timeout'] ORDER BY ord;
    END IF;
    SELECT value::bigint INTO limit_bytes FROM settings WHERE key = 'max_parameters_bytes';
    -- No element is larger than the whole array: measure each only when it could be.
    IF octet_length(jobs::text) > limit_bytes THEN
        SELECT ord, octet_length(parameters::text) AS size INTO bad FROM bulk_elements(jobs)
        WHERE octet_length(parameters::text) > limit_bytes ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].parameters are % bytes; the limit is % bytes',
                bad.ord, bad.size, limit_bytes USING ERRCODE = '22023';
        END IF;
    END IF;
    IF suspect THEN
        SELECT ord INTO bad FROM bulk_elements(jobs)
        WHERE at_text IS NOT NULL AND after_json IS NOT NULL AND after_json <> 'null'
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%]: give at or after, not both', bad.ord USING ERRCODE = '22023';
        END IF;
        SELECT ord INTO bad FROM bulk_elements(jobs)
        WHERE jsonb_typeof(after_json) = 'number' AND (after_json #>> '{}')::numeric < 0
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].after must be >= 0 milliseconds', bad.ord USING ERRCODE = '22023';
        END IF;
        SELECT ord INTO bad FROM bulk_elements(jobs)
        WHERE jsonb_typeof(after_json) = 'number' AND (after_json #>> '{}')::numeric > 3155760000000
        ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%].after is over the limit of 3155760000000 milliseconds (100 years)',
                bad.ord USING ERRCODE = '22023';
        END IF;
    END IF;
    IF EXISTS (SELECT FROM bulk_elements(jobs) WHERE at_text IS NOT NULL) THEN
        -- A time that matches the pattern above may still not exist (month 13):
        -- parse them all once, and only if that fails find which (an exception
        -- block costs a subtransaction, so only calls that give times pay it).
        BEGIN
            PERFORM count(at_text::timestamptz) FROM bulk_elements(jobs);
        EXCEPTION WHEN data_exception THEN
            FOR bad IN SELECT ord, at_text FROM bulk_elements(jobs) WHERE at_text IS NOT NULL
                       ORDER BY ord LOOP
                BEGIN
                    PERFORM bad.at_text::timestamptz;
                EXCEPTION WHEN data_exception THEN
                    RAISE EXCEPTION 'jobs[%].at is not a valid time: "%"', bad.ord, bad.at_text
                        USING ERRCODE = '22023';
                END;
            END LOOP;
        END;
    END IF;
    -- Any error from here on (a lock timeout, a deadlock, a full disk, a missing
    -- privilege) is not bad input: it keeps its own SQLSTATE.
    IF NOT jsonb_path_exists(jobs, '$[*] ? (exists(@.key) || exists(@.priority)
                                            || exists(@.max_attempts) || exists(@.timeout))') THEN
        WITH inserted AS (
            INSERT INTO jobs (task, parameters, queue, scheduled_at, run_at)
            SELECT task, parameters, queue, due, due FROM (
                SELECT ord, task, parameters, queue, greatest(now(), coalesce(
                    at_text::timestamptz,
                    now() + make_interval(secs => coalesce((after_json #>> '{}')::numeric, 0)
                                                  / 1000.0))) AS due
                FROM bulk_elements(jobs)
            ) spec ORDER BY ord
            RETURNING id, scheduled_at
        )
        SELECT array_agg(id ORDER BY id), bool_or(NOT isfinite(scheduled_at))
        INTO ids, infinite FROM inserted;
    ELSE
        -- With options: each element is given its id first, so that the
        -- elements whose key is held (skipped by ON CONFLICT) are known.
        WITH spec AS (
            SELECT ord, task, parameters, queue, j ->> 'key' AS key,
                   coalesce((j ->> 'priority')::integer, 0) AS priority,
                   (j ->> 'max_attempts')::integer AS max_attempts,
                   (j ->> 'timeout')::double precision AS timeout,
                   nextval(pg_get_serial_sequence('jobs', 'id')) AS id,
                   greatest(now(), coalesce(
                       at_text::timestamptz,
                       now() + make_interval(secs => coalesce((after_json #>> '{}')::numeric, 0)
                                                     / 1000.0))) AS due
            FROM bulk_elements(jobs)
        ), inserted AS (
            INSERT INTO jobs (id, task, parameters, queue, scheduled_at, run_at, key, priority,
                              max_attempts, timeout)
            SELECT id, task, parameters, queue, due, due, key, priority, max_attempts, timeout
            FROM spec ORDER BY ord
            ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
            RETURNING id, scheduled_at, priority
        )
        SELECT (SELECT array_agg(id ORDER BY ord) FROM spec),
               (SELECT coalesce(array_agg(id), '{}') FROM inserted),
               (SELECT bool_or(NOT isfinite(scheduled_at)) FROM inserted),
               (SELECT bool_or(priority <> 0) FROM inserted)
        INTO ids, given, infinite, prioritized;
        IF prioritized THEN
            -- As schedule_task: workers that claim in plain order order by priority.
            PERFORM pg_notify('pgcc.' || current_schema(), 'priority');
        END IF;
        IF cardinality(given) < cardinality(ids) THEN
            ids := settle_bulk_keys(jobs, ids, given);
        END IF;
    END IF;
    IF infinite THEN
        RAISE EXCEPTION 'jobs: at must be a finite time' USING ERRCODE = '22023';
    END IF;
    RETURN coalesce(ids, '{}');
END;
$$;

-- retry_job as in migration 0008, but a job whose key another queued or
-- running job holds now is not retried (false): it would be a second live job
-- with that key. The exception block (a subtransaction) is only entered for a
-- job with a key, and catches a holder that commits while this runs.
CREATE OR REPLACE FUNCTION retry_job(job_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_queue text;
    found_key text;
    behind timestamptz;
BEGIN
    SELECT j.queue, j.key INTO found_queue, found_key FROM jobs j
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
    IF found_key IS NULL THEN
        PERFORM requeue_finished(job_id, behind);
    ELSE
        BEGIN
            PERFORM requeue_finished(job_id, behind);
        EXCEPTION WHEN unique_violation THEN
            RETURN false;
        END;
    END IF;
    PERFORM pg_notify('pgcc.' || current_schema(), '');
    RETURN true;
END;
$$;

-- A finished job back to queued, behind `behind` in its queue (retry_job).
CREATE FUNCTION requeue_finished(job_id bigint, behind timestamptz) RETURNS void
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
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
$$;

-- start_jobs as in migration 0007, also returning the job's own timeout
-- (NULL: the task module's), which the worker enforces, and its priority.
DROP FUNCTION start_jobs(bigint[], bigint, text[], integer[]);
CREATE FUNCTION start_jobs(job_ids bigint[], by_worker bigint, worker_tasks text[],
                           tasks_max_attempts integer[])
RETURNS TABLE (id bigint, task text, parameters text, queue text, attempts integer,
               run_at timestamptz, token bigint, timeout double precision, priority smallint)
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
    RETURNING j.id, j.task, j.parameters::text, j.queue, j.attempts, j.run_at, j.token,
              j.timeout, j.priority;
END;
$$;

-- priority: among due jobs, higher first. A queue still runs in its own order
-- (scheduled_at, id), so a priority orders queue heads among themselves and
-- jobs without a queue. The claim reads the jobs of priority 0 as before, and
-- those of another priority through the partial indexes below, which hold
-- only them: when every job has priority 0 (the common case) they are empty
-- and a claim pays one look into each.
ALTER TABLE queue_heads ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX queue_heads_prioritized ON queue_heads (task, priority DESC, run_at)
    WHERE priority <> 0;
CREATE INDEX jobs_claim_free_prioritized ON jobs (priority DESC, run_at, id)
    WHERE state = 'queued' AND queue IS NULL AND priority <> 0;

-- Paused queues: their jobs stay queued and no worker starts one. A paused
-- queue has no row in queue_heads (refresh_queue_heads leaves it out), so
-- its waiting jobs cost a claim nothing. pause_queue and resume_queue touch
-- the queue's jobs and wake the workers (NOTIFY), whose next claim takes the
-- change in first; a claim that runs at the moment of the pause may still
-- start the queue's job, as if it had started just before. A queue's
-- hand-over (finish_in_queues) checks this table itself.
-- A queue may be paused before it has any job: it stays paused for the jobs
-- that come later.
CREATE TABLE paused_queues (
    queue text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

-- True when the queue was not paused before.
CREATE FUNCTION pause_queue(queue text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    name text := queue;
BEGIN
    PERFORM check_name('queue', name);
    INSERT INTO paused_queues AS p (queue) VALUES (name) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE jobs j SET queue_touched = true
    WHERE j.queue = name AND j.state = 'queued' AND NOT j.queue_touched;
    PERFORM pg_notify('pgcc.' || current_schema(), '');
    RETURN true;
END;
$$;

-- True when the queue was paused. Its head is taken in by the next claim,
-- which the NOTIFY wakes at once.
CREATE FUNCTION resume_queue(queue text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    name text := queue;
BEGIN
    PERFORM check_name('queue', name);
    DELETE FROM paused_queues p WHERE p.queue = name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE jobs j SET queue_touched = true
    WHERE j.queue = name AND j.state = 'queued' AND NOT j.queue_touched;
    PERFORM pg_notify('pgcc.' || current_schema(), '');
    RETURN true;
END;
$$;

-- refresh_queue_heads as in migration 0007, with each head's priority, and
-- no head for a paused queue.
CREATE OR REPLACE FUNCTION refresh_queue_heads(space integer, queues text[]) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
BEGIN
    IF cardinality(queues) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(space, hashtext(n))
    FROM (SELECT DISTINCT n FROM unnest(queues) AS n ORDER BY n) d;
    WITH heads AS (
        SELECT q.name, h.id, h.task, h.run_at, h.priority
        FROM (SELECT DISTINCT n FROM unnest(queues) AS n) AS q(name)
        LEFT JOIN LATERAL (
            SELECT j.id, j.task, j.run_at, j.priority FROM jobs j
            WHERE j.queue = q.name AND j.state = 'queued'
              AND NOT EXISTS (SELECT FROM queue_locks l WHERE l.queue = q.name)
              AND NOT EXISTS (SELECT FROM paused_queues p WHERE p.queue = q.name)
            ORDER BY j.scheduled_at, j.id LIMIT 1
        ) h ON true
    ), emptied AS (
        DELETE FROM queue_heads d USING heads h WHERE d.queue = h.name AND h.id IS NULL
    )
    INSERT INTO queue_heads AS d (queue, job_id, task, run_at, priority)
    SELECT name, id, task, run_at, priority FROM heads WHERE id IS NOT NULL
    ON CONFLICT (queue) DO UPDATE
    SET job_id = excluded.job_id, task = excluded.task, run_at = excluded.run_at,
        priority = excluded.priority
    WHERE (d.job_id, d.task, d.run_at, d.priority) IS DISTINCT FROM
          (excluded.job_id, excluded.task, excluded.run_at, excluded.priority);
END;
$$;

-- The doors' rights, as in migration 0006; a role granted the former
-- schedule_task (pgcc grant enqueue) keeps its right on the new one.
DO $migration$
DECLARE
    here text := current_schema();
    grantee text;
BEGIN
    EXECUTE format('ALTER FUNCTION %1$I.schedule_task(text, jsonb, timestamptz, bigint, text,'
                   ' text, integer, integer, double precision)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.schedule_tasks(jsonb)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.retry_job(bigint)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.pause_queue(text)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.resume_queue(text)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', here);
    FOR grantee IN
        SELECT DISTINCT r.rolname FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = here AND p.proname = 'schedule_tasks' AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %1$I.schedule_task(text, jsonb, timestamptz,'
                       ' bigint, text, text, integer, integer, double precision) TO %2$I',
                       here, grantee);
    END LOOP;
    -- A role that reads the tables (pgcc grant read, worker) reads the new one too.
    FOR grantee IN
        SELECT DISTINCT r.rolname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = here AND c.relname = 'settings' AND a.privilege_type = 'SELECT'
          AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT SELECT ON %1$I.paused_queues TO %2$I', here, grantee);
    END LOOP;
    -- A worker role (pgcc grant worker) has every function and table: the new ones too.
    FOR grantee IN
        SELECT DISTINCT r.rolname FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = here AND p.proname = 'new_token' AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %1$I TO %2$I', here, grantee);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.paused_queues TO %2$I',
                       here, grantee);
    END LOOP;
END;
$migration$;
