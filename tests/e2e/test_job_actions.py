"""Acting on jobs with a real worker: cancelling a running job kills its child
within 2 s and ends it cancelled, not retried, and its queue goes on only once
the child is gone; retried jobs run again; wait_for waits for the end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import pgcc
from tests.paths import WORKER_TASKS, run_cli
from tests.tasks.worker.watcher import alive
from tests.workers import (
    WorkerFactory,
    copy_tasks,
    records,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("show_worker_logs")


def test_cancelling_a_running_job_kills_its_child_within_2s_and_its_queue_waits_for_it(
        pg_dsn: str, schema_name: str, client: pgcc.Client, start_worker: WorkerFactory,
        tmp_path: Path) -> None:
    tasks = copy_tasks(tmp_path / "tasks", WORKER_TASKS, "sleeper", "watcher")
    log = tmp_path / "runs.jsonl"
    # A long lease: its heartbeats come every 7.5 s, so 2 s needs the NOTIFY.
    start_worker(tasks, "--lease", "30", "--poll-interval", "0.2", "--concurrency", "2")
    long = client.schedule_task("sleeper", {"log": str(log), "seconds": 120}, queue="q")
    after = client.schedule_task("watcher", {"log": str(log), "watch": long}, queue="q")
    started = wait_for(lambda: [r for r in records(log) if r["job"] == long], 30,
                       "the long job to start")
    child = started[0]["pid"]
    assert alive(child)

    asked = time.monotonic()
    result = run_cli("cancel", str(long), "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"job {long} is being cancelled (running: its worker stops it)"
    wait_for(lambda: not alive(child), 5, "the child to be killed", interval=0.01)
    assert time.monotonic() - asked < 2.0

    job = client.wait_for(long, timeout=5)
    assert (job.state, job.attempts, job.error) == ("cancelled", 1, "cancelled while running")
    # The queue's next job started only once the child was gone.
    nxt = client.wait_for(after, timeout=10)
    assert (nxt.state, nxt.result) == ("done", False)
    # Not retried: the long job never starts again.
    time.sleep(1.5)
    assert [r["job"] for r in records(log)].count(long) == 1
    final = client.get_job(long)
    assert final is not None and (final.state, final.attempts) == ("cancelled", 1)


def test_a_retried_job_runs_again_and_keeps_its_earlier_run(
        pg_dsn: str, schema_name: str, client: pgcc.Client, start_worker: WorkerFactory,
        tmp_path: Path) -> None:
    tasks = copy_tasks(tmp_path / "tasks", WORKER_TASKS, "boom", "quick")
    start_worker(tasks, "--poll-interval", "0.2")
    failed = client.schedule_task("boom", {"log": str(tmp_path / "boom.jsonl")})
    done = client.schedule_task("quick", {})
    first = client.wait_for(failed, timeout=30)
    assert first.state == "failed"
    assert client.wait_for(done, timeout=30).state == "done"

    result = run_cli("retry", str(failed), str(done), "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"job {failed} retried", f"job {done} retried"]
    again = client.wait_for(failed, timeout=30)
    assert (again.state, again.attempts) == ("failed", 1)
    assert [run["state"] for run in again.history] == ["failed"]
    assert again.history[0]["error"] == first.error
    rerun = client.wait_for(done, timeout=30)
    assert (rerun.state, rerun.result, len(rerun.history)) == ("done", {"ok": True}, 1)

    # pgcc retry --state failed picks up the failed one again, and only it.
    result = run_cli("retry", "--state", "failed", "--task", "boom", "--dsn", pg_dsn,
                     "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"1 failed job(s) retried: {failed}"
    assert len(client.wait_for(failed, timeout=30).history) == 2


def test_wait_for_times_out_on_a_job_that_does_not_finish(
        pg_dsn: str, schema_name: str, client: pgcc.Client) -> None:
    job = client.schedule_task("nobody_runs_this", {})
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {job} is still queued"):
        client.wait_for(job, timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 2

    async def on_async() -> None:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name) as aclient:
            with pytest.raises(TimeoutError):
                await aclient.wait_for(job, timeout=0.2)
            assert await aclient.cancel_job(job) is True
            finished = await aclient.wait_for(job, timeout=1)
            assert finished.state == "cancelled"

    asyncio.run(on_async())
