"""A worker part's pause between steps: poke() ends it at once (a cancelled
running job makes the lease keeper renew now), and stop() too."""

from __future__ import annotations

import threading
import time

from pgcc._worker.parts import Part


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
