"""Fails on its first run and succeeds on the next: the first run leaves a
file at params["marker"]. For the dashboard's Retry button."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(params: dict[str, Any]) -> dict[str, Any]:
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("ran once")
        raise RuntimeError("first run fails on purpose")
    return {"second_run": "ok"}
