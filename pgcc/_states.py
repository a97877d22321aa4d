"""The states a job and a task state row can be in: one definition each, for
the client, the worker and `pgcc status` alike. The jobs and taskstate tables
check the same values (tests/test_states.py holds the two to each other)."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """The `state` column of the jobs table."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    # Equal to its value, and so hashed like it: a member and its text are one
    # key in a set or a dict.
    __hash__ = str.__hash__

    @property
    def finished(self) -> bool:
        """A job in this state never runs again (the reaper prunes it after the retention)."""
        return self in FINISHED


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.DEAD, JobState.CANCELLED})


class TaskStatus(str, enum.Enum):
    """The `status` column of the taskstate table."""

    PENDING = "pending"
    STARTED = "started"
    COMPLETE = "complete"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    # Equal to its value, and so hashed like it: a member and its text are one
    # key in a set or a dict.
    __hash__ = str.__hash__
