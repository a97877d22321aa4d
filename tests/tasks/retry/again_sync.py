"""Asks for a retry (after params["after"] ms) until its attempt reaches params["until"]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pgcc

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> Any:
    if ctx.attempt < params["until"]:
        raise pgcc.Retry(f"not yet at attempt {ctx.attempt}", after=params["after"])
    return {"attempt": ctx.attempt}
