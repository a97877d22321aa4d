"""Records its run to params["log"], then raises ValueError from a helper."""

from __future__ import annotations

from typing import Any

from tests.tasks.recording import record


def helper_that_raises(n: int) -> None:
    raise ValueError(f"bad value {n}")


def run(params: dict[str, Any]) -> None:
    record(params["log"], event="run")
    helper_that_raises(params["n"])
