"""pgcc: a job queue that lives entirely in PostgreSQL.

Everything a user touches is here, in `__all__`: the clients that schedule
jobs, the records they return, what a task's `run(params, ctx)` is given, and
the errors. The modules whose names start with `_` are pgcc's own insides and
may change in any release; `pgcc.errors` is public too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgcc._retry import Retry
from pgcc._states import JobState, TaskStatus
from pgcc.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    JobLost,
    ParameterTypeError,
    PgccError,
    ScheduleError,
    StaleTaskStateError,
    StepError,
    TaskStateError,
)

if TYPE_CHECKING:
    from pgcc._client import Client
    from pgcc._client_async import AsyncClient
    from pgcc._client_base import Job, Step
    from pgcc._runner import AsyncJobContext, JobContext
    from pgcc._taskstate import TaskState, TaskStates
    from pgcc._taskstate_async import AsyncTaskState, AsyncTaskStates

__all__ = [
    "AsyncClient",
    "AsyncJobContext",
    "AsyncTaskState",
    "AsyncTaskStates",
    "Client",
    "ConfigurationError",
    "DatabaseUnavailable",
    "Job",
    "JobContext",
    "JobLost",
    "JobState",
    "ParameterTypeError",
    "PgccError",
    "Retry",
    "ScheduleError",
    "StaleTaskStateError",
    "Step",
    "StepError",
    "TaskState",
    "TaskStateError",
    "TaskStates",
    "TaskStatus",
]

# Where each name that needs psycopg lives: imported on first use, not with
# the package, since `pgcc worker` starts its forkserver before that import.
_LAZY = {
    "AsyncClient": "pgcc._client_async",
    "Client": "pgcc._client",
    "Job": "pgcc._client_base",
    "Step": "pgcc._client_base",
    "AsyncJobContext": "pgcc._runner",
    "JobContext": "pgcc._runner",
    "AsyncTaskState": "pgcc._taskstate_async",
    "AsyncTaskStates": "pgcc._taskstate_async",
    "TaskState": "pgcc._taskstate",
    "TaskStates": "pgcc._taskstate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pgcc' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
