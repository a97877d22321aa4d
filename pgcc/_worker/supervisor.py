"""The supervisor: the worker's main thread, the one that decides the children's fate.

It never talks to the database, never touches a child's pipe and never
blocks: it waits on its mailbox and its timers, and so always has its hands
free to enforce a timeout, honour a signal or stop the jobs of a lease in
doubt (through the pool, which guards itself). The other parts each run in a
thread of their own:

- the exchange (pgcc._worker.exchange): the hot path: reads the children's
  answers, writes outcomes, claims and hands jobs out, listens;
- the lease keeper (pgcc._worker.lease): renews the lease;
- the maintenance (pgcc._worker.maintenance, pgcc._maintenance): rescue
  and prune when this worker leads;
- the periodic scheduler (pgcc._worker.periodic): declares the schedules of
  the worker's periodic tasks and schedules their ticks;
- with --metrics, the metrics server (pgcc._worker.metrics): answers scrapes;
  it is restarted like the others but never judged stuck (a slow scrape is
  no reason to stop a worker).

The supervisor watches each part's progress (its pulse), not only that its
thread lives (pgcc._worker.watch): a part whose thread ended is started
again, and a part stuck for a whole lease makes the worker exit non-zero,
so that whatever runs it (systemd, Kubernetes) starts a fresh one.
"""

from __future__ import annotations

import dataclasses
import logging
import selectors
import signal
import time
from typing import TYPE_CHECKING

from pgcc import _forkserver as forkserver
from pgcc import _runner as runner
from pgcc._worker.config import CHILD_FENCE_AT, FENCE_AT, WorkerConfig
from pgcc._worker.exchange import (
    Adopt,
    Close,
    Closed,
    Exchange,
    Registered,
    Retask,
    StopClaiming,
)
from pgcc._worker.lease import Held, LeaseKeeper
from pgcc._worker.maintenance import maintainer
from pgcc._worker.parts import LeaseStatus, Mailbox, Part, Standing
from pgcc._worker.periodic import PeriodicScheduler, Redeclare
from pgcc._worker.pool import Pool
from pgcc._worker.reload import Reloader, Reprobed
from pgcc._worker.stats import Stats
from pgcc._worker.watch import Watch

if TYPE_CHECKING:  # imported by `pgcc worker` only with --metrics
    from pgcc._worker.metrics import MetricsServer

log = logging.getLogger("pgcc.worker")

# How often the supervisor looks at its parts when nothing else wakes it (a
# job's deadline or the lease's fence wake it on time; signals at once).
TICK = 0.5
# Seconds the exchange gets, once every job is over, to write what is pending.
MIN_CLOSE_TIME = 10.0
EXIT_STALLED = 70
# A stop cut short by a second signal (running jobs put back): like Ctrl-C.
EXIT_INTERRUPTED = 130


