"""What the worker tests' task modules write of each run (not a task: it
lies outside the folders workers are pointed at). Task modules import it as
`tests.tasks.recording`: the test suite's workers have the repository on
PYTHONPATH (tests/workers.py)."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(path: str, **fields: Any) -> None:
    """Append one JSON line (this process's pid and the time by default) to `path`."""
    fields.setdefault("pid", os.getpid())
    fields.setdefault("t", time.time())
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")
