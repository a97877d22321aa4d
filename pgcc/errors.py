"""The errors pgcc raises: one small hierarchy rooted at PgccError."""

from __future__ import annotations


class PgccError(Exception):
    """Base of every error pgcc raises on purpose."""


class ScheduleError(PgccError, ValueError):
    """A job was refused at schedule time; nothing was written."""


class ParameterTypeError(ScheduleError, TypeError):
    """A parameter value is of a type that does not survive JSON."""


class ConfigurationError(PgccError, ValueError):
    """A setting (DSN, schema, tasks folder, option) is wrong."""


class TaskStateError(PgccError, ValueError):
    """A task state was given a wrong value."""


class StaleTaskStateError(PgccError):
    """A task state was saved by someone else since it was read."""


class UnknownJobError(PgccError, LookupError):
    """No job has this id (it never existed, or was pruned after it finished)."""


class JobFilterError(PgccError, ValueError):
    """A job list or action was given a wrong filter (an unknown state, a bad limit)."""


class DatabaseUnavailable(PgccError):
    """The database cannot be used: unreachable, login refused, no database
    configured, or a schema without pgcc's tables (run `pgcc migrate`)."""


class StepError(PgccError, ValueError):
    """A step (ctx.step) was used wrongly: a bad or repeated name, steps
    nested, or a function that ended the step's transaction itself."""


class JobLost(BaseException):
    """This attempt no longer owns its job (reaped, cancelled, or handed to a
    newer attempt): its step did not commit, and the task is stopped.

    A BaseException, like asyncio.CancelledError: a task's `except Exception`
    cannot swallow it. The worker records nothing for this attempt; the job's
    newer owner (or its cancellation) decides what becomes of it."""
