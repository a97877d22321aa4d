"""The async twin of schedules_sync."""

from __future__ import annotations

import contextlib
from typing import Any

from pgcc import AsyncJobContext


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> dict[str, Any]:
    async def kept_fn(conn: Any) -> int:
        return await ctx.schedule_task("target", {"n": 1})

    kept = await ctx.step("kept", kept_fn)

    async def dropped(conn: Any) -> None:
        await ctx.schedule_task("target", {"n": 2})
        raise RuntimeError("changed my mind")

    with contextlib.suppress(RuntimeError):
        await ctx.step("dropped", dropped)
    outside = await ctx.schedule_task("target", {"n": 3})
    return {"kept": kept, "outside": outside}
