"""Records its start and end to params["log"], with params["seconds"] between;
its own timeout is 20 s."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def record(path: str, **fields: Any) -> None:
    """Append one JSON line (this process's pid and the time by default) to `path`."""
    fields.setdefault("pid", os.getpid())
    fields.setdefault("t", time.time())
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")


timeout = 20


def run(params: dict[str, Any], ctx: JobContext) -> str:
    record(params["log"], event="start", job=ctx.job_id, attempt=ctx.attempt)
    time.sleep(params["seconds"])
    record(params["log"], event="end", job=ctx.job_id, attempt=ctx.attempt)
    return "slept"
