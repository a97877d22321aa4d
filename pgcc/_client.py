"""Scheduling from Python: pgcc.Client and pgcc.AsyncClient.

Both validate every job before any SQL runs and then call the schema's SQL
functions, so the three doors (SQL, Python, CLI) write the same rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from pgcc._database import DEFAULT_SCHEMA, connect_timeout, usable_dsn
from pgcc._queries import Queries, for_schema
from pgcc._states import JobState
from pgcc._taskstate import AsyncTaskStates, TaskStates
from pgcc._validation import (
    DEFAULT_PRIORITY,
    check_name,
    check_options,
    check_parameters,
    check_schema,
    check_timing,
    dump_json,
)
from pgcc.errors import (
    DatabaseUnavailable,
    JobFilterError,
    ParameterTypeError,
    PgccError,
    ScheduleError,
    UnknownJobError,
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


def _check_id(job_id: int) -> int:
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise JobFilterError(f"a job id is a whole number, not {type(job_id).__name__}")
    return job_id


def _check_timeout(timeout: float | None) -> float | None:
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


def _refused(exc: psycopg.Error) -> ScheduleError:
    message = exc.diag.message_primary or str(exc)
    return ScheduleError(message)


_job_row = class_row(Job)
_step_row = class_row(Step)


def _schema_name(schema: str | None) -> str:
    """The schema given, else PGCC_SCHEMA (as the CLI), else pgcc's default."""
    return schema if schema is not None else os.environ.get("PGCC_SCHEMA") or DEFAULT_SCHEMA


def _unavailable(exc: PoolTimeout, timeout: float) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"no connection to PostgreSQL within {timeout:g} s: {exc}")


