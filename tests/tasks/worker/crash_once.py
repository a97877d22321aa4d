"""Records each run to params["log"]; its first attempt crashes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext



def run(params: dict[str, Any], ctx: JobContext) -> None:
    record(params["log"], attempt=ctx.attempt)
    if ctx.attempt == 1:
        os._exit(1)
