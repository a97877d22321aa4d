"""What the worker's threads share, and nothing else: mailboxes, pulses, the lease.

Each part of a worker (the exchange with the database, the lease keeper, the
maintenance services) runs in a thread of its own and owns its state. Parts
talk through a `Mailbox`; each shows that it is making progress through a
`Pulse` the supervisor watches; the `LeaseStatus` says when the lease was
last renewed. These three classes are the only objects several threads
touch, and each guards itself.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgcc._worker.config import FENCE_AT

log = logging.getLogger("pgcc.worker")


class Mailbox:
    """Messages for one thread, with a descriptor that is readable while any wait."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._read_end, self._write_end = socket.socketpair()
        self._read_end.setblocking(False)
        self._write_end.setblocking(False)

    def fileno(self) -> int:
        return self._read_end.fileno()

    def put(self, message: object) -> None:
        self.put_many([message])

    def put_many(self, messages: list[object]) -> None:
        """Several messages, in order, for one wake-up of the reader."""
        for message in messages:
            self._queue.put(message)
        # A full socket buffer already wakes the reader.
        with contextlib.suppress(BlockingIOError, OSError):
            self._write_end.send(b"!")

    def wake(self) -> None:
        """Wake the reader without a message (from a signal handler too)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._write_end.send(b"!")

    def wakeup_fd(self) -> int:
        return self._write_end.fileno()

    def take(self) -> list[Any]:
        """Every message waiting, in order."""
        with contextlib.suppress(BlockingIOError, OSError):
            while len(self._read_end.recv(4096)) == 4096:
                pass
        messages = []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages

    def close(self) -> None:
        self._read_end.close()
        self._write_end.close()


class Pulse:
    """When a part last went round its loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = time.monotonic()

    def beat(self) -> None:
        with self._lock:
            self._at = time.monotonic()

    def age(self) -> float:
        with self._lock:
            return time.monotonic() - self._at


class Standing(enum.Enum):
    """Where this worker's registration stands. A lost registration is
    released only once the supervisor has stopped its jobs, so that the
    exchange never registers again, and claims, while they still run."""

    HELD = "held"  # registered; the lease keeper renews it
    LOST = "lost"  # the reaper declared it dead; its jobs are still to stop
    RELEASED = "released"  # its jobs are stopped; the exchange registers again


@dataclass(frozen=True)
class Lease:
    worker_id: int | None
    renewed_at: float  # time.monotonic()
    standing: Standing

    @property
    def lost(self) -> bool:
        """The reaper declared this registration dead."""
        return self.standing is not Standing.HELD

    def in_doubt(self, now: float, lease: float) -> bool:
        """Whether jobs of this registration may already run elsewhere: it was
        declared dead, or not renewed for FENCE_AT of the lease (`lease` s)."""
        return self.lost or now - self.renewed_at > FENCE_AT * lease


class LeaseStatus:
    """This worker's registration and lease, as the lease keeper last saw them."""

    def __init__(self, clock: Any) -> None:
        self._lock = threading.Lock()
        self._lease = Lease(None, time.monotonic(), Standing.HELD)
        # A shared double the children read (time.monotonic() is one clock for
        # all processes): when the lease was last renewed.
        self._clock = clock

    @property
    def clock(self) -> Any:
        """The shared double, for the children."""
        return self._clock

    def get(self) -> Lease:
        with self._lock:
            return self._lease

    def registered(self, worker_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._lease = Lease(worker_id, now, Standing.HELD)
            self._clock.value = now

    def renewed(self, worker_id: int, at: float) -> bool:
        """Record a renewal of `worker_id`'s lease; False if it is no longer current."""
        with self._lock:
            if self._lease.worker_id != worker_id or self._lease.lost:
                return False
            self._lease = Lease(worker_id, at, Standing.HELD)
            self._clock.value = at
            return True

    def lose(self, worker_id: int) -> bool:
        """The reaper declared `worker_id` dead; False if that is known already."""
        return self._move(worker_id, Standing.HELD, Standing.LOST)

    def release(self, worker_id: int) -> bool:
        """The lost registration's jobs are stopped: it may be replaced."""
        return self._move(worker_id, Standing.LOST, Standing.RELEASED)

    def _move(self, worker_id: int, before: Standing, after: Standing) -> bool:
        with self._lock:
            lease = self._lease
            if lease.worker_id != worker_id or lease.standing is not before:
                return False
            self._lease = Lease(worker_id, lease.renewed_at, after)
            return True


class Part:
    """A thread that runs `step` over and over, beating its pulse each time.
    A step that raises is a bug: logged, and the part goes on after a pause
    (the supervisor restarts a part whose thread ends anyway)."""

    def __init__(self, name: str, step: Callable[[], float | None],
                 on_exit: Callable[[], None] | None = None) -> None:
        self.name = name
        self.pulse = Pulse()
        self._step = step
        self._on_exit = on_exit
        self._stop = threading.Event()
        # Set to end the pause between steps early (poke, stop).
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._wakeup.clear()
        self.pulse.beat()
        self._thread = threading.Thread(target=self._run, name=f"pgcc-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.pulse.beat()
                try:
                    pause = self._step()
                except Exception:
                    log.exception("%s: unexpected error; going on in 1 s", self.name)
                    pause = 1.0
                if pause:
                    self._wakeup.wait(pause)
                    self._wakeup.clear()
        finally:
            if self._on_exit is not None:
                self._on_exit()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        """Run the next step now instead of after the pause (from any thread)."""
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
