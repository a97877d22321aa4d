"""`pgcc grant`: what each kind of role may do in an environment, and nothing more.

- enqueue: the SQL doors (schedule, cancel) and nothing else: no table rights,
  so it can neither read other jobs' parameters nor write a row the doors
  would refuse. The doors run with their owner's rights (migration 0006).
- worker: what `pgcc worker` and `pgcc reaper` need: read and write the
  queue's tables and run its functions; not to create or alter anything (a
  worker started on an up-to-date schema does not migrate).
- read: read every table (`pgcc status`, dashboards).

retry_job (migration 0008) is an operator's action, not an enqueuer's: it
runs any finished job again, whoever scheduled it. The worker kind has it
(with every pgcc function); the enqueue kind does not.
"""

from __future__ import annotations

import enum

import psycopg
from psycopg import sql

from pgcc._validation import check_schema


class Grant(str, enum.Enum):
    ENQUEUE = "enqueue"
    WORKER = "worker"
    READ = "read"


DOORS = ("schedule_task(text, jsonb, timestamptz, bigint, text, text, integer, integer,"
         " double precision)", "schedule_tasks(jsonb)",
         "cancel_job(bigint)")
TABLES = ("jobs", "workers", "queue_locks", "queue_heads", "taskstate", "periodic",
          "paused_queues", "steps", "leader")
READ_ONLY_TABLES = ("settings", "schema_migrations")


def statements(kind: Grant, schema: str, role: str) -> list[sql.Composed]:
    check_schema(schema)
    here, who = sql.Identifier(schema), sql.Identifier(role)
    granted = [sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(here, who)]
    if kind is Grant.ENQUEUE:
        granted += [sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(
            here, sql.SQL(door), who) for door in DOORS]
    elif kind is Grant.WORKER:
        granted += [
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in TABLES), who),
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in READ_ONLY_TABLES), who),
            sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(here, who),
            sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(here, who),
        ]
    else:
        granted.append(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
            here, who))
    return granted


def grant(conn: psycopg.Connection[object], kind: Grant, schema: str, role: str) -> None:
    """Give `role` the rights of `kind` in `schema`, in one transaction."""
    with conn.transaction():
        for statement in statements(kind, schema, role):
            conn.execute(statement)
