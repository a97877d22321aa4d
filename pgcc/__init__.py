"""pgcc: a job queue that lives entirely in PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgcc.errors import (
    ConfigurationError,
    ParameterTypeError,
    PgccError,
    ScheduleError,
    StaleTaskStateError,
    TaskStateError,
)
from pgcc.states import JobState, TaskStatus

if TYPE_CHECKING:
    from pgcc.client import AsyncClient, Client, Job

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigurationError",
    "Job",
    "JobState",
    "ParameterTypeError",
    "PgccError",
    "ScheduleError",
    "StaleTaskStateError",
    "TaskStateError",
    "TaskStatus",
]

_CLIENT_NAMES = frozenset({"AsyncClient", "Client", "Job"})


def __getattr__(name: str) -> Any:
    # The client (and psycopg with it) is imported on first use, not with the
    # package: `pgcc worker` starts its forkserver before that import.
    if name in _CLIENT_NAMES:
        from pgcc import client

        return getattr(client, name)
    raise AttributeError(f"module 'pgcc' has no attribute {name!r}")
