"""ctx.step: a task's database effect, exactly once (migration 0011).

A step runs `fn(conn)` in one transaction; the same transaction checks that
the attempt still owns its job and records the step with fn's value, so the
writes and the record commit together or not at all. The SQL side is in the
schema (step_begin, record_step); this is the child's side.

A step costs no round trip more than the same transaction written by hand:
the connection is in autocommit mode and pgcc sends the transaction's BEGIN
together with the step's start ("BEGIN; SELECT step_begin(...)") and its
COMMIT together with the record ("SELECT record_step(...); COMMIT"), each as
one simple-protocol message: when the record is refused, PostgreSQL skips
the COMMIT that follows it and the transaction is rolled back. fn's own
statements run inside that transaction, and `conn.transaction()` in fn makes
a savepoint.

One connection per child serves every step of its jobs (a sync one for sync
tasks, an async one for async tasks): not the client's pool, which fn may
use meanwhile (ctx.schedule_task) and which would wait for itself.

This module is the bookkeeping of a job's steps (no I/O); a step's run is in
pgcc._steps_async, the source of pgcc._steps (scripts/async_to_sync.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from pgcc._validation import check_name, dump_value
from pgcc.errors import JobLost, ScheduleError, StepError

# The SQLSTATE step_begin and record_step raise when the attempt has lost its job.
JOB_LOST_SQLSTATE = "PC001"


@dataclass
class JobSteps:
    """The steps of one run of a job, as its child sees them."""

    schema: str
    job_id: int
    token: int
    # The most bytes a step's value may take as JSON (max_parameters_bytes).
    max_value_bytes: int | None
    done: set[str] = field(default_factory=set)
    running: str | None = None
    # Set once a step found the job lost: the child answers nothing for it.
    lost: JobLost | None = None

    def start(self, name: object) -> str:
        """The checked name of a step about to run."""
        try:
            checked = check_name("step name", name)
        except ScheduleError as exc:
            raise StepError(str(exc)) from None
        if self.running is not None:
            raise StepError(f"step {checked!r} started inside step {self.running!r}: "
                            "steps do not nest (nor run at once in one job)")
        if checked in self.done:
            raise StepError(f"step {checked!r} has already run in this job: "
                            "step names are unique within a job")
        self.running = checked
        return checked

    def dump(self, name: str, value: object) -> str:
        """The step's value as JSON text: refused, like parameters, when it
        does not survive JSON or is larger than the parameters' limit."""
        text = dump_value(value, f"step {name!r} value")
        limit = self.max_value_bytes
        if limit is not None and len(text) > limit // 4:  # exact only when it may matter
            size = len(text.encode("utf-8"))
            if size > limit:
                raise ScheduleError(
                    f"step {name!r} value is {size} bytes as JSON; the limit is {limit} "
                    "bytes (the parameters limit, max_parameters_bytes): store large "
                    "data elsewhere and return its id")
        return text

    def begin_sql(self, name: str) -> sql.Composed:
        return sql.SQL("BEGIN; SELECT {}.step_begin({}, {}, {})").format(
            sql.Identifier(self.schema), sql.Literal(self.job_id), sql.Literal(self.token),
            sql.Literal(name))

    def record_sql(self, name: str, value: str) -> sql.Composed:
        return sql.SQL("SELECT {}.record_step({}, {}, {}, {}::jsonb); COMMIT").format(
            sql.Identifier(self.schema), sql.Literal(self.job_id), sql.Literal(self.token),
            sql.Literal(name), sql.Literal(value))

    def lose(self, exc: psycopg.Error) -> JobLost:
        """JobLost for the database's word that the job is lost; remembered,
        should the task swallow it."""
        self.lost = JobLost(exc.diag.message_primary or str(exc))
        return self.lost

    def in_transaction(self, name: str, status: TransactionStatus) -> None:
        """fn must leave the step's transaction open, and usable."""
        if status == TransactionStatus.INERROR:
            raise StepError(
                f"step {name!r}: a statement failed inside fn and fn went on; nothing of the "
                "step commits (use `with conn.transaction():` in fn to recover from an error)")
        if status != TransactionStatus.INTRANS:
            raise StepError(
                f"step {name!r}: fn ended the step's transaction itself (commit or rollback); "
                "a step commits its writes with its record, so fn must not")
