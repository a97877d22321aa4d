"""Records its run to params["log"], then raises ValueError from a helper."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(path: str, **fields: Any) -> None:
    """Append one JSON line (with this process's pid and the time) to `path`."""
    fields.setdefault("pid", os.getpid())
    fields.setdefault("t", time.time())
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")


def helper_that_raises(n: int) -> None:
    raise ValueError(f"bad value {n}")


def run(params: dict[str, Any]) -> None:
    record(params["log"], event="run")
    helper_that_raises(params["n"])
