"""Logs each run (job id and attempt) to params["log"], then sleeps params["seconds"]."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> str:
    with open(params["log"], "a") as f:
        f.write(f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
    time.sleep(params.get("seconds", 0))
    return "slept"
