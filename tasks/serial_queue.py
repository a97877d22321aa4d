"""A serial queue: schedules `steps` jobs of itself into one queue (default `serial_queue`);
pgcc runs the jobs of a queue one at a time, on any number of workers, in the order they
were scheduled. Each step appends itself to the log in task state `serial_queue:<run>`.

    pgcc schedule serial_queue '{"steps": 5}'
"""

from __future__ import annotations

import time
from typing import Any

from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if "step" not in params:
        run_id = str(params.get("run_id") or ctx.job_id)
        queue = params.get("queue") or "serial_queue"
        steps = int(params.get("steps", 5))
        job_ids = [
            ctx.schedule_task(ctx.task, {"run_id": run_id, "step": step, "of": steps,
                                         "seconds": params.get("seconds", 0.2)}, queue=queue)
            for step in range(steps)
        ]
        return {"run_id": run_id, "queue": queue, "jobs": job_ids}

    # One step. No other job of this queue runs now, so the shared log needs no locking.
    step = params["step"]
    log = ctx.taskstate.get(f"serial_queue:{params['run_id']}")
    logged = log.data.get("steps", [])
    if step in [s["step"] for s in logged]:
        return {"step": step, "skipped": "already logged (a redelivery)"}
    started = time.time()
    time.sleep(float(params.get("seconds", 0)))  # the work of one step
    logged.append({"step": step, "job_id": ctx.job_id, "started": started,
                   "finished": time.time()})
    log.data = {"steps": logged}
    log.status = "complete" if len(logged) == params["of"] else "started"
    log.save()
    print(f"serial_queue {params['run_id']}: step {step} done", flush=True)
    return {"step": step}
