"""The SQL side of ctx.step (migration 0011), without a worker: step_begin and
record_step check the attempt's fencing token, record_step locks the job's
row to the step's commit (so a reap or hand-over racing the commit waits for
it, or wins and the step commits nothing), steps go with their job and outlive a
retry, and the roles get what they need."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

import pgcc
from pgcc._steps_base import JOB_LOST_SQLSTATE, JobSteps
from tests.helpers import call, grant

TOKEN = 4242


def q(schema: str, text: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(schema))


@pytest.fixture
def running(db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client
            ) -> Callable[[], int]:
    """make() -> the id of a job running under TOKEN, as a claim leaves it."""
    worker = db.execute(q(schema_name, "INSERT INTO {s}.workers (hostname, pid, tasks,"
                                       " concurrency, lease) VALUES ('h', 1, '{{t}}', 1,"
                                       " '30 s') RETURNING id")).fetchone()
    assert worker is not None

    def make() -> int:
        job_id = client.schedule_task("t")
        db.execute(q(schema_name, "UPDATE {s}.jobs SET state = 'running', attempts = 1,"
                                  " token = %s, worker_id = %s, started_at = now(),"
                                  " heartbeat_at = now() WHERE id = %s"),
                   [TOKEN, worker[0], job_id])
        return job_id
    return make


def begin(conn: psycopg.Connection[Any], schema: str, job_id: int, name: str,
          token: int = TOKEN) -> Any:
    row = conn.execute(q(schema, "SELECT {s}.step_begin(%s, %s, %s)"),
                       [job_id, token, name]).fetchone()
    assert row is not None
    return row[0]


def record(conn: psycopg.Connection[Any], schema: str, job_id: int, name: str,
           value: str | None = '{"ok": true}', token: int = TOKEN) -> None:
    conn.execute(q(schema, "SELECT {s}.record_step(%s, %s, %s, %s::jsonb)"),
                 [job_id, token, name, value])


def steps(db: psycopg.Connection[Any], schema: str, job_id: int) -> list[tuple[Any, ...]]:
    return db.execute(q(schema, "SELECT name, value, attempt, token FROM {s}.steps"
                                " WHERE job_id = %s ORDER BY name"), [job_id]).fetchall()


def set_job(db: psycopg.Connection[Any], schema: str, job_id: int, assignments: str) -> None:
    db.execute(q(schema, f"UPDATE {{s}}.jobs SET {assignments} WHERE id = %s"), [job_id])


def test_a_step_is_recorded_and_read_back(db: psycopg.Connection[Any], schema_name: str,
                                          running: Callable[[], int]) -> None:
    job_id = running()
    assert begin(db, schema_name, job_id, "charge") is None
    record(db, schema_name, job_id, "charge", '{"paid": 12.5}')
    record(db, schema_name, job_id, "none", "null")
    assert steps(db, schema_name, job_id) == [("charge", {"paid": 12.5}, 1, TOKEN),
                                              ("none", None, 1, TOKEN)]
    # Read back as JSON text: JSON null is a recorded value, SQL NULL is "not recorded".
    assert begin(db, schema_name, job_id, "charge") == '{"paid": 12.5}'
    assert begin(db, schema_name, job_id, "none") == "null"
    with pytest.raises(errors.UniqueViolation):
        record(db, schema_name, job_id, "charge")


@pytest.mark.parametrize(("change", "why"), [
    ("token = token + 1", "was handed to a newer attempt"),
    ("state = 'queued', worker_id = NULL", "is queued now"),
    ("cancel_requested_at = now()", "was cancelled"),
    ("state = 'done', worker_id = NULL", "is done now"),
])
def test_an_attempt_that_lost_its_job_records_nothing(
        db: psycopg.Connection[Any], schema_name: str, running: Callable[[], int],
        change: str, why: str) -> None:
    job_id = running()
    record(db, schema_name, job_id, "before")
    set_job(db, schema_name, job_id, change)
    for attempt in (lambda: begin(db, schema_name, job_id, "after"),
                    lambda: record(db, schema_name, job_id, "after")):
        with pytest.raises(psycopg.Error) as lost:
            attempt()
        assert lost.value.sqlstate == JOB_LOST_SQLSTATE
        assert lost.value.diag.message_primary == (
            f"job {job_id} {why}; this attempt has lost it and its step did not commit")
    assert [row[0] for row in steps(db, schema_name, job_id)] == ["before"]
    # A recorded step stays readable by anyone: it is done.
    assert begin(db, schema_name, job_id, "before") == '{"ok": true}'


def test_a_deleted_job_is_lost_too(db: psycopg.Connection[Any], schema_name: str) -> None:
    with pytest.raises(psycopg.Error) as lost:
        record(db, schema_name, 987654, "x")
    assert lost.value.sqlstate == JOB_LOST_SQLSTATE
    assert "job 987654 no longer exists" in str(lost.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("", "1", "step name must be a non-empty name"),
    ("x" * 201, "1", "step name is 201 characters long; the limit is 200"),
    ("a\tb", "1", "step name must be printable"),
    ("v", None, "a step's value must be JSON"),
])
def test_bad_names_and_values_are_refused(db: psycopg.Connection[Any], schema_name: str,
                                          running: Callable[[], int], name: str,
                                          value: str | None, message: str) -> None:
    job_id = running()
    with pytest.raises(errors.InvalidParameterValue, match=message):
        record(db, schema_name, job_id, name, value)
    assert steps(db, schema_name, job_id) == []


def test_a_value_over_the_parameters_limit_is_refused(
        db: psycopg.Connection[Any], schema_name: str, running: Callable[[], int]) -> None:
    job_id = running()
    db.execute(q(schema_name, "UPDATE {s}.settings SET value = '100'"
                              " WHERE key = 'max_parameters_bytes'"))
    with pytest.raises(errors.InvalidParameterValue, match="the limit is 100 bytes"):
        record(db, schema_name, job_id, "big", f'"{"x" * 200}"')
    record(db, schema_name, job_id, "small", '"x"')


# --- the fence against a racing reap or hand-over ----------------------------------------------

def test_a_reap_racing_the_commit_waits_for_it(
        db: psycopg.Connection[Any], pg_dsn: str, schema_name: str,
        running: Callable[[], int]) -> None:
    """record_step has passed its check: the job's row is locked to the step's
    commit, so the reaper's update waits, and then finds the step recorded."""
    job_id = running()
    with psycopg.connect(pg_dsn) as step, psycopg.connect(pg_dsn, autocommit=True) as reaper:
        record(step, schema_name, job_id, "charge")  # the transaction stays open
        reaper.execute("SET lock_timeout = '300ms'")
        with pytest.raises(errors.LockNotAvailable):
            set_job(reaper, schema_name, job_id, "state = 'queued', worker_id = NULL")
        step.commit()
        set_job(reaper, schema_name, job_id, "state = 'queued', worker_id = NULL")
    assert [row[0] for row in steps(db, schema_name, job_id)] == ["charge"]


