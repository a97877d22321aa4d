"""The reaper: gives back the jobs of workers whose lease ran out, and prunes.

One reaper leads at a time (a session advisory lock), whether it runs inside
a worker or as `pgcc reaper`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from pgcc.database import Link
from pgcc.queries import channel, for_schema, lock_space

log = logging.getLogger(__name__)

REAP_INTERVAL = 0.25
PRUNE_INTERVAL = 60.0
PRUNE_BATCH = 1000
PRUNE_BATCHES_PER_TICK = 20
DEFAULT_RETENTION = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ReapResult:
    requeued: int
    dead: int
    workers_removed: int
    pruned: int


class Reaper:
    def __init__(self, schema: str, retention: float = DEFAULT_RETENTION) -> None:
        self._schema = schema
        self._queries = for_schema(schema)
        self._retention = retention
        self._leader = False
        self._next_prune = 0.0

    def lead(self, link: Link) -> bool:
        """Become the leader if no one else is; stays so while `link` lives."""
        if not self._leader or not link.connected:
            rows = link.execute(self._queries["try_lead_reaper"],
                                {"lock_space": lock_space(self._schema)})
            self._leader = bool(rows[0][0])
        return self._leader

    def forget_leadership(self) -> None:
        self._leader = False

    def tick(self, link: Link) -> ReapResult:
        """One pass: reap, clear stale queue locks, and prune when due."""
        # With parameters (none), so that the query's %% reaches PostgreSQL as %.
        requeued, dead, removed = link.execute(self._queries["reap"], {})[0]
        link.execute(self._queries["clear_stale_queue_locks"])
        if requeued:
            # Idle workers learn when the requeued jobs are due (after their backoff)
            # now, not at their next poll.
            link.execute("SELECT pg_notify(%s, '')", [channel(self._schema)])
        pruned = 0
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            pruned = self.prune(link)
        if requeued or dead or removed:
            log.warning("reaper: %d jobs of stopped workers requeued, %d dead, %d workers removed",
                        requeued, dead, removed)
        if pruned:
            log.info("reaper: pruned %d finished jobs", pruned)
        return ReapResult(requeued, dead, removed, pruned)

    def prune(self, link: Link) -> int:
        total = 0
        for _ in range(PRUNE_BATCHES_PER_TICK):
            conn = link.connection()
            cur = conn.execute(self._queries["prune"],
                               {"retention": self._retention, "batch": PRUNE_BATCH})
            total += cur.rowcount
            if cur.rowcount < PRUNE_BATCH:
                break
        return total


def run(dsn: str, schema: str, *, once: bool, retention: float) -> ReapResult | None:
    """`pgcc reaper`: one pass with --once, else lead (or wait to lead) until stopped."""
    reaper = Reaper(schema, retention)
    # Its leadership lives in the session: a reaper cut off from the network loses
    # it once the server has heard nothing from it for a while.
    link = Link(dsn, application_name="pgcc reaper", idle_timeout=5.0)
    if once:
        try:
            return reaper.tick(link)
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
        except psycopg.OperationalError as exc:
            reaper.forget_leadership()
            log.warning("reaper: database unavailable (%s); retrying",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            time.sleep(2)
        time.sleep(REAP_INTERVAL)
