"""The reaper: gives back the jobs of workers whose lease ran out, and prunes.

One reaper leads at a time (a session advisory lock), whether it runs inside
a worker or as `pgcc reaper`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from pgcc._database import Link, Rows, StatementFailed
from pgcc._policy import ErrorClass, classify, describe
from pgcc._queries import channel, for_schema, lock_space, queue_lock_space
from pgcc._rows import REAPED, ReapRow

log = logging.getLogger("pgcc.reaper")

REAP_INTERVAL = 0.5
PRUNE_INTERVAL = 60.0
PRUNE_BATCH = 1000
# One tick prunes for at most this long; while eligible rows are left, the
# next tick goes on (so pruning keeps up with any rate), between reaps.
PRUNE_SLICE = 1.0


@dataclass(frozen=True)
class ReapResult:
    requeued: int
    dead: int
    workers_removed: int
    pruned: int


class Reaper:
    def __init__(self, schema: str, retention: float | None = None) -> None:
        """`retention`: seconds finished jobs are kept; None reads the schema's
        setting retention_seconds at each prune (one place to change it for
        every worker and reaper)."""
        self._schema = schema
        self._queries = for_schema(schema)
        self._retention = retention
        self._leader = False
        self._next_prune = 0.0

    def lead(self, link: Link) -> bool:
        """Become the leader if no one else is; stays so while `link` lives."""
        if not self._leader or not link.connected:
            rows = self._run(link, "try_lead_reaper", {"lock_space": lock_space(self._schema)})
            self._leader = bool(rows[0][0])
        return self._leader

    def _run(self, link: Link, name: str, params: Any = None) -> Rows:
        return link.transactions([[(name, self._queries[name], params)]])[0][0]

    def forget_leadership(self) -> None:
        self._leader = False

    def tick(self, link: Link) -> ReapResult:
        """One pass: reap, clear stale queue locks, and prune when due."""
        # With parameters (none), so that the query's %% reaches PostgreSQL as %.
        space = {"queue_lock_space": queue_lock_space(self._schema)}
        reaped = cast(ReapRow, link.transactions([[
            ("reap", self._queries["reap"], space, REAPED)]])[0][0][0])
        requeued, dead, removed = reaped.requeued, reaped.dead, reaped.workers_removed
        self._run(link, "clear_stale_queue_locks", space)
        if requeued:
            # Idle workers learn when the requeued jobs are due (after their backoff)
            # now, not at their next poll.
            link.transactions([[("notify", "SELECT pg_notify(%s, '')",
                                 [channel(self._schema)])]])
        pruned = 0
        now = time.monotonic()
        if now >= self._next_prune:
            pruned, finished = self.prune(link, PRUNE_SLICE)
            self._next_prune = now + (PRUNE_INTERVAL if finished else 0.0)
        if requeued or dead or removed:
            log.warning("reaper: %d jobs of stopped workers requeued, %d dead, %d workers removed",
                        requeued, dead, removed)
        if pruned:
            log.info("reaper: pruned %d finished jobs", pruned)
        return ReapResult(requeued, dead, removed, pruned)

    def prune(self, link: Link, budget: float | None = None) -> tuple[int, bool]:
        """Delete finished jobs past the retention in batches, for at most
        `budget` seconds (None: until none is left). Returns how many, and
        whether none is left."""
        total = 0
        deadline = None if budget is None else time.monotonic() + budget
        while True:
            rows = self._run(link, "prune", {"retention": self._retention, "batch": PRUNE_BATCH})
            total += len(rows)
            if len(rows) < PRUNE_BATCH:
                return total, True
            if deadline is not None and time.monotonic() >= deadline:
                return total, False


def run(dsn: str, schema: str, *, once: bool, retention: float | None) -> ReapResult | None:
    """`pgcc reaper`: one pass with --once, else lead (or wait to lead) until stopped."""
    reaper = Reaper(schema, retention)
    # Its leadership lives in the session: a reaper cut off from the network loses
    # it once the server has heard nothing from it for a while.
    link = Link(dsn, application_name="pgcc reaper", idle_timeout=5.0)
    if once:
        try:
            result = reaper.tick(link)
            # --once prunes everything eligible, not one slice of it.
            pruned, _ = reaper.prune(link)
            return ReapResult(result.requeued, result.dead, result.workers_removed,
                              result.pruned + pruned)
        finally:
            link.close()
    waited = False
    while True:
        try:
            if reaper.lead(link):
                reaper.tick(link)
            elif not waited:
                log.info("reaper: another reaper leads; standing by")
                waited = True
        except StatementFailed as failure:
            reaper.forget_leadership()
            if classify(failure.cause) is ErrorClass.CONNECTION:
                link.close()
                log.warning("reaper: database unavailable (%s); retrying",
                            describe(failure.cause))
            else:
                log.error("reaper: %s failed: %s", failure.name, describe(failure.cause))
            time.sleep(2)
        time.sleep(REAP_INTERVAL)
