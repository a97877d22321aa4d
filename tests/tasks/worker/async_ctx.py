"""Async, with ctx: returns what ctx says of the job."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import AsyncJobContext


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"job_id": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt}
