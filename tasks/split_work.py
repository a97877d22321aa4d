"""Split a long job into pieces: each run handles one chunk of `total` items, records its
progress in a task state (`split_work:<first job id>`, or `state_id`), then schedules
itself with the next offset, in a queue of its own, until all items are done.

    pgcc schedule split_work '{"total": 10, "chunk": 3}'
"""

from __future__ import annotations

from typing import Any

from pgcc import JobContext


def process(item: int) -> int:
    """The real work on one item (a stand-in: its square)."""
    return item * item


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    total = int(params.get("total", 10))
    chunk = max(1, int(params.get("chunk", 3)))
    offset = int(params.get("offset", 0))
    state_id = params.get("state_id") or f"split_work:{ctx.job_id}"

    state = ctx.taskstate.get(state_id)
    done = state.data.get("processed", 0)
    end = min(offset + chunk, total)
    if offset >= done:
        # This chunk is new. (A redelivered piece whose chunk was saved skips the work
        # and only makes sure the next piece is scheduled.)
        state.data = {
            "total": total,
            "processed": end,
            "pieces": state.data.get("pieces", 0) + 1,
            "sum": state.data.get("sum", 0) + sum(process(i) for i in range(offset, end)),
        }
        state.status = "complete" if end >= total else "started"
        state.save()
        print(f"split_work {state_id}: items {offset}..{end - 1} of {total} done", flush=True)
    if end < total:
        # One queue per split job: if a piece is ever scheduled twice (a redelivery after
        # scheduling), the copies run one after the other and the second one skips.
        ctx.schedule_task(ctx.task, {**params, "offset": end, "state_id": state_id},
                          queue=state_id)
    return {"state_id": state_id, "processed": end, "total": total}
