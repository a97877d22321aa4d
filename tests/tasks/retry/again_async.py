"""The async form of again_sync."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pgcc

if TYPE_CHECKING:
    from pgcc import AsyncJobContext


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> Any:
    await asyncio.sleep(0)
    if ctx.attempt < params["until"]:
        raise pgcc.Retry(f"not yet at attempt {ctx.attempt}", after=params["after"])
    return {"attempt": ctx.attempt}
