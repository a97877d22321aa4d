"""The supervisor's watch over the worker's parts: by their progress, not only
by whether their threads live.

A part whose thread ended is started again, up to RESTARTS times; a part
whose pulse has not beaten for longer than the limit (a lease, and the time
a connection attempt may take) is stuck, and the worker gives up so that
whatever runs it (systemd, Kubernetes) starts a fresh one. A part is judged
stuck only over a stretch the watch itself was awake for: after SIGSTOP or
a suspended machine every pulse looks old. Used by the supervisor's thread
only; it starts threads, and does no other I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable

from pgcc._worker.parts import Part

log = logging.getLogger("pgcc.worker")

# How many times a part's thread may end and be started again.
RESTARTS = 10
# A gap longer than this between two looks means the watch itself was not
# running (the process was stopped or the machine suspended).
GAP = 1.0


class Watch:
    def __init__(self, stall_limit: float, now: float) -> None:
        self.stall_limit = stall_limit
        self._starts: dict[str, int] = {}
        self._awake_since = now
        self._last_look = now

    def start(self, part: Part) -> None:
        self._starts[part.name] = self._starts.get(part.name, 0) + 1
        part.start()

    def look(self, parts: Iterable[Part], now: float,
             never_stuck: Container[Part] = ()) -> str | None:
        """Start again each part whose thread ended. Returns why the worker
        should give up (a part that ended too often, or made no progress for
        longer than the limit), or None."""
        if now - self._last_look > GAP:
            self._awake_since = now
        self._last_look = now
        judging = now - self._awake_since > self.stall_limit
        for part in parts:
            if part.name not in self._starts:
                continue  # not started yet (the worker is still registering)
            if not part.alive:
                restarts = self._starts.get(part.name, 0) - 1
                if restarts >= RESTARTS:
                    return f"{part.name}: its thread ended again (started again {restarts} times)"
                log.error("%s: its thread ended; starting it again", part.name)
                self.start(part)
            elif judging and part not in never_stuck and part.pulse.age() > self.stall_limit:
                return (f"{part.name}: no progress for {part.pulse.age():.1f} s "
                        "(more than the lease)")
        return None
