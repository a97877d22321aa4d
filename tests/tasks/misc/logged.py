"""Logs each run (job, queue, attempt, start and end on the database clock, pid)
to the table PGCC_TEST_LOG_TABLE from its own connection (PGCC_TEST_LOG_DSN);
crashes on the attempt params["crash_on_attempt"]. Installed by tests/logged_task.py."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from pgcc import JobContext

_conn: psycopg.Connection[Any] | None = None


def run(params: dict[str, Any], ctx: JobContext) -> int:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["PGCC_TEST_LOG_DSN"], autocommit=True)
    table = os.environ["PGCC_TEST_LOG_TABLE"]
    row = _conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    started = row[0]
    if params.get("crash_on_attempt") == ctx.attempt:
        os._exit(1)
    time.sleep(params.get("sleep", 0.003))
    _conn.execute(
        f"INSERT INTO {table} (job_id, queue, attempt, started, ended, pid)"
        " VALUES (%s, %s, %s, %s, clock_timestamp(), %s)",
        (ctx.job_id, ctx.queue, ctx.attempt, started, os.getpid()))
    return ctx.attempt
