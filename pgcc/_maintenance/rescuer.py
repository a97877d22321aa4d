"""The rescuer: gives back the jobs of workers whose lease ran out.

A running job whose worker has not renewed its lease for longer than that
lease (or whose worker row is gone) goes back to `queued` after its retry
delay, or to `dead` when its attempts are used up. A queue lock whose job no
longer runs is cleared, so that its queue goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from pgcc._database import Link
from pgcc._queries import channel, for_schema, queue_lock_space
from pgcc._rows import REAPED, ReapRow

log = logging.getLogger("pgcc.maintenance")


@dataclass(frozen=True)
class RescuerConfig:
    # Seconds between looks: a job of a dead worker waits its lease, then at
    # most this long.
    interval: float = 0.5


@dataclass(frozen=True)
class Rescued:
    requeued: int
    dead: int
    workers_removed: int


class Rescuer:
    def __init__(self, schema: str, config: RescuerConfig | None = None) -> None:
        self.config = config or RescuerConfig()
        self._schema = schema
        self._queries = for_schema(schema)
        # With a parameter, so that the queries' %% reaches PostgreSQL as %.
        self._space = {"queue_lock_space": queue_lock_space(schema)}

    def run(self, link: Link) -> Rescued:
        """One pass: requeue (or bury) the jobs of expired workers, clear stale queue locks."""
        reaped = cast(ReapRow, link.transactions([[
            ("reap", self._queries["reap"], self._space, REAPED)]])[0][0][0])
        link.transactions([[("clear_stale_queue_locks", self._queries["clear_stale_queue_locks"],
                             self._space)]])
        if reaped.requeued:
            # Idle workers learn when the requeued jobs are due (after their
            # backoff) now, not at their next poll.
            link.transactions([[("notify", "SELECT pg_notify(%s, '')",
                                 [channel(self._schema)])]])
        if reaped.requeued or reaped.dead or reaped.workers_removed:
            log.warning("rescuer: %d jobs of stopped workers requeued, %d dead, "
                        "%d workers removed", reaped.requeued, reaped.dead, reaped.workers_removed)
        return Rescued(reaped.requeued, reaped.dead, reaped.workers_removed)
