"""The task the queue-contention tests and scripts/contention.py run.

Each job writes (job, queue, attempt, start, end, pid) to a log table from its
own connection, timestamps from the database clock; the checks read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SOURCE = '''
import os, time
import psycopg

_conn = None

def run(params, ctx):
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["PGCC_TEST_LOG_DSN"], autocommit=True)
    table = os.environ["PGCC_TEST_LOG_TABLE"]
    started = _conn.execute("SELECT clock_timestamp()").fetchone()[0]
    if params.get("crash_on_attempt") == ctx.attempt:
        os._exit(1)
    time.sleep(params.get("sleep", 0.003))
    _conn.execute(
        f"INSERT INTO {table} (job_id, queue, attempt, started, ended, pid)"
        " VALUES (%s, %s, %s, %s, clock_timestamp(), %s)",
        (ctx.job_id, ctx.queue, ctx.attempt, started, os.getpid()))
    return ctx.attempt
'''


def install(conn: psycopg.Connection[Any], schema: str, dsn: str, tasks: Path,
            name: str = "logged") -> dict[str, str]:
    """Create {schema}.run_log and the task module; returns the environment the
    workers need so their children can write to it."""
    conn.execute(sql.SQL(
        "CREATE TABLE {}.run_log (job_id bigint NOT NULL, queue text, attempt int NOT NULL,"
        " started timestamptz NOT NULL, ended timestamptz NOT NULL, pid int NOT NULL)"
    ).format(sql.Identifier(schema)))
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / f"{name}.py").write_text(SOURCE)
    table = sql.SQL("{}.run_log").format(sql.Identifier(schema)).as_string(conn)
    return {"PGCC_TEST_LOG_DSN": dsn, "PGCC_TEST_LOG_TABLE": table}
