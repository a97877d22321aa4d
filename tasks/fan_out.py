"""Fan out, then in: schedules `pieces` jobs of fan_out_piece, which run in parallel. Each
completes its own task state `fan_out:<run>:<i>` (a shared counter would race); the piece
that finds them all complete writes the total into `fan_out:<run>` and mails a report.

    pgcc schedule fan_out '{"pieces": 5, "notify": "ops@example.com"}'
"""

from __future__ import annotations

from typing import Any

from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    pieces = int(params.get("pieces", 5))
    if not 1 <= pieces <= 1000:
        raise ValueError("pieces must be between 1 and 1000")
    run_id = str(params.get("run_id") or ctx.job_id)
    summary = ctx.taskstate.get(f"fan_out:{run_id}")
    if summary.status == "pending":
        summary.data = {"pieces": pieces}
        summary.status = "started"
        summary.save()
    # A redelivery schedules the pieces again: each piece skips work already complete.
    job_ids = [
        ctx.schedule_task("fan_out_piece", {"run_id": run_id, "piece": i, "pieces": pieces,
                                            "notify": params.get("notify")})
        for i in range(pieces)
    ]
    return {"run_id": run_id, "jobs": job_ids}
