"""The cron arithmetic of periodic tasks (pgcc._cron), alone: no database, no clock."""

from __future__ import annotations

import datetime as dt

import pytest

from pgcc._cron import Cron
from pgcc.errors import ParameterTypeError, ScheduleError

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def ticks(cron: Cron, start: str, end: str) -> list[str]:
    """Every tick in (start, end], as UTC ISO text."""
    found: list[str] = []
    moment: dt.datetime | None = at(start)
    while True:
        assert moment is not None
        moment = cron.next_after(moment)
        if moment is None or moment > at(end):
            return found
        found.append(moment.isoformat())


def test_every_minute_in_utc() -> None:
    cron = Cron.parse("* * * * *")
    assert cron.timezone == "UTC"
    assert cron.next_after(at("2026-01-01T00:01:00+00:00")) == at("2026-01-01T00:02:00+00:00")
    assert cron.next_after(at("2026-01-01T00:01:59.9+00:00")) == at("2026-01-01T00:02:00+00:00")
    # A tick counts as at or before itself, to the microsecond.
    assert cron.latest_at_or_before(at("2026-01-01T00:01:00+00:00")) \
        == at("2026-01-01T00:01:00+00:00")
    assert cron.latest_at_or_before(at("2026-01-01T00:00:59.999999+00:00")) \
        == at("2026-01-01T00:00:00+00:00")


def test_results_are_utc_whatever_the_zone_of_the_question() -> None:
    cron = Cron.parse("0 9 * * MON-FRI", "America/New_York")
    tick = cron.next_after(at("2026-01-02T15:00:00+01:00"))  # a Friday, 09:00 in New York
    assert tick == at("2026-01-05T14:00:00+00:00")  # Monday 09:00 EST
    assert tick is not None and tick.tzinfo is UTC


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Cron.parse("* * * * *").next_after(dt.datetime(2026, 1, 1))


def test_spring_forward_a_skipped_time_runs_at_the_end_of_the_gap() -> None:
    # Europe/Berlin, Sunday 29 March 2026: 02:00 CET jumps to 03:00 CEST, so 02:30
    # does not exist that day. cronsim (like Debian's cron) runs it at 03:00 CEST.
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    assert ticks(cron, "2026-03-27T12:00:00+00:00", "2026-03-30T12:00:00+00:00") == [
        "2026-03-28T01:30:00+00:00",  # 02:30 CET
        "2026-03-29T01:00:00+00:00",  # 03:00 CEST, once
        "2026-03-30T00:30:00+00:00",  # 02:30 CEST
    ]
    # Looking back from later that day finds the same tick.
    assert cron.latest_at_or_before(at("2026-03-29T12:00:00+00:00")) \
        == at("2026-03-29T01:00:00+00:00")


def test_fall_back_a_repeated_time_runs_once() -> None:
    # Sunday 25 October 2026: 03:00 CEST goes back to 02:00 CET, so 02:30 happens
    # twice (00:30 and 01:30 UTC). A fixed time runs at the first only.
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    assert ticks(cron, "2026-10-24T12:00:00+00:00", "2026-10-26T12:00:00+00:00") == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]
    # Asked from inside the repeated hour, the answers stay in order: the next
    # tick is tomorrow's, the latest the one an hour ago (cronsim alone, reading
    # the wall clock, would answer otherwise; pgcc._cron corrects it).
    inside = at("2026-10-25T01:29:00+00:00")
    assert cron.next_after(inside) == at("2026-10-26T01:30:00+00:00")
    assert cron.latest_at_or_before(inside) == at("2026-10-25T00:30:00+00:00")


def test_fall_back_an_hourly_schedule_runs_in_both_repeated_hours() -> None:
    # `30 * * * *` runs every hour of elapsed time: the repeated hour runs twice,
    # as the cron says; the skipped hour of spring has no tick.
    cron = Cron.parse("30 * * * *", "Europe/Berlin")
    assert ticks(cron, "2026-10-24T23:00:00+00:00", "2026-10-25T02:00:00+00:00") == [
        "2026-10-24T23:30:00+00:00",  # 01:30 CEST
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST
        "2026-10-25T01:30:00+00:00",  # 02:30 CET
    ]
    assert ticks(cron, "2026-03-28T23:00:00+00:00", "2026-03-29T02:00:00+00:00") == [
        "2026-03-28T23:30:00+00:00",  # 00:30 CET
        "2026-03-29T00:30:00+00:00",  # 01:30 CET
        "2026-03-29T01:30:00+00:00",  # 03:30 CEST
    ]


def test_latest_after_downtime_is_the_most_recent_tick_only() -> None:
    cron = Cron.parse("*/5 * * * *")
    assert cron.latest_at_or_before(at("2026-05-01T10:23:17+00:00")) \
        == at("2026-05-01T10:20:00+00:00")


@pytest.mark.parametrize(("expression", "message"), [
    ("* * * *", "must have five fields .* not 4"),
    ("0 * * * * *", "must have five fields .* not 6"),
    ("", "must have five fields .* not 0"),
    ("61 * * * *", "not a valid cron expression: bad minute"),
    ("* 24 * * *", "not a valid cron expression: bad hour"),
    ("* * * * funday", "not a valid cron expression: bad day-of-week"),
    ("0 0 31 2 *", "not a valid cron expression: bad day-of-month"),
])
def test_a_bad_expression_is_refused_saying_why(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Cron.parse(expression)


def test_a_schedule_that_is_not_text_is_a_type_error() -> None:
    with pytest.raises(ParameterTypeError, match="not int"):
        Cron.parse(5)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "utc", "../../etc/passwd", "CET "])
def test_an_unknown_zone_is_refused(name: str) -> None:
    with pytest.raises(ScheduleError, match="not a known IANA time zone"):
        Cron.parse("* * * * *", name)


def test_a_zone_that_is_not_text_is_a_type_error() -> None:
    with pytest.raises(ParameterTypeError, match="schedule_timezone must be"):
        Cron.parse("* * * * *", None)
