-- pgbench script: one job through pgcc's SQL door a transaction.
SELECT schedule_task('noop', '{}');
