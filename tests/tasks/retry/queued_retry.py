"""Asks for one retry after params["after"] ms, then returns when it ran."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pgcc

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> Any:
    if ctx.attempt == 1 and params.get("after") is not None:
        raise pgcc.Retry("once more", after=params["after"])
    return {"attempt": ctx.attempt, "at": time.time()}
