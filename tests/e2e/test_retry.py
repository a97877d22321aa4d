"""A task asks for another attempt: `raise pgcc.Retry(...)` or an exception of
its module's `retry_on`, on a real `pgcc worker`.

The job goes back to queued after the asked-for delay (or the backoff), the
attempt counts towards max_attempts, and once they are used up the job ends
`failed` (a response, not `dead`) with the last error. A queue waits for its
retried job.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import pgcc
from tests import workers
from tests.paths import RETRY_TASKS
from tests.workers import WorkerFactory, copy_tasks, finished

FAST = (*workers.FAST, "--concurrency", "3")


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    return copy_tasks(tmp_path / "tasks", RETRY_TASKS, "again_sync", "again_async", "always",
                      "flaky_net", "queued_retry")


def _at(entry: dict[str, object]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(entry["at"]))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_retry_after_a_delay_then_done(kind: str, tasks_dir: Path, client: pgcc.Client,
                                       start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task(f"again_{kind}", {"until": 3, "after": 700})
    job = finished(client, job_id)
    assert (job.state, job.result, job.attempts) == ("done", {"attempt": 3}, 3)
    assert job.error is None
    errors = job.attempt_errors
    assert [e["attempt"] for e in errors] == [1, 2]
    assert errors[0]["error"].startswith(
        "the task asked for a retry after 700 ms: not yet at attempt 1")
    # The second retry was claimed no sooner than asked, and not much later.
    waited = (job.started_at - _at(errors[1])).total_seconds()  # type: ignore[operator]
    assert 0.69 <= waited < 3.0, waited


def test_always_retry_ends_failed_after_max_attempts(tasks_dir: Path, client: pgcc.Client,
                                                     start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task("always")
    job = finished(client, job_id)
    assert (job.state, job.attempts) == ("failed", 3)
    assert job.error is not None
    assert job.error.startswith(
        "the task asked for a retry after 50 ms: rate limited at attempt 3")
    assert [e["attempt"] for e in job.attempt_errors] == [1, 2, 3]
    assert job.finished_at is not None


def test_retry_on_exception_is_retried_then_failed(tasks_dir: Path, client: pgcc.Client,
                                                   start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task("flaky_net", {"raise": "ConnectionError"})
    job = finished(client, job_id)
    assert (job.state, job.attempts) == ("failed", 2)
    assert job.error is not None
    assert job.error.startswith("ConnectionError: network down at attempt 2")
    assert "Traceback" in job.error
    assert [e["error"].split("\n")[0] for e in job.attempt_errors] == [
        "ConnectionError: network down at attempt 1", "ConnectionError: network down at attempt 2"]
    # The usual backoff (about 1 s after a first attempt) came between them.
    gap = (_at(job.attempt_errors[1]) - _at(job.attempt_errors[0])).total_seconds()
    assert gap >= 0.85, gap


def test_an_exception_not_in_retry_on_fails_at_once(tasks_dir: Path, client: pgcc.Client,
                                                    start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task("flaky_net", {"raise": "ValueError"})
    job = finished(client, job_id)
    assert (job.state, job.attempts, job.attempt_errors) == ("failed", 1, [])
    assert job.error is not None and job.error.startswith("ValueError: bad input")


def test_a_retried_queue_job_keeps_the_queue_waiting(tasks_dir: Path, client: pgcc.Client,
                                                     start_worker: WorkerFactory) -> None:
    first = client.schedule_task("queued_retry", {"after": 1500}, queue="billing")
    second = client.schedule_task("queued_retry", {}, queue="billing")
    free = client.schedule_task("queued_retry", {})
    start_worker(tasks_dir, *FAST)
    head, behind, other = (finished(client, j) for j in (first, second, free))
    assert (head.state, head.attempts) == ("done", 2)
    assert (behind.state, behind.attempts) == ("done", 1)
    # The job behind ran only after the retried head was done, although it was
    # due all along and a child was free: the queue waited for its head.
    assert behind.result["at"] > head.result["at"]
    assert behind.started_at >= head.finished_at  # type: ignore[operator]
    # A job without a queue did not wait.
    assert other.finished_at < head.finished_at  # type: ignore[operator]
    assert head.scheduled_at < behind.scheduled_at
