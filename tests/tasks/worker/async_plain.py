"""Async, without ctx."""

import asyncio
from typing import Any


async def run(params: dict[str, Any]) -> list[Any]:
    await asyncio.sleep(0.01)
    return [params["n"], None, True, "x"]
