"""Runs for params["seconds"] (default 120): long enough to be cancelled."""

from __future__ import annotations

import time
from typing import Any


def run(params: dict[str, Any]) -> str:
    time.sleep(float(params.get("seconds", 120)))
    return "slept"
