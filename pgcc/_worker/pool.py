"""The child pool: the processes that run jobs, and the line of jobs each holds.

Two threads use it, and it guards itself with a lock: the exchange, which
reads the children's answers, hands them jobs and replaces the ones that die
(the hot path: answer, outcome, claim and next job in one thread); and the
supervisor, which only stops children (timeouts, the lease's fence, jobs
taken away, shutdown) and so never waits for the exchange's database calls.
Nothing a child does can block either:
each pipe is read and written without blocking (`framing` keeps partial
frames), a child's timeout is a deadline the supervisor's wait allows for,
and a child that misbehaves is killed. What happens to jobs comes out as
`Outcome` records for the outcome writer:

- an `Answer` becomes a `Response` (an `AskedRetry` when the task asked for
  another attempt);
- a child that dies with a job started gives a `NoResponse` (or a `PutBack`
  when the worker stopped it to shut down);
- jobs that waited in a dead child's line never started: `PutBack`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import TypeVar

from pgcc import _runner as runner
from pgcc._worker import framing
from pgcc._worker import stats as counted
from pgcc._worker.config import PREFETCH_BUDGET
from pgcc._worker.messages import (
    SHUTDOWN,
    Answer,
    AskedRetry,
    JobOrder,
    JobState,
    NoResponse,
    Outcome,
    PutBack,
    Ready,
    Response,
)

log = logging.getLogger("pgcc.worker")
_T = TypeVar("_T")

# Bytes read from one child per round: a child sending a flood cannot keep the
# supervisor from its other duties.
READ_BUDGET = 4 << 20
SHUTDOWN_REASON = "shutdown"
TIMED_OUT = "timed out"


@dataclass(slots=True)
class RunningJob:
    """A job in a child's line: the first runs, the others wait their turn."""

    id: int
    task: str
    attempt: int
    token: int
    queue: str | None
    timeout: float
    # When the supervisor gave it to the child, and when the child started it
    # (time.monotonic()); started is None while it waits in the child's line.
    assigned: float = 0.0
    started: float | None = None
    stop_reason: str | None = None
    # Why the job is no longer this worker's, found while it waited in line.
    revoked: str | None = None

    @property
    def deadline(self) -> float | None:
        return None if self.started is None else self.started + self.timeout

    def describe(self) -> str:
        queue = f", queue {self.queue}" if self.queue else ""
        return f"job {self.id} ({self.task}{queue}, attempt {self.attempt})"

    def fields(self, outcome: str | None = None, seconds: float | None = None
               ) -> dict[str, object]:
        """The job's fields for a log record (`--log-format json` shows them)."""
        fields: dict[str, object] = {"job_id": self.id, "task": self.task,
                                     "attempt": self.attempt}
        if self.queue is not None:
            fields["queue"] = self.queue
        if outcome is not None:
            fields["outcome"] = outcome
        if seconds is not None:
            fields["duration"] = round(seconds, 6)
        return {"pgcc_job": fields}


