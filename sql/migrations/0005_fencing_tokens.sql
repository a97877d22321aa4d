-- pgcc schema, version 5: fencing tokens that are never handed out twice.
--
-- Until now a job's attempts counter was the token every outcome was fenced
-- by; putting a job back lowered it, so a later claim could get the token of
-- an earlier one. Each claim now draws a random 63-bit token (the chance that
-- two claims of one job draw the same is about 2^-52 per pair, and no state
-- lost in a failover can make a token come back); outcomes, retries, releases
-- and queue locks carry it. attempts keeps counting claims for people.
ALTER TABLE jobs ADD COLUMN token bigint;
-- A queue lock row is its running job's: it is stale once that job is not
-- running, and a new claim of the job cannot happen while the row is there,
-- so the row needs no token of its own.
ALTER TABLE queue_locks DROP COLUMN attempt;
-- Jobs running now keep the token their worker knows them by. A worker of an
-- older version fences by attempts and cannot run against this schema: its
-- claim fails on the dropped column, and `pgcc worker` refuses a schema newer
-- than itself (pgcc.schema).
UPDATE jobs SET token = attempts WHERE state = 'running';

-- A new token for each claim: random, positive, never 0.
CREATE FUNCTION new_token() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT 1 + floor(random() * 9223372036854775000)::bigint;
$$;

-- Every statement that deletes a queue's lock row first takes the queue's
-- advisory lock (the one a claim tries), and holds it to its commit. A claim
-- that holds a queue's lock can then never find that row being deleted, so
-- its insert of the row never waits on another transaction: claims never
-- wait for anything, and can take part in no deadlock.
CREATE FUNCTION lock_queue(space integer, queue text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(space, hashtext(queue));
    RETURN queue;
END;
$$;
