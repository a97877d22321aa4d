"""Scheduling from Python: pgcc.AsyncClient.

The source of pgcc.Client too: pgcc/_client.py is generated from this file
by scripts/async_to_sync.py (`async` and `await` dropped, each Async name read
without it), and a test holds the two equal. What the two share beyond
that (Job, the checks, the parameters) is in pgcc._client_base.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
from pgcc._taskstate_async import AsyncTaskStates
from pgcc._validation import DEFAULT_PRIORITY, check_name, check_schema
from pgcc.errors import UnknownJobError


class AsyncClient:
    """Schedules jobs. `AsyncClient()` with no DSN uses PGCC_DSN, else the
    embedded server. Its connections come from a pool of `pool_size`, made
    at the first call."""

    def __init__(self, dsn: str | None = None, *, schema: str | None = None,
                 pool_size: int = 4) -> None:
        self.schema = check_schema(schema_name(schema))
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None
        self._pool_lock = asyncio.Lock()
        self._queries: Queries = for_schema(self.schema)

    if True:  # ASYNC
        pass
    else:
        @property
        def dsn(self) -> str:
            # Checked once, within the connect timeout: the server answers and
            # the schema has pgcc's tables (DatabaseUnavailable otherwise).
            self._dsn = usable_dsn(self._dsn, self.schema)
            return self._dsn

    async def _get_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]:
        pool = self._pool
        if pool is None:
            async with self._pool_lock:  # one pool, even when callers race to make it
                pool = self._pool
                if pool is None:
                    if True:  # ASYNC
                        # Checked once (see Client.dsn), in a thread: the loop
                        # is not blocked.
                        dsn = await asyncio.to_thread(usable_dsn, self._dsn, self.schema)
                        self._dsn = dsn
                    else:
                        dsn = self.dsn
                    timeout = connect_timeout()
                    pool = AsyncConnectionPool(
                        dsn, min_size=1, max_size=self._pool_size,
                        kwargs={"autocommit": True}, open=False, name=f"pgcc-{self.schema}",
                        timeout=timeout,
                    )
                    await pool.open()
                    # A first request made before the first connection is up
                    # grows the pool by one, and the pool then hands its
                    # connections out in turn: a sequential caller would wake
                    # two backends alternately (~25 us more per call than one).
                    try:
                        await pool.wait(timeout)
                    except PoolTimeout as exc:
                        await pool.close()
                        raise unavailable(exc, timeout) from None
                    self._pool = pool
        return pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        """A connection from the client's pool, in autocommit mode."""
        pool = await self._get_pool()
        async with pool.connection() as conn:
            yield conn

    async def _use(self, connection: psycopg.AsyncConnection[Any] | None
                   ) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        # Every call passes here: hand back the caller's connection or the
        # pool's own context manager, without a generator layer of our own.
        if connection is not None:
            return nullcontext(connection)
        pool = await self._get_pool()
        return pool.connection()

    async def schedule_task(self, task: str, parameters: Mapping[str, Any] | None = None, *,
                            at: dt.datetime | None = None, after: Delay | None = None,
                            queue: str | None = None, key: str | None = None,
                            priority: int = DEFAULT_PRIORITY,
                            max_attempts: int | None = None,
                            timeout: float | dt.timedelta | None = None,
                            connection: psycopg.AsyncConnection[Any] | None = None) -> int:
        """Schedule one job; returns its id. With `connection=`, inside the caller's
        transaction, which is not committed. While a queued or running job has
        `key`, nothing is written and that job's id comes back. `priority`
        (-100..100), `max_attempts` and `timeout` (seconds): docs/scheduling.md."""
        params = schedule_params(task, parameters, at, after, queue, key, priority, max_attempts,
                                 timeout)
        async with await self._use(connection) as conn:
            try:
                cur = await conn.execute(self._queries["schedule_task"], params)
            except psycopg.errors.InvalidParameterValue as exc:
                raise refused(exc) from None
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def schedule_tasks(self, jobs: Iterable[Mapping[str, Any]], *,
                             connection: psycopg.AsyncConnection[Any] | None = None
                             ) -> list[int]:
        """Schedule many jobs in one statement; returns their ids in order."""
        payload = bulk_payload(jobs)
        async with await self._use(connection) as conn:
            try:
                cur = await conn.execute(self._queries["schedule_tasks"], {"jobs": payload})
            except psycopg.errors.InvalidParameterValue as exc:
                raise refused(exc) from None
            row = await cur.fetchone()
        assert row is not None
        return list(row[0])

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel a job. A queued job is cancelled at once; a running one is
        stopped by its worker within 2 s and ends cancelled (until then it
        shows running, with `cancel_requested_at` set). True if the job is
        cancelled or being cancelled; False for an unknown id or a finished job."""
        return await self._one_flag("cancel_job", {"job_id": check_id(job_id)})

    async def cancel(self, job_id: int) -> bool:
        """The former name of cancel_job."""
        return await self.cancel_job(job_id)

    async def retry_job(self, job_id: int) -> bool:
        """Run a finished job (done, failed, dead, cancelled) again: queued, due
        now, behind the jobs waiting in its queue, with a full max_attempts;
        its earlier run is kept in `Job.history`. False for an unknown id or a
        job that is not finished."""
        return await self._one_flag("retry_job", {"job_id": check_id(job_id)})

    async def pause_queue(self, queue: str) -> bool:
        """Pause a queue: its jobs stay queued and no worker starts one (a running
        one finishes). True if it was not paused before. A queue with no jobs
        may be paused: it stays paused for the jobs that come later."""
        return await self._one_flag("pause_queue", {"queue": check_name("queue", queue)})

    async def resume_queue(self, queue: str) -> bool:
        """Let a paused queue's jobs run again, at once. True if it was paused."""
        return await self._one_flag("resume_queue", {"queue": check_name("queue", queue)})

    async def _one_flag(self, query: str, params: dict[str, Any]) -> bool:
        async with self.connection() as conn:
            cur = await conn.execute(self._queries[query], params)
            row = await cur.fetchone()
        return bool(row and row[0])

    async def paused_queues(self) -> list[str]:
        """The names of the paused queues, sorted."""
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["paused_queues"])
            return [row[0] for row in await cur.fetchall()]

    async def retry_jobs(self, state: str | JobState, *, task: str | None = None,
                         queue: str | None = None) -> list[int]:
        """Retry every job of one finished state (and task, queue when given), in
        queue order; returns their ids."""
        params = list_params(check_state(state, RETRYABLE), task, queue, 1)
        async with self.connection() as conn:
            cur = await conn.execute(self._queries["retry_jobs_where"], params)
            rows = await cur.fetchall()
        return [int(row[0]) for row in rows]

    async def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=job_row)
            await cur.execute(self._queries["get_job"], {"job_id": check_id(job_id)})
            return await cur.fetchone()

    async def get_steps(self, job_id: int) -> list[Step]:
        """The steps the job has recorded (ctx.step), in the order they
        committed; a retried job keeps them. Empty for an unknown job."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=step_row)
            await cur.execute(self._queries["get_steps"], {"job_id": check_id(job_id)})
            return await cur.fetchall()

    async def list_jobs(self, state: str | JobState | None = None, *, task: str | None = None,
                        queue: str | None = None, limit: int = DEFAULT_LIST_LIMIT) -> list[Job]:
        """The newest jobs first (at most `limit`), of one state, task and queue
        when given. An unknown state or a bad limit raises JobFilterError."""
        params = list_params(state, task, queue, limit)
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=job_row)
            await cur.execute(self._queries["list_jobs"], params)
            return await cur.fetchall()

    async def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """The job once it has finished (done, failed, dead or cancelled).
        Raises TimeoutError if it has not within `timeout` seconds (None: no
        limit), UnknownJobError if there is no such job."""
        limit = check_timeout(timeout)
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


__all__ = ["AsyncClient"]