def test_a_hand_over_that_commits_first_fails_the_step(
        db: psycopg.Connection[Any], pg_dsn: str, schema_name: str,
        running: Callable[[], int]) -> None:
    """The other order: the hand-over has updated the row and not committed
    yet; the step's record waits for it, then sees the new token and fails."""
    job_id = running()
    outcome: list[BaseException | None] = []
    with psycopg.connect(pg_dsn) as other, psycopg.connect(pg_dsn) as step:
        set_job(other, schema_name, job_id, "token = token + 1")  # not committed

        def record_step() -> None:
            try:
                record(step, schema_name, job_id, "charge")
                outcome.append(None)
            except psycopg.Error as exc:
                outcome.append(exc)

        thread = threading.Thread(target=record_step)
        thread.start()
        time.sleep(0.3)
        assert not outcome  # waiting for the hand-over's commit
        other.commit()
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], psycopg.Error)
        assert outcome[0].sqlstate == JOB_LOST_SQLSTATE
        step.rollback()
    assert steps(db, schema_name, job_id) == []


def test_a_step_in_progress_does_not_hold_up_heartbeats_or_a_reap(
        db: psycopg.Connection[Any], pg_dsn: str, schema_name: str,
        running: Callable[[], int]) -> None:
    """Between step_begin and record_step the task's fn runs, for as long as it
    takes: the job's row is not locked meanwhile (the heartbeat updates it)."""
    job_id = running()
    with psycopg.connect(pg_dsn) as step, psycopg.connect(pg_dsn, autocommit=True) as other:
        assert begin(step, schema_name, job_id, "charge") is None
        other.execute("SET lock_timeout = '300ms'")
        set_job(other, schema_name, job_id, "heartbeat_at = now()")
        set_job(other, schema_name, job_id, "state = 'queued', worker_id = NULL")
        with pytest.raises(psycopg.Error) as lost:
            record(step, schema_name, job_id, "charge")
        assert lost.value.sqlstate == JOB_LOST_SQLSTATE


