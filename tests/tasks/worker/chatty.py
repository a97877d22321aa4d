"""Prints to stdout and stderr (the worker's log shows each line with the job's
id), then sleeps params["seconds"] (default 0)."""

from __future__ import annotations

import sys
import time
from typing import Any


def run(params: dict[str, Any]) -> str:
    print(f"hello from chatty {params.get('tag', '')}")
    print("a partial line", end="", file=sys.stderr)
    time.sleep(params.get("seconds", 0))
    return "said"
