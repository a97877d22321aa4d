"""Schedules itself with n - 1 until n is 0: a long job split into pieces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> int:
    if params["n"] > 0:
        ctx.schedule_task(ctx.task, {"n": params["n"] - 1})
    n: int = params["n"]
    return n
