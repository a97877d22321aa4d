"""Records its start to params["log"] with whether the process that ran job
params["watch"] (found by its "start" line in the same log) still exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.tasks.recording import record

if TYPE_CHECKING:
    from pgcc import JobContext


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run(params: dict[str, Any], ctx: JobContext) -> bool:
    lines = [json.loads(line) for line in Path(params["log"]).read_text().splitlines()]
    pids = [e["pid"] for e in lines if e.get("job") == params["watch"] and e["event"] == "start"]
    watched_alive = any(alive(pid) for pid in pids)
    record(params["log"], event="start", job=ctx.job_id, watched_alive=watched_alive)
    return watched_alive
