"""The task the chaos tests and scripts/soak.py run, and the table it logs to.

Each run writes a row from its own connection (reconnecting, so it survives a
database restart) with database-clock start, last-seen and end times, and
holds its queue's advisory lock while it runs: `lock_ok` is false if another
run of the same queue held it at any write. The checks read that table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SOURCE = '''\
import os
import time

import psycopg

DSN = {dsn!r}
LOG = {log!r}
SPACE = {space!r}
_conn = None


def _execute(query, args):
    """One statement on this child's own connection; survives a database restart."""
    global _conn
    deadline = time.monotonic() + 60
    while True:
        try:
            if _conn is None or _conn.closed:
                _conn = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
            return _conn.execute(query, args).fetchone()
        except psycopg.OperationalError:
            _conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(params, ctx):
    queue = ctx.queue or ""
    # The queue's lock is (re)taken at every write: a new connection after a
    # restart must find it free too.
    lock = "(%s = '' OR pg_try_advisory_lock(%s, hashtext(%s)))"
    (row_id,) = _execute(
        "INSERT INTO " + LOG + " (job_id, queue, attempt, pid, started_at, seen_at, lock_ok)"
        " VALUES (%s, %s, %s, %s, clock_timestamp(), clock_timestamp(), " + lock + ")"
        " RETURNING id",
        (ctx.job_id, ctx.queue, ctx.attempt, os.getpid(), queue, SPACE, queue))
    deadline = time.monotonic() + params["sleep"]
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
        _execute("UPDATE " + LOG + " SET seen_at = clock_timestamp(),"
                 " lock_ok = lock_ok AND " + lock + " WHERE id = %s RETURNING id",
                 (queue, SPACE, queue, row_id))
    _execute("UPDATE " + LOG + " SET ended_at = clock_timestamp(), seen_at = clock_timestamp()"
             " WHERE id = %s RETURNING pg_advisory_unlock_all()", (row_id,))
    return {{"pid": os.getpid(), "attempt": ctx.attempt}}
'''


def install(conn: psycopg.Connection[Any], log: sql.Composable, tasks: Path, name: str,
            dsn: str, space: int) -> None:
    """Create the log table and write the task module `name` into `tasks`."""
    conn.execute(sql.SQL(
        "CREATE TABLE {} (id bigserial PRIMARY KEY, job_id bigint NOT NULL, queue text,"
        " attempt int NOT NULL, pid int NOT NULL, started_at timestamptz NOT NULL,"
        " seen_at timestamptz NOT NULL, ended_at timestamptz, lock_ok boolean NOT NULL)"
    ).format(log))
    tasks.mkdir(parents=True, exist_ok=True)
    source = SOURCE.format(dsn=dsn, log=log.as_string(conn), space=space)
    (tasks / f"{name}.py").write_text(source)
