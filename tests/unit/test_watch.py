"""The supervisor's watch (pgcc/_worker/watch.py), with real part threads: a
part whose thread ended is started again, one that ends too often or makes
no progress for longer than the limit is given up on, and a gap in the
watch's own looks (SIGSTOP, a suspended machine) is not held against a part."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pgcc._worker.parts import Part
from pgcc._worker.watch import RESTARTS, Watch


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of a test, so that a part blocked in its step can end."""
    event = threading.Event()
    yield event
    event.set()


def steady() -> float:
    return 0.01


def blocking(release: threading.Event) -> Callable[[], float]:
    def step() -> float:
        release.wait()
        return 0.01
    return step


def ending() -> float:
    raise SystemExit  # not an Exception: the part's thread ends


def looks(watch: Watch, parts: list[Part], seconds: float, **kwargs: object) -> str | None:
    """The watch looks every 0.05 s for `seconds`, as the supervisor does; the
    first reason it gives to give up, or None."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        why = watch.look(parts, time.monotonic(), **kwargs)  # type: ignore[arg-type]
        if why is not None:
            return why
        time.sleep(0.05)
    return None


# The threads that end do so by an exception, as a real part's would.
ends_thread = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@ends_thread
def test_a_part_whose_thread_ended_is_started_again() -> None:
    runs: list[int] = []

    def once_then_steady() -> float:
        runs.append(1)
        if len(runs) == 1:
            raise SystemExit
        return 0.01

    part = Part("exchange", once_then_steady)
    watch = Watch(stall_limit=5.0, now=time.monotonic())
    watch.start(part)
    part_ended = time.monotonic() + 2
    while part.alive and time.monotonic() < part_ended:
        time.sleep(0.01)
    assert not part.alive
    assert watch.look([part], time.monotonic()) is None
    assert part.alive, "not started again"
    time.sleep(0.1)
    assert len(runs) > 2
    part.stop()


@ends_thread
def test_a_part_that_keeps_ending_is_given_up_on() -> None:
    part = Part("lease", ending)
    watch = Watch(stall_limit=5.0, now=time.monotonic())
    watch.start(part)
    why = looks(watch, [part], 5.0)
    assert why == f"lease: its thread ended again (started again {RESTARTS} times)"


def test_a_stuck_part_is_given_up_on_after_the_limit(release: threading.Event) -> None:
    stuck, fine = Part("maintenance", blocking(release)), Part("lease", steady)
    watch = Watch(stall_limit=0.5, now=time.monotonic())
    for part in (stuck, fine):
        watch.start(part)
    assert looks(watch, [stuck, fine], 0.3) is None, "judged before the limit"
    why = looks(watch, [stuck, fine], 2.0)
    assert why is not None and why.startswith("maintenance: no progress for ")
    fine.stop()


def test_a_part_never_judged_stuck_is_not(release: threading.Event) -> None:
    scrape = Part("metrics", blocking(release))
    watch = Watch(stall_limit=0.3, now=time.monotonic())
    watch.start(scrape)
    assert looks(watch, [scrape], 1.0, never_stuck=[scrape]) is None


def test_a_gap_in_the_watch_is_not_held_against_the_parts(release: threading.Event) -> None:
    """After the whole process was stopped, every pulse looks old: the watch
    judges again only once it has been awake for the limit."""
    stuck = Part("periodic", blocking(release))
    watch = Watch(stall_limit=0.5, now=time.monotonic())
    watch.start(stuck)
    assert watch.look([stuck], time.monotonic()) is None
    time.sleep(1.2)  # the watch did not look: as if the process were stopped
    assert stuck.pulse.age() > 1.0
    assert watch.look([stuck], time.monotonic()) is None, "a pulse judged over the gap"
    why = looks(watch, [stuck], 2.0)
    assert why is not None and why.startswith("periodic: no progress")


def test_a_part_not_started_yet_is_left_alone() -> None:
    """While the worker registers, the later parts are not started; the watch
    neither starts them nor calls them ended."""
    later = Part("periodic", steady)
    watch = Watch(stall_limit=0.5, now=time.monotonic())
    assert watch.look([later], time.monotonic()) is None
    assert not later.alive