# --- with the job -----------------------------------------------------------------------------

def test_steps_are_deleted_with_their_job(db: psycopg.Connection[Any], schema_name: str,
                                          running: Callable[[], int]) -> None:
    job_id = running()
    record(db, schema_name, job_id, "charge")
    db.execute(q(schema_name, "DELETE FROM {s}.jobs WHERE id = %s"), [job_id])
    assert steps(db, schema_name, job_id) == []


def test_a_retried_job_keeps_its_steps_and_resumes_after_them(
        db: psycopg.Connection[Any], schema_name: str, running: Callable[[], int],
        client: pgcc.Client) -> None:
    """A job that failed midway and is retried does not do again what committed."""
    job_id = running()
    record(db, schema_name, job_id, "charge", '{"paid": 1}')
    set_job(db, schema_name, job_id,
            "state = 'failed', worker_id = NULL, finished_at = now()")
    assert client.retry_job(job_id)
    job = client.get_job(job_id)
    assert job is not None and (job.state, job.attempts) == ("queued", 0)
    assert [(s.name, s.value, s.attempt) for s in client.get_steps(job_id)] == [
        ("charge", {"paid": 1}, 1)]
    # Its next claim finds the charge recorded, and records the rest.
    set_job(db, schema_name, job_id, f"state = 'running', attempts = 1, token = {TOKEN + 1},"
                                     " worker_id = 1")
    assert begin(db, schema_name, job_id, "charge", TOKEN + 1) == '{"paid": 1}'
    assert begin(db, schema_name, job_id, "mail", TOKEN + 1) is None
    record(db, schema_name, job_id, "mail", "true", TOKEN + 1)
    assert [s.name for s in client.get_steps(job_id)] == ["charge", "mail"]


# --- roles ------------------------------------------------------------------------------------

def test_a_worker_role_uses_steps_and_others_may_not(
        pg_dsn: str, schema_name: str, login_role: Any, running: Callable[[], int]) -> None:
    job_id = running()
    worker_role, worker_dsn = login_role()
    grant(pg_dsn, schema_name, "worker", worker_role)
    with psycopg.connect(worker_dsn, autocommit=True) as conn:
        assert begin(conn, schema_name, job_id, "a") is None
        record(conn, schema_name, job_id, "a")
    enqueue_role, enqueue_dsn = login_role()
    grant(pg_dsn, schema_name, "enqueue", enqueue_role)
    for query in ("SELECT {}.step_begin(1, 1, 'a')",
                  "SELECT {}.record_step(1, 1, 'a', '1')",
                  "SELECT name FROM {}.steps"):
        with pytest.raises(errors.InsufficientPrivilege):
            call(enqueue_dsn, schema_name, query)
    read_role, read_dsn = login_role()
    grant(pg_dsn, schema_name, "read", read_role)
    assert call(read_dsn, schema_name, "SELECT count(*) FROM {}.steps") == 1
    with pytest.raises(errors.InsufficientPrivilege):
        call(read_dsn, schema_name, "SELECT {}.record_step(1, 1, 'a', '1')")


