"""The SQL doors that act on one job: cancel_job (queued and running jobs) and
retry_job (finished jobs), as a SQL client and a worker see them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

import pgcc
from pgcc._queries import Queries, for_schema, queue_lock_space
from tests.helpers import call, grant
from tests.workers import finish_as_worker


class Worker:
    """Runs the worker's named queries as one registered worker of task t."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.queries: Queries = for_schema(schema)
        self.space = queue_lock_space(schema)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.id = self.run("register_worker", hostname="test", pid=1, tasks=["t"],
                           concurrency=1, lease=30)[0][0]

    def run(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        params.setdefault("queue_lock_space", self.space)
        return self.conn.execute(self.queries[name], params).fetchall()

    def claim(self, limit: int = 1) -> dict[int, int]:
        """{job id: token} of the jobs claimed."""
        self.run("take_in_touched_queues", batch=1000)
        rows = self.run("claim", worker=self.id, tasks=["t"], max_attempts=[3],
                        limit=limit, head_limit=limit, head_scan=2 * limit + 8,
                        free_after_run_at="-infinity", free_after_id=0)
        return {row[0]: row[6] for row in rows}

    def held(self) -> set[int]:
        return set(self.run("heartbeat", worker=self.id)[0][1])

    def no_response(self, job: int, token: int) -> list[tuple[Any, ...]]:
        with self.conn.transaction():
            moved = self.run("retry", worker=self.id, ids=[job], tokens=[token],
                             reasons=["killed"], delays=[None], asked=[False])
            self.run("refresh_heads", ids=[job], tokens=[token])
        return moved

    def finish(self, job: int, token: int, state: str = "done") -> list[tuple[Any, ...]]:
        return finish_as_worker(self.conn, self.queries, self.id,
                                [[job, token, state, '"r"' if state == "done" else None,
                                  None if state == "done" else "boom"]])


@pytest.fixture
def worker(pg_dsn: str, schema_name: str) -> Iterator[Worker]:
    w = Worker(pg_dsn, schema_name)
    yield w
    w.conn.close()


def sql_call(db: psycopg.Connection[Any], schema: str, function: str, job: int) -> Any:
    row = db.execute(f'SELECT "{schema}".{function}(%s)', [job]).fetchone()
    assert row is not None
    return row[0]


def state(client: pgcc.Client, job: int) -> str:
    found = client.get_job(job)
    assert found is not None
    return str(found.state)


def test_cancel_and_retry_answer_false_not_null_for_an_unknown_job(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    assert sql_call(db, schema_name, "cancel_job", 424242) is False
    assert sql_call(db, schema_name, "retry_job", 424242) is False


def test_cancel_of_a_finished_job_is_false_and_changes_nothing(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker) -> None:
    job = client.schedule_task("t", {})
    (token,) = worker.claim().values()
    worker.finish(job, token)
    assert sql_call(db, schema_name, "cancel_job", job) is False
    assert state(client, job) == "done"


def test_a_running_job_stays_running_until_its_worker_stops_it_then_ends_cancelled(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker) -> None:
    job = client.schedule_task("t", {}, queue="q")
    behind = client.schedule_task("t", {}, queue="q")
    (token,) = worker.claim().values()
    assert worker.held() == {job}
    assert sql_call(db, schema_name, "cancel_job", job) is True
    # Still running, its queue still locked: the child is not gone yet.
    assert state(client, job) == "running"
    assert worker.claim() == {}
    # The heartbeat no longer gives the job to its worker, which stops it.
    assert worker.held() == set()
    # Asking again while it stops is still a yes.
    assert sql_call(db, schema_name, "cancel_job", job) is True
    # The child is gone: its no-response ends the job cancelled, not retried.
    assert worker.no_response(job, token) == [(job, "cancelled")]
    found = client.get_job(job)
    assert found is not None
    assert (found.state, found.error) == ("cancelled", "cancelled while running")
    assert found.finished_at is not None
    # Only now does the queue go on.
    assert list(worker.claim()) == [behind]


def test_a_cancelled_running_job_of_a_dead_worker_is_reaped_as_cancelled(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker) -> None:
    job = client.schedule_task("t", {})
    worker.claim()
    assert sql_call(db, schema_name, "cancel_job", job) is True
    db.execute(f'UPDATE "{schema_name}".workers SET heartbeat_at = now() - interval \'1 h\'')
    worker.run("reap")
    assert state(client, job) == "cancelled"


def test_a_running_job_that_answers_before_it_is_stopped_keeps_its_answer(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker) -> None:
    job = client.schedule_task("t", {})
    (token,) = worker.claim().values()
    assert sql_call(db, schema_name, "cancel_job", job) is True
    worker.finish(job, token)
    assert state(client, job) == "done"


def test_cancel_wakes_the_workers(pg_dsn: str, db: psycopg.Connection[Any],
                                  schema_name: str, client: pgcc.Client,
                                  worker: Worker) -> None:
    job = client.schedule_task("t", {})
    worker.claim()
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "pgcc.{schema_name}"')
        assert sql_call(db, schema_name, "cancel_job", job) is True
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert payloads == ["cancel"]


@pytest.mark.parametrize("ending", ["done", "failed", "dead", "cancelled"])
def test_retry_puts_a_finished_job_back_with_full_attempts_and_its_history(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker, ending: str) -> None:
    job = client.schedule_task("t", {"n": 1})
    if ending == "cancelled":
        assert sql_call(db, schema_name, "cancel_job", job) is True
    else:
        for _ in range(3 if ending == "dead" else 1):
            (token,) = worker.claim().values()
            if ending == "dead":
                worker.no_response(job, token)
                db.execute(f'UPDATE "{schema_name}".jobs SET run_at = now() WHERE id = %s',
                           [job])
            else:
                worker.finish(job, token, ending)
    before = client.get_job(job)
    assert before is not None and before.state == ending
    assert sql_call(db, schema_name, "retry_job", job) is True
    after = db.execute(
        f'SELECT state, attempts, error, result, finished_at, started_at, worker_id, '
        f'attempt_errors, history, run_at <= now() FROM "{schema_name}".jobs WHERE id = %s',
        [job]).fetchone()
    assert after is not None
    (now_state, attempts, error, result, finished_at, started_at, worker_id, attempt_errors,
     history, due) = after
    assert (now_state, attempts, error, result, finished_at, started_at, worker_id,
            attempt_errors, due) == ("queued", 0, None, None, None, None, None, [], True)
    assert len(history) == 1
    assert history[0]["state"] == ending
    assert history[0]["error"] == before.error
    assert history[0]["result"] == before.result
    assert history[0]["attempts"] == before.attempts
    # It runs again, with a full max_attempts and a token no claim had.
    (token,) = worker.claim().values()
    again = client.get_job(job)
    assert again is not None and (again.state, again.attempts) == ("running", 1)
    assert worker.finish(job, token) == [(job,)]
    assert state(client, job) == "done"


def test_retry_of_a_job_that_is_not_finished_is_false_and_changes_nothing(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker) -> None:
    queued = client.schedule_task("t", {}, after=60_000)
    running = client.schedule_task("t", {})
    worker.claim()
    assert sql_call(db, schema_name, "retry_job", queued) is False
    assert sql_call(db, schema_name, "retry_job", running) is False
    assert (state(client, queued), state(client, running)) == ("queued", "running")


def test_a_retried_job_goes_behind_the_jobs_waiting_in_its_queue(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        worker: Worker) -> None:
    first = client.schedule_task("t", {}, queue="q")
    (token,) = worker.claim().values()
    worker.finish(first, token, "failed")
    # Two jobs came after it: one runs, one waits; the retried job goes last.
    second = client.schedule_task("t", {}, queue="q")
    third = client.schedule_task("t", {}, queue="q")
    (token,) = worker.claim().values()
    assert sql_call(db, schema_name, "retry_job", first) is True
    order = []
    running = second
    for _ in range(2):
        worker.finish(running, token)
        claimed = worker.claim()
        assert len(claimed) == 1
        ((running, token),) = claimed.items()
        order.append(running)
    assert order == [third, first]


def test_retry_wakes_the_workers(pg_dsn: str, db: psycopg.Connection[Any],
                                 schema_name: str, client: pgcc.Client) -> None:
    job = client.schedule_task("t", {})
    assert sql_call(db, schema_name, "cancel_job", job) is True
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "pgcc.{schema_name}"')
        assert sql_call(db, schema_name, "retry_job", job) is True
        assert len(list(listener.notifies(timeout=2, stop_after=1))) == 1


def test_retry_is_an_operators_door_not_an_enqueuers(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str, login_role: Any,
        client: pgcc.Client) -> None:
    job = client.schedule_task("t", {})
    assert sql_call(db, schema_name, "cancel_job", job) is True
    _, nobody_dsn = login_role()
    enqueuer, enqueuer_dsn = login_role()
    operator, operator_dsn = login_role()
    grant(pg_dsn, schema_name, "enqueue", enqueuer)
    grant(pg_dsn, schema_name, "worker", operator)
    for dsn in (nobody_dsn, enqueuer_dsn):
        with pytest.raises(errors.InsufficientPrivilege):
            call(dsn, schema_name, f"SELECT {{}}.retry_job({job})")
    assert call(operator_dsn, schema_name, f"SELECT {{}}.retry_job({job})") is True
    # The enqueue role may still cancel: the job is queued again.
    assert call(enqueuer_dsn, schema_name, f"SELECT {{}}.cancel_job({job})") is True
