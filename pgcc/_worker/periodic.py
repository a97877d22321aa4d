"""Periodic tasks in a worker: declare its tasks' schedules, schedule their ticks.

Every worker runs this part, leader or not: at its start it declares the
schedules of its task modules (the table `periodic`; the last worker to start
wins when two disagree) and retires those of its tasks that have none any
more. A worker with periodic tasks then wakes at each of their ticks (and
every CHECK_INTERVAL, to see a schedule another worker declared), and
schedules the most recent due tick of each through periodic_tick. The
database, not leadership, makes a tick one job: every worker with the task
tries it, one succeeds; so a tick is scheduled as long as any worker with
the task runs, whichever leads. Ticks are computed from the database's
clock, which all workers share.

With --reload, the supervisor sends the reloaded tasks (`Redeclare`); the
scheduler declares what changed by the start's rules: a schedule new or
changed is declared, a task that has no schedule any more is retired, and
a task whose module is gone (deleted, or broken for now) is left as a
worker without it leaves it: its ticks are no longer this worker's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import NamedTuple, cast

from pgcc._cron import Cron
from pgcc._database import Link, StatementFailed, named_row
from pgcc._policy import Backoff, ErrorClass, classify, describe
from pgcc._queries import for_schema
from pgcc._tasks import Periodic
from pgcc._worker.config import WorkerConfig
from pgcc._worker.parts import Mailbox
from pgcc.errors import ScheduleError

log = logging.getLogger("pgcc.worker")

# The longest pause between two reads of the schedules: a schedule declared by
# another worker (which wins) is followed within this time.
CHECK_INTERVAL = 5.0
# Woken this late after a tick, the database's clock has surely passed it.
WAKE_MARGIN = 0.01


class DueRow(NamedTuple):
    task: str
    schedule: str
    timezone: str
    due_after: dt.datetime
    now: dt.datetime


DUE = named_row(DueRow)


class Redeclare(NamedTuple):
    """--reload found these tasks (each with its schedule, or None)."""

    schedules: dict[str, Periodic | None]


def _split(schedules: Mapping[str, Periodic | None]) -> tuple[dict[str, Periodic], set[str]]:
    """The tasks with a schedule, and those without."""
    declared = {name: periodic for name, periodic in schedules.items() if periodic is not None}
    return declared, set(schedules) - set(declared)


class PeriodicScheduler:
    def __init__(self, config: WorkerConfig) -> None:
        self._queries = for_schema(config.schema)
        self.inbox = Mailbox()
        self._declared, self._unscheduled = _split(
            {name: info.periodic for name, info in config.tasks.items()})
        # What is still to be written to the table `periodic`: at the start,
        # everything; after a reload, what it changed.
        self._to_declare = dict(self._declared)
        self._to_retire = set(self._unscheduled)
        self.link = Link(config.dsn, application_name="pgcc worker periodic")
        self._backoff = Backoff()
        # What was already logged, so that a problem is told once, not every check.
        self._failed_ticks: dict[str, dt.datetime] = {}
        self._unusable: set[tuple[str, str, str]] = set()
        self._overruled: set[tuple[str, str, str]] = set()

    def step(self) -> float:
        """Declare what is new, then schedule what is due; returns the seconds
        until the next look."""
        for message in self.inbox.take():
            if isinstance(message, Redeclare):
                self._redeclare(message.schedules)
        try:
            if self._to_declare or self._to_retire:
                self._declare()
            if not self._declared:
                # Nothing of this worker's is periodic: the part only waits.
                self.link.close()
                return CHECK_INTERVAL
            pause = self._schedule_due()
        except StatementFailed as failure:
            if classify(failure.cause) is ErrorClass.CONNECTION:
                self.link.close()
                log.warning("periodic: database unavailable (%s); retrying",
                            describe(failure.cause))
            else:
                log.error("periodic: %s failed: %s", failure.name, describe(failure.cause))
            return self._backoff.next_delay()
        self._backoff.reset()
        return pause

    def _redeclare(self, schedules: Mapping[str, Periodic | None]) -> None:
        """Take the reloaded tasks: what changed is to be written. A schedule
        that did not change is not declared again: a reload does not take a
        task back from a worker that declared another schedule since."""
        declared, unscheduled = _split(schedules)
        self._to_declare = {name: periodic for name, periodic in declared.items()
                            if name in self._to_declare or self._declared.get(name) != periodic}
        # A task new to this worker is retired as at the start, if it has no schedule.
        self._to_retire = {name for name in unscheduled
                           if name in self._to_retire or name not in self._unscheduled}
        for name in sorted(self._declared.keys() - declared.keys()):
            if name in unscheduled:
                log.info("periodic: %s has no schedule any more; retiring it", name)
            else:
                log.info("periodic: %s is no longer among this worker's tasks; it no longer "
                         "schedules its ticks", name)
        # A schedule declared again: what goes wrong with it is told again.
        again = self._to_declare.keys()
        self._failed_ticks = {task: tick for task, tick in self._failed_ticks.items()
                              if task not in again}
        self._unusable = {key for key in self._unusable if key[0] not in again}
        self._overruled = {key for key in self._overruled if key[0] not in again}
        self._declared, self._unscheduled = declared, unscheduled

    def _declare(self) -> None:
        schedules = sorted(self._to_declare.items())
        self.link.transactions([[
            ("periodic_declare", self._queries["periodic_declare"], {
                "tasks": [name for name, _ in schedules],
                "schedules": [p.cron.expression for _, p in schedules],
                "timezones": [p.cron.timezone for _, p in schedules],
                "parameters": [p.parameters for _, p in schedules],
            }),
            ("periodic_retire", self._queries["periodic_retire"],
             {"tasks": sorted(self._to_retire)}),
        ]])
        self._to_declare, self._to_retire = {}, set()
        for name, periodic in schedules:
            log.info("periodic: %s runs at %r (%s)", name, periodic.cron.expression,
                     periodic.cron.timezone)

    def _schedule_due(self) -> float:
        rows = cast(list[DueRow], self.link.transactions([[
            ("periodic_due", self._queries["periodic_due"], {"tasks": sorted(self._declared)},
             DUE)]])[0][0])
        pause = CHECK_INTERVAL
        for row in rows:
            cron = self._cron(row)
            if cron is None:
                continue
            latest = cron.latest_at_or_before(row.now)
            if latest is not None and latest > row.due_after:
                self._tick(row, latest)
            upcoming = cron.next_after(row.now)
            if upcoming is not None:
                pause = min(pause, (upcoming - row.now).total_seconds() + WAKE_MARGIN)
        return max(pause, WAKE_MARGIN)

    def _cron(self, row: DueRow) -> Cron | None:
        """The row's schedule, which may be another worker's (the last declared)."""
        own = self._declared[row.task].cron
        key = (row.task, row.schedule, row.timezone)
        if (own.expression, own.timezone) != (row.schedule, row.timezone) \
                and key not in self._overruled:
            self._overruled.add(key)
            log.warning("periodic: %s: another worker declared %r (%s) after this one's %r "
                        "(%s); the last declared applies to every worker", row.task,
                        row.schedule, row.timezone, own.expression, own.timezone)
        try:
            return Cron.parse(row.schedule, row.timezone)
        except ScheduleError as exc:
            # Declared by a worker of another version, perhaps: this one skips it.
            if key not in self._unusable:
                self._unusable.add(key)
                log.error("periodic: %s: cannot use the schedule in the database: %s",
                          row.task, exc)
            return None

    def _tick(self, row: DueRow, tick: dt.datetime) -> None:
        if self._failed_ticks.get(row.task) == tick:
            return
        try:
            job_id = self.link.transactions([[
                ("periodic_tick", self._queries["periodic_tick"], {
                    "task": row.task, "schedule": row.schedule, "timezone": row.timezone,
                    "tick": tick})]])[0][0][0][0]
        except StatementFailed as failure:
            if classify(failure.cause) is ErrorClass.CONNECTION:
                raise
            # Refused (schedule_parameters too large for the database's limit,
            # say): told once; the next tick is tried again.
            self._failed_ticks[row.task] = tick
            log.error("periodic: %s: the tick of %s was not scheduled: %s", row.task,
                      tick.isoformat(), describe(failure.cause))
            return
        if job_id is not None:
            log.info("periodic: %s: tick %s scheduled as job %d", row.task, tick.isoformat(),
                     job_id)

    def close(self) -> None:
        self.link.close()
