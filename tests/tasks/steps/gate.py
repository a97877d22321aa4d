"""A point where a test holds a task's run (tests/e2e/test_steps.py).

`gate` in a job's parameters: {"step": name, "where": "before" | "inside" |
"after", "attempt": n, "dir": folder}. When attempt n reaches that point of
that step, it writes <dir>/reached (its process id) and waits for <dir>/go,
while the test kills the child or takes the job from this attempt.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

WAIT_LIMIT = 60.0


def here(params: dict[str, Any], attempt: int, step: str, where: str) -> None:
    gate = params.get("gate")
    if not gate or (gate["step"], gate["where"], gate["attempt"]) != (step, where, attempt):
        return
    folder = Path(gate["dir"])
    (folder / "reached.tmp").write_text(str(os.getpid()))
    (folder / "reached.tmp").rename(folder / "reached")
    deadline = time.monotonic() + WAIT_LIMIT
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
