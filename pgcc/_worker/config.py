"""A worker's settings and the timing rules its parts share."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgcc._database import LINK_CONNECT_TIMEOUT
from pgcc._tasks import TaskInfo, TaskSource

# Share of the lease after which a worker that could not renew it stops its jobs.
FENCE_AT = 0.8
# Share of the lease after which a child stops its own job if the worker has not:
# a frozen worker (SIGSTOP, a paused machine) cannot, and its lease runs out.
CHILD_FENCE_AT = 0.9
# A worker with an older renewal than this share of its lease claims nothing new.
CLAIM_UNTIL = 0.5
# A child's line may hold about this much typical work (seconds) behind the job
# it runs, so that it need not wait a round trip between short jobs, while a
# job that waits there waits about this long at most.
PREFETCH_BUDGET = 0.005
# The most jobs a child's line may hold, whatever the budget: enough that a
# child running jobs of a few dozen microseconds need not wait a round trip
# (W3 at 8 drained at about 0.6 of its rate at 32).
DEFAULT_PREFETCH = 32
# How long a child that was told to stop has before it is killed.
CHILD_EXIT_GRACE = 2.0
# Answers not yet written, past which the worker claims nothing new until they are.
MAX_PENDING_OUTCOMES = 10_000


@dataclass(frozen=True)
class WorkerConfig:
    dsn: str
    schema: str
    source: TaskSource
    concurrency: int
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    timeout: float = 600.0
    lease: float = 30.0
    grace: float = 30.0
    reaper: bool = True
    # Seconds finished jobs are kept; None: the schema's setting retention_seconds.
    retention: float | None = None
    poll_interval: float = 1.0
    log_parameters: bool = False
    prefetch: int = DEFAULT_PREFETCH
    # --reload: pick up new and changed task modules (pgcc._worker.reload).
    reload: bool = False

    @property
    def task_names(self) -> list[str]:
        return sorted(self.tasks)

    def stall_limit(self) -> float:
        """How long a part may go without progress before the worker gives up on
        it: a lease, and the time a connection attempt may take, for a part that
        waits on an unreachable server is not stuck (its calls are cut after half
        a lease, and its connection attempts end after LINK_CONNECT_TIMEOUT)."""
        return self.lease + LINK_CONNECT_TIMEOUT + 1