class Worker:
    def __init__(self, config: WorkerConfig, metrics: MetricsServer | None = None) -> None:
        self.config = config
        self._mailbox = Mailbox()
        self._context = forkserver.context()
        self._status = LeaseStatus(self._context.RawValue("d", time.monotonic()))
        # Counted only for the metrics: without them, the jobs' path counts nothing.
        self._stats = Stats() if metrics is not None else None
        self._exchange = Exchange(config, self._status, self._mailbox, self._stats)
        self._keeper = LeaseKeeper(config, self._status, self._mailbox)
        self._maintenance = maintainer(config) if config.reaper else None
        self._parts = [Part("exchange", self._exchange.step)]
        lease_part = Part("lease", self._keeper.step, self._keeper.close)
        self._parts.append(lease_part)
        # A cancelled running job is stopped within a second or two, whatever the lease.
        self._exchange.on_cancel = lease_part.poke
        if self._maintenance is not None:
            self._parts.append(Part("maintenance", self._maintenance.step,
                                    self._maintenance.close))
        self._periodic = PeriodicScheduler(config)
        self._periodic_part = Part("periodic", self._periodic.step, self._periodic.close)
        self._parts.append(self._periodic_part)
        self._metrics: Part | None = None
        if metrics is not None and self._stats is not None:
            metrics.serve(config, self._stats, self._running)
            self._metrics = Part("metrics", metrics.step, metrics.close)
            self._parts.append(self._metrics)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._mailbox, selectors.EVENT_READ, "mailbox")
        self._pool: Pool | None = None
        self._child_config: runner.ChildConfig | None = None
        self._reloader = Reloader(config.source, self._mailbox) if config.reload else None
        self._worker_id: int | None = None
        self._stops = 0
        self._stop_deadline = 0.0
        self._stopped_claiming = False
        self._close_deadline: float | None = None
        self._closed = False
        self._fenced = False
        self._watch = Watch(config.stall_limit(), time.monotonic())
        self._next_supervision = 0.0

    # ---- lifecycle -------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0 for a clean stop)."""
        self._install_signals()
        # Already running when started by `pgcc worker`; else it boots now.
        forkserver.start()
        self._start(self._parts[0])
        if self._metrics is not None:
            self._start(self._metrics)
        try:
            registered = self._wait_for_registration()
            if registered is None:
                return 0
            self._start_pool(registered)
            for part in self._parts[1:]:
                if not part.alive:
                    self._start(part)
            return self._loop()
        finally:
            # The exchange first: then no thread but this one uses the pool.
            for part in self._parts:
                part.stop()
            if self._pool is not None:
                self._pool.close()
            log.info("worker %s stopped", self._worker_id)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._mailbox.wakeup_fd(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stops += 1
        name = signal.Signals(signum).name
        if self._stops == 1:
            self._stop_deadline = time.monotonic() + self.config.grace
            log.info("%s: stopping; running jobs get %g s to finish (again to stop now)",
                     name, self.config.grace)
        elif self._stops == 2:
            log.info("%s again: stopping now; running jobs go back to the queue", name)
        else:
            log.info("%s a third time: exiting without waiting for the database", name)

    def _start(self, part: Part) -> None:
        self._watch.start(part)

    def _wait_for_registration(self) -> Registered | None:
        while not self._stops:
            for _ in self._selector.select(TICK):
                for message in self._mailbox.take():
                    if isinstance(message, Registered):
                        self._worker_id = message.worker_id
                        return message
            if self._supervise(time.monotonic()) is not None:
                return None
        return None

    def _start_pool(self, registered: Registered) -> None:
        config = self.config
        child_config = runner.ChildConfig(
            config.dsn, config.schema, config.source, config.task_names,
            max_result_bytes=registered.max_parameters_bytes,
            lease_clock=self._status.clock, fence_after=CHILD_FENCE_AT * config.lease)
        self._child_config = child_config
        self._pool = Pool(self._context, child_config, config.concurrency,
                          self._timeouts(config), config.prefetch, self._stats)
        self._pool.start()
        self._exchange.inbox.put(Adopt(self._pool))

    @staticmethod
    def _timeouts(config: WorkerConfig) -> dict[str, float]:
        return {name: info.timeout or config.timeout for name, info in config.tasks.items()}

    def _reloaded(self, found: Reprobed) -> None:
        """--reload probed the tasks again: children with the new code, once
        their current job ends; the new list claimed and recorded; the
        schedules that changed declared."""
        pool, child_config = self._pool, self._child_config
        if pool is None or child_config is None or self._stops:
            return
        for bad in found.broken:
            log.error("task %s not loaded: %s", bad.path, bad.error)
            log.debug("%s", bad.detail)
        self.config = dataclasses.replace(self.config, tasks=found.tasks)
        names = self.config.task_names
        self._child_config = dataclasses.replace(child_config, preload=names)
        pool.reload(self._child_config, self._timeouts(self.config))
        self._exchange.inbox.put(Retask(names, [found.tasks[n].max_attempts for n in names]))
        self._periodic.inbox.put(Redeclare({name: info.periodic
                                            for name, info in found.tasks.items()}))
        self._periodic_part.poke()
        log.info("tasks reloaded: %s", ", ".join(names) or "(none)")

    def _running(self) -> dict[str, int]:
        """Jobs running now by task (for the metrics, from the server's thread);
        every task at 0 before the children are started."""
        pool = self._pool
        if pool is None:
            return dict.fromkeys(self.config.task_names, 0)
        return pool.running_by_task()

    # ---- the loop ----------------------------------------------------------------

    def _loop(self) -> int:
        pool = self._pool
        assert pool is not None
        while True:
            if self._selector.select(self._timeout()):
                self._messages()
            now = time.monotonic()
            if self._reloader is not None and not self._stops:
                self._reloader.scan(now)
            deadline = pool.next_deadline()
            if deadline is not None and now >= deadline:
                pool.enforce_timeouts(now)
            self._check_lease(now)
            if now >= self._next_supervision:
                self._next_supervision = now + TICK
                code = self._supervise(now)
                if code is not None:
                    return code
            if self._stops:
                code = self._stopping(pool, now)
                if code is not None:
                    return code

    def _timeout(self) -> float:
        now = time.monotonic()
        deadline = now + TICK
        pool = self._pool
        if pool is not None:
            child_deadline = pool.next_deadline()
            if child_deadline is not None:
                deadline = min(deadline, child_deadline)
        if self._stops:
            deadline = min(deadline, self._stop_deadline)
        elif self._reloader is not None:
            deadline = min(deadline, self._reloader.due())
        if not self._fenced:
            deadline = min(deadline, self._status.get().renewed_at
                           + FENCE_AT * self.config.lease + 0.01)
        return max(0.0, deadline - now)

    def _messages(self) -> None:
        pool = self._pool
        for message in self._mailbox.take():
            if isinstance(message, Held) and pool is not None:
                pool.stop_foreign(message.jobs, message.asked_at)
            elif isinstance(message, Closed):
                self._closed = True
            elif isinstance(message, Reprobed):
                self._reloaded(message)

    # ---- the lease and the parts -------------------------------------------------------

    def _check_lease(self, now: float) -> None:
        pool = self._pool
        assert pool is not None
        lease = self._status.get()
        if lease.standing is Standing.LOST and lease.worker_id is not None:
            stopped = pool.stop_all("the reaper declared this worker dead")
            log.error("this worker's lease was taken over by the reaper; %d running jobs "
                      "stopped, registering again", stopped)
            self._status.release(lease.worker_id)
            self._exchange.inbox.wake()
        age = now - lease.renewed_at
        if age > FENCE_AT * self.config.lease:
            if not self._fenced:
                self._fenced = True
                stopped = pool.stop_all("the worker could not renew its lease")
                log.error("lease not renewed for %.1f s (lease %g s): stopped %d running jobs "
                          "so that no job runs twice", age, self.config.lease, stopped)
        elif self._fenced:
            self._fenced = False
            log.info("lease renewed again")

    def _supervise(self, now: float) -> int | None:
        """Cut a call that hangs; restart a part whose thread ended; give up on
        one stuck for a lease (pgcc._worker.watch)."""
        links = {"exchange": self._exchange.link, "lease": self._keeper.link,
                 "periodic": self._periodic.link}
        if self._maintenance is not None:
            links["maintenance"] = self._maintenance.link
        for link in links.values():
            # A call that hangs (a silent network) is cut; the part then reconnects.
            link.cut_if_stuck(self.config.lease / 2)
        # A closed exchange has ended for good; a slow scrape is no reason to stop a worker.
        watched = [p for p in self._parts if not (p.name == "exchange" and self._exchange.closed)]
        why = self._watch.look(watched, now, never_stuck=[self._metrics] if self._metrics else [])
        if why is None:
            return None
        log.critical("%s; exiting so that a fresh worker takes over", why)
        if self._pool is not None:
            self._pool.stop_all("the worker is exiting: one of its parts is stuck")
        return EXIT_STALLED

    # ---- stopping ------------------------------------------------------------------

    def _stopping(self, pool: Pool, now: float) -> int | None:
        if not self._stopped_claiming:
            self._stopped_claiming = True
            pool.set_stopping()
            self._exchange.inbox.put(StopClaiming())
        if self._stops >= 2 or now >= self._stop_deadline:
            pool.shut_down_running()
        if pool.busy():
            return None
        if self._close_deadline is None:
            self._close_deadline = now + max(MIN_CLOSE_TIME, self.config.lease)
            self._exchange.inbox.put(Close(self._close_deadline))
        # Only a stop that let the running jobs finish is clean (exit 0); a
        # second signal cut them short: 130, like any interrupted command.
        code = 0 if self._stops < 2 else EXIT_INTERRUPTED
        if self._closed:
            return code
        if self._stops >= 3 or now > self._close_deadline + 2:
            log.error("the database did not take this worker's last outcomes; exiting")
            return code or 1
        return None
