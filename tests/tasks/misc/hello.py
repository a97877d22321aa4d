"""Schedules itself in the queue "q" with n + 1 until n is 2; returns n."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> int:
    if params["n"] < 2:
        ctx.schedule_task("hello", {"n": params["n"] + 1}, queue="q")
    n: int = params["n"]
    return n
