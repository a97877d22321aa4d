"""The worker: claims jobs, runs each in a child process, records the outcome.

One thread does the work: it waits on the children's pipes, their process
sentinels, the LISTEN connection and a signal pipe, then writes outcomes and
claims in one pipelined transaction (`_exchange`): a job for each idle child,
and for short jobs a few more to wait in a busy child's line; the next job
of a queue whose job just ended is looked up directly. Two helper threads keep the
lease: `_keep_lease` heartbeats (and reaps, when this worker leads), and
`_watch` stops every running job when the lease could not be renewed in
time, so a job is never handed out again while its old copy still runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import select
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgcc import forkserver, runner
from pgcc.database import Link
from pgcc.queries import channel, for_schema, lock_space
from pgcc.reaper import REAP_INTERVAL, Reaper
from pgcc.tasks import Task

log = logging.getLogger("pgcc.worker")

# Share of the lease after which a worker that could not renew it stops its jobs.
FENCE_AT = 0.8
# Share of the lease after which a child stops its own job if the worker has not:
# a frozen worker (SIGSTOP, a paused machine) cannot, and its lease runs out.
CHILD_FENCE_AT = 0.9
# A worker with an older renewal than this share of its lease claims nothing new.
CLAIM_UNTIL = 0.5
KILL_GRACE = 2.0
# A child's line may hold about this much typical work (seconds) behind the job
# it runs, so that it need not wait a round trip between short jobs, while a
# job that waits there waits about this long at most.
PREFETCH_BUDGET = 0.005
RECONNECT_DELAY = 1.0
# The claim position before every job: a claim from here reads jobs without a
# queue from the front of the line.
FRONT = (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), 0)


@dataclass(frozen=True)
class WorkerConfig:
    dsn: str
    schema: str
    tasks_dir: Path
    concurrency: int
    timeout: float = 600.0
    lease: float = 30.0
    grace: float = 30.0
    reaper: bool = True
    retention: float = 7 * 24 * 3600.0
    poll_interval: float = 1.0
    log_parameters: bool = False
    prefetch: int = 8


@dataclass
class RunningJob:
    id: int
    task: str
    attempt: int
    queue: str | None
    timeout: float
    # When the child started it; None while it waits behind another job.
    started: float | None = None
    stop_reason: str | None = None
    term_sent: float | None = None

    def describe(self) -> str:
        queue = f", queue {self.queue}" if self.queue else ""
        return f"job {self.id} ({self.task}{queue}, attempt {self.attempt})"


class Slot:
    """One child process and the job it runs, if any."""

    def __init__(self, context: ForkServerContext, config: runner.ChildConfig) -> None:
        parent_end, child_end = context.Pipe()
        self.channel: Connection = parent_end
        self.process: BaseProcess = context.Process(
            target=runner.child_main, args=(child_end, config), daemon=True,
            name="pgcc-child",
        )
        self.process.start()
        child_end.close()
        # The child's jobs in the order it runs them: the first is running, any
        # other was prefetched and waits in the pipe.
        self.jobs: list[RunningJob] = []
        # Whether the child said it is up; until then it is sent no job.
        self.ready = False
        # Connection.poll() builds a selector on every call; this is one syscall.
        self._pipe_poll = select.poll()
        self._pipe_poll.register(self.channel.fileno(), select.POLLIN)

    def has_message(self) -> bool:
        """Whether the child's pipe has something to read (an answer, or its end)."""
        return bool(self._pipe_poll.poll(0))

    @property
    def job(self) -> RunningJob | None:
        """The job the child is running now."""
        return self.jobs[0] if self.jobs else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)


