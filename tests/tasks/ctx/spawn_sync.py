"""Schedules params["count"] `target` jobs through ctx (sync), with the queue or
the delay given; returns their ids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, list[int]]:
    kwargs = {k: params[k] for k in ("queue", "after") if k in params}
    ids = []
    for i in range(params.get("count", 1)):
        ids.append(ctx.schedule_task("target", {"n": i, "from": ctx.job_id}, **kwargs))
    assert all(type(i) is int for i in ids)
    return {"jobs": ids}
