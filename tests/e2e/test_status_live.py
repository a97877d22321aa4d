"""`pgcc status` with a real worker: what runs and for how long, what is
scheduled for later, what failed in the last hour, each worker's tasks, and a
task whose queued jobs no live worker serves; a task's printed lines in the
worker's log carry the job's id."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg

import pgcc
from tests.paths import PGCC, WORKER_TASKS
from tests.workers import FAST, WorkerFactory, copy_tasks, finished, wait_for


def status(dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PGCC, "status", *args, "--dsn", dsn, "--schema", schema],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def report(dsn: str, schema: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(status(dsn, schema, "--json").stdout)
    return value


def test_status_shows_what_runs_waits_failed_and_is_not_served(
        tmp_path: Path, pg_dsn: str, schema_name: str, client: pgcc.Client,
        db: psycopg.Connection[Any], start_worker: WorkerFactory) -> None:
    tasks = copy_tasks(tmp_path / "tasks", WORKER_TASKS, "chatty", "boom")
    worker = start_worker(tasks, *FAST, "--concurrency", "2", "--grace", "1")
    failing = client.schedule_task("boom", {"log": str(tmp_path / "boom.jsonl"), "n": 7})
    assert finished(client, failing).state == pgcc.JobState.FAILED
    running = client.schedule_task("chatty", {"seconds": 60})
    later = client.schedule_task("chatty", {}, after=60_000)
    typo = client.schedule_task("othertsk", {}, queue="qx")

    def running_long() -> dict[str, Any] | None:
        now = report(pg_dsn, schema_name)
        ok = now["running"] and (now["running"][0]["running_seconds"] or 0) >= 1
        return now if ok else None
    now = wait_for(running_long, 30, "the chatty job to run for a second")

    assert [r["id"] for r in now["running"]] == [running]
    assert now["running"][0]["task"] == "chatty"
    assert [s["id"] for s in now["scheduled"]] == [later]
    assert 50 < now["scheduled"][0]["due_in_seconds"] <= 60
    assert now["scheduled_total"] == 1
    assert [f["id"] for f in now["failed_last_hour"]] == [failing]
    assert "bad value 7" in now["failed_last_hour"][0]["error"]
    assert now["failed_last_hour_by_task"] == {"boom": 1}
    assert now["unserved_tasks"] == ["othertsk"]
    (live,) = now["workers"]
    assert live["task_names"] == ["boom", "chatty"]
    assert live["live"] is True

    text = status(pg_dsn, schema_name).stdout
    assert re.search(rf"#{running} chatty\s+for \d+\.\d s", text), text
    assert re.search(rf"#{later} chatty\s+due in \d+\.\d s", text), text
    assert re.search(rf"#{failing} boom\s+failed .* ago\s+ValueError: bad value 7", text), text
    assert re.search(r"WARNING\s+task othertsk: 1 queued, but no live worker", text), text
    assert re.search(r"othertsk\s+1 / 0\s+NO LIVE WORKER", text), text
    assert "tasks: boom, chatty" in text
    assert client.get_job(typo) is not None

    # The printed line of the running job carries its id.
    wait_for(lambda: f"[job {running}] hello from chatty" in worker.log(), 10,
             "the printed line in the worker's log")
    assert worker.stop() == 0


def test_print_lines_carry_the_job_id(tmp_path: Path, client: pgcc.Client,
                                      start_worker: WorkerFactory) -> None:
    tasks = copy_tasks(tmp_path / "tasks", WORKER_TASKS, "chatty")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    ids = [client.schedule_task("chatty", {"tag": f"n{i}"}) for i in range(3)]
    for job_id in ids:
        assert finished(client, job_id).state == pgcc.JobState.DONE
    wait_for(lambda: all(f"[job {i}] a partial line" in worker.log() for i in ids), 10,
             "every job's lines in the log")
    log = worker.log()
    for index, job_id in enumerate(ids):
        assert f"[job {job_id}] hello from chatty n{index}\n" in log


def test_status_watch_refreshes(pg_dsn: str, schema_name: str) -> None:
    process = subprocess.Popen([PGCC, "status", "--watch", "0.2", "--dsn", pg_dsn,
                                "--schema", schema_name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline() if process.stdout else ""
        assert first.startswith("pgcc status")
        wait_for(lambda: process.stdout is not None and
                 process.stdout.readline().startswith("pgcc status"), 10, "a refresh")
    finally:
        process.terminate()
        process.wait(10)
