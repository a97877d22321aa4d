"""Finding and loading task modules: tasks/<name>.py defining run(params[, ctx])."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pgcc._validation import DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT, check_name


@dataclass(frozen=True)
class TaskInfo:
    """What the worker needs to know of a task; found by importing it in a child."""

    name: str
    path: Path
    wants_ctx: bool
    is_async: bool
    timeout: float | None
    max_attempts: int


@dataclass(frozen=True)
class Task(TaskInfo):
    """A task module loaded in the process that runs it."""

    run: Callable[..., Any]

    def info(self) -> TaskInfo:
        return TaskInfo(self.name, self.path, self.wants_ctx, self.is_async, self.timeout,
                        self.max_attempts)


@dataclass(frozen=True)
class BrokenTask:
    path: Path
    error: str
    detail: str


class TaskLoadError(Exception):
    """A task module cannot be used; the message says why."""


def _import(path: Path) -> ModuleType:
    module_name = f"pgcc_tasks.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TaskLoadError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def load(path: Path) -> Task:
    """Import one task module and check what it defines."""
    name = path.stem
    check_name("task", name)
    module = _import(path)
    run = getattr(module, "run", None)
    if not callable(run):
        raise TaskLoadError(f"{path}: defines no run(params) function")
    positional = [
        p for p in inspect.signature(run).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) not in (1, 2):
        raise TaskLoadError(f"{path}: run must take (params) or (params, ctx)")
    timeout = getattr(module, "timeout", None)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float)
        or not 0 < timeout < MAX_TIMEOUT
    ):
        raise TaskLoadError(f"{path}: timeout must be a positive number of seconds, "
                            "less than a year")
    max_attempts = getattr(module, "max_attempts", DEFAULT_MAX_ATTEMPTS)
    if type(max_attempts) is not int or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise TaskLoadError(f"{path}: max_attempts must be an int from 1 to "
                            f"{MAX_ATTEMPTS_LIMIT}, not {max_attempts!r}")
    return Task(
        name=name, path=path, run=run, wants_ctx=len(positional) == 2,
        is_async=inspect.iscoroutinefunction(run),
        timeout=float(timeout) if timeout is not None else None, max_attempts=max_attempts,
    )


def module_paths(folder: Path) -> list[Path]:
    """The task modules of a folder: every `*.py` not starting with `_`."""
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]


def try_load(path: Path) -> Task | BrokenTask:
    """The task, or why it cannot be used."""
    try:
        return load(path)
    except (Exception, SystemExit) as exc:  # a module may even call sys.exit()
        error = str(exc) if isinstance(exc, TaskLoadError) else f"{type(exc).__name__}: {exc}"
        return BrokenTask(path, error, traceback.format_exc())


def discover(folder: Path) -> tuple[dict[str, Task], list[BrokenTask]]:
    """Every task in `folder`, and the modules that failed to load (with why).
    Imports them in this process: the worker does it in a child (see probe)."""
    tasks: dict[str, Task] = {}
    broken: list[BrokenTask] = []
    for path in module_paths(folder):
        loaded = try_load(path)
        if isinstance(loaded, Task):
            tasks[loaded.name] = loaded
        else:
            broken.append(loaded)
    return tasks, broken
