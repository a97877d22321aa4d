"""Scheduling from Python: pgcc.Client.

Generated from pgcc/_client_async.py by scripts/async_to_sync.py: edit that
file, not this one.
"""

from __future__ import annotations

import threading
import datetime as dt
import time
from collections.abc import Iterator, Iterable, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pgcc._client_base import (
    DEFAULT_LIST_LIMIT,
    RETRYABLE,
    WAIT_POLL_MAX,
    WAIT_POLL_MIN,
    Delay,
    Job,
    Step,
    bulk_payload,
    check_id,
    check_state,
    check_timeout,
    job_row,
    list_params,
    refused,
    schedule_params,
    schema_name,
    step_row,
    unavailable,
)
from pgcc._database import connect_timeout, usable_dsn
from pgcc._queries import Queries, for_schema
from pgcc._states import JobState
from pgcc._taskstate import TaskStates
from pgcc._validation import DEFAULT_PRIORITY, check_name, check_schema
from pgcc.errors import UnknownJobError


class Client:
    """Schedules jobs. `Client()` with no DSN uses PGCC_DSN, else the
    embedded server. Its connections come from a pool of `pool_size`, made
    at the first call."""

    def __init__(self, dsn: str | None = None, *, schema: str | None = None,
                 pool_size: int = 4) -> None:
        self.schema = check_schema(schema_name(schema))
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None
        self._pool_lock = threading.Lock()
        self._queries: Queries = for_schema(self.schema)

    @property
    def dsn(self) -> str:
        # Checked once, within the connect timeout: the server answers and
        # the schema has pgcc's tables (DatabaseUnavailable otherwise).
        self._dsn = usable_dsn(self._dsn, self.schema)
        return self._dsn

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[tuple[Any, ...]]]:
        pool = self._pool
        if pool is None:
            with self._pool_lock:  # one pool, even when callers race to make it
                pool = self._pool
                if pool is None:
                    dsn = self.dsn
                    timeout = connect_timeout()
                    pool = ConnectionPool(
                        dsn, min_size=1, max_size=self._pool_size,
                        kwargs={"autocommit": True}, open=False, name=f"pgcc-{self.schema}",
                        timeout=timeout,
                    )
                    pool.open()
                    # A first request made before the first connection is up
                    # grows the pool by one, and the pool then hands its
                    # connections out in turn: a sequential caller would wake
                    # two backends alternately (~25 us more per call than one).
                    try:
                        pool.wait(timeout)
                    except PoolTimeout as exc:
                        pool.close()
                        raise unavailable(exc, timeout) from None
                    self._pool = pool
        return pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A connection from the client's pool, in autocommit mode."""
        pool = self._get_pool()
        with pool.connection() as conn:
            yield conn

    def _use(self, connection: psycopg.Connection[Any] | None
             ) -> AbstractContextManager[psycopg.Connection[Any]]:
        # Every call passes here: hand back the caller's connection or the
        # pool's own context manager, without a generator layer of our own.
        if connection is not None:
            return nullcontext(connection)
        pool = self._get_pool()
        return pool.connection()

    def schedule_task(self, task: str, parameters: Mapping[str, Any] | None = None, *,
                      at: dt.datetime | None = None, after: Delay | None = None,
                      queue: str | None = None, key: str | None = None,
                      priority: int = DEFAULT_PRIORITY,
                      max_attempts: int | None = None,
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
                cur = conn.execute(self._queries["schedule_task"], params)
            except psycopg.errors.InvalidParameterValue as exc:
                raise refused(exc) from None
            row = cur.fetchone()
        assert row is not None
        return int(row[0])

    def schedule_tasks(self, jobs: Iterable[Mapping[str, Any]], *,
                       connection: psycopg.Connection[Any] | None = None
                       ) -> list[int]:
        """Schedule many jobs in one statement; returns their ids in order."""
        payload = bulk_payload(jobs)
        with self._use(connection) as conn:
            try:
                cur = conn.execute(self._queries["schedule_tasks"], {"jobs": payload})
            except psycopg.errors.InvalidParameterValue as exc:
                raise refused(exc) from None
            row = cur.fetchone()
        assert row is not None
        return list(row[0])

    def cancel_job(self, job_id: int) -> bool:
        """Cancel a job. A queued job is cancelled at once; a running one is
        stopped by its worker within 2 s and ends cancelled (until then it
        shows running, with `cancel_requested_at` set). True if the job is
        cancelled or being cancelled; False for an unknown id or a finished job."""
        return self._one_flag("cancel_job", {"job_id": check_id(job_id)})

    def cancel(self, job_id: int) -> bool:
        """The former name of cancel_job."""
        return self.cancel_job(job_id)

    def retry_job(self, job_id: int) -> bool:
        """Run a finished job (done, failed, dead, cancelled) again: queued, due
        now, behind the jobs waiting in its queue, with a full max_attempts;
        its earlier run is kept in `Job.history`. False for an unknown id or a
        job that is not finished."""
        return self._one_flag("retry_job", {"job_id": check_id(job_id)})

    def pause_queue(self, queue: str) -> bool:
        """Pause a queue: its jobs stay queued and no worker starts one (a running
        one finishes). True if it was not paused before. A queue with no jobs
        may be paused: it stays paused for the jobs that come later."""
        return self._one_flag("pause_queue", {"queue": check_name("queue", queue)})

    def resume_queue(self, queue: str) -> bool:
        """Let a paused queue's jobs run again, at once. True if it was paused."""
        return self._one_flag("resume_queue", {"queue": check_name("queue", queue)})

    def _one_flag(self, query: str, params: dict[str, Any]) -> bool:
        with self.connection() as conn:
            cur = conn.execute(self._queries[query], params)
            row = cur.fetchone()
        return bool(row and row[0])

    def paused_queues(self) -> list[str]:
        """The names of the paused queues, sorted."""
        with self.connection() as conn:
            cur = conn.execute(self._queries["paused_queues"])
            return [row[0] for row in cur.fetchall()]

    def retry_jobs(self, state: str | JobState, *, task: str | None = None,
                   queue: str | None = None) -> list[int]:
        """Retry every job of one finished state (and task, queue when given), in
        queue order; returns their ids."""
        params = list_params(check_state(state, RETRYABLE), task, queue, 1)
        with self.connection() as conn:
            cur = conn.execute(self._queries["retry_jobs_where"], params)
            rows = cur.fetchall()
        return [int(row[0]) for row in rows]

    def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        with self.connection() as conn:
            cur = conn.cursor(row_factory=job_row)
            cur.execute(self._queries["get_job"], {"job_id": check_id(job_id)})
            return cur.fetchone()

    def get_steps(self, job_id: int) -> list[Step]:
        """The steps the job has recorded (ctx.step), in the order they
        committed; a retried job keeps them. Empty for an unknown job."""
        with self.connection() as conn:
            cur = conn.cursor(row_factory=step_row)
            cur.execute(self._queries["get_steps"], {"job_id": check_id(job_id)})
            return cur.fetchall()

    def list_jobs(self, state: str | JobState | None = None, *, task: str | None = None,
                  queue: str | None = None, limit: int = DEFAULT_LIST_LIMIT) -> list[Job]:
        """The newest jobs first (at most `limit`), of one state, task and queue
        when given. An unknown state or a bad limit raises JobFilterError."""
        params = list_params(state, task, queue, limit)
        with self.connection() as conn:
            cur = conn.cursor(row_factory=job_row)
            cur.execute(self._queries["list_jobs"], params)
            return cur.fetchall()

    def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """The job once it has finished (done, failed, dead or cancelled).
        Raises TimeoutError if it has not within `timeout` seconds (None: no
        limit), UnknownJobError if there is no such job."""
        limit = check_timeout(timeout)
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


__all__ = ["Client"]
