"""The child process: runs one job at a time for the worker, for as long as it lives.

A new child first says it is `Ready`. Then the worker sends lists of
`JobOrder`s, one list per round of claims; the child runs them in order and
sends an `Answer` for each as it ends (pgcc._worker.messages). A child that
dies before answering has given no response, and the worker retries the job
elsewhere. The child reads and writes its pipe blocking; the worker never
blocks on it (pgcc._worker.pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pgcc import _tasks as tasks
from pgcc._retry import asked_retry
from pgcc._validation import DEFAULT_PRIORITY
from pgcc._worker import framing
from pgcc._worker.messages import SHUTDOWN, Answer, JobOrder, JobState, Ready
from pgcc.errors import JobLost

if TYPE_CHECKING:
    import datetime as dt

    # Imported where a job first asks for a client: the worker itself never
    # does, and its children find the client loaded (pgcc._forkserver.PRELOAD).
    import psycopg

    from pgcc._client import Client
    from pgcc._client_async import AsyncClient
    from pgcc._client_base import Delay
    from pgcc._steps_base import JobSteps
    from pgcc._taskstate import TaskStates
    from pgcc._taskstate_async import AsyncTaskStates

# Exit code of a child whose task ran out of memory (MemoryError): the worker
# reports it as such rather than as a plain crash.
OUT_OF_MEMORY_EXIT = 86
# Exit code of a child that would not start a job: its worker's lease had lapsed.
LEASE_LAPSED_EXIT = 87
# Exit code of a child whose job was lost during a step (pgcc.JobLost): the
# job is no longer its attempt's, so the child answers nothing for it.
JOB_LOST_EXIT = 88
_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")

# An error text longer than this is cut: it is for a human to read.
MAX_ERROR_CHARS = 64 * 1024


class _Pipe:
    """The child's end of its pipe to the worker, read and written blocking."""

    def __init__(self, channel: Connection) -> None:
        self._channel = channel  # kept: closing it closes the descriptor
        self._fd = channel.fileno()
        os.set_blocking(self._fd, True)
        self._decoder = framing.Decoder()
        self._inbox: list[Any] = []

    def send(self, message: object) -> None:
        data = memoryview(framing.encode(message))
        while data:
            data = data[os.write(self._fd, data):]

    def receive(self) -> Any:
        """The next message; EOFError once the worker has closed its end."""
        while not self._inbox:
            chunk = os.read(self._fd, framing.READ_SIZE)
            if not chunk:
                raise EOFError
            self._inbox.extend(self._decoder.feed(chunk))
        return self._inbox.pop(0)


@dataclass
class ChildConfig:
    dsn: str
    schema: str
    source: tasks.TaskSource
    preload: list[str] = field(default_factory=list)
    # The largest result a job may return (bytes of JSON): the parameters' limit,
    # max_parameters_bytes in the schema's settings (None: no limit, as in SQL
    # when the setting is removed).
    max_result_bytes: int | None = None
    # Set in the worker when it builds the config: the process the child dies with.
    worker_pid: int = field(default_factory=os.getpid)
    # A shared double: when the worker last renewed its lease (time.monotonic(),
    # one clock for all processes); and how old that may get while a job runs.
    lease_clock: Any = None
    fence_after: float = 0.0


