-- pgbench script: the minimal claim-and-complete cycle, 100 rows a transaction.
BEGIN;
UPDATE ref_jobs SET state = 'running', owner = :client_id
WHERE id IN (SELECT id FROM ref_jobs WHERE state = 'queued'
             ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED);
UPDATE ref_jobs SET state = 'done' WHERE state = 'running' AND owner = :client_id;
END;
