"""Records its run to params["log"], then runs out of memory (two attempts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext



max_attempts = 2


def run(params: dict[str, Any], ctx: JobContext) -> None:
    record(params["log"], job=ctx.job_id, attempt=ctx.attempt)
    raise MemoryError()
