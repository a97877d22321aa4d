"""A worker part's pause between steps: poke() ends it at once (a cancelled
running job makes the lease keeper renew now), and stop() too. A lost
registration is replaced only after the supervisor has released it."""

from __future__ import annotations

import threading
import time

from pgcc._worker.parts import LeaseStatus, Part, Standing


def test_poke_runs_the_next_step_at_once_and_stop_ends_the_pause() -> None:
    steps: list[float] = []
    stepped = threading.Event()

    def step() -> float:
        steps.append(time.monotonic())
        stepped.set()
        return 60.0  # a long pause, as a lease keeper's with a long lease

    part = Part("test", step)
    part.start()
    try:
        assert stepped.wait(5)
        stepped.clear()
        poked = time.monotonic()
        part.poke()
        assert stepped.wait(1), "the poke did not end the pause"
        assert len(steps) == 2 and steps[1] - poked < 1
    finally:
        began = time.monotonic()
        part.stop()
        assert not part.alive
        assert time.monotonic() - began < 1


class Clock:
    value = 0.0


def test_a_lost_registration_is_released_once_and_only_after_it_was_lost() -> None:
    status = LeaseStatus(Clock())
    status.registered(7)
    assert not status.release(7), "a held registration cannot be released"
    assert status.lose(7) and not status.lose(7)
    assert status.get().standing is Standing.LOST and status.get().lost
    assert not status.renewed(7, time.monotonic()), "a renewal cannot revive a lost lease"
    assert not status.release(8), "another registration's release"
    assert status.release(7) and not status.release(7)
    assert status.get().standing is Standing.RELEASED and status.get().lost
    status.registered(9)
    lease = status.get()
    assert (lease.worker_id, lease.standing) == (9, Standing.HELD) and not lease.lost