class Client:
    """Schedules jobs. `Client()` with no DSN uses PGCC_DSN, else the embedded server."""

    def __init__(self, dsn: str | None = None, *, schema: str | None = None,
                 pool_size: int = 4) -> None:
        self.schema = check_schema(_schema_name(schema))
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None
        self._pool_lock = threading.Lock()
        self._queries: Queries = for_schema(self.schema)

    @property
    def dsn(self) -> str:
        # Checked once, within the connect timeout: the server answers and the
        # schema has pgcc's tables (DatabaseUnavailable otherwise).
        self._dsn = usable_dsn(self._dsn, self.schema)
        return self._dsn

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[tuple[Any, ...]]]:
        pool = self._pool
        if pool is None:
            with self._pool_lock:  # one pool, even when threads race to make it
                pool = self._pool
                if pool is None:
                    timeout = connect_timeout()
                    pool = ConnectionPool(
                        self.dsn, min_size=1, max_size=self._pool_size,
                        kwargs={"autocommit": True}, open=True, name=f"pgcc-{self.schema}",
                        timeout=timeout,
                    )
                    # A first request made before the first connection is up
                    # grows the pool by one, and the pool then hands its
                    # connections out in turn: a sequential caller would wake
                    # two backends alternately (~25 us more per call than one).
                    try:
                        pool.wait(timeout)
                    except PoolTimeout as exc:
                        pool.close()
                        raise _unavailable(exc, timeout) from None
                    self._pool = pool
        return pool

    def connection(self) -> AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]:
        """A connection from the client's pool, in autocommit mode."""
        return self._get_pool().connection()

    def _use(self, connection: psycopg.Connection[Any] | None
             ) -> AbstractContextManager[psycopg.Connection[Any]]:
        # Every call passes here: hand back the caller's connection or the
        # pool's own context manager, without a generator layer of our own.
        if connection is not None:
            return nullcontext(connection)
        return self._get_pool().connection()

    def schedule_task(self, task: str, parameters: Mapping[str, Any] | None = None, *,
                      at: dt.datetime | None = None, after: Delay | None = None,
                      queue: str | None = None, key: str | None = None,
                      priority: int = DEFAULT_PRIORITY, max_attempts: int | None = None,
                      timeout: float | dt.timedelta | None = None,
                      connection: psycopg.Connection[Any] | None = None) -> int:
        """Schedule one job; returns its id. With `connection=`, inside the caller's
        transaction, which is not committed. While a queued or running job has
        `key`, nothing is written and that job's id comes back. `priority`
        (-100..100), `max_attempts` and `timeout` (seconds): docs/scheduling.md."""
        params = schedule_params(task, parameters, at, after, queue, key, priority, max_attempts,
                                 timeout)
        with self._use(connection) as conn:
            try:
                row = conn.execute(self._queries["schedule_task"], params).fetchone()
            except psycopg.errors.InvalidParameterValue as exc:
                raise _refused(exc) from None
        assert row is not None
        return int(row[0])

    def schedule_tasks(self, jobs: Iterable[Mapping[str, Any]], *,
                       connection: psycopg.Connection[Any] | None = None) -> list[int]:
        """Schedule many jobs in one statement; returns their ids in order."""
        payload = bulk_payload(jobs)
        with self._use(connection) as conn:
            try:
                row = conn.execute(self._queries["schedule_tasks"], {"jobs": payload}).fetchone()
            except psycopg.errors.InvalidParameterValue as exc:
                raise _refused(exc) from None
        assert row is not None
        return list(row[0])

    def cancel_job(self, job_id: int) -> bool:
        """Cancel a job. A queued job is cancelled at once; a running one is
        stopped by its worker within 2 s and ends cancelled (until then it
        shows running, with `cancel_requested_at` set). True if the job is
        cancelled or being cancelled; False for an unknown id or a finished job."""
        with self.connection() as conn:
            row = conn.execute(self._queries["cancel_job"],
                               {"job_id": _check_id(job_id)}).fetchone()
        return bool(row and row[0])

    def cancel(self, job_id: int) -> bool:
        """The former name of cancel_job."""
        return self.cancel_job(job_id)

    def retry_job(self, job_id: int) -> bool:
        """Run a finished job (done, failed, dead, cancelled) again: queued, due
        now, behind the jobs waiting in its queue, with a full max_attempts;
        its earlier run is kept in `Job.history`. False for an unknown id or a
        job that is not finished."""
        with self.connection() as conn:
            row = conn.execute(self._queries["retry_job"],
                               {"job_id": _check_id(job_id)}).fetchone()
        return bool(row and row[0])

    def pause_queue(self, queue: str) -> bool:
        """Pause a queue: its jobs stay queued and no worker starts one (a running
        one finishes). True if it was not paused before. A queue with no jobs
        may be paused: it stays paused for the jobs that come later."""
        with self.connection() as conn:
            row = conn.execute(self._queries["pause_queue"],
                               {"queue": check_name("queue", queue)}).fetchone()
        return bool(row and row[0])

    def resume_queue(self, queue: str) -> bool:
        """Let a paused queue's jobs run again, at once. True if it was paused."""
        with self.connection() as conn:
            row = conn.execute(self._queries["resume_queue"],
                               {"queue": check_name("queue", queue)}).fetchone()
        return bool(row and row[0])

    def paused_queues(self) -> list[str]:
        """The names of the paused queues, sorted."""
        with self.connection() as conn:
            return [row[0] for row in conn.execute(self._queries["paused_queues"]).fetchall()]

    def retry_jobs(self, state: str | JobState, *, task: str | None = None,
                   queue: str | None = None) -> list[int]:
        """Retry every job of one finished state (and task, queue when given), in
        queue order; returns their ids."""
        params = list_params(check_state(state, RETRYABLE), task, queue, 1)
        with self.connection() as conn:
            rows = conn.execute(self._queries["retry_jobs_where"], params).fetchall()
        return [int(row[0]) for row in rows]

    def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        with self.connection() as conn:
            cur = conn.cursor(row_factory=_job_row)
            return cur.execute(self._queries["get_job"], {"job_id": _check_id(job_id)}).fetchone()

    def get_steps(self, job_id: int) -> list[Step]:
        """The steps the job has recorded (ctx.step), in the order they
        committed; a retried job keeps them. Empty for an unknown job."""
        with self.connection() as conn:
            cur = conn.cursor(row_factory=_step_row)
            return cur.execute(self._queries["get_steps"],
                               {"job_id": _check_id(job_id)}).fetchall()

    def list_jobs(self, state: str | JobState | None = None, *, task: str | None = None,
                  queue: str | None = None, limit: int = DEFAULT_LIST_LIMIT) -> list[Job]:
        """The newest jobs first (at most `limit`), of one state, task and queue
        when given. An unknown state or a bad limit raises JobFilterError."""
        params = list_params(state, task, queue, limit)
        with self.connection() as conn:
            cur = conn.cursor(row_factory=_job_row)
            return cur.execute(self._queries["list_jobs"], params).fetchall()

    def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """The job once it has finished (done, failed, dead or cancelled).
        Raises TimeoutError if it has not within `timeout` seconds (None: no
        limit), UnknownJobError if there is no such job."""
        limit = _check_timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        pause = WAIT_POLL_MIN
        while True:
            job = self.get_job(job_id)
            if job is None:
                raise UnknownJobError(f"no job {job_id}")
            if job.finished:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout} s")
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, WAIT_POLL_MAX)

    @property
    def taskstate(self) -> TaskStates:
        return TaskStates(self.connection, self._queries)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of Client."""

    def __init__(self, dsn: str | None = None, *, schema: str | None = None,
                 pool_size: int = 4) -> None:
        self.schema = check_schema(_schema_name(schema))
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None
        self._queries: Queries = for_schema(self.schema)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        if self._pool is None:
            # Checked once (see Client.dsn), in a thread: the loop is not blocked.
            self._dsn = await asyncio.to_thread(usable_dsn, self._dsn, self.schema)
            timeout = connect_timeout()
            pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] = \
                AsyncConnectionPool(
                    self._dsn, min_size=1, max_size=self._pool_size,
                    kwargs={"autocommit": True}, open=False, name=f"pgcc-{self.schema}",
                    timeout=timeout,
                )
            await pool.open()
            try:
                await pool.wait(timeout)  # see Client.connection
            except PoolTimeout as exc:
                await pool.close()
                raise _unavailable(exc, timeout) from None
            self._pool = pool
        async with self._pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def _use(self, connection: psycopg.AsyncConnection[Any] | None
                   ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if connection is not None:
            yield connection
        else:
            async with self.connection() as conn:
                yield conn

    async def schedule_task(self, task: str, parameters: Mapping[str, Any] | None = None, *,
                            at: dt.datetime | None = None, after: Delay | None = None,
                            queue: str | None = None, key: str | None = None,
                            priority: int = DEFAULT_PRIORITY,
                            max_attempts: int | None = None,
                            timeout: float | dt.timedelta | None = None,
                            connection: psycopg.AsyncConnection[Any] | None = None) -> int:
        params = schedule_params(task, parameters, at, after, queue, key, priority, max_attempts,
                                 timeout)
        async with self._use(connection) as conn:
            try:
                cur = await conn.execute(self._queries["schedule_task"], params)
            except psycopg.errors.InvalidParameterValue as exc:
                raise _refused(exc) from None
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def schedule_tasks(self, jobs: Iterable[Mapping[str, Any]], *,
                             connection: psycopg.AsyncConnection[Any] | None = None
                             ) -> list[int]:
        payload = bulk_payload(jobs)
        async with self._use(connection) as conn:
            try:
                cur = await conn.execute(self._queries["schedule_tasks"], {"jobs": payload})
            except psycopg.errors.InvalidParameterValue as exc:
                raise _refused(exc) from None
            row = await cur.fetchone()
        assert row is not None
        return list(row[0])

    async def cancel_job(self, job_id: int) -> bool:
        """See Client.cancel_job."""
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["cancel_job"], {"job_id": _check_id(job_id)})
            row = await cur.fetchone()
        return bool(row and row[0])

    async def cancel(self, job_id: int) -> bool:
        """The former name of cancel_job."""
        return await self.cancel_job(job_id)

    async def retry_job(self, job_id: int) -> bool:
        """See Client.retry_job."""
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["retry_job"], {"job_id": _check_id(job_id)})
            row = await cur.fetchone()
        return bool(row and row[0])

    async def pause_queue(self, queue: str) -> bool:
        params = {"queue": check_name("queue", queue)}
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["pause_queue"], params)
            row = await cur.fetchone()
        return bool(row and row[0])

    async def resume_queue(self, queue: str) -> bool:
        params = {"queue": check_name("queue", queue)}
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["resume_queue"], params)
            row = await cur.fetchone()
        return bool(row and row[0])

    async def paused_queues(self) -> list[str]:
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["paused_queues"])
            return [row[0] for row in await cur.fetchall()]

    async def retry_jobs(self, state: str | JobState, *, task: str | None = None,
                         queue: str | None = None) -> list[int]:
        """See Client.retry_jobs."""
        params = list_params(check_state(state, RETRYABLE), task, queue, 1)
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["retry_jobs_where"], params)
            rows = await cur.fetchall()
        return [int(row[0]) for row in rows]

    async def get_job(self, job_id: int) -> Job | None:
        """See Client.get_job."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=_job_row)
            await cur.execute(self._queries["get_job"], {"job_id": _check_id(job_id)})
            return await cur.fetchone()

    async def get_steps(self, job_id: int) -> list[Step]:
        """See Client.get_steps."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=_step_row)
            await cur.execute(self._queries["get_steps"], {"job_id": _check_id(job_id)})
            return await cur.fetchall()

    async def list_jobs(self, state: str | JobState | None = None, *, task: str | None = None,
                        queue: str | None = None, limit: int = DEFAULT_LIST_LIMIT) -> list[Job]:
        """See Client.list_jobs."""
        params = list_params(state, task, queue, limit)
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=_job_row)
            await cur.execute(self._queries["list_jobs"], params)
            return await cur.fetchall()

    async def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """See Client.wait_for."""
        limit = _check_timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        pause = WAIT_POLL_MIN
        while True:
            job = await self.get_job(job_id)
            if job is None:
                raise UnknownJobError(f"no job {job_id}")
            if job.finished:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout} s")
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, WAIT_POLL_MAX)

    @property
    def taskstate(self) -> AsyncTaskStates:
        return AsyncTaskStates(self.connection, self._queries)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["AsyncClient", "Client", "Job", "JobState", "PgccError"]
