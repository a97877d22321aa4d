"""One step (ctx.step): its value comes from the database, and its record is
written by the worker's role (tests/e2e/test_worker_role.py)."""

from __future__ import annotations

from typing import Any

from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> Any:
    def answer(conn: Any) -> Any:
        row = conn.execute("SELECT 41 + 1").fetchone()
        return row[0]

    return ctx.step("answer", answer)
