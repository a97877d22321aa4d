"""One piece of a fan_out run. It completes its own task state `fan_out:<run>:<i>`, then
checks every piece's state: whoever finds them all complete (at least one piece does, maybe
two) writes the total into `fan_out:<run>` and schedules the report, once per run.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pgcc import JobContext, StaleTaskStateError


def work(piece: int) -> int:
    """The real work of one piece (a stand-in)."""
    return piece * 10


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    run_id, piece, pieces = params["run_id"], int(params["piece"]), int(params["pieces"])
    mine = ctx.taskstate.get(f"fan_out:{run_id}:{piece}")
    if mine.status != "complete":
        mine.data = {"result": work(piece), "job_id": ctx.job_id}
        mine.status = "complete"
        # A second copy of this piece may have saved the same result first: fine.
        with contextlib.suppress(StaleTaskStateError):
            mine.save()
    # Fan in. Each piece saved before it reads the others, so whichever of the last pieces
    # reads last sees them all; if two both see them all, the summary's version check and
    # the email's message id keep the report single.
    states = [ctx.taskstate.get(f"fan_out:{run_id}:{i}") for i in range(pieces)]
    finished = sum(s.status == "complete" for s in states)
    summary = ctx.taskstate.get(f"fan_out:{run_id}")
    if finished < pieces or summary.status == "complete":
        return {"piece": piece, "finished": finished}
    total = sum(s.data["result"] for s in states)
    if params.get("notify"):
        ctx.schedule_task("send_email", {
            "to": params["notify"], "subject": f"fan_out {run_id}: {pieces} pieces done",
            "body": f"total {total}", "message_id": f"fan_out:{run_id}",
        })
    summary.data = {"pieces": pieces, "total": total, "finished_by": piece}
    summary.status = "complete"
    try:
        summary.save()
    except StaleTaskStateError:
        return {"piece": piece, "finished": finished}  # another piece wrote it just now
    print(f"fan_out {run_id}: all {pieces} pieces done, total {total}", flush=True)
    return {"piece": piece, "finished": finished, "total": total}
