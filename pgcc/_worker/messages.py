"""What the worker and its children say to each other, and what becomes of a job.

Every message is a typed record. The worker sends a child lists of
`JobOrder`s (or `SHUTDOWN`); a child says `Ready` once, then one `Answer` per
job it ran. Inside the worker, what a job's run came to travels to the
database as one of the `Outcome` records.
"""

from __future__ import annotations

from typing import NamedTuple

# Defined with the client's: one enum of job states (re-exported here).
from pgcc._states import JobState


class JobOrder(NamedTuple):
    """Worker to child: run this job."""

    id: int
    task: str
    parameters: str  # JSON text, decoded by the child
    attempt: int
    queue: str | None
    # The fencing token of this claim: every outcome of it is conditional on it.
    token: int
    # The job's own timeout in seconds; None: its task module's (or the worker's).
    timeout: float | None = None
    # Higher runs first among the jobs a claim hands over at once.
    priority: int = 0


class Ready(NamedTuple):
    """Child to worker, once: up, its tasks imported; it may be sent jobs."""

    pid: int


class Answer(NamedTuple):
    """Child to worker: a job's response (`done` or `failed`) and its run time;
    or `queued`: the task asked for another attempt (pgcc.Retry, or an
    exception of its module's retry_on), after `retry_after` ms or the backoff."""

    id: int
    attempt: int
    state: JobState
    result: str | None  # JSON text
    error: str | None
    ran: float  # seconds, measured in the child
    retry_after: int | None = None


# Worker to child: finish the current list, then exit.
SHUTDOWN = None


class Response(NamedTuple):
    """The job answered: it ends `done` or `failed`. Outcomes carry the
    fencing token of the claim they belong to."""

    id: int
    token: int
    state: JobState
    result: str | None
    error: str | None
    # The job's queue: its next job may go on in the same write.
    queue: str | None = None


class NoResponse(NamedTuple):
    """The job's run ended without an answer: it is retried after a backoff, or dead."""

    id: int
    token: int
    reason: str


class AskedRetry(NamedTuple):
    """The task asked for another attempt: queued again after `after` ms (None:
    the backoff), or `failed` once its attempts are used up. Written with the
    no-responses, by the same rules (the retry query)."""

    id: int
    token: int
    reason: str
    after: int | None


class PutBack(NamedTuple):
    """The job goes back to the queue at once: a graceful stop, or it never started."""

    id: int
    token: int
    started: bool


Outcome = Response | NoResponse | AskedRetry | PutBack

__all__ = ["SHUTDOWN", "Answer", "AskedRetry", "JobOrder", "JobState", "NoResponse", "Outcome",
           "PutBack", "Ready", "Response"]