# --- the child's side on a real connection (pgcc/_steps.py), without a worker -----------------

def test_the_child_side_runs_records_replays_and_rolls_back(
        db: psycopg.Connection[Any], pg_dsn: str, schema_name: str,
        running: Callable[[], int]) -> None:
    from pgcc import _steps

    job_id = running()
    db.execute(q(schema_name, "CREATE TABLE {s}.effects (n integer)"))
    insert = q(schema_name, "INSERT INTO {s}.effects VALUES (1)")
    calls: list[str] = []

    def effect(conn: psycopg.Connection[Any]) -> dict[str, int]:
        calls.append("ran")
        conn.execute(insert)
        return {"n": 1}

    def count() -> int:
        return int(call(pg_dsn, schema_name, "SELECT count(*) FROM {}.effects"))

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        first = JobSteps(schema_name, job_id, TOKEN, None)
        assert _steps.run(first, lambda: conn, "charge", effect) == {"n": 1}
        # A later attempt gets the recorded value; fn does not run again.
        again = JobSteps(schema_name, job_id, TOKEN, None)
        assert _steps.run(again, lambda: conn, "charge", effect) == {"n": 1}
        assert calls == ["ran"] and count() == 1

        def fails(conn: psycopg.Connection[Any]) -> None:
            conn.execute(insert)
            raise RuntimeError("card declined")

        with pytest.raises(RuntimeError, match="card declined"):
            _steps.run(first, lambda: conn, "declined", fails)

        def commits(conn: psycopg.Connection[Any]) -> None:
            conn.execute("COMMIT")

        with pytest.raises(pgcc.StepError, match="fn ended the step's transaction itself"):
            _steps.run(first, lambda: conn, "commits", commits)

        def swallows(conn: psycopg.Connection[Any]) -> int:
            conn.execute(insert)
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
            return 1

        with pytest.raises(pgcc.StepError, match="a statement failed inside fn and fn went on"):
            _steps.run(first, lambda: conn, "swallows", swallows)

        def savepoint(conn: psycopg.Connection[Any]) -> int:
            conn.execute(insert)
            with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
                conn.execute("SELECT 1/0")
            return 2

        # conn.transaction() in fn is a savepoint inside the step's transaction.
        assert _steps.run(first, lambda: conn, "savepoint", savepoint) == 2
        assert count() == 2
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert [row[0] for row in steps(db, schema_name, job_id)] == ["charge", "savepoint"]

        set_job(db, schema_name, job_id, "token = token + 1")
        with pytest.raises(pgcc.JobLost, match=f"job {job_id} was handed to a newer attempt"):
            _steps.run(first, lambda: conn, "late", effect)
        # Stopped at the step's start: fn did not even run.
        assert first.lost is not None and count() == 2 and calls == ["ran"]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_step_reconnects_when_its_kept_connection_died_while_idle(
        db: psycopg.Connection[Any], pg_dsn: str, schema_name: str,
        running: Callable[[], int]) -> None:
    from pgcc import _steps

    job_id = running()
    opened: list[psycopg.Connection[Any]] = []

    def connection() -> psycopg.Connection[Any]:  # as the child keeps its connection
        if not opened or opened[-1].closed or opened[-1].broken:
            opened.append(psycopg.connect(pg_dsn, autocommit=True))
        return opened[-1]

    job = JobSteps(schema_name, job_id, TOKEN, None)
    assert _steps.run(job, connection, "a", lambda conn: 1) == 1
    db.execute("SELECT pg_terminate_backend(%s)", [opened[0].info.backend_pid])
    assert _steps.run(job, connection, "b", lambda conn: 2) == 2
    assert len(opened) == 2
    assert [row[0] for row in steps(db, schema_name, job_id)] == ["a", "b"]
    for conn in opened:
        conn.close()
