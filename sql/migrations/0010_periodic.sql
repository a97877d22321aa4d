-- pgcc schema, version 10: periodic tasks (a task module's `schedule`).
--
-- One row per periodic task. Workers write it: at its start each worker
-- declares the schedules of its task modules (the last to start wins when
-- two disagree) and marks inactive the rows of its tasks that no longer
-- have one. Each worker with a periodic task then schedules its due ticks
-- through periodic_tick, which is what makes a tick one job however many
-- workers try it at once.
--
-- Ticks after due_after are due. A new, changed or re-activated schedule
-- counts from the time it is declared; each tick scheduled moves due_after
-- to that tick. A worker schedules only the most recent due tick, so the
-- ticks missed while no worker ran are skipped but for the last one.
CREATE TABLE periodic (
    task        text PRIMARY KEY,
    schedule    text NOT NULL,
    timezone    text NOT NULL,
    parameters  jsonb NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    due_after   timestamptz NOT NULL DEFAULT now(),
    last_tick   timestamptz,
    -- No foreign key: the job may be pruned long before the next tick.
    last_job_id bigint,
    declared_at timestamptz NOT NULL DEFAULT now()
);

-- Schedules the job of one tick of a periodic task, once: the conditional
-- UPDATE takes the row's lock, so of several workers trying the same tick
-- the first schedules it and the others (re-reading the row once it is
-- committed) find it done and get NULL. NULL too when the schedule changed
-- since the caller read it, or was made inactive.
CREATE FUNCTION periodic_tick(
    p_task text, p_schedule text, p_timezone text, p_tick timestamptz
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    tick_parameters jsonb;
    job_id bigint;
BEGIN
    UPDATE periodic SET due_after = p_tick, last_tick = p_tick
    WHERE task = p_task AND active AND schedule = p_schedule AND timezone = p_timezone
      AND due_after < p_tick
    RETURNING parameters INTO tick_parameters;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    job_id := schedule_task(task => p_task, parameters => tick_parameters, at => p_tick);
    UPDATE periodic SET last_job_id = job_id WHERE task = p_task;
    RETURN job_id;
END;
$$;

-- Not a door: for workers (`pgcc grant worker`), not for PUBLIC.
REVOKE ALL ON FUNCTION periodic_tick(text, text, text, timestamptz) FROM PUBLIC;
