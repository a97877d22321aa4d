"""Backoff between retries (pgcc/_policy.py), and the worker's timing rules
(pgcc/_worker/config.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pgcc._database import LINK_CONNECT_TIMEOUT
from pgcc._policy import Backoff
from pgcc._tasks import TaskSource
from pgcc._worker import config
from pgcc._worker.config import WorkerConfig


def test_backoff_grows_to_its_cap_and_never_overflows() -> None:
    backoff = Backoff(first=0.25, cap=5.0)
    delays = [backoff.next_delay() for _ in range(5000)]
    assert 0.2 <= delays[0] <= 0.25
    assert all(d <= 5.0 for d in delays)
    assert delays[-1] >= 4.0
    backoff.reset()
    assert backoff.next_delay() <= 0.25


def test_each_delay_doubles_the_last_with_at_most_a_fifth_of_jitter() -> None:
    backoff = Backoff(first=0.1, cap=1000.0)
    for failures in range(12):
        ceiling = 0.1 * 2**failures
        assert 0.8 * ceiling <= backoff.next_delay() <= ceiling, failures


def test_a_cap_below_the_first_delay_wins() -> None:
    backoff = Backoff(first=10.0, cap=1.0)
    assert all(0.8 <= backoff.next_delay() <= 1.0 for _ in range(50))


def test_an_unbounded_cap_still_gives_finite_delays() -> None:
    """Past 1,100 failures 2**n no longer fits a float: with no cap to speak of
    the exponent stops growing, so no OverflowError and no infinite delay."""
    backoff = Backoff(first=1.0, cap=math.inf)
    delays = [backoff.next_delay() for _ in range(1100)]
    assert all(math.isfinite(d) for d in delays)
    assert 0.8 * 2**30 <= delays[-1] <= 2**30


def test_failing_until_reset() -> None:
    backoff = Backoff()
    assert not backoff.failing
    backoff.next_delay()
    assert backoff.failing
    backoff.reset()
    assert not backoff.failing


def test_jitter_spreads_workers_that_failed_together() -> None:
    first_delays = {Backoff(first=1.0, cap=10.0).next_delay() for _ in range(100)}
    assert len(first_delays) > 50


def test_a_worker_stops_claiming_then_fences_its_jobs_before_its_children_do() -> None:
    """Shares of the lease: claims stop first, the worker stops its jobs next, a
    child on its own last, and all before the lease runs out."""
    assert 0 < config.CLAIM_UNTIL < config.FENCE_AT < config.CHILD_FENCE_AT < 1


def test_a_stall_allows_a_lease_and_a_connection_attempt() -> None:
    worker = WorkerConfig(dsn="", schema="s", source=TaskSource(Path(".")), concurrency=1,
                          lease=7.0)
    assert worker.stall_limit() == pytest.approx(7.0 + LINK_CONNECT_TIMEOUT + 1)
    assert worker.stall_limit() > worker.lease


def test_task_names_are_sorted() -> None:
    worker = WorkerConfig(dsn="", schema="s", source=TaskSource(Path(".")), concurrency=1,
                          tasks=dict.fromkeys(["b", "a", "c"]))  # type: ignore[arg-type]
    assert worker.task_names == ["a", "b", "c"]