class Child:
    """One child process, its pipe and its line of jobs."""

    def __init__(self, context: ForkServerContext, config: runner.ChildConfig,
                 max_frame: int) -> None:
        parent_end, child_end = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=runner.child_main, args=(child_end, config), daemon=True,
            name="pgcc-child")
        self.process.start()
        child_end.close()
        self._channel = parent_end  # owns the descriptor
        self.fd = parent_end.fileno()
        os.set_blocking(self.fd, False)
        self.decoder = framing.Decoder(max_frame)
        self.outbox = bytearray()
        self.jobs: collections.deque[RunningJob] = collections.deque()
        self.ready = False
        self.closed = False  # its pipe reached end of file
        # Its tasks' code is out of date (--reload): it takes no new job, and
        # is told to exit once its line is empty; a new child replaces it.
        self.retiring = False
        self.told_to_exit = False

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    @property
    def job(self) -> RunningJob | None:
        """The job it runs now."""
        return self.jobs[0] if self.jobs else None

    def write(self) -> None:
        """Send what the pipe takes now; the rest waits in the outbox."""
        while self.outbox:
            try:
                written = os.write(self.fd, self.outbox[:1 << 20])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the child is gone; its sentinel tells the rest
                self.outbox.clear()
                return
            del self.outbox[:written]

    def read(self) -> list[object]:
        """The whole messages that arrived, within the round's budget."""
        messages: list[object] = []
        budget = READ_BUDGET
        while budget > 0 and not self.closed:
            size = min(budget, framing.READ_SIZE)
            try:
                chunk = os.read(self.fd, size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            budget -= len(chunk)
            messages.extend(self.decoder.feed(chunk))
            if len(chunk) < size:  # the pipe is drained: no need to hear it say so
                break
        return messages

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def close(self) -> None:
        self._channel.close()


def _locked(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def locked(self: Pool, *args: object, **kwargs: object) -> _T:
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Pool:
    """The children and the jobs they hold."""

    def __init__(self, context: ForkServerContext, config: runner.ChildConfig, size: int,
                 timeouts: dict[str, float], prefetch: int,
                 stats: counted.Stats | None = None) -> None:
        # Counts for the metrics (see stats), kept by the exchange's thread;
        # None without --metrics, so that a worker without them counts nothing.
        self.stats = stats
        self._context = context
        self._config = config
        self._size = size
        self._timeouts = timeouts
        self._prefetch = prefetch
        # A child's message is a list of jobs or an answer: at most a few
        # results or parameters under the limit, and an error text.
        # Without a limit, PostgreSQL's own: no field is larger than 1 GB.
        limit = config.max_result_bytes if config.max_result_bytes is not None else 1 << 30
        self._max_frame = 16 * limit + (64 << 20)
        self.children: list[Child] = []
        self.outcomes: list[Outcome] = []
        # A moving average of how long jobs run here; prefetching waits until it is known.
        self._typical_run: float | None = None
        self._lock = threading.RLock()
        self.stopping = False
        self.announced = False
        # Read once: a per-job check is measurable at thousands of jobs a second.
        self._log_info = log.isEnabledFor(logging.INFO)

    # ---- children ------------------------------------------------------------

    @_locked
    def start(self) -> list[Child]:
        self.children = [self._spawn() for _ in range(self._size)]
        return list(self.children)

    def _spawn(self) -> Child:
        return Child(self._context, self._config, self._max_frame)

    @_locked
    def receive(self, child: Child) -> None:
        """Read what the child sent: its readiness and answers."""
        try:
            messages = child.read()
        except framing.FrameTooLarge as exc:
            log.error("child %s: %s; killing it", child.process.pid, exc)
            self._stop(child, f"its child sent a message too large to take ({exc})")
            return
        for message in messages:
            if isinstance(message, Ready):
                child.ready = True
            elif isinstance(message, Answer):
                self._answered(child, message)
            else:
                log.error("child %s sent an unknown message %r; killing it",
                          child.process.pid, type(message).__name__)
                self._stop(child, "its child broke the pipe protocol")

    def _answered(self, child: Child, answer: Answer) -> None:
        if not child.jobs or child.jobs[0].id != answer.id:
            log.error("child %s answered for job %s, which it was not running",
                      child.process.pid, answer.id)
            return
        # An answer that comes before a kill on its way (a timeout, a lost
        # lease) counts: it is the job's response.
        job = child.jobs.popleft()
        now = time.monotonic()
        if child.jobs:  # it went straight on to the next one
            child.jobs[0].started = now
            if child.jobs[0].revoked is not None:
                self._stop(child, child.jobs[0].revoked)
        elif child.retiring:
            self._retire(child)
        if answer.state is JobState.QUEUED:
            self.outcomes.append(AskedRetry(answer.id, job.token, answer.error or "",
                                            answer.retry_after))
        else:
            self.outcomes.append(Response(answer.id, job.token, answer.state, answer.result,
                                          answer.error, job.queue))
        ran = answer.ran
        typical = self._typical_run
        self._typical_run = ran if typical is None else 0.9 * typical + 0.1 * ran
        stats = self.stats
        if answer.state is JobState.DONE:
            if stats is not None:
                stats.job_finished(job.task, counted.DONE, ran)
            if self._log_info:
                took = now - (job.started or now)
                log.info("%s done in %.1f ms", job.describe(), took * 1000,
                         extra=job.fields(counted.DONE, took))
        elif answer.state is JobState.QUEUED:
            if stats is not None:
                stats.job_finished(job.task, counted.RETRY, ran)
            took = now - (job.started or now)
            log.info("%s asked for a retry after %.1f ms: %s", job.describe(), took * 1000,
                     (answer.error or "").split("\n", 1)[0],
                     extra=job.fields(counted.RETRY, took))
        else:
            if stats is not None:
                stats.job_finished(job.task, counted.FAILED, ran)
            took = now - (job.started or now)
            log.warning("%s failed in %.1f ms: %s", job.describe(), took * 1000,
                        (answer.error or "").split("\n", 1)[0],
                        extra=job.fields(counted.FAILED, took))

    @_locked
    def exited(self, child: Child) -> Child | None:
        """The child's process ended: what it said last counts, its other jobs
        gave no response; returns its replacement (none while stopping)."""
        self.receive(child)
        child.process.join(timeout=1)
        job = child.job
        if job is not None:
            reason = job.stop_reason or exit_reason(child.process.exitcode)
            took = time.monotonic() - job.started if job.started is not None else 0.0
            if job.stop_reason == SHUTDOWN_REASON:
                self.outcomes.append(PutBack(job.id, job.token, started=True))
                if self.stats is not None:
                    self.stats.job_finished(job.task, counted.PUT_BACK, took)
                log.info("%s stopped by shutdown; put back in the queue", job.describe(),
                         extra=job.fields(counted.PUT_BACK, took))
            else:
                self.outcomes.append(NoResponse(job.id, job.token, reason))
                outcome = counted.TIMEOUT if reason.startswith(TIMED_OUT) \
                    else counted.NO_RESPONSE
                if self.stats is not None:
                    self.stats.job_finished(job.task, outcome, took)
                log.warning("%s gave no response: %s", job.describe(), reason,
                            extra=job.fields(outcome, took))
            child.jobs.popleft()
        # Jobs that waited in its line never started: back, keeping their place.
        self.outcomes.extend(PutBack(w.id, w.token, started=False) for w in child.jobs)
        child.jobs.clear()
        child.close()
        index = self.children.index(child)
        if self.stopping:
            del self.children[index]
            return None
        replacement = self._spawn()
        self.children[index] = replacement
        return replacement

    def _stop(self, child: Child, reason: str) -> None:
        job = child.job
        if job is not None and job.stop_reason is None:
            job.stop_reason = reason
        child.kill()

    @_locked
    def reload(self, config: runner.ChildConfig, timeouts: dict[str, float]) -> None:
        """New task code (--reload): new children get `config`; each child now
        running goes once its line is empty (a running job is never killed)."""
        self._config = config
        # Jobs of a task that is gone may still be in a line: their timeouts stay.
        self._timeouts = {**self._timeouts, **timeouts}
        for child in self.children:
            child.retiring = True
            if not child.jobs:
                self._retire(child)

    def _retire(self, child: Child) -> None:
        if child.told_to_exit:
            return
        child.told_to_exit = True
        with contextlib.suppress(framing.FrameTooLarge):
            child.outbox += framing.encode(SHUTDOWN)
        child.write()

    @_locked
    def stop_foreign(self, held: frozenset[tuple[int, int]], asked_at: float) -> None:
        """Stop the jobs the database no longer gives this worker: it was asked
        at `asked_at`, so only jobs handed out before then are judged."""
        reason = "the job is no longer this worker's (cancelled, or taken back by the reaper)"
        for child in self.children:
            for position, job in enumerate(child.jobs):
                if job.assigned >= asked_at or (job.id, job.token) in held \
                        or job.revoked is not None:
                    continue
                log.warning("%s: %s; stopping it", job.describe(), reason)
                job.revoked = reason
                if position == 0:
                    self._stop(child, reason)

    @_locked
    def stop_all(self, reason: str) -> int:
        """Kill every child that runs a job; returns how many."""
        count = 0
        for child in self.children:
            if child.job is not None:
                self._stop(child, reason)
                count += 1
        return count

    # ---- jobs ----------------------------------------------------------------

    @_locked
    def capacity(self) -> tuple[int, int]:
        """How many jobs the pool can take now, and how many of them may be
        queue heads (one per idle child: a queue's job never waits in a line)."""
        depth = 1 + self._extra()
        room = idle = 0
        for child in self.children:
            if child.ready and not child.closed and not child.retiring:
                held = len(child.jobs)
                if held < depth:
                    room += depth - held
                    idle += held == 0
        return room, idle

    def _extra(self) -> int:
        """Jobs a child may hold after its current one (see _targets)."""
        if self._typical_run is None:
            return 0
        return min(self._prefetch, int(PREFETCH_BUDGET / max(self._typical_run, 1e-6)))

    def _targets(self) -> list[Child]:
        """Where jobs would go, one entry per job: each idle child first; then
        more per child, up to `prefetch`, as many as typically run within
        PREFETCH_BUDGET, so a child need not wait a round trip between short jobs."""
        extra = self._extra()
        open_children = [(len(child.jobs), child) for child in self.children
                         if child.ready and not child.closed and not child.retiring
                         and len(child.jobs) <= extra]
        return [child for position in range(1 + extra) for held, child in open_children
                if held <= position]

    @_locked
    def assign(self, orders: list[JobOrder], log_parameters: bool,
               lease_sound: bool = True) -> list[Child]:
        """Give claimed jobs to children: the highest priority first, and within
        one, queue heads to idle children first.
        Jobs no child can take now go back (PutBack), and all of them while the
        lease is in doubt (the reaper may have handed them out again). Returns
        the children that have something to send."""
        if self.stopping or not lease_sound:
            self.outcomes.extend(PutBack(o.id, o.token, started=False) for o in orders)
            return []
        # Higher priorities first; within one, heads before jobs without a queue.
        ordered = sorted(orders, key=lambda order: (-order.priority, order.queue is None))
        targets = self._targets()
        batches: dict[Child, list[JobOrder]] = {}
        now = time.monotonic()
        timeouts = self._timeouts
        for position, order in enumerate(ordered):
            if position >= len(targets):
                self.outcomes.append(PutBack(order.id, order.token, started=False))
                continue
            child = targets[position]
            job = RunningJob(order.id, order.task, order.attempt, order.token, order.queue,
                             order.timeout or timeouts[order.task], now,
                             now if not child.jobs else None)
            child.jobs.append(job)
            batch = batches.get(child)
            if batch is None:
                batches[child] = [order]
            else:
                batch.append(order)
            if self._log_info:
                if log_parameters:
                    log.info("%s started with %s", job.describe(), order.parameters,
                             extra=job.fields())
                else:
                    log.info("%s started", job.describe(), extra=job.fields())
        for child, batch in batches.items():
            child.outbox += framing.encode(batch)
            child.write()
        return list(batches)

    @_locked
    def next_deadline(self) -> float | None:
        deadlines = [d for child in self.children if child.job is not None
                     and child.job.stop_reason is None
                     and (d := child.job.deadline) is not None]
        return min(deadlines, default=None)

    @_locked
    def enforce_timeouts(self, now: float) -> None:
        for child in self.children:
            job = child.job
            if job is not None and job.stop_reason is None and job.deadline is not None \
                    and now >= job.deadline:
                self._stop(child, f"{TIMED_OUT} after {job.timeout:g} s")

    @_locked
    def running_by_task(self) -> dict[str, int]:
        """Jobs running now (started in a child), by task: for the metrics.
        Every task the children load now is there, at 0 when none runs (the
        list --reload last gave)."""
        running = dict.fromkeys(self._config.preload, 0)
        for child in self.children:
            job = child.job
            if job is not None and job.started is not None:
                running[job.task] = running.get(job.task, 0) + 1
        return running

    @_locked
    def busy(self) -> bool:
        return any(child.jobs for child in self.children)

    @_locked
    def all_ready(self) -> bool:
        return all(child.ready for child in self.children)

    @_locked
    def take_outcomes(self) -> list[Outcome]:
        outcomes, self.outcomes = self.outcomes, []
        return outcomes

    # ---- stopping ------------------------------------------------------------

    @_locked
    def set_stopping(self) -> None:
        """No replacement for a child that ends, and no new job for any."""
        self.stopping = True

    @_locked
    def shut_down_running(self) -> None:
        """Past the grace period: stop every running job; it goes back to the queue."""
        for child in self.children:
            if child.job is not None and child.job.stop_reason != SHUTDOWN_REASON:
                child.job.stop_reason = SHUTDOWN_REASON
                child.kill()

    @_locked
    def close(self) -> None:
        """Tell every child to exit, and make sure it has."""
        for child in self.children:
            with contextlib.suppress(framing.FrameTooLarge):
                child.outbox += framing.encode(SHUTDOWN)
            child.write()
        deadline = time.monotonic() + 2
        for child in self.children:
            child.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                child.kill()
                child.process.join(timeout=1)
            child.close()


def exit_reason(code: int | None) -> str:
    if code == runner.OUT_OF_MEMORY_EXIT:
        return "the child ran out of memory (MemoryError)"
    if code == runner.JOB_LOST_EXIT:
        return ("stopped by pgcc.JobLost: a step found the job no longer this attempt's "
                "(reaped, cancelled or handed to a newer attempt)")
    if code == runner.LEASE_LAPSED_EXIT:
        return "not started: the worker's lease had lapsed (the worker was frozen)"
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the child process was killed by {name}"
    return f"the child process exited with code {code} before answering"
