"""Steps in a sync task, for tests/e2e/test_steps.py: runs params["steps"] in
order. Each step's fn inserts (step, attempt) into the test's `effects`
table and returns {"attempt": n}; the step named params["bad"] returns a set
instead, and the one named params["twice"] is run a second time. The result
maps each step to its value, or to the error its ctx.step raised (caught
with `except Exception`, which pgcc.JobLost passes through)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgcc import JobContext
from tests.tasks.steps import gate


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    effects = sql.SQL("INSERT INTO {} (step, attempt) VALUES (%s, %s)").format(
        sql.Identifier(params["schema"], "effects"))
    names = list(params["steps"])
    if params.get("twice"):
        names.insert(names.index(params["twice"]) + 1, params["twice"])
    values: dict[str, Any] = {}
    for position, name in enumerate(names):
        def fn(conn: Any, name: str = name) -> Any:
            conn.execute(effects, [name, ctx.attempt])
            gate.here(params, ctx.attempt, name, "inside")
            return {1, 2} if name == params.get("bad") else {"attempt": ctx.attempt}

        gate.here(params, ctx.attempt, name, "before")
        try:
            values[f"{position}:{name}"] = ctx.step(name, fn)
        except Exception as exc:
            values[f"{position}:{name}"] = f"{type(exc).__name__}: {exc}"
        gate.here(params, ctx.attempt, name, "after")
    return values
