"""What pgcc.Client and pgcc.AsyncClient share: the Job and Step records, and
the checks and parameters of each call (no I/O here).

Both clients validate every job before any SQL runs and then call the
schema's SQL functions, so the three doors (SQL, Python, CLI) write the same
rows.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import PoolTimeout

from pgcc._database import DEFAULT_SCHEMA
from pgcc._states import JobState
from pgcc._validation import (
    DEFAULT_PRIORITY,
    check_name,
    check_options,
    check_parameters,
    check_timing,
    dump_json,
)
from pgcc.errors import (
    DatabaseUnavailable,
    JobFilterError,
    ParameterTypeError,
    ScheduleError,
)

Delay = int | dt.timedelta
_OPTIONS = ("key", "priority", "max_attempts", "timeout")
_BULK_KEYS = frozenset({"task", "parameters", "at", "after", "queue", *_OPTIONS})


@dataclass(frozen=True)
class Job:
    """One job: a row of the jobs table, as `get_job`, `list_jobs` and `wait_for` return it.

    - `state`: queued, running, done, failed, dead or cancelled (a `JobState`);
      finished means done, failed, dead or cancelled.
    - `scheduled_at` orders its queue; `run_at` is when it may start next.
    - `attempts`: claims so far (0 while it waits for its first run);
      `max_attempts` the most it gets (None until a worker first claims it,
      when the task module's value is used).
    - `started_at`, `finished_at`, `heartbeat_at`, `worker_id`: its current or
      last run.
    - `result`: what `run` returned (done); `error`: why it failed, died or
      was cancelled; `attempt_errors`: the reason of each attempt that gave no
      response (a dict with `attempt`, `error`, `at`).
    - `cancel_requested_at`: set while a running job is being cancelled.
    - `history`: the earlier runs of a job that was retried (`retry_job`), oldest
      first, each a dict with `state`, `attempts`, `worker_id`, `started_at`,
      `finished_at`, `error`, `result`, `attempt_errors` and `retried_at`.
    - `key`, `priority`, `timeout`: the scheduling options it was given
      (docs/scheduling.md); `timeout` None means its task module's.
    """

    id: int
    task: str
    parameters: dict[str, Any]
    queue: str | None
    state: JobState
    scheduled_at: dt.datetime
    run_at: dt.datetime
    attempts: int
    max_attempts: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    worker_id: int | None
    error: str | None
    result: Any
    attempt_errors: list[dict[str, Any]]
    cancel_requested_at: dt.datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    key: str | None = None
    priority: int = DEFAULT_PRIORITY
    timeout: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))

    @property
    def finished(self) -> bool:
        """Whether the job has ended (done, failed, dead or cancelled)."""
        return self.state in FINISHED


@dataclass(frozen=True)
class Step:
    """A step a job's run has recorded (`ctx.step`): its name, the value its
    function returned, the attempt that ran it and when it committed."""

    name: str
    value: Any
    attempt: int
    created_at: dt.datetime


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.DEAD, JobState.CANCELLED})
# The states `pgcc retry --state` and retry_jobs take: the finished ones.
RETRYABLE = frozenset(state.value for state in FINISHED)
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 100_000


def check_state(state: str | JobState | None, allowed: Iterable[str] | None = None
                ) -> str | None:
    """A state filter's text; JobFilterError naming the choices for any other."""
    if state is None:
        return None
    choices = sorted(allowed) if allowed is not None else [s.value for s in JobState]
    text = state.value if isinstance(state, JobState) else state
    if not isinstance(text, str) or text not in choices:
        known = isinstance(text, str) and text in {s.value for s in JobState}
        what = "job state not allowed here" if known else "unknown job state"
        raise JobFilterError(f"{what}: {state!r}; choose one of {', '.join(choices)}")
    return text


def list_params(state: str | JobState | None, task: str | None, queue: str | None,
                limit: int) -> dict[str, Any]:
    """The list_jobs query's parameters, checked."""
    if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
        raise JobFilterError(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}, "
                             f"not {limit!r}")
    for name, value in (("task", task), ("queue", queue)):
        if value is not None and not isinstance(value, str):
            raise JobFilterError(f"{name} must be a string, not {type(value).__name__}")
    return {"state": check_state(state), "task": task, "queue": queue, "limit": limit}


