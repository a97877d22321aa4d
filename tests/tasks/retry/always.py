"""Always asks for a retry, naming its attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pgcc

if TYPE_CHECKING:
    from pgcc import JobContext


max_attempts = 3


def run(params: dict[str, Any], ctx: JobContext) -> Any:
    raise pgcc.Retry(reason=f"rate limited at attempt {ctx.attempt}", after=50)
