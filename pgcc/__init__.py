"""pgcc: a job queue that lives entirely in PostgreSQL."""

from pgcc.client import AsyncClient, Client, Job
from pgcc.errors import (
    ConfigurationError,
    ParameterTypeError,
    PgccError,
    ScheduleError,
    StaleTaskStateError,
    TaskStateError,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigurationError",
    "Job",
    "ParameterTypeError",
    "PgccError",
    "ScheduleError",
    "StaleTaskStateError",
    "TaskStateError",
]
