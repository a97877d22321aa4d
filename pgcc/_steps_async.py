"""A step's run (ctx.step): fn's value, or the one an earlier attempt recorded.

This is the async one (`await ctx.step(name, fn)`), and the source of
pgcc._steps (scripts/async_to_sync.py); what a step is and the bookkeeping
of a job's steps are in pgcc._steps_base.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pgcc._steps_base import JOB_LOST_SQLSTATE, JobSteps

if True:  # ASYNC
    import inspect
    from collections.abc import Awaitable


async def run(steps: JobSteps,
              connection: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
              name: object, fn: Callable[[psycopg.AsyncConnection[Any]], Any]) -> Any:
    """One step: fn's value, or the recorded one."""
    checked = steps.start(name)
    try:
        conn = await connection()
        try:
            try:
                cursor = await conn.execute(steps.begin_sql(checked))
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                # The kept connection died while idle (a server restart, an
                # idle_session_timeout): nothing was done yet, so once more on
                # a new one.
                conn = await connection()
                cursor = await conn.execute(steps.begin_sql(checked))
            cursor.nextset()
            row = await cursor.fetchone()
            if row is not None and row[0] is not None:  # recorded: fn does not run
                await conn.execute("COMMIT")
                steps.done.add(checked)
                return json.loads(row[0])
            value = fn(conn)
            if True:  # ASYNC
                if inspect.isawaitable(value):
                    value = await value
            steps.in_transaction(checked, conn.info.transaction_status)
            text = steps.dump(checked, value)
            await conn.execute(steps.record_sql(checked, text))
        except psycopg.Error as exc:
            await _rollback(conn)
            if exc.sqlstate == JOB_LOST_SQLSTATE:
                raise steps.lose(exc) from None
            raise
        except BaseException:
            await _rollback(conn)
            raise
        steps.done.add(checked)
        return json.loads(text)
    finally:
        steps.running = None


async def _rollback(conn: psycopg.AsyncConnection[Any]) -> None:
    """Ends whatever the step left open; a broken connection is left for the
    next step to replace."""
    if conn.closed or conn.broken:
        return
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.execute("ROLLBACK")
    except psycopg.Error:
        await conn.close()
