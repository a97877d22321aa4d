"""The rules of a retry, in the one place they live (the `retry` query): a
retry the task asked for goes back to queued after its delay or the backoff,
keeping its queue's place; at the last attempt it ends failed, where a run
without a response ends dead. A worker's queries run by hand, real database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgcc
from tests.helpers import q
from tests.integration.test_job_actions_sql import Worker


@pytest.fixture
def worker(pg_dsn: str, schema_name: str) -> Iterator[Worker]:
    w = Worker(pg_dsn, schema_name)
    yield w
    w.conn.close()


def retry(worker: Worker, job: int, token: int, reason: str, delay: int | None,
          asked: bool) -> list[tuple[Any, ...]]:
    with worker.conn.transaction():
        moved = worker.run("retry", worker=worker.id, ids=[job], tokens=[token],
                           reasons=[reason], delays=[delay], asked=[asked])
        worker.run("refresh_heads", ids=[job], tokens=[token])
    return moved


def due_in(db: psycopg.Connection[Any], schema: str, job: int) -> float:
    row = db.execute(q(schema, "SELECT extract(epoch FROM run_at - now())::float8 "
                               "FROM {}.jobs WHERE id = %s"), [job]).fetchone()
    assert row is not None
    return float(row[0])


def make_due(db: psycopg.Connection[Any], schema: str, job: int) -> None:
    db.execute(q(schema, "UPDATE {}.jobs SET run_at = now() WHERE id = %s"), [job])


@pytest.mark.parametrize(("delay", "low", "high"), [(3000, 2.9, 3.0), (None, 0.85, 1.1)])
def test_an_asked_retry_waits_its_delay_or_the_backoff(
        delay: int | None, low: float, high: float, worker: Worker, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str) -> None:
    job = client.schedule_task("t", queue="q")
    before = client.get_job(job)
    (token,) = worker.claim().values()
    assert retry(worker, job, token, "asked", delay, True) == [(job, "queued")]
    assert low <= due_in(db, schema_name, job) <= high
    after = client.get_job(job)
    assert after is not None and before is not None
    assert (after.state, after.attempts, after.error) == ("queued", 1, "asked")
    assert after.scheduled_at == before.scheduled_at  # its place in the queue
    assert [e["error"] for e in after.attempt_errors] == ["asked"]


@pytest.mark.parametrize(("asked", "final"), [(True, "failed"), (False, "dead")])
def test_at_the_last_attempt_asked_ends_failed_no_response_dead(
        asked: bool, final: str, worker: Worker, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str) -> None:
    job = client.schedule_task("t")
    for attempt in (1, 2, 3):  # the claim gives task t max_attempts 3
        (token,) = worker.claim().values()
        state = "queued" if attempt < 3 else final
        assert retry(worker, job, token, f"try {attempt}", 0, asked) == [(job, state)]
        make_due(db, schema_name, job)
    done = client.get_job(job)
    assert done is not None
    assert (done.state, done.attempts, done.error) == (final, 3, "try 3")
    assert done.finished_at is not None
    assert len(done.attempt_errors) == 3
    assert worker.claim() == {}


def test_an_asked_retry_of_a_job_being_cancelled_ends_cancelled(
        worker: Worker, client: pgcc.Client) -> None:
    job = client.schedule_task("t")
    (token,) = worker.claim().values()
    assert client.cancel_job(job)
    retry(worker, job, token, "asked", 1000, True)
    cancelled = client.get_job(job)
    assert cancelled is not None and cancelled.state == "cancelled"


def test_an_asked_retry_of_a_stale_claim_changes_nothing(worker: Worker,
                                                          client: pgcc.Client) -> None:
    job = client.schedule_task("t")
    (token,) = worker.claim().values()
    assert retry(worker, job, token + 1, "stale", 0, True) == []
    running = client.get_job(job)
    assert running is not None and running.state == "running"
