"""Async: raises KeyError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import AsyncJobContext


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> None:
    raise KeyError("missing thing")
