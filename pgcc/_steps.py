"""A step's run (ctx.step): fn's value, or the one an earlier attempt recorded.

Generated from pgcc/_steps_async.py by scripts/async_to_sync.py: edit that
file, not this one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pgcc._steps_base import JOB_LOST_SQLSTATE, JobSteps


def run(steps: JobSteps,
        connection: Callable[[], psycopg.Connection[Any]],
        name: object, fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
    """One step: fn's value, or the recorded one."""
    checked = steps.start(name)
    try:
        conn = connection()
        try:
            try:
                cursor = conn.execute(steps.begin_sql(checked))
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                # The kept connection died while idle (a server restart, an
                # idle_session_timeout): nothing was done yet, so once more on
                # a new one.
                conn = connection()
                cursor = conn.execute(steps.begin_sql(checked))
            cursor.nextset()
            row = cursor.fetchone()
            if row is not None and row[0] is not None:  # recorded: fn does not run
                conn.execute("COMMIT")
                steps.done.add(checked)
                return json.loads(row[0])
            value = fn(conn)
            steps.in_transaction(checked, conn.info.transaction_status)
            text = steps.dump(checked, value)
            conn.execute(steps.record_sql(checked, text))
        except psycopg.Error as exc:
            _rollback(conn)
            if exc.sqlstate == JOB_LOST_SQLSTATE:
                raise steps.lose(exc) from None
            raise
        except BaseException:
            _rollback(conn)
            raise
        steps.done.add(checked)
        return json.loads(text)
    finally:
        steps.running = None


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """Ends whatever the step left open; a broken connection is left for the
    next step to replace."""
    if conn.closed or conn.broken:
        return
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()
