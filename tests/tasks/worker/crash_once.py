"""Records each run to params["log"]; its first attempt crashes."""

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



def run(params: dict[str, Any], ctx: JobContext) -> None:
    record(params["log"], attempt=ctx.attempt)
    if ctx.attempt == 1:
        os._exit(1)
