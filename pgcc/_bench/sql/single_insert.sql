-- pgbench script: one single-row INSERT a transaction.
INSERT INTO ref_insert (task, parameters) VALUES ('noop', '{}');
