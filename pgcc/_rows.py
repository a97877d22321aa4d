"""The rows of the worker's and the reaper's queries (sql/queries.sql), read
by column name into these records (pgcc._database.named_row): a query's
columns may move, and a column renamed or missing fails loudly."""

from __future__ import annotations

from typing import NamedTuple

from pgcc._database import named_row


class ClaimedRow(NamedTuple):
    """A job that starts on this worker: the claim's rows (start_jobs)."""

    id: int
    task: str
    parameters: str  # JSON text, decoded by the child
    queue: str | None
    attempts: int
    run_at: str  # as text: the claim's next position (see the claim query)
    token: int
    timeout: float | None = None  # the job's own; None: its task module's
    # Only rows of priority 0 move the claim's position (see the claim).
    priority: int = 0


class HandedRow(NamedTuple):
    """finish_in_queues: each job finished (started false, only id set), then
    each queue's next job started on this worker, as the claim returns it."""

    started: bool
    id: int
    task: str
    parameters: str
    queue: str | None
    attempts: int
    run_at: str
    token: int
    timeout: float | None = None
    priority: int | None = None


class IdRow(NamedTuple):
    """finish, release: the jobs whose outcome was written (not fenced off)."""

    id: int


class RetriedRow(NamedTuple):
    """retry: the jobs written, each now queued (retried) or dead."""

    id: int
    state: str  # a JobState's value


class RunningRow(NamedTuple):
    """running_of_worker: the jobs the database gives this worker."""

    id: int
    token: int


class HeartbeatRow(NamedTuple):
    """heartbeat: the worker renewed, and the jobs it still holds."""

    id: int
    job_ids: list[int]
    tokens: list[int]


class ReapRow(NamedTuple):
    requeued: int
    dead: int
    workers_removed: int


CLAIMED = named_row(ClaimedRow)
HANDED = named_row(HandedRow)
IDS = named_row(IdRow)
RETRIED = named_row(RetriedRow)
RUNNING = named_row(RunningRow)
HEARTBEAT = named_row(HeartbeatRow)
REAPED = named_row(ReapRow)
