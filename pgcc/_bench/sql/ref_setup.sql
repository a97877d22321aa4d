-- REF tables for pgbench, created in the bench schema (search_path is set to it).
CREATE TABLE ref_jobs (
    id      bigserial PRIMARY KEY,
    state   text NOT NULL,
    owner   integer,
    payload jsonb NOT NULL
);
CREATE INDEX ref_jobs_queued ON ref_jobs (id) WHERE state = 'queued';
CREATE TABLE ref_insert (
    id         bigserial PRIMARY KEY,
    task       text NOT NULL,
    parameters jsonb NOT NULL
);
