"""Returns its parameters and its own job id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    return {"params": params, "me": ctx.job_id}
