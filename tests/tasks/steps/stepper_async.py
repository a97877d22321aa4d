"""The async twin of stepper_sync: the same steps, awaited, with an async
connection."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgcc import AsyncJobContext
from tests.tasks.steps import gate


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> dict[str, Any]:
    effects = sql.SQL("INSERT INTO {} (step, attempt) VALUES (%s, %s)").format(
        sql.Identifier(params["schema"], "effects"))
    names = list(params["steps"])
    if params.get("twice"):
        names.insert(names.index(params["twice"]) + 1, params["twice"])
    values: dict[str, Any] = {}
    for position, name in enumerate(names):
        async def fn(conn: Any, name: str = name) -> Any:
            await conn.execute(effects, [name, ctx.attempt])
            gate.here(params, ctx.attempt, name, "inside")
            return {1, 2} if name == params.get("bad") else {"attempt": ctx.attempt}

        gate.here(params, ctx.attempt, name, "before")
        try:
            values[f"{position}:{name}"] = await ctx.step(name, fn)
        except Exception as exc:
            values[f"{position}:{name}"] = f"{type(exc).__name__}: {exc}"
        gate.here(params, ctx.attempt, name, "after")
    return values
