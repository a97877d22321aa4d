"""Records its run to params["log"], then exits without a response; its
module allows ten attempts (a job's own max_attempts wins)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext

max_attempts = 10


def run(params: dict[str, Any], ctx: JobContext) -> NoReturn:
    record(params["log"], job=ctx.job_id, attempt=ctx.attempt)
    os._exit(3)
