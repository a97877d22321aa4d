"""Records params["name"] to params["log"]: the order jobs run in."""

from __future__ import annotations

from typing import Any

from tests.tasks.recording import record


def run(params: dict[str, Any]) -> None:
    record(params["log"], name=params["name"])
