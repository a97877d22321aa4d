"""Schedules through ctx (sync) a job every door refuses (params["case"]): the
job fails with pgcc's ScheduleError, or with an AssertionError if it was another error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pgcc

if TYPE_CHECKING:
    from pgcc import JobContext

CASES: dict[str, Callable[[], tuple[str, Any, dict[str, Any]]]] = {
    "set": lambda: ("target", {"ids": {"a": [1, {2, 3}]}}, {}),
    "nan": lambda: ("target", {"x": float("nan")}, {}),
    "nul": lambda: ("target", {"x": "a\x00b"}, {}),
    "empty task": lambda: ("", {}, {}),
    "long queue": lambda: ("target", {}, {"queue": "q" * 201}),
    "at and after": lambda: ("target", {}, {"after": 5, "at": dt.datetime.now(dt.timezone.utc)}),
    "negative after": lambda: ("target", {}, {"after": -1}),
    "not an object": lambda: ("target", [1, 2], {}),
}


def run(params: dict[str, Any], ctx: JobContext) -> str:
    task, parameters, kwargs = CASES[params["case"]]()
    try:
        ctx.schedule_task(task, parameters, **kwargs)
    except pgcc.ScheduleError:
        raise  # fails the job with this error
    except Exception as exc:
        raise AssertionError(f"not a pgcc.ScheduleError: {exc!r}") from exc
    return "scheduled?"
