-- pgcc schema, version 13: the maintenance leadership is a lease row.
--
-- One process at a time (a worker, or `pgcc reaper`) rescues the jobs of
-- dead workers and prunes finished ones. It led by holding a session
-- advisory lock, so its leadership lived as long as its session: a session
-- the server had not yet seen die (a cut network, a frozen process, a call
-- stuck on a lock) kept it. Now the leader holds this table's one row until
-- `expires_at` and renews it; another candidate takes the row over once it
-- has expired, by the server's clock (pgcc/_maintenance/leadership.py).

CREATE TABLE leader (
    name       text PRIMARY KEY DEFAULT 'maintenance' CHECK (name = 'maintenance'),
    leader_id  text NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

DO $migration$
DECLARE
    here text := current_schema();
    grantee text;
BEGIN
    -- A role that reads the tables (pgcc grant read, worker) reads the new one too.
    FOR grantee IN
        SELECT DISTINCT r.rolname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = here AND c.relname = 'settings' AND a.privilege_type = 'SELECT'
          AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT SELECT ON %1$I.leader TO %2$I', here, grantee);
    END LOOP;
    -- A worker role (pgcc grant worker) leads, so it writes the new table.
    FOR grantee IN
        SELECT DISTINCT r.rolname FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = here AND p.proname = 'new_token' AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.leader TO %2$I',
                       here, grantee);
    END LOOP;
END;
$migration$;
