"""The lease keeper: renews this worker's lease several times per lease.

It has a connection of its own, so that nothing else the worker does (a slow
claim, a long prune) can delay a renewal. Each renewal also learns which jobs
the database still gives this worker, and tells the supervisor (`Held`),
which stops any other job it runs at once: one cancelled, or taken back by
the reaper after a clock jump. When the reaper has declared this worker dead
(the renewal finds no row), the keeper says so through the LeaseStatus and
wakes the supervisor, which stops the running jobs and releases the
registration; only then does the exchange register the worker again.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple, cast

from pgcc._database import Link, StatementFailed
from pgcc._policy import Backoff, ErrorClass, classify, describe
from pgcc._queries import for_schema
from pgcc._rows import HEARTBEAT, HeartbeatRow
from pgcc._worker.config import WorkerConfig
from pgcc._worker.parts import LeaseStatus, Mailbox

log = logging.getLogger("pgcc.worker")


class Held(NamedTuple):
    """Lease keeper to supervisor: the jobs (id, token) the database gave this
    worker at a renewal that started at `asked_at` (time.monotonic())."""

    asked_at: float
    jobs: frozenset[tuple[int, int]]


class LeaseKeeper:
    def __init__(self, config: WorkerConfig, status: LeaseStatus, supervisor: Mailbox) -> None:
        self._queries = for_schema(config.schema)
        self._status = status
        self._supervisor = supervisor
        self._interval = config.lease / 4
        # A server that hears nothing from this session for a lease ends it.
        self.link = Link(config.dsn, application_name="pgcc worker heartbeat",
                         idle_timeout=config.lease)
        # While the server is away, a few attempts a second at most: a
        # refused connection costs a new process on the server and CPU here.
        self._backoff = Backoff(cap=min(max(self._interval, 1.0), 5.0))
        self._warned = False

    def step(self) -> float:
        """One renewal; returns the seconds until the next."""
        lease = self._status.get()
        if lease.worker_id is None or lease.lost:
            return 0.05  # the exchange registers (again)
        started = time.monotonic()
        try:
            rows = cast(list[HeartbeatRow], self.link.transactions([[(
                "heartbeat", self._queries["heartbeat"], {"worker": lease.worker_id},
                HEARTBEAT)]])[0][0])
        except StatementFailed as failure:
            if classify(failure.cause) is ErrorClass.CONNECTION:
                self.link.close()
            if not self._warned:
                log.warning("heartbeat failed (%s: %s); retrying", failure.name,
                            describe(failure.cause))
                self._warned = True
            return self._backoff.next_delay()
        self._backoff.reset()
        if self._warned:
            log.info("heartbeat renewed again")
            self._warned = False
        if rows:
            if self._status.renewed(lease.worker_id, started):
                held = rows[0]
                self._supervisor.put(Held(started, frozenset(
                    zip(held.job_ids, held.tokens, strict=True))))
        elif self._status.lose(lease.worker_id):
            self._supervisor.wake()
        return self._interval

    def close(self) -> None:
        self.link.close()
