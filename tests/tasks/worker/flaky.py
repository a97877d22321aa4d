"""Records each run; the first sleeps 30 s, the second crashes, the third returns
(two no-responses allowed)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext



max_attempts = 2


def run(params: dict[str, Any], ctx: JobContext) -> int:
    record(params["log"], attempt=ctx.attempt)
    if ctx.attempt == 1:
        time.sleep(30)
    if ctx.attempt == 2:
        os._exit(1)
    return ctx.attempt