def check_id(job_id: int) -> int:
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise JobFilterError(f"a job id is a whole number, not {type(job_id).__name__}")
    return job_id


def check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not timeout >= 0):
        raise JobFilterError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
    return timeout


# wait_for polls: quickly at first, then at most every WAIT_POLL_MAX seconds.
WAIT_POLL_MIN = 0.02
WAIT_POLL_MAX = 0.5


def _checked_job(task: str, parameters: Mapping[str, Any] | None, at: dt.datetime | None,
                 after: Delay | None, queue: str | None, options: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """One job's fields, checked in the order every door checks them; queue, at,
    after and the options are left out when they are not given."""
    job: dict[str, Any] = {"task": check_name("task", task)}
    if queue is not None:
        job["queue"] = check_name("queue", queue)
    if at is not None or after is not None:
        checked_at, millis = check_timing(at, after)
        if checked_at is not None:
            job["at"] = checked_at
        if millis is not None:
            job["after"] = millis
    if options:
        checked = check_options(options.get("key"), options.get("priority", DEFAULT_PRIORITY),
                                options.get("max_attempts"), options.get("timeout"))
        job.update((name, value) for name, value in checked.items()
                   if value is not None and not (name == "priority" and value == DEFAULT_PRIORITY))
    job["parameters"] = check_parameters(parameters)
    return job


def schedule_params(task: str, parameters: Mapping[str, Any] | None, at: dt.datetime | None,
                    after: Delay | None, queue: str | None, key: str | None = None,
                    priority: int = DEFAULT_PRIORITY, max_attempts: int | None = None,
                    timeout: float | dt.timedelta | None = None) -> dict[str, Any]:
    """One job's arguments for the schedule_task SQL function, checked."""
    options = None
    if key is not None or priority != DEFAULT_PRIORITY or max_attempts is not None \
            or timeout is not None or type(priority) is not int:
        options = {"key": key, "priority": priority, "max_attempts": max_attempts,
                   "timeout": timeout}
    job = _checked_job(task, parameters, at, after, queue, options)
    return {"task": job["task"], "parameters": dump_json(job["parameters"]),
            "at": job.get("at"), "after": job.get("after"), "queue": job.get("queue"),
            "key": job.get("key"), "priority": job.get("priority", DEFAULT_PRIORITY),
            "max_attempts": job.get("max_attempts"), "timeout": job.get("timeout")}


def bulk_payload(jobs: Iterable[Mapping[str, Any]]) -> str:
    """A JSON array for the schedule_tasks SQL function, every job checked.

    Keys not given (queue, at, after) are left out: the SQL function reads a
    missing key as null, and a shorter document is cheaper to parse and scan."""
    items = []
    for index, job in enumerate(jobs):
        if type(job) is not dict and not isinstance(job, Mapping):
            raise ParameterTypeError(f"jobs[{index}] must be a dict, not {type(job).__name__}")
        if not job.keys() <= _BULK_KEYS:
            unknown = set(job) - _BULK_KEYS
            raise ScheduleError(f"jobs[{index}]: unknown key {sorted(unknown)[0]!r}")
        if "task" not in job:
            raise ScheduleError(f"jobs[{index}]: task is missing")
        try:
            options = {name: job[name] for name in _OPTIONS if name in job}
            item = _checked_job(job["task"], job.get("parameters"), job.get("at"),
                                job.get("after"), job.get("queue"), options)
        except ScheduleError as exc:
            raise type(exc)(f"jobs[{index}]: {exc}") from None
        if "at" in item:
            item["at"] = item["at"].isoformat()
        items.append(item)
    return dump_json(items)


def refused(exc: psycopg.Error) -> ScheduleError:
    message = exc.diag.message_primary or str(exc)
    return ScheduleError(message)


job_row = class_row(Job)
step_row = class_row(Step)


def schema_name(schema: str | None) -> str:
    """The schema given, else PGCC_SCHEMA (as the CLI), else pgcc's default."""
    return schema if schema is not None else os.environ.get("PGCC_SCHEMA") or DEFAULT_SCHEMA


def unavailable(exc: PoolTimeout, timeout: float) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"no connection to PostgreSQL within {timeout:g} s: {exc}")


