"""ctx.schedule_task inside a step's fn (sync): the step "kept" schedules a
`target` job and commits; the step "dropped" schedules one and then raises,
so its job is rolled back with it."""

from __future__ import annotations

import contextlib
from typing import Any

from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    kept = ctx.step("kept", lambda conn: ctx.schedule_task("target", {"n": 1}))

    def dropped(conn: Any) -> None:
        ctx.schedule_task("target", {"n": 2})
        raise RuntimeError("changed my mind")

    with contextlib.suppress(RuntimeError):
        ctx.step("dropped", dropped)
    outside = ctx.schedule_task("target", {"n": 3})
    return {"kept": kept, "outside": outside}
