"""Async: schedules a child job 100 ms ahead from its run; returns its id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import AsyncJobContext


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> int:
    return await ctx.schedule_task("child", {"from": ctx.job_id, "kind": "async"}, after=100)
