"""Returns its parameters and what ctx says of the job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    return {"params": params, "job_id": ctx.job_id, "task": ctx.task}
