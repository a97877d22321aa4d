"""Returns ctx's job id, task and attempt (sync); crashes while the attempt is
below params["crash_until"]."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if ctx.attempt < params.get("crash_until", 0):
        os._exit(3)  # no response: pgcc runs the job again, attempt + 1
    return {"job_id": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt}