@dataclass
class _Environment:
    """What a child shares between its jobs: loaded modules and lazy clients."""

    config: ChildConfig
    modules: dict[str, tasks.Task] = field(default_factory=dict)
    client: Client | None = None
    async_client: AsyncClient | None = None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    # ctx.step's connections (pgcc._steps), one per kind, kept for later jobs.
    step_connection: psycopg.Connection[Any] | None = None
    async_step_connection: psycopg.AsyncConnection[Any] | None = None
    # The steps of the job running now.
    steps: JobSteps | None = None

    def task(self, name: str) -> tasks.Task:
        task = self.modules.get(name)
        if task is None:
            source = self.config.source
            task = tasks.load(source.path_of(name), source)
            self.modules[name] = task
        return task

    def sync_client(self) -> Client:
        if self.client is None:
            from pgcc._client import Client

            self.client = Client(self.config.dsn, schema=self.config.schema, pool_size=1)
        return self.client

    def aio_client(self) -> AsyncClient:
        if self.async_client is None:
            from pgcc._client_async import AsyncClient

            self.async_client = AsyncClient(self.config.dsn, schema=self.config.schema,
                                            pool_size=1)
        return self.async_client

    def job_steps(self, job_id: int, token: int) -> JobSteps:
        if self.steps is None or self.steps.job_id != job_id or self.steps.token != token:
            from pgcc._steps_base import JobSteps

            self.steps = JobSteps(self.config.schema, job_id, token,
                                  self.config.max_result_bytes)
        return self.steps

    # Inside a step's fn, ctx.schedule_task joins the step's transaction: the
    # job it schedules commits with the step, so exactly once.
    def in_step(self) -> psycopg.Connection[Any] | None:
        running = self.steps is not None and self.steps.running is not None
        return self.step_connection if running else None

    def in_async_step(self) -> psycopg.AsyncConnection[Any] | None:
        running = self.steps is not None and self.steps.running is not None
        return self.async_step_connection if running else None

    def sync_step_connection(self) -> psycopg.Connection[Any]:
        conn = self.step_connection
        if conn is None or conn.closed or conn.broken:
            from pgcc._database import connect

            conn = self.step_connection = connect(self.config.dsn,
                                                  application_name="pgcc step")
        return conn

    async def aio_step_connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self.async_step_connection
        if conn is None or conn.closed or conn.broken:
            from pgcc._database import connect_async

            conn = self.async_step_connection = await connect_async(
                self.config.dsn, application_name="pgcc step")
        return conn

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.step_connection is not None:
            self.step_connection.close()
        if self.async_client is not None:
            self.loop.run_until_complete(self.async_client.close())
        if self.async_step_connection is not None:
            self.loop.run_until_complete(self.async_step_connection.close())


class _JobFields:
    """What every `ctx` tells about its job."""

    def __init__(self, env: _Environment, job_id: int, task: str, attempt: int,
                 queue: str | None, token: int = 0) -> None:
        self._env = env
        self.job_id = job_id
        self.task = task
        self.attempt = attempt
        self.queue = queue
        self._token = token  # the claim's fencing token: steps are fenced by it


class JobContext(_JobFields):
    """`ctx` of a sync run(params, ctx)."""

    def schedule_task(self, task: str, parameters: dict[str, Any] | None = None, *,
                      at: Any = None, after: Delay | None = None,
                      queue: str | None = None, key: str | None = None,
                      priority: int = DEFAULT_PRIORITY, max_attempts: int | None = None,
                      timeout: float | dt.timedelta | None = None) -> int:
        """As Client.schedule_task, in the job's environment."""
        return self._env.sync_client().schedule_task(
            task, parameters, at=at, after=after, queue=queue, key=key, priority=priority,
            max_attempts=max_attempts, timeout=timeout,
            connection=self._env.in_step())

    @property
    def taskstate(self) -> TaskStates:
        return self._env.sync_client().taskstate

    def step(self, name: str, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run fn(conn) once for this job, in one transaction that also records
        it (see docs/steps.md); returns fn's value, or the value recorded when
        an earlier attempt ran it. pgcc.JobLost when this attempt lost the job."""
        from pgcc import _steps

        return _steps.run(self._env.job_steps(self.job_id, self._token),  # type: ignore[no-any-return]
                          self._env.sync_step_connection, name, fn)


class AsyncJobContext(_JobFields):
    """`ctx` of an async run(params, ctx): the same, awaited."""

    async def schedule_task(self, task: str, parameters: dict[str, Any] | None = None, *,
                            at: Any = None, after: Delay | None = None,
                            queue: str | None = None, key: str | None = None,
                            priority: int = DEFAULT_PRIORITY, max_attempts: int | None = None,
                            timeout: float | dt.timedelta | None = None) -> int:
        """As AsyncClient.schedule_task, in the job's environment."""
        return await self._env.aio_client().schedule_task(
            task, parameters, at=at, after=after, queue=queue, key=key, priority=priority,
            max_attempts=max_attempts, timeout=timeout,
            connection=self._env.in_async_step())

    @property
    def taskstate(self) -> AsyncTaskStates:
        return self._env.aio_client().taskstate

    async def step(self, name: str,
                   fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[_T]]) -> _T:
        """The twin of JobContext.step: `await ctx.step(name, fn)` with an async fn."""
        from pgcc import _steps_async

        return await _steps_async.run(  # type: ignore[no-any-return]
            self._env.job_steps(self.job_id, self._token), self._env.aio_step_connection,
            name, fn)


