"""Task state through ctx (sync): saves, reads back, and returns what a stale
save and a misspelt status raise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pgcc

if TYPE_CHECKING:
    from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    state = ctx.taskstate.get(params["state_id"])
    seen = state.status
    state.status = "complete"
    state.tries_remaining = 4
    state.data = {"job_id": ctx.job_id, "seen": seen, "list": [1, "two"]}
    state.save()
    again = ctx.taskstate.get(params["state_id"])
    read_back = [again.status, again.tries_remaining, again.data]

    other = ctx.taskstate.get(params["state_id"])
    other.status = "failed"
    again.save()
    try:
        other.save()
        stale = "no error"
    except pgcc.StaleTaskStateError:
        stale = "StaleTaskStateError"
    try:
        again.status = "completed"
        again.save()
        typo = "no error"
    except pgcc.TaskStateError:
        typo = "TaskStateError"
    return {"read_back": read_back,
            "stale": stale, "typo": typo}
