"""Raises what params["raise"] names; ConnectionError is in retry_on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext


max_attempts = 2
retry_on = (ConnectionError,)


def run(params: dict[str, Any], ctx: JobContext) -> Any:
    if params["raise"] == "ConnectionError":
        raise ConnectionError(f"network down at attempt {ctx.attempt}")
    raise ValueError("bad input")
