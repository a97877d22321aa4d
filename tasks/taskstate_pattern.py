"""The taskstate pattern: a job that may be delivered more than once does its body once.
Its state (`state_id`) goes pending -> started -> complete; an error costs one of
`tries_remaining` and the job asks pgcc for another attempt (`raise pgcc.Retry`),
until none remain (failed).

    pgcc schedule taskstate_pattern '{"state_id": "order-1", "fail_times": 1}'

The body here "charges" an order: it writes a task state `<state_id>.effect`, standing in
for a call to another system that can later be asked whether the charge went through.

What pgcc does for you and what the pattern is still for:
- Trying again after an error is pgcc's job: `raise pgcc.Retry(after=ms)` runs the same
  job again after the delay, counted in its `max_attempts` (a module may also list
  exceptions in `retry_on`). No need to schedule a copy of the job by hand.
- The body's effect must happen once, though pgcc may deliver a job again (a crash after
  the charge, before the job's outcome was written) or two jobs may name the same order:
  the task state records what was done, shared by every job that names it, and its
  `tries_remaining` counts the failures of the body across those jobs.
- When to use it: the state is keyed by what is done (an order), not by a job, so it
  holds across jobs, and it can guard an effect outside this database. For an effect in
  this database done by one job, a step (ctx.step, see charge_once.py and
  docs/steps.md) is simpler and exact: the effect and its record commit in one
  transaction, where this pattern has a window between the body and its `complete`
  (here closed by asking the other system, body_done).
"""

from __future__ import annotations

import time
from typing import Any

from pgcc import JobContext, Retry, StaleTaskStateError, TaskState

timeout = 60
TRIES = 3  # tries_remaining of a new state, unless params say "tries"
# Attempts of one job (pgcc's count): the body's tries, and room for crashes.
max_attempts = 10


def effect_id(params: dict[str, Any]) -> str:
    return f"{params['state_id']}.effect"


def body(params: dict[str, Any], ctx: JobContext, failures: int) -> dict[str, Any]:
    """The work to do once. Fails its first `fail_times` tries, to show the retries."""
    time.sleep(float(params.get("seconds", 0)))
    if failures < int(params.get("fail_times", 0)):
        raise RuntimeError(f"the payment service is down (failure {failures + 1})")
    effect = ctx.taskstate.get(effect_id(params))
    effect.data = {"charged": params.get("amount", 100),
                   "times": effect.data.get("times", 0) + 1, "job_id": ctx.job_id}
    effect.status = "complete"
    effect.save()
    return {"charged": effect.data["charged"]}


def body_done(params: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Ask the other system whether an earlier try's body got through."""
    effect = ctx.taskstate.get(effect_id(params))
    return {"charged": effect.data["charged"]} if effect.status == "complete" else None


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    state = ctx.taskstate.get(params["state_id"])
    if state.status in ("complete", "failed"):
        return {"state": state.status, "skipped": "already finished"}
    if state.tries_remaining is None:
        state.tries_remaining = int(params.get("tries", TRIES))
    if state.status == "started":
        if state.data.get("job_id") != ctx.job_id:
            # Another job is doing it now, or, if it crashed, pgcc will deliver that job
            # again and its next attempt takes the branch below.
            return {"state": "started", "skipped": f"job {state.data.get('job_id')} owns it"}
        # Started previously: an earlier attempt of this job crashed midway (pgcc stops an
        # attempt before it hands the job out again). Did the body get through?
        state.data["redeliveries"] = state.data.get("redeliveries", 0) + 1
        result = body_done(params, ctx)
        if result is not None:
            return finish(state, result)
    state.status = "started"
    state.data = {**state.data, "job_id": ctx.job_id, "attempt": ctx.attempt}
    try:
        state.save()
    except StaleTaskStateError:
        return {"state": "started", "skipped": "another job started it first"}

    failures = int(params.get("tries", TRIES)) - state.tries_remaining
    try:
        result = body(params, ctx, failures)
    except Exception as exc:
        state.tries_remaining -= 1
        state.error = f"{type(exc).__name__}: {exc}"
        if state.tries_remaining <= 0:
            state.status = "failed"
            state.save()
            raise
        state.status = "pending"
        state.save()
        # pgcc runs this job again after the delay (no copy of it to schedule).
        raise Retry(f"{state.error}; {state.tries_remaining} tries remain",
                    after=500 * 2 ** failures) from exc
    return finish(state, result)


def finish(state: TaskState, result: dict[str, Any]) -> dict[str, Any]:
    state.status = "complete"
    state.error = None
    state.data = {**state.data, "result": result}
    state.save()
    print(f"taskstate_pattern {state.id}: complete {result}", flush=True)
    return {"state": "complete", **result}
