"""`pgcc worker --reload` (for development): new and changed task modules are
picked up without a restart.

The supervisor looks at the task folder's files (their names, sizes and
modification times: no import, task code never runs in the worker) about once
a second. When they change, the tasks are probed again in a child process
(pgcc._worker.probe), in a thread of its own so that the supervisor never
waits for it; the result comes back to the supervisor's mailbox as
`Reprobed`. The supervisor then gives the pool the new tasks (children are
replaced once their current job ends: a running job is never killed), the
exchange the new list to claim and to record in the worker's row, and the
periodic scheduler the tasks' schedules, to declare what changed.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import NamedTuple

from pgcc._tasks import BrokenTask, TaskInfo, TaskSource
from pgcc._worker import probe
from pgcc._worker.parts import Mailbox

log = logging.getLogger("pgcc.worker")

# Seconds between two looks at the task folder.
SCAN_INTERVAL = 1.0

Snapshot = frozenset[tuple[str, int, int]]


class Reprobed(NamedTuple):
    """The tasks found by a probe after the folder changed."""

    tasks: dict[str, TaskInfo]
    broken: list[BrokenTask]


def snapshot(folder: Path) -> Snapshot:
    """Every Python file of the folder (and its subfolders): name, size, mtime.
    Helpers count: a task that imports a changed helper must be loaded again."""
    files: set[tuple[str, int, int]] = set()
    for path in folder.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile: the next look sees it gone
            continue
        files.add((str(path), stat.st_size, stat.st_mtime_ns))
    return frozenset(files)


class Reloader:
    """Watches a task source; probes it again in a thread when it changed."""

    def __init__(self, source: TaskSource, mailbox: Mailbox) -> None:
        self._source = source
        self._mailbox = mailbox
        self._seen = snapshot(source.folder)
        self._next_scan = time.monotonic() + SCAN_INTERVAL
        self._probing: threading.Thread | None = None

    def due(self) -> float:
        """When the next look is due (time.monotonic())."""
        return self._next_scan

    def scan(self, now: float) -> None:
        """Look at the folder if it is time; start a probe if it changed."""
        if now < self._next_scan:
            return
        self._next_scan = now + SCAN_INTERVAL
        if self._probing is not None and self._probing.is_alive():
            return  # what changed meanwhile is seen once it is done
        current = snapshot(self._source.folder)
        if current == self._seen:
            return
        self._seen = current
        log.info("task modules changed in %s; loading them again", self._source.folder)
        self._probing = threading.Thread(target=self._probe, name="pgcc-reload-probe",
                                         daemon=True)
        self._probing.start()

    def _probe(self) -> None:
        try:
            found, broken = probe.discover(self._source)
        except Exception as exc:  # the probe itself failed: keep the tasks as they are
            log.error("reloading the tasks failed: %s", exc)
            return
        self._mailbox.put(Reprobed(found, broken))
