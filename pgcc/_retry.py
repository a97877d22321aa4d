"""A task asking for another attempt: `raise pgcc.Retry(...)`, or an exception
listed in its module's `retry_on`.

Only the child's side lives here: what the task raised becomes an error text
and a delay. Which state the job then takes and when it runs again (queued
after the delay or the backoff; `failed` once its attempts are used up) is
decided in one place, the `retry` query (sql/queries.sql).
"""

from __future__ import annotations

import datetime as dt
import traceback

from pgcc._validation import check_timing
from pgcc.errors import PgccError


class Retry(PgccError):
    """Raised inside a task's `run`: run the job again.

    `after` is milliseconds (an int) or a `datetime.timedelta`, as for
    `schedule_task`; without it the usual backoff applies (about 1 s,
    doubling per attempt, at most 5 minutes). `reason` is kept as the
    attempt's error. The retry counts towards the job's `max_attempts`: once
    they are used up the job ends `failed` with this error.
    """

    def __init__(self, reason: str = "", *, after: int | dt.timedelta | None = None) -> None:
        if not isinstance(reason, str):
            raise TypeError(f"Retry: reason must be a string, not {type(reason).__name__}")
        # Checked here, where the task raises it: a wrong delay is the task's bug.
        _, self.after = check_timing(None, after)
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return describe(self)


def describe(retry: Retry) -> str:
    """The first line of the error an asked-for retry records."""
    when = "with the usual backoff" if retry.after is None else f"after {retry.after} ms"
    return f"the task asked for a retry {when}" + (f": {retry.reason}" if retry.reason else "")


def asked_retry(exc: BaseException, retry_on: tuple[type[BaseException], ...]
                ) -> tuple[str, int | None] | None:
    """The error text and delay (ms; None: the backoff) if `exc` asks for a
    retry; None if it is a plain failure. Called in the `except` block."""
    if isinstance(exc, Retry):
        return f"{describe(exc)}\n\n{traceback.format_exc()}", exc.after
    if retry_on and isinstance(exc, retry_on):
        return f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}", None
    return None