def _run(env: _Environment, order: JobOrder
         ) -> tuple[JobState, str | None, str | None, int | None]:
    """Run one job: its state, result (JSON text), error, and the delay of a
    retry it asked for (`queued`: ms, None for the backoff)."""
    job_id, task_name, parameters, attempt, queue = order[:5]
    token = order.token
    task: tasks.Task | None = None
    try:
        task = env.task(task_name)
        params = json.loads(parameters)
        if task.is_async:
            ctx: Any = AsyncJobContext(env, job_id, task_name, attempt, queue, token)
            args = (params, ctx) if task.wants_ctx else (params,)
            value = env.loop.run_until_complete(task.run(*args))
        else:
            ctx = JobContext(env, job_id, task_name, attempt, queue, token)
            value = task.run(params, ctx) if task.wants_ctx else task.run(params)
    except MemoryError:
        os._exit(OUT_OF_MEMORY_EXIT)
    except (Exception, SystemExit) as exc:
        retry = asked_retry(exc, task.retry_on if task is not None else ())
        if retry is not None:
            return JobState.QUEUED, None, _storable(retry[0]), retry[1]
        summary = f"{type(exc).__name__}: {exc}"
        error = f"{summary}\n\n{traceback.format_exc()}"
        return JobState.FAILED, None, _storable(error), None
    try:
        result = json.dumps(value, allow_nan=False, ensure_ascii=False)
        # What PostgreSQL cannot store would fail the worker's write, not the job.
        size = len(result.encode("utf-8"))  # a lone surrogate raises UnicodeEncodeError
        if _NUL_ESCAPE.search(result):
            raise ValueError("it holds a NUL character, which PostgreSQL cannot store")
    except (TypeError, ValueError, RecursionError) as exc:
        return JobState.FAILED, None, \
            _storable(f"run returned a value that is not JSON: {exc}"), None
    if env.config.max_result_bytes is not None and size > env.config.max_result_bytes:
        return JobState.FAILED, None, (
            f"run returned a result of {size} bytes as JSON; the limit is "
            f"{env.config.max_result_bytes} bytes (the parameters limit, "
            "max_parameters_bytes): store large data elsewhere and return its id"), None
    return JobState.DONE, result, None, None


