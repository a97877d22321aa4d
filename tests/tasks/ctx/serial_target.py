"""Takes 0.2 s; returns params["n"] and when it started and finished."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    started = time.time()
    time.sleep(0.2)
    return {"n": params["n"], "started": started, "finished": time.time()}
