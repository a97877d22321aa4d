"""The maintainer: runs each due duty while it leads, on a connection of its own.

A worker runs one in its maintenance thread, `pgcc reaper` runs one alone;
either way a slow prune holds up neither a claim nor a heartbeat, which use
other connections. A candidate that does not lead looks again every
`standby` seconds. Errors follow pgcc's one policy (pgcc._policy): a lost
connection is retried with backoff, anything else is logged with the
statement's name and retried; neither ends the process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from pgcc._database import Link, StatementFailed
from pgcc._maintenance.leadership import Leadership
from pgcc._maintenance.pruner import Pruner, PrunerConfig
from pgcc._maintenance.rescuer import Rescuer, RescuerConfig
from pgcc._policy import Backoff, ErrorClass, classify, describe

log = logging.getLogger("pgcc.maintenance")


@dataclass(frozen=True)
class MaintenanceConfig:
    # Seconds a leader's lease lasts: how long the duties may go undone when
    # their leader dies without resigning.
    lease: float = 10.0
    # Seconds between looks of a candidate that does not lead.
    standby: float = 1.0
    rescuer: RescuerConfig = field(default_factory=RescuerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)


@dataclass(frozen=True)
class Report:
    """What one pass of every duty did (`pgcc reaper --once`)."""

    requeued: int
    dead: int
    workers_removed: int
    pruned: int


class Maintainer:
    """Used by one thread."""

    def __init__(self, dsn: str, schema: str, config: MaintenanceConfig, *,
                 application_name: str) -> None:
        self.config = config
        # A server that hears nothing from this session for a lease ends it.
        self.link = Link(dsn, application_name=application_name, idle_timeout=config.lease)
        self.leadership = Leadership(schema, config.lease)
        self._rescuer = Rescuer(schema, config.rescuer)
        self._pruner = Pruner(schema, config.pruner)
        self._rescue_at = self._prune_at = 0.0
        self._backoff = Backoff()
        self._leading: bool | None = None  # None: not known yet

    def step(self) -> float:
        """Lead if it may, run the due duties; returns the seconds until the next step."""
        try:
            if not self.leadership.hold(self.link):
                self._lead_changed(False)
                return self.config.standby
            self._lead_changed(True)
            self._run_due()
        except StatementFailed as failure:
            self.leadership.forget()
            self._failed(failure)
            return self._backoff.next_delay()
        if self._backoff.failing:
            log.info("maintenance: going on")
        self._backoff.reset()
        now = time.monotonic()
        due = min(self._rescue_at, self._prune_at, self.leadership.next_renewal() or now)
        return max(0.0, due - now)

    def _run_due(self) -> None:
        if time.monotonic() >= self._rescue_at:
            self._rescuer.run(self.link)
            self._rescue_at = time.monotonic() + self._rescuer.config.interval
        if time.monotonic() >= self._prune_at:
            config = self._pruner.config
            _, finished = self._pruner.run(self.link, config.slice)
            self._prune_at = time.monotonic() + (config.interval if finished else 0.0)

    def _lead_changed(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            if leading:
                log.info("maintenance: leading (%s), rescuing and pruning", self.leadership.name)
            else:
                log.info("maintenance: another process leads; standing by")

    def _failed(self, failure: StatementFailed) -> None:
        if classify(failure.cause) is ErrorClass.CONNECTION:
            self.link.close()
            if not self._backoff.failing:
                log.warning("maintenance: database unavailable (%s); retrying",
                            describe(failure.cause))
        else:
            log.error("maintenance: %s failed: %s", failure.name, describe(failure.cause))

    def once(self) -> Report:
        """One pass of every duty, led or not, pruning all that is eligible."""
        rescued = self._rescuer.run(self.link)
        pruned, _ = self._pruner.run(self.link)
        return Report(rescued.requeued, rescued.dead, rescued.workers_removed, pruned)

    def close(self) -> None:
        """Resign (best effort: an expired lease frees the row anyway), disconnect."""
        with contextlib.suppress(StatementFailed):
            self.leadership.resign(self.link)
        self.link.close()
