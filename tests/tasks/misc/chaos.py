"""The chaos tests' and scripts/soak.py's task (installed by tests/chaos_task.py,
which writes its settings beside it: <task name>.json with the DSN, the log
table and the advisory lock space of the queues).

Each run writes a row from its own connection (reconnecting, so it survives a
database restart) with database-clock start, last-seen and end times, and
holds its queue's advisory lock while it runs: `lock_ok` is false if another
run of the same queue held it at any write. Sleeps params["sleep"] seconds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from pgcc import JobContext

_SETTINGS = json.loads(Path(__file__).with_suffix(".json").read_text())
DSN: str = _SETTINGS["dsn"]
LOG: str = _SETTINGS["log"]
SPACE: int = _SETTINGS["space"]
_conn: psycopg.Connection[tuple[Any, ...]] | None = None


def _execute(query: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """One statement on this child's own connection; survives a database restart."""
    global _conn
    deadline = time.monotonic() + 60
    while True:
        try:
            if _conn is None or _conn.closed:
                _conn = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
            row = _conn.execute(query, args).fetchone()
            assert row is not None
            return row
        except psycopg.OperationalError:
            _conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, int]:
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
    return {"pid": os.getpid(), "attempt": ctx.attempt}