class Worker:
    def __init__(self, config: WorkerConfig, tasks: dict[str, Task]) -> None:
        self.config = config
        self.tasks = tasks
        self._queries = for_schema(config.schema)
        self._link = Link(config.dsn, application_name="pgcc worker", generic_plans=True)
        # The heartbeat's (and the reaper's, whose leadership lives in its session).
        # A server that hears nothing from it for a lease ends it, so a worker cut
        # off from the network does not keep the leadership: another reaper leads.
        self._beat_link = Link(config.dsn, application_name="pgcc worker heartbeat",
                               idle_timeout=config.lease)
        self._listen: psycopg.Connection[Any] | None = None
        self._slots: list[Slot] = []
        self._worker_id: int | None = None
        self._renewed_at = time.monotonic()
        self._registration_lost = threading.Event()
        self._fenced = False
        self._done = threading.Event()
        self._stop_requested = 0
        self._stop_deadline = 0.0
        self._want_claim = True
        self._announced = False  # the "ready" line, once every first child is up
        self._next_poll = 0.0
        # Whether _next_poll already allows for every delayed job this worker
        # could know of: until new jobs are announced or its retries delay some,
        # a claim that comes back short need not ask again.
        self._due_known = False
        # (run_at, id) of the last job without a queue this worker claimed: the
        # next claim reads on from there while a backlog lasts (see the claim
        # query), and from the front when anything may have joined the line
        # before it, and at least once per poll interval.
        self._free_after = FRONT
        self._next_front_read = 0.0
        self._next_reconnect = 0.0
        # Outcomes waiting to be written: responses, no-responses, put-backs.
        self._finished: list[tuple[int, int, str, str | None, str | None]] = []
        self._lost: list[tuple[int, int, str]] = []
        # (id, attempt, started): put back in the queue; one that never started
        # goes back as if it had not been claimed.
        self._released: list[tuple[int, int, bool]] = []
        # Queues of the jobs just answered: the next claim looks at their heads
        # directly, and walks every queue only when it has more children to fill.
        self._freed_queues: list[str] = []
        self._task_names = sorted(tasks)
        # A moving average of how long jobs run here; prefetching waits until it is known.
        self._typical_run: float | None = None
        self._max_attempts = [tasks[name].max_attempts for name in self._task_names]
        self._context = forkserver.context()
        # When the lease was last renewed (time.monotonic()), shared with the children.
        self._lease_clock: Any = self._context.RawValue("d", time.monotonic())
        self._child_config = runner.ChildConfig(config.dsn, config.schema,
                                                str(config.tasks_dir), self._task_names,
                                                lease_clock=self._lease_clock,
                                                fence_after=CHILD_FENCE_AT * config.lease)
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, "wakeup")
        self._lock_space = lock_space(config.schema)

    # ---- lifecycle -------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0 for a clean stop)."""
        self._install_signals()
        # Already running when started by `pgcc worker`; else it boots while
        # this process registers.
        forkserver.start()
        self._wait_for_database()
        if self._stop_requested:
            return 0
        self._slots = [Slot(self._context, self._child_config)
                       for _ in range(self.config.concurrency)]
        for slot in self._slots:
            self._watch_slot(slot)
        threads = [threading.Thread(target=self._keep_lease, name="pgcc-lease", daemon=True),
                   threading.Thread(target=self._watch, name="pgcc-watch", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            self._loop()
        finally:
            self._shutdown()
            self._done.set()
            for thread in threads:
                thread.join(timeout=5)
        return 0

    def _install_signals(self) -> None:
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_requested += 1
        if self._stop_requested == 1:
            self._stop_deadline = time.monotonic() + self.config.grace
            log.info("%s: stopping; running jobs get %g s to finish (again to stop now)",
                     signal.Signals(signum).name, self.config.grace)
        else:
            log.info("%s again: stopping now; running jobs go back to the queue",
                     signal.Signals(signum).name)

    def _wait_for_database(self) -> None:
        """Register, retrying while the database is not there yet."""
        warned = False
        while not self._stop_requested:
            try:
                self._register()
                return
            except psycopg.OperationalError as exc:
                if not warned:
                    log.warning("database unavailable (%s); retrying", _first_line(exc))
                    warned = True
                self._wakeup_r_wait(RECONNECT_DELAY)

    def _wakeup_r_wait(self, seconds: float) -> None:
        wait([self._wakeup_r], seconds)
        self._drain_wakeup()

    def _register(self) -> None:
        rows = self._link.execute(self._queries["register_worker"], {
            "hostname": socket.gethostname(), "pid": os.getpid(), "tasks": self._task_names,
            "concurrency": self.config.concurrency, "lease": self.config.lease,
        })
        self._worker_id = rows[0][0]
        self._renewed_at = time.monotonic()
        self._lease_clock.value = self._renewed_at
        self._registration_lost.clear()

    # ---- the main loop ---------------------------------------------------

    def _loop(self) -> None:
        while True:
            if self._stop_requested:
                self._stop_overdue_jobs()
                if not self._busy() and not self._pending_writes():
                    return
            ready: set[Slot] = set()
            for key, _ in self._selector.select(self._timeout()):
                if isinstance(key.data, Slot):
                    ready.add(key.data)
                elif key.data == "listen":
                    self._drain_notifications()
                else:
                    self._drain_wakeup()
            now = time.monotonic()
            for slot in ready:
                self._collect(slot)
            self._enforce_timeouts(now)
            if self._registration_lost.is_set():
                self._reregister()
            if not self._link.connected:
                self._connected()
            self._exchange(now)
            # Nobody to write to: the reaper will give these jobs back after the lease.
            if (self._stop_requested and self._pending_writes() and not self._link.connected
                    and time.monotonic() > self._stop_deadline + KILL_GRACE):
                log.error("database unreachable at shutdown; %d outcomes not written, "
                          "the reaper will requeue their jobs", self._pending_count())
                self._finished.clear()
                self._lost.clear()
                self._released.clear()

    def _busy(self) -> bool:
        return any(slot.jobs for slot in self._slots)

    def _pending_writes(self) -> bool:
        return bool(self._finished or self._lost or self._released)

    def _pending_count(self) -> int:
        return len(self._finished) + len(self._lost) + len(self._released)

    def _watch_slot(self, slot: Slot) -> None:
        self._selector.register(slot.channel, selectors.EVENT_READ, slot)
        self._selector.register(slot.process.sentinel, selectors.EVENT_READ, slot)

    def _unwatch_slot(self, slot: Slot) -> None:
        self._selector.unregister(slot.channel)
        self._selector.unregister(slot.process.sentinel)

    def _timeout(self) -> float:
        now = time.monotonic()
        if self._pending_writes() and self._link.connected:
            return 0.0
        if self._want_claim and self._may_claim(now) \
                and self._claim_targets():
            return 0.0
        deadline = self._next_poll
        if not self._link.connected:
            deadline = min(deadline, self._next_reconnect)
        for slot in self._slots:
            job = slot.job
            if job is not None and job.started is not None:
                deadline = min(deadline, job.term_sent + KILL_GRACE if job.term_sent
                               else job.started + job.timeout)
        if self._stop_requested:
            deadline = min(deadline, self._stop_deadline)
        return max(0.0, min(deadline - now, self.config.poll_interval))

    def _drain_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wakeup_r.recv(4096):
                pass

    def _drain_notifications(self) -> None:
        if self._listen is None:
            return
        try:
            pgconn = self._listen.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                self._want_claim = True
                self._due_known = False
                # An insert that committed late holds an earlier run_at.
                self._free_after = FRONT
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost (%s); polling until it is back",
                        _first_line(exc))
            self._close_listen()

    # ---- children --------------------------------------------------------

    def _collect(self, slot: Slot) -> None:
        """A child answered, or died."""
        answered = False
        try:
            while slot.has_message():
                message = runner.receive(slot.channel)
                answered = True
                if message == runner.READY:
                    slot.ready = True
                    self._want_claim = True
                    self._announce_ready()
                    continue
                self._record_response(message, slot.jobs.pop(0))
                if slot.jobs:  # the child went straight on to the next one
                    slot.jobs[0].started = time.monotonic()
            if answered:
                # Whether it died too is for the next round: its sentinel stays
                # readable, and a round with nothing to read looks.
                return
        except (EOFError, OSError):
            pass
        if not slot.process.is_alive():
            self._replace(slot)

    def _announce_ready(self) -> None:
        if not self._announced and all(slot.ready for slot in self._slots):
            self._announced = True
            log.info("worker %s ready: %d children, tasks: %s", self._worker_id,
                     len(self._slots), ", ".join(self._task_names) or "(none)")

    def _record_response(self, outcome: runner.Answer, job: RunningJob) -> None:
        self._finished.append(outcome[:5])
        if job.queue is not None:
            self._freed_queues.append(job.queue)
        self._want_claim = True
        elapsed = time.monotonic() - (job.started or time.monotonic())
        ran = outcome[5]  # measured in the child: the task's own run time
        self._typical_run = ran if self._typical_run is None \
            else 0.9 * self._typical_run + 0.1 * ran
        if outcome[2] == "done":
            if log.isEnabledFor(logging.INFO):
                log.info("%s done in %.1f ms", job.describe(), elapsed * 1000)
        else:
            log.warning("%s failed in %.1f ms: %s", job.describe(), elapsed * 1000,
                        (outcome[4] or "").split("\n", 1)[0])

    def _replace(self, slot: Slot) -> None:
        """The child died: its job (if any) gave no response; start a new child."""
        slot.process.join(timeout=1)
        job = slot.job
        if job is not None:
            reason = job.stop_reason or _exit_reason(slot.process.exitcode)
            if job.stop_reason == "shutdown":
                self._released.append((job.id, job.attempt, True))
                log.info("%s stopped by shutdown; put back in the queue", job.describe())
            else:
                self._lost.append((job.id, job.attempt, reason))
                log.warning("%s gave no response: %s", job.describe(), reason)
        # Prefetched jobs never started: back to the queue, keeping their place.
        self._released.extend((waiting.id, waiting.attempt, False) for waiting in slot.jobs[1:])
        slot.jobs = []
        self._unwatch_slot(slot)
        slot.channel.close()
        if self._stop_requested:
            self._slots.remove(slot)
            return
        replacement = Slot(self._context, self._child_config)
        self._slots[self._slots.index(slot)] = replacement
        self._watch_slot(replacement)
        self._want_claim = True

    def _enforce_timeouts(self, now: float) -> None:
        for slot in self._slots:
            job = slot.job
            if job is None or job.started is None:
                continue
            if job.term_sent is None and now - job.started >= job.timeout:
                job.stop_reason = f"timed out after {job.timeout:g} s"
                job.term_sent = now
                slot.kill(signal.SIGTERM)
            elif job.term_sent is not None and now - job.term_sent >= KILL_GRACE:
                slot.kill(signal.SIGKILL)

    def _stop_overdue_jobs(self) -> None:
        if self._stop_requested < 2 and time.monotonic() < self._stop_deadline:
            return
        for slot in self._slots:
            if slot.job is not None and slot.job.stop_reason != "shutdown":
                slot.job.stop_reason = "shutdown"
                slot.kill()

    def _stop_all_jobs(self, reason: str) -> int:
        """Kill every running child now (from any thread)."""
        count = 0
        for slot in list(self._slots):
            job = slot.job
            if job is not None:
                job.stop_reason = job.stop_reason or reason
                slot.kill()
                count += 1
        return count

    # ---- database writes and claims --------------------------------------

    def _connected(self) -> bool:
        if self._link.connected:
            if self._listen is None and time.monotonic() >= self._next_reconnect:
                self._open_listen()
            return True
        if time.monotonic() < self._next_reconnect:
            return False
        try:
            self._link.connection()
            log.info("database connection restored")
            self._reconcile()
            self._open_listen()
            self._want_claim = True
            return True
        except psycopg.OperationalError:
            self._next_reconnect = time.monotonic() + RECONNECT_DELAY
            return False

    def _reconcile(self) -> None:
        """After a lost connection: a claim may have committed without its answer
        reaching us. Such jobs run nowhere; put them back."""
        rows = self._link.execute(self._queries["running_of_worker"],
                                  {"worker": self._worker_id})
        known = {(job.id, job.attempt) for slot in self._slots for job in slot.jobs}
        known.update((o[0], o[1]) for o in self._finished)
        known.update((o[0], o[1]) for o in self._lost)
        known.update((o[0], o[1]) for o in self._released)
        orphans = [(job_id, attempt) for job_id, attempt in rows
                   if (job_id, attempt) not in known]
        if orphans:
            log.warning("%d claimed jobs never reached a child; putting them back", len(orphans))
            self._released.extend((job_id, attempt, False) for job_id, attempt in orphans)

    def _open_listen(self) -> None:
        try:
            conn = psycopg.connect(self.config.dsn, autocommit=True, connect_timeout=5,
                                   application_name="pgcc worker listen")
            conn.execute(sql.SQL("LISTEN {}").format(
                sql.Identifier(channel(self.config.schema))))
            self._listen = conn
            self._selector.register(conn.fileno(), selectors.EVENT_READ, "listen")
            self._want_claim = True
            # Announcements may have been missed meanwhile.
            self._due_known = False
            self._free_after = FRONT
        except psycopg.OperationalError:
            self._next_reconnect = time.monotonic() + RECONNECT_DELAY

    def _close_listen(self) -> None:
        listen, self._listen = self._listen, None
        if listen is not None:
            # By its key: a connection the server dropped has no fileno() any more.
            for key in list(self._selector.get_map().values()):
                if key.data == "listen":
                    self._selector.unregister(key.fileobj)
            with contextlib.suppress(Exception):
                listen.close()

    def _exchange(self, now: float) -> None:
        """Write every pending outcome and claim for the idle children, in one round trip."""
        statements: list[tuple[str, dict[str, Any]]] = []
        finished, lost, released = self._finished, self._lost, self._released
        if finished:
            statements.append((self._queries["finish"], {
                "worker": self._worker_id,
                "outcomes": json.dumps(finished, ensure_ascii=False),
            }))
        if lost:
            statements.append((self._queries["retry"], {
                "worker": self._worker_id, "ids": [o[0] for o in lost],
                "attempts": [o[1] for o in lost], "reasons": [o[2] for o in lost],
            }))
        if released:
            statements.append((self._queries["release"], {
                "worker": self._worker_id, "ids": [o[0] for o in released],
                "attempts": [o[1] for o in released], "started": [o[2] for o in released],
            }))
        targets = self._claim_targets()
        idle = sum(1 for slot in self._slots if slot.ready and not slot.jobs)
        claiming = bool(targets) and bool(self._task_names) and self._may_claim(now) \
            and (self._want_claim or now >= self._next_poll)
        # Jobs put back keep their place, before the position.
        free_after = FRONT if released or now >= self._next_front_read else self._free_after
        if claiming:
            statements.append((self._queries["claim"], {
                "worker": self._worker_id, "tasks": self._task_names,
                "max_attempts": self._max_attempts, "limit": len(targets),
                "head_limit": idle, "queues": self._freed_queues,
                "search": idle > len(self._freed_queues),
                "lock_space": self._lock_space,
                "free_after_run_at": free_after[0], "free_after_id": free_after[1],
            }))
        # For the wake-up timer if the claim comes back short, in the same round
        # trip; only when something may have changed it.
        asking_due = claiming and (not self._due_known or bool(lost) or now >= self._next_poll)
        if asking_due:
            statements.append((self._queries["next_due"], {"tasks": self._task_names}))
        if not statements or not self._connected():
            return
        try:
            results = self._link.execute_pipeline(statements)
        except psycopg.OperationalError as exc:
            log.warning("database connection lost (%s); reconnecting", _first_line(exc))
            self._close_listen()
            self._next_reconnect = time.monotonic() + RECONNECT_DELAY
            return
        self._finished, self._lost, self._released = [], [], []
        self._freed_queues = []
        if finished:
            _log_stale(finished, results.pop(0), "response")
        if lost:
            rows = results.pop(0)
            _log_stale(lost, rows, "no-response")
            for job_id, state in rows:
                if state == "dead":
                    log.error("job %s is dead: no response after its last attempt", job_id)
        if released:
            results.pop(0)
        if claiming:
            rows = results.pop(0)
            # Queue heads first: they go to idle children (first in targets), so a
            # queue's job never waits behind another job.
            rows.sort(key=lambda row: row[3] is None)
            batches: dict[Slot, list[runner.JobMessage]] = {}
            for slot, row in zip(targets, rows, strict=False):
                batches.setdefault(slot, []).append(self._dispatch(slot, *row[:5]))
            for slot, batch in batches.items():
                # If the child is dying, _collect records its jobs as lost.
                with contextlib.suppress(OSError):
                    runner.send(slot.channel, batch)
            self._want_claim = len(rows) == len(targets)
            self._note_claim_position(rows, free_after, now)
        if asking_due:
            next_due = results.pop(0)[0][0]
            self._due_known = True
            if not self._want_claim:
                self._schedule_poll(next_due)

    def _note_claim_position(self, rows: list[tuple[Any, ...]],
                             free_after: tuple[dt.datetime, int], now: float) -> None:
        if free_after == FRONT:
            self._next_front_read = now + self.config.poll_interval
        if not self._want_claim:
            # A short claim: the line may have run dry, so the next one starts over.
            self._free_after = FRONT
            return
        taken = [(row[5], row[0]) for row in rows if row[3] is None]
        if taken:
            self._free_after = max(taken)

    def _claim_targets(self) -> list[Slot]:
        """Where claimed jobs would go, one entry per job: each idle child first;
        then more per child, up to `prefetch`, as many as typically run within
        PREFETCH_BUDGET, so a child need not wait a round trip between short jobs."""
        extra = 0
        if self._typical_run is not None:
            extra = min(self.config.prefetch,
                        int(PREFETCH_BUDGET / max(self._typical_run, 1e-6)))
        depth = 1 + extra
        # By position in the child's line: every idle child's first job comes first.
        return [slot for position in range(depth) for slot in self._slots
                if slot.ready and len(slot.jobs) <= position]

    def _may_claim(self, now: float) -> bool:
        # A lease in doubt takes nothing new.
        return (not self._stop_requested and self._link.connected
                and now - self._renewed_at <= CLAIM_UNTIL * self.config.lease)

    def _dispatch(self, slot: Slot, job_id: int, task: str, parameters: str,
                  queue: str | None, attempt: int) -> runner.JobMessage:
        """Put a claimed job in the child's line; returns the message to send it."""
        spec = self.tasks[task]
        job = RunningJob(job_id, task, attempt, queue, spec.timeout or self.config.timeout)
        if not slot.jobs:
            job.started = time.monotonic()
        slot.jobs.append(job)
        if log.isEnabledFor(logging.INFO):
            if self.config.log_parameters:
                log.info("%s started with %s", job.describe(), parameters)
            else:
                log.info("%s started", job.describe())
        return job_id, task, parameters, attempt, queue

    def _schedule_poll(self, next_due: float | None) -> None:
        """Sleep until the poll interval, or the next delayed job if it is sooner."""
        delay = self.config.poll_interval
        if next_due is not None:
            delay = min(delay, max(0.0, next_due))
        self._next_poll = time.monotonic() + delay

    def _reregister(self) -> None:
        stopped = self._stop_all_jobs("the reaper declared this worker dead")
        log.error("this worker's lease was taken over by the reaper; %d running jobs stopped, "
                  "registering again", stopped)
        # Anything not yet written belongs to the old registration and is fenced off.
        self._finished, self._lost, self._released = [], [], []
        try:
            self._register()
        except psycopg.OperationalError:
            self._link.close()

    # ---- the lease -------------------------------------------------------

    def _keep_lease(self) -> None:
        """Heartbeat several times per lease; lead the reaper when free to."""
        link = self._beat_link
        reaper = Reaper(self.config.schema, self.config.retention) if self.config.reaper \
            else None
        interval = self.config.lease / 4
        next_beat = next_reap = 0.0
        while not self._done.is_set():
            now = time.monotonic()
            if now >= next_beat and not self._registration_lost.is_set():
                try:
                    rows = link.execute(self._queries["heartbeat"], {"worker": self._worker_id})
                    if rows:
                        self._renewed_at = now
                        self._lease_clock.value = now
                        if self._fenced:
                            log.info("lease renewed again")
                            self._fenced = False
                    else:
                        self._registration_lost.set()
                        os.write(self._wakeup_w.fileno(), b"!")
                    next_beat = now + interval
                except psycopg.OperationalError as exc:
                    log.warning("heartbeat failed (%s); retrying", _first_line(exc))
                    next_beat = now + min(interval, RECONNECT_DELAY)
                    if reaper is not None:
                        reaper.forget_leadership()
            if reaper is not None and now >= next_reap:
                next_reap = now + REAP_INTERVAL
                try:
                    if reaper.lead(link):
                        reaper.tick(link)
                except psycopg.OperationalError:
                    reaper.forget_leadership()
            self._done.wait(0.05)
        link.close()

    def _watch(self) -> None:
        """Stop the running jobs before the lease ends if it cannot be renewed,
        and cut database calls that hang."""
        while not self._done.wait(0.05):
            age = time.monotonic() - self._renewed_at
            if age > FENCE_AT * self.config.lease and not self._fenced:
                self._fenced = True
                stopped = self._stop_all_jobs("the worker could not renew its lease")
                log.error("lease not renewed for %.1f s (lease %g s): stopped %d running jobs "
                          "so that no job runs twice", age, self.config.lease, stopped)
                with contextlib.suppress(OSError):
                    os.write(self._wakeup_w.fileno(), b"!")
            self._link.cut_if_stuck(self.config.lease / 2)
            # A heartbeat stuck on a silent network would never renew the lease again.
            self._beat_link.cut_if_stuck(self.config.lease / 2)

    # ---- shutdown --------------------------------------------------------

    def _shutdown(self) -> None:
        for slot in self._slots:
            with contextlib.suppress(OSError):
                runner.send(slot.channel, None)
        deadline = time.monotonic() + 2
        for slot in self._slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.kill()
                slot.process.join(timeout=1)
        if self._worker_id is not None:
            with contextlib.suppress(psycopg.Error):
                self._link.execute(self._queries["unregister_worker"],
                                   {"worker": self._worker_id})
        self._close_listen()
        self._link.close()
        log.info("worker %s stopped", self._worker_id)


def _exit_reason(code: int | None) -> str:
    if code == runner.OUT_OF_MEMORY_EXIT:
        return "the child ran out of memory (MemoryError)"
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the child process was killed by {name}"
    return f"the child process exited with code {code} before answering"


def _log_stale(batch: list[Any], rows: list[tuple[Any, ...]], what: str) -> None:
    written = {row[0] for row in rows}
    for item in batch:
        if item[0] not in written:
            log.warning("job %s: dropped a late %s from attempt %s (a newer attempt owns it)",
                        item[0], what, item[1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
