"""The maintenance services a worker runs when it leads: reaping and pruning.

One worker (or `pgcc reaper`) leads at a time. The services run on a
connection of their own, so that a slow prune can never hold up the
heartbeat or a claim.
"""

from __future__ import annotations

import logging

from pgcc._database import Link, StatementFailed
from pgcc._policy import ErrorClass, classify, describe
from pgcc._reaper import REAP_INTERVAL, Reaper
from pgcc._worker.config import Backoff, WorkerConfig

log = logging.getLogger("pgcc.worker")

STANDBY_INTERVAL = 1.0


class Maintenance:
    def __init__(self, config: WorkerConfig) -> None:
        self._reaper = Reaper(config.schema, config.retention)
        self.link = Link(config.dsn, application_name="pgcc worker maintenance",
                         idle_timeout=config.lease)
        self._backoff = Backoff()

    def step(self) -> float:
        """One pass when leading; returns the seconds until the next."""
        try:
            leading = self._reaper.lead(self.link)
            if leading:
                self._reaper.tick(self.link)
        except StatementFailed as failure:
            self._reaper.forget_leadership()
            if classify(failure.cause) is ErrorClass.CONNECTION:
                self.link.close()
                log.warning("maintenance: database unavailable (%s); retrying",
                            describe(failure.cause))
            else:
                log.error("maintenance: %s failed: %s", failure.name, describe(failure.cause))
            return self._backoff.next_delay()
        self._backoff.reset()
        # A worker that does not lead only checks now and then whether it may.
        return REAP_INTERVAL if leading else STANDBY_INTERVAL

    def close(self) -> None:
        self.link.close()
