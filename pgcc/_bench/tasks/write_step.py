"""Benchmark task (W9): the row write_plain writes, written as a step
(ctx.step). Returns how long the step took (ms)."""

from __future__ import annotations

import time
from typing import Any

from psycopg import sql


def run(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    insert = sql.SQL("INSERT INTO {} (job_id) VALUES (%s)").format(
        sql.Identifier(params["schema"], "bench_rows"))

    def write(conn: Any) -> None:
        conn.execute(insert, [ctx.job_id])

    start = time.perf_counter()
    ctx.step("write", write)
    return {"ms": (time.perf_counter() - start) * 1000}
