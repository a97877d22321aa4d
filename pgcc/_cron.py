"""Cron arithmetic for periodic tasks: pure, no I/O (cronsim does the parsing).

A schedule is a five-field cron expression read in an IANA time zone. Its
ticks are instants; here they are always returned in UTC, so that the ticks
of workers on machines set to different zones compare equal.

Daylight saving time follows cronsim, which follows Debian's cron:
- an expression that names a minute and an hour (`30 2 * * *`) is read on
  the wall clock: a time that does not exist that day (the hour skipped in
  spring) runs at the first minute after the gap (03:00 for 02:30 in
  Europe/Berlin), and a time that exists twice (the hour repeated in autumn)
  runs once, at its first occurrence;
- an expression with `*` (or a step over `*`) in its minute or hour field
  (`*/15 * * * *`, `0 * * * *`) runs on elapsed time: every tick of the
  repeated hour runs, and there is none in the skipped one.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from cronsim import CronSim, CronSimError

from pgcc.errors import ParameterTypeError, ScheduleError

DEFAULT_TIMEZONE = "UTC"
_ONE_SECOND = dt.timedelta(seconds=1)


def check_cron(expression: object) -> str:
    """A valid five-field cron expression, or an error saying what is wrong."""
    if not isinstance(expression, str):
        raise ParameterTypeError(
            f"schedule must be a cron expression (a string), not {type(expression).__name__}")
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(f"schedule {expression!r} must have five fields "
                            f"(minute hour day-of-month month day-of-week), not {len(fields)}")
    try:
        CronSim(expression, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    except CronSimError as exc:
        raise ScheduleError(f"schedule {expression!r} is not a valid cron expression: "
                            f"{str(exc).lower()}") from None
    return expression


def zone(name: object) -> zoneinfo.ZoneInfo:
    """The IANA time zone of this name, or an error saying it is not one."""
    if not isinstance(name, str):
        raise ParameterTypeError(
            f"schedule_timezone must be a time zone name (a string), not {type(name).__name__}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"schedule_timezone {name!r} is not a known IANA time zone "
                            "(such as 'UTC' or 'Europe/Berlin')") from None


@dataclass(frozen=True)
class Cron:
    """A checked schedule: `expression` read in the zone `timezone`."""

    expression: str
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def parse(cls, expression: object, timezone: object = DEFAULT_TIMEZONE) -> Cron:
        cron = cls(check_cron(expression), zone(timezone).key)
        # A valid expression may still never match (`0 0 31 2 *`): refused too.
        if cron.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)) is None:
            raise ScheduleError(f"schedule {expression!r} never runs")
        return cron

    def _ticks(self, start: dt.datetime, reverse: bool) -> CronSim:
        if start.tzinfo is None:
            raise ValueError("a naive datetime is ambiguous: give an aware one")
        return CronSim(self.expression, start.astimezone(zoneinfo.ZoneInfo(self.timezone)),
                       reverse=reverse)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after `moment` (None if there is none for 50 years)."""
        # Started inside a repeated hour, cronsim reads the wall clock and may
        # answer that hour's first occurrence, which is already past: skipped.
        for tick in self._ticks(moment, reverse=False):
            if tick > moment:
                return tick.astimezone(dt.timezone.utc)
        return None

    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime | None:
        """The most recent tick at or before `moment` (None if none in 50 years)."""
        # cronsim's reverse iteration starts strictly before the whole second it
        # is given: one second later includes `moment` itself (ticks fall on
        # whole minutes).
        start = moment.replace(microsecond=0) + _ONE_SECOND
        latest = next(iter(self._ticks(start, reverse=True)), None)
        if latest is None:
            return None
        # Going back through a repeated hour, cronsim reads the wall clock and
        # may pass over the hour's first occurrence; the forward step is exact.
        while True:
            later = self.next_after(latest)
            if later is None or later > moment:
                return latest.astimezone(dt.timezone.utc)
            latest = later
