"""Records its start to params["log"], then sleeps params["seconds"]; its
module sets no timeout (a job's own timeout stops it)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> str:
    record(params["log"], job=ctx.job_id, event="start")
    time.sleep(params["seconds"])
    return "slept"
