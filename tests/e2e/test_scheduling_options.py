"""Scheduling options with real workers: a job's own timeout and max_attempts
win over its task module's (docs/scheduling.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import pgcc
from tests.paths import OPTIONS_TASKS, run_cli
from tests.workers import WorkerFactory, copy_tasks, finished, records, wait_for

pytestmark = pytest.mark.usefixtures("show_worker_logs")


def test_a_jobs_timeout_stops_it_though_its_module_sets_none(
        client: pgcc.Client, start_worker: WorkerFactory, tmp_path: Path) -> None:
    tasks = copy_tasks(tmp_path / "tasks", OPTIONS_TASKS, "sleeper")
    log = tmp_path / "runs.jsonl"
    start_worker(tasks, "--poll-interval", "0.2")
    job_id = client.schedule_task("sleeper", {"log": str(log), "seconds": 60}, timeout=1,
                                  max_attempts=1)
    started = wait_for(lambda: records(log), 30, "the job to start")[0]["t"]
    job = finished(client, job_id, 30)
    stopped = time.time()
    assert job.state == "dead"
    assert "timed out after 1 s" in (job.error or "")
    assert job.timeout == 1.0
    assert stopped - started < 10


def test_a_jobs_max_attempts_wins_over_its_modules(
        client: pgcc.Client, start_worker: WorkerFactory, tmp_path: Path) -> None:
    tasks = copy_tasks(tmp_path / "tasks", OPTIONS_TASKS, "crashing")
    log = tmp_path / "runs.jsonl"
    start_worker(tasks, "--poll-interval", "0.2")
    once = client.schedule_task("crashing", {"log": str(log)}, max_attempts=1)
    job = finished(client, once, 30)
    assert job.state == "dead"
    assert (job.attempts, job.max_attempts) == (1, 1)
    assert [r["job"] for r in records(log)] == [once]


def test_jobs_run_in_priority_order_and_each_queue_in_its_own(
        client: pgcc.Client, start_worker: WorkerFactory, tmp_path: Path) -> None:
    """One worker running one job at a time, every job queued before it starts:
    higher priority first, then run_at; a queue's second job waits for its
    first, whatever their priorities."""
    tasks = copy_tasks(tmp_path / "tasks", OPTIONS_TASKS, "mark")
    log = tmp_path / "runs.jsonl"
    jobs = [("a", 0, None), ("b", 5, None), ("c", -3, None), ("d", 5, None),
            ("q1", 0, "q"), ("q2", 50, "q"), ("e", 100, None), ("r1", 20, "r"), ("f", 0, None)]
    for name, priority, queue in jobs:
        client.schedule_task("mark", {"log": str(log), "name": name}, priority=priority,
                             queue=queue)
    # --prefetch 0: a job already waiting in a child's line keeps its place
    # there, and q2 only becomes due once q1 has run (docs/scheduling.md).
    start_worker(tasks, "--concurrency", "1", "--prefetch", "0", "--poll-interval", "0.2")
    wait_for(lambda: len(records(log)) == len(jobs), 30, "every job to run")
    # q2 (50) is not a head until q1 (0) has run; q1 runs in its priority's turn.
    assert [r["name"] for r in records(log)] == [
        "e", "r1", "b", "d", "a", "q1", "q2", "f", "c"]


def test_a_priority_job_scheduled_during_a_backlog_runs_next(
        client: pgcc.Client, start_worker: WorkerFactory, tmp_path: Path) -> None:
    """A worker running a backlog of priority-0 jobs one at a time (so it claims
    them in plain order, see docs/scheduling.md) takes a job of priority 50
    scheduled meanwhile next, not after the backlog: the door's NOTIFY tells it
    at once, well within the second its own look would take."""
    tasks = copy_tasks(tmp_path / "tasks", OPTIONS_TASKS, "sleeper")
    log = tmp_path / "runs.jsonl"
    start_worker(tasks, "--concurrency", "1", "--prefetch", "0", "--poll-interval", "30")
    backlog = client.schedule_tasks([
        {"task": "sleeper", "parameters": {"log": str(log), "seconds": 0.1}}
        for _ in range(60)])
    wait_for(lambda: len(records(log)) >= 3, 30, "the backlog to start")
    started_before = len(records(log))
    urgent = client.schedule_task("sleeper", {"log": str(log), "seconds": 0.1}, priority=50)
    assert finished(client, urgent, 30).state == "done"
    order = [r["job"] for r in records(log)]
    # The job running when it was scheduled, and perhaps one claimed meanwhile.
    assert order.index(urgent) <= started_before + 2, order
    assert not set(backlog) <= set(order[:order.index(urgent)])


def test_a_paused_queue_holds_its_jobs_until_resumed(
        client: pgcc.Client, start_worker: WorkerFactory, tmp_path: Path, pg_dsn: str,
        schema_name: str) -> None:
    """A job running when the pause is asked finishes; the queue's next job (not
    handed over on the same worker) and later ones wait; other queues run;
    resume lets them run at once."""
    tasks = copy_tasks(tmp_path / "tasks", OPTIONS_TASKS, "sleeper", "mark")
    log = tmp_path / "runs.jsonl"
    start_worker(tasks, "--concurrency", "2", "--poll-interval", "0.2")
    # The first job runs until the pause is in (a `pgcc pause` on a loaded
    # machine can take longer than any fixed nap).
    gate = tmp_path / "paused"
    running = client.schedule_task("sleeper", {"log": str(log), "seconds": 60,
                                               "until": str(gate)}, queue="q")
    held = client.schedule_task("mark", {"log": str(log), "name": "held"}, queue="q")
    wait_for(lambda: records(log), 30, "the first job to start")
    paused = run_cli("pause", "q", "--dsn", pg_dsn, "--schema", schema_name)
    assert (paused.returncode, paused.stdout.strip()) == (0, "queue q paused")
    later = client.schedule_task("mark", {"log": str(log), "name": "later"}, queue="q")
    other = client.schedule_task("mark", {"log": str(log), "name": "other"}, queue="r")
    assert finished(client, other).state == "done"
    assert client.get_job(running).state == "running"  # type: ignore[union-attr]
    gate.touch()
    assert finished(client, running).state == "done"
    time.sleep(2)  # ten polls: a worker that ignored the pause would have taken them
    assert [client.get_job(j).state for j in (held, later)] == ["queued", "queued"]  # type: ignore[union-attr]
    status = run_cli("status", "--dsn", pg_dsn, "--schema", schema_name)
    assert "paused queues (1;" in status.stdout and "  q  2 queued" in status.stdout
    asked = time.monotonic()
    resumed = run_cli("resume", "q", "--dsn", pg_dsn, "--schema", schema_name)
    assert (resumed.returncode, resumed.stdout.strip()) == (0, "queue q resumed")
    assert finished(client, later).state == "done"
    assert time.monotonic() - asked < 5
    names = [r.get("name") for r in records(log) if "name" in r]
    assert names == ["other", "held", "later"]


def test_ctx_schedule_task_takes_the_options(
        client: pgcc.Client, start_worker: WorkerFactory, tmp_path: Path) -> None:
    tasks = copy_tasks(tmp_path / "tasks", OPTIONS_TASKS, "parent", "mark")
    log = tmp_path / "runs.jsonl"
    start_worker(tasks, "--poll-interval", "0.2")
    parent = finished(client, client.schedule_task("parent", {"log": str(log)}))
    assert parent.state == "done"
    first, second = parent.result
    assert first == second
    child = client.get_job(first)
    assert child is not None and (child.key, child.priority, child.max_attempts,
                                  child.timeout) == ("child-of-parent", 7, 2, 30.0)
