-- pgcc schema, version 6: doors that need no table rights, and errors that
-- keep their class.
--
-- The SQL doors (schedule_task, schedule_tasks, cancel_job) run with their
-- owner's rights, with the search path pinned to this schema (and pg_temp
-- last, where nobody can put a table in their way). PUBLIC may execute no
-- function here: `pgcc grant enqueue ROLE` gives a role the doors and nothing
-- else, so it can neither read other jobs nor write a row the doors refuse.

CREATE OR REPLACE FUNCTION schedule_tasks(jobs jsonb) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    ids bigint[];
    bad record;
    limit_bytes bigint;
    infinite boolean;
    suspect boolean;
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
            (j - ARRAY['task', 'parameters', 'at', 'after', 'queue']) <> '{}'
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
        END
    );
    IF suspect THEN
        SELECT ord INTO bad FROM bulk_elements(jobs) WHERE jsonb_typeof(j) <> 'object' ORDER BY ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'jobs[%] must be a JSON object', bad.ord USING ERRCODE = '22023';
        END IF;
        SELECT ord, (SELECT min(k) FROM jsonb_object_keys(rest) AS k) AS k INTO bad
        FROM (SELECT ord, j - ARRAY['task', 'parameters', 'at', 'after', 'queue'] AS rest
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
    IF infinite THEN
        RAISE EXCEPTION 'jobs: at must be a finite time' USING ERRCODE = '22023';
    END IF;
    RETURN coalesce(ids, '{}');
END;
$$;

DO $migration$
DECLARE
    here text := current_schema();
BEGIN
    EXECUTE format('ALTER FUNCTION %1$I.schedule_task(text, jsonb, timestamptz, bigint, text)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.schedule_tasks(jsonb)'
                   ' SET search_path = %1$I, pg_temp', here);
    EXECUTE format('ALTER FUNCTION %1$I.cancel_job(bigint)'
                   ' SECURITY DEFINER SET search_path = %1$I, pg_temp', here);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', here);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE EXECUTE ON FUNCTIONS '
                   'FROM PUBLIC', here);
END;
$migration$;
