"""Records its run to params["log"], then runs out of memory (two attempts)."""

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


max_attempts = 2


def run(params: dict[str, Any], ctx: JobContext) -> None:
    record(params["log"], job=ctx.job_id, attempt=ctx.attempt)
    raise MemoryError()
