"""Records its start and end to params["log"], with params["seconds"] between; one attempt."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext



max_attempts = 1


def run(params: dict[str, Any], ctx: JobContext) -> str:
    record(params["log"], event="start", job=ctx.job_id, attempt=ctx.attempt)
    time.sleep(params["seconds"])
    record(params["log"], event="end", job=ctx.job_id, attempt=ctx.attempt)
    return "slept"
