"""Finding a worker's tasks without running their code in the worker.

The worker must know each task's name, timeout and max_attempts, but a task
module may do anything at import: open files, connect, even end its process.
So the modules are imported in a child process, which reports each one; a
module that ends the child is reported as broken and the probe goes on with
the next in a new child.
"""

from __future__ import annotations

import contextlib
import logging
from multiprocessing.connection import Connection
from pathlib import Path

from pgcc import _forkserver as forkserver
from pgcc import _runner as runner
from pgcc._tasks import BrokenTask, Task, TaskInfo, TaskSource, try_load

log = logging.getLogger("pgcc.worker")

# A module whose import takes longer than this is reported as broken.
IMPORT_TIMEOUT = 120.0


def _probe_main(channel: Connection, source: TaskSource, paths: list[Path]) -> None:
    """In the child: import each module, saying which before trying it."""
    runner.ignore_stop_signals()
    for path in paths:
        channel.send(("trying", path))
        loaded = try_load(path, source)
        channel.send(("result", loaded.info() if isinstance(loaded, Task) else loaded))
    channel.send(("end", None))


def discover(source: TaskSource) -> tuple[dict[str, TaskInfo], list[BrokenTask]]:
    """Every task of `source` and the modules that cannot be used (with why),
    found by importing them in child processes."""
    found: dict[str, TaskInfo] = {}
    broken: list[BrokenTask] = []
    remaining = source.module_paths()
    context = forkserver.context()
    while remaining:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_probe_main, args=(child_end, source, remaining),
                                  daemon=True, name="pgcc-probe")
        process.start()
        child_end.close()
        trying: Path | None = None
        try:
            while True:
                if not parent_end.poll(IMPORT_TIMEOUT):
                    raise TimeoutError
                kind, value = parent_end.recv()
                if kind == "trying":
                    trying = value
                elif kind == "result":
                    remaining.remove(value.path)
                    trying = None
                    if isinstance(value, TaskInfo):
                        found[value.name] = value
                    else:
                        broken.append(value)
                else:
                    break
        except (EOFError, OSError, TimeoutError) as exc:
            process.kill()
            process.join(5)
            if trying is None:
                raise RuntimeError(f"the task probe ended unexpectedly ({exc!r})") from None
            why = f"importing it took longer than {IMPORT_TIMEOUT:g} s" \
                if isinstance(exc, TimeoutError) \
                else f"importing it ended the process (exit code {process.exitcode})"
            broken.append(BrokenTask(trying, why, why))
            remaining.remove(trying)
        finally:
            parent_end.close()
            with contextlib.suppress(Exception):
                process.join(5)
    return found, broken
