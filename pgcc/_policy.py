"""One error policy for every database call a worker makes, by class of error.

- CONNECTION: the session is unusable or the server cannot take writes here
  (network, shutdown, a read-only node after a failover): drop the connection,
  reconnect with backoff, and send again what was not confirmed.
- JOB: the data of one job is at fault (it cannot be encoded, decoded or
  stored): that job ends `failed` with the error, the others go on.
- OTHER: anything else (a missing privilege, a lock timeout, a bug in SQL):
  logged with the statement's name and retried with backoff; what was to be
  written stays pending, so no outcome is lost.

`Backoff` spaces the retries of whatever keeps failing.
"""

from __future__ import annotations

import enum
import random

import psycopg

# SQLSTATEs that mean "this session cannot do the work; another one may".
_CONNECTION_STATES = frozenset({
    "25006",  # read_only_sql_transaction: a standby, or a primary turned standby
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "57P05",  # idle_session_timeout
    "53300",  # too_many_connections
})
# Classes whose errors come from the values sent or read, not the session.
_JOB_CLASSES = ("22", "54")  # data exception, program limit exceeded


class ErrorClass(enum.Enum):
    CONNECTION = "connection"
    JOB = "job"
    OTHER = "other"


def classify(exc: BaseException) -> ErrorClass:
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:
            # Raised by the driver itself: a lost or unusable connection, or a
            # value it could not convert.
            if isinstance(exc, psycopg.DataError):
                return ErrorClass.JOB
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                return ErrorClass.CONNECTION
            return ErrorClass.OTHER
        if state.startswith("08") or state in _CONNECTION_STATES:
            return ErrorClass.CONNECTION
        if state.startswith(_JOB_CLASSES):
            return ErrorClass.JOB
        return ErrorClass.OTHER
    if isinstance(exc, UnicodeError | OverflowError | ValueError | TypeError):
        # Raised while adapting a value for the driver.
        return ErrorClass.JOB
    if isinstance(exc, OSError):
        return ErrorClass.CONNECTION
    return ErrorClass.OTHER


def describe(exc: BaseException) -> str:
    """The error on one line, with its SQLSTATE when it has one."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{line} [{state}]" if state else line


class Backoff:
    """Delays between retries of something that keeps failing: from `first`,
    doubling, capped at `cap`, with jitter so that many workers spread out."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._failures = 0

    def next_delay(self) -> float:
        # The exponent is bounded, so the arithmetic cannot overflow.
        delay = min(self._cap, self._first * 2 ** min(self._failures, 30))
        self._failures += 1
        return float(delay * random.uniform(0.8, 1.0))

    def reset(self) -> None:
        self._failures = 0

    @property
    def failing(self) -> bool:
        return self._failures > 0
