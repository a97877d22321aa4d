"""Records its start to params["log"], then sleeps params["seconds"], or
until the file params["until"] exists; its module sets no timeout (a job's
own timeout stops it)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> str:
    record(params["log"], job=ctx.job_id, event="start")
    deadline = time.monotonic() + params["seconds"]
    gate = params.get("until")
    while time.monotonic() < deadline and not (gate and os.path.exists(gate)):
        time.sleep(0.02)
    return "slept"
