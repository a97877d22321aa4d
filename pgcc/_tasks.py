"""Finding and loading task modules: tasks/<name>.py defining run(params[, ctx]).

Tasks come from a folder or from an importable package (`--tasks
myapp.tasks`). Either way the folder's modules are imported as submodules of
a package: of the package itself, or of `pgcc_tasks` for a plain folder (whose
`__init__.py`, if any, is not run). So a task may import a helper module of
its folder (a name starting with `_`, which is not a task) with `from . import
_shared`, which works for both; a plain folder is also on sys.path, so there
`import _shared` works too. Finding the package's folder reads the file
system only: the worker's own process never runs task code.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pgcc._cron import DEFAULT_TIMEZONE, Cron
from pgcc._validation import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_ATTEMPTS_LIMIT,
    MAX_TIMEOUT,
    check_name,
    check_parameters,
    dump_json,
)
from pgcc.errors import ConfigurationError, ScheduleError


@dataclass(frozen=True)
class Periodic:
    """A periodic task's schedule, as its module declares it (data only: it
    travels from the probe child to the worker)."""

    cron: Cron
    parameters: str  # JSON text of schedule_parameters


@dataclass(frozen=True)
class TaskInfo:
    """What the worker needs to know of a task; found by importing it in a child."""

    name: str
    path: Path
    wants_ctx: bool
    is_async: bool
    timeout: float | None
    max_attempts: int
    periodic: Periodic | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Task(TaskInfo):
    """A task module loaded in the process that runs it."""

    run: Callable[..., Any]
    # Exceptions that ask for another attempt rather than fail the job (pgcc._retry).
    retry_on: tuple[type[BaseException], ...] = ()

    def info(self) -> TaskInfo:
        return TaskInfo(self.name, self.path, self.wants_ctx, self.is_async, self.timeout,
                        self.max_attempts, periodic=self.periodic)


@dataclass(frozen=True)
class BrokenTask:
    path: Path
    error: str
    detail: str


class TaskLoadError(Exception):
    """A task module cannot be used; the message says why."""


# The package a plain folder's modules are imported in.
FOLDER_PACKAGE = "pgcc_tasks"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class TaskSource:
    """Where a worker's task modules are: a folder, or the folder of an
    importable package (`package`, found under the sys.path entry `root`)."""

    folder: Path
    package: str | None = None
    root: Path | None = None

    def __str__(self) -> str:
        return self.package or str(self.folder)

    def module_paths(self) -> list[Path]:
        return module_paths(self.folder)

    def path_of(self, name: str) -> Path:
        return self.folder / f"{name}.py"

    def prepare(self) -> str:
        """Make the tasks' package importable in this process (a child: for a
        package, this runs its `__init__`); returns its name."""
        if self.package is None:
            package = sys.modules.get(FOLDER_PACKAGE)
            if package is None or getattr(package, "__path__", None) != [str(self.folder)]:
                spec = importlib.machinery.ModuleSpec(FOLDER_PACKAGE, None, is_package=True)
                spec.submodule_search_locations = [str(self.folder)]
                package = importlib.util.module_from_spec(spec)
                sys.modules[FOLDER_PACKAGE] = package
            if str(self.folder) not in sys.path:
                sys.path.append(str(self.folder))
            return FOLDER_PACKAGE
        if self.root is not None and str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        importlib.import_module(self.package)
        return self.package


def resolve_source(value: str, cwd: Path | None = None) -> TaskSource:
    """`--tasks`: a folder, else a package found on the current folder or
    sys.path (by its folders, without importing it). ConfigurationError if
    it is neither."""
    folder = Path(value)
    if folder.is_dir():
        return TaskSource(folder.resolve())
    if _DOTTED.fullmatch(value):
        parts = value.split(".")
        for entry in [str(cwd or Path.cwd()), *sys.path]:
            root = Path(entry or os.curdir)
            candidate = root.joinpath(*parts)
            if candidate.is_dir():
                return TaskSource(candidate.resolve(), value, root.resolve())
    raise ConfigurationError(f"--tasks {value}: neither a folder nor a package found on "
                             "the current folder or the Python path (PYTHONPATH)")


def _as_source(where: Path | TaskSource) -> TaskSource:
    return where if isinstance(where, TaskSource) else TaskSource(where)


def _import(path: Path, source: TaskSource) -> ModuleType:
    module_name = f"{source.prepare()}.{path.stem}"
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


def load(path: Path, source: TaskSource | None = None) -> Task:
    """Import one task module (of `source`; by default, its folder) and check
    what it defines."""
    name = path.stem
    check_name("task", name)
    module = _import(path, source or TaskSource(path.parent))
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
        retry_on=_retry_on(getattr(module, "retry_on", None), path),
        periodic=_periodic(module, path),
    )


def _retry_on(value: object, path: Path) -> tuple[type[BaseException], ...]:
    """A module's `retry_on`: a tuple of exception classes (empty when unset)."""
    if value is None:
        return ()
    if not isinstance(value, tuple) or not all(
            isinstance(cls, type) and issubclass(cls, Exception) for cls in value):
        raise TaskLoadError(f"{path}: retry_on must be a tuple of exception classes, "
                            f"for example (TimeoutError,), not {value!r}")
    return value


# ---- periodic tasks (schedule, schedule_timezone, schedule_parameters) ----------


def _periodic(module: ModuleType, path: Path) -> Periodic | None:
    """The module's schedule, checked, or None for a task that is not periodic."""
    schedule = getattr(module, "schedule", None)
    if schedule is None:
        for attribute in ("schedule_timezone", "schedule_parameters"):
            if hasattr(module, attribute):
                raise TaskLoadError(f"{path}: {attribute} is set but schedule is not")
        return None
    try:
        cron = Cron.parse(schedule, getattr(module, "schedule_timezone", DEFAULT_TIMEZONE))
        parameters = check_parameters(getattr(module, "schedule_parameters", None))
    except ScheduleError as exc:
        message = str(exc)
        if message.startswith("parameters"):
            message = "schedule_" + message
        raise TaskLoadError(f"{path}: {message}") from None
    return Periodic(cron, dump_json(parameters))


def module_paths(folder: Path) -> list[Path]:
    """The task modules of a folder: every `*.py` not starting with `_`."""
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]


def try_load(path: Path, source: TaskSource | None = None) -> Task | BrokenTask:
    """The task, or why it cannot be used."""
    try:
        return load(path, source)
    except (Exception, SystemExit) as exc:  # a module may even call sys.exit()
        error = str(exc) if isinstance(exc, TaskLoadError) else f"{type(exc).__name__}: {exc}"
        return BrokenTask(path, error, traceback.format_exc())


def discover(where: Path | TaskSource) -> tuple[dict[str, Task], list[BrokenTask]]:
    """Every task of a folder or source, and the modules that failed to load
    (with why). Imports them in this process: the worker does it in a child
    (see probe)."""
    source = _as_source(where)
    tasks: dict[str, Task] = {}
    broken: list[BrokenTask] = []
    for path in source.module_paths():
        loaded = try_load(path, source)
        if isinstance(loaded, Task):
            tasks[loaded.name] = loaded
        else:
            broken.append(loaded)
    return tasks, broken
