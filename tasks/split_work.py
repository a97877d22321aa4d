"""Split a long job into pieces: each run handles one chunk of `total` items, records its
progress in a task state (`split_work:<first job id>`, or `state_id`), then schedules
itself with the next offset, until all items are done.

    pgcc schedule split_work '{"total": 10, "chunk": 3}'

Two tools, each where it fits. The progress is shared by every piece, and each piece
is a job of its own: that is task state, which any job (and anyone, with
`pgcc.Client.taskstate`) reads by its id. Scheduling the next piece is an effect one
job must have once: that is a step (ctx.step), whose record commits with the job it
schedules, so a piece delivered again does not start a second chain.
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
        # This chunk is new. (A piece delivered again after saving its chunk skips the
        # work and goes on to schedule the next piece, if it had not yet.)
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
        # In a step's function, ctx.schedule_task joins the step's transaction.
        ctx.step("next piece", lambda conn: ctx.schedule_task(
            ctx.task, {**params, "offset": end, "state_id": state_id}))
    return {"state_id": state_id, "processed": end, "total": total}
