"""Benchmark task (W9): one row written in a transaction of the task's own,
on a connection the child keeps, as a task without steps would write it.
Returns how long the write took (ms)."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
from psycopg import sql

_connection: psycopg.Connection[Any] | None = None


def run(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["PGCC_BENCH_DSN"])
    insert = sql.SQL("INSERT INTO {} (job_id) VALUES (%s)").format(
        sql.Identifier(params["schema"], "bench_rows"))
    start = time.perf_counter()
    with _connection.transaction():
        _connection.execute(insert, [ctx.job_id])
    return {"ms": (time.perf_counter() - start) * 1000}
