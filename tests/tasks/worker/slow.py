"""Records its run, then sleeps 30 s: past its own timeout of 1 s (two attempts)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext



timeout = 1
max_attempts = 2


def run(params: dict[str, Any], ctx: JobContext) -> None:
    record(params["log"], job=ctx.job_id, attempt=ctx.attempt)
    time.sleep(30)
    record(params["log"], job=ctx.job_id, attempt=ctx.attempt, event="woke")
