"""Schedules the task "mark" twice with one key through ctx; returns both ids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> list[int]:
    child = {"log": params["log"], "name": "child"}
    return [ctx.schedule_task("mark", child, key="child-of-parent", priority=7,
                              max_attempts=2, timeout=30),
            ctx.schedule_task("mark", child, key="child-of-parent")]
