"""Schedules a child job in the queue "children" from its run; returns its id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> int:
    return ctx.schedule_task("child", {"from": ctx.job_id, "kind": "sync"}, queue="children")