# A \u0000 escape in JSON text: preceded by an even number of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _storable(text: str) -> str:
    """Error text PostgreSQL can store: no NUL, valid UTF-8, of a readable length."""
    if len(text) > MAX_ERROR_CHARS:
        cut = len(text) - MAX_ERROR_CHARS
        text = f"{text[:MAX_ERROR_CHARS // 2]}\n... ({cut} characters cut) ...\n" \
            f"{text[-MAX_ERROR_CHARS // 2:]}"
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _die_with_parent() -> None:
    """Children never outlive the worker: the kernel kills us when it goes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _die_with_worker(worker_pid: int) -> None:
    """PDEATHSIG fires when the forkserver dies, not the worker, and the forkserver
    outlives a killed worker for as long as any child holds its alive-pipe: so the
    child watches the worker itself, and dies with it (a job must not run on
    after its worker is gone: the reaper hands it out again)."""

    def watch() -> None:
        try:
            pidfd = os.pidfd_open(worker_pid)
        except ProcessLookupError:
            pass  # already gone
        except (AttributeError, OSError):  # no pidfd here: poll
            while _exists(worker_pid):
                threading.Event().wait(0.1)
        else:
            select.select([pidfd], [], [])  # readable once the worker has exited
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="pgcc-worker-watch", daemon=True).start()


# Seconds between two looks at a lapsed lease while no job runs.
LEASE_WATCH_POLL = 0.05


def _lease_lapsed(config: ChildConfig) -> bool:
    clock = config.lease_clock
    return clock is not None and config.fence_after > 0 \
        and time.monotonic() - clock.value > config.fence_after


def _stop_when_lease_lapses(config: ChildConfig) -> threading.Event:
    """The worker stops its jobs when it cannot renew its lease; but a frozen
    worker (SIGSTOP, a paused machine) cannot, and the reaper hands its jobs out
    again once the lease has run out. So a child also stops the job it runs
    itself, before then. Returns the event to set while a job runs."""
    running = threading.Event()
    clock, limit = config.lease_clock, config.fence_after
    if clock is None or limit <= 0:
        return running

    def watch() -> None:
        # Asleep until the lease would lapse (at most a second, at least
        # LEASE_WATCH_POLL), not woken every LEASE_WATCH_POLL: ten children
        # polling twenty times a second cost the serial queues' pace.
        while True:
            left = clock.value + limit - time.monotonic()
            if left <= 0 and running.is_set():
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(min(1.0, max(LEASE_WATCH_POLL, left)))

    threading.Thread(target=watch, name="pgcc-lease-watch", daemon=True).start()
    return running


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def ignore_stop_signals() -> None:
    """SIGTERM and SIGINT for the process group (systemd's stop, Ctrl-C in a
    terminal) are for the worker: it decides what becomes of running jobs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class JobLines:
    """A child's sys.stdout or sys.stderr: each line a task prints carries its
    job's id ("[job 42] ..."), so the worker's log says which job said what.
    Whole lines are written at once (children share the worker's stream);
    a partial line waits for its end, or for the job's end."""

    job_id: int | None = None  # the job this child runs now (one at a time)

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        if JobLines.job_id is None and not self._pending:
            return int(self._stream.write(text))
        self._pending += text
        if "\n" in self._pending:
            *lines, self._pending = self._pending.split("\n")
            prefix = f"[job {JobLines.job_id}] " if JobLines.job_id is not None else ""
            self._stream.write("".join(f"{prefix}{line}\n" for line in lines))
            self._stream.flush()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def end_job(self) -> None:
        """The job is over: its unfinished line is written, with its id."""
        if self._pending:
            self.write("\n")
        self.flush()

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, buffer, isatty...
        return getattr(self._stream, name)


def _prefix_output() -> tuple[JobLines, JobLines]:
    out, err = JobLines(sys.stdout), JobLines(sys.stderr)
    sys.stdout, sys.stderr = out, err
    return out, err


def child_main(channel: Connection, config: ChildConfig) -> None:
    ignore_stop_signals()
    streams = _prefix_output()
    _die_with_parent()
    _die_with_worker(config.worker_pid)
    running = _stop_when_lease_lapses(config)
    pipe = _Pipe(channel)
    env = _Environment(config)
    # Import the tasks now, so a job's first run does not pay for it. A module
    # that fails here fails its job later, with the error.
    for name in config.preload:
        with contextlib.suppress(Exception):
            env.task(name)
    # Only now may the worker claim jobs for us: a job's started_at is not stamped
    # while the child that will run it is still starting.
    pipe.send(Ready(os.getpid()))
    while True:
        try:
            batch: list[JobOrder] | None = pipe.receive()
        except (EOFError, OSError):
            break
        if batch is SHUTDOWN:
            break
        for order in batch:
            if _lease_lapsed(config):
                # The worker was frozen (SIGSTOP, a paused machine) while this job
                # waited: the reaper may have handed it out again. Not started;
                # the worker records no response, fenced off if it was.
                os._exit(LEASE_LAPSED_EXIT)
            running.set()
            started = time.perf_counter()
            JobLines.job_id = order.id
            try:
                state, result, error, retry_after = _run(env, order)
            except JobLost as exc:
                _lost(exc, streams)
            if env.steps is not None and env.steps.lost is not None:  # swallowed by the task
                _lost(env.steps.lost, streams)
            for stream in streams:
                stream.end_job()
            JobLines.job_id = None
            running.clear()
            pipe.send(Answer(order.id, order.attempt, state, result, error,
                             time.perf_counter() - started, retry_after))
    env.close()


def _lost(exc: JobLost, streams: tuple[JobLines, JobLines]) -> NoReturn:
    """The job is no longer this attempt's: no answer (the worker's record of
    this attempt's end is fenced out), and no other job in this child's line,
    which may hold what the task left behind; the worker puts those back."""
    print(f"stopped: {exc}", file=sys.stderr)
    for stream in streams:
        stream.end_job()
    os._exit(JOB_LOST_EXIT)
