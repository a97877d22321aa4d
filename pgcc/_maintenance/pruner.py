"""The pruner: deletes finished jobs past the retention, in batches.

A pass deletes batch after batch until one comes back short (nothing
eligible is left) or its time slice is over; while rows are left, the next
pass comes at the maintainer's next step, so pruning keeps up with any rate
at which jobs finish. Each batch skips the rows others hold (SKIP LOCKED):
it never waits on a claim, nor holds one up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pgcc._database import Link
from pgcc._queries import for_schema

log = logging.getLogger("pgcc.maintenance")


@dataclass(frozen=True)
class PrunerConfig:
    # Seconds between passes once a pass found nothing more to prune.
    interval: float = 60.0
    # Rows deleted per statement: small enough to hold few locks for little time.
    batch: int = 1000
    # Seconds one pass of the maintainer's may prune, between the other duties.
    slice: float = 1.0
    # Seconds finished jobs are kept; None reads the schema's setting
    # retention_seconds at each batch (one place to change it for every
    # worker and reaper).
    retention: float | None = None


class Pruner:
    def __init__(self, schema: str, config: PrunerConfig | None = None) -> None:
        self.config = config or PrunerConfig()
        self._queries = for_schema(schema)

    def run(self, link: Link, budget: float | None = None) -> tuple[int, bool]:
        """Prune for at most `budget` seconds (None: until nothing eligible is
        left). Returns how many rows, and whether nothing eligible is left."""
        total = 0
        deadline = None if budget is None else time.monotonic() + budget
        params = {"retention": self.config.retention, "batch": self.config.batch}
        try:
            while True:
                rows = link.transactions([[("prune", self._queries["prune"], params)]])[0][0]
                total += len(rows)
                if len(rows) < self.config.batch:
                    return total, True
                if deadline is not None and time.monotonic() >= deadline:
                    return total, False
        finally:
            if total:
                log.info("pruner: pruned %d finished jobs", total)
