"""`pgcc worker --reload`: new and changed task modules (and changed helpers)
are picked up without a restart, and a running job is not killed for it.
A real worker, task files written and changed under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

import pgcc
from tests import workers
from tests.helpers import q
from tests.workers import WorkerFactory, WorkerProcess, finished, wait_for, write_task

FAST = (*workers.FAST, "--concurrency", "2", "--reload")


def served_tasks(db: psycopg.Connection[Any], schema: str) -> list[str] | None:
    row = db.execute(q(schema, "SELECT tasks FROM {}.workers")).fetchone()
    return sorted(row[0]) if row else None


def reloads(worker: WorkerProcess) -> int:
    return worker.log().count("tasks reloaded:")


def replace(folder: Path, name: str, source: str) -> None:
    """Write a module whole, at once: the worker never sees it half written."""
    temporary = folder / f"{name}.tmp"
    temporary.write_text(source)
    temporary.replace(folder / f"{name}.py")


def test_reload_picks_up_new_and_changed_tasks(tmp_path: Path, client: pgcc.Client,
                                               db: psycopg.Connection[Any], schema_name: str,
                                               start_worker: WorkerFactory) -> None:
    folder = tmp_path / "tasks"
    write_task(folder, "version", "def run(params):\n    return 'v1'\n")
    write_task(folder, "slow", "import time\n\n"
               "def run(params):\n    time.sleep(params['seconds'])\n    return 'slow v1'\n")
    worker = start_worker(folder, *FAST)
    wait_for(lambda: served_tasks(db, schema_name) == ["slow", "version"], 30, "the worker")
    assert finished(client, client.schedule_task("version")).result == "v1"

    # A new task, with a helper: claimable once the worker has seen it.
    replace(folder, "_helper", "VALUE = 'helped 1'\n")
    replace(folder, "fresh", "from . import _helper\n\n"
            "def run(params):\n    return _helper.VALUE\n")
    wait_for(lambda: served_tasks(db, schema_name) == ["fresh", "slow", "version"], 30,
             "the new task in the worker's row")
    assert reloads(worker) >= 1
    assert finished(client, client.schedule_task("fresh")).result == "helped 1"

    # A changed task, while a job of the old code runs: that job is not
    # killed; the next job runs the new code.
    running = client.schedule_task("slow", {"seconds": 2})
    wait_for(lambda: (job := client.get_job(running)) is not None and job.state == "running",
             30, "the slow job to start")
    before = reloads(worker)
    replace(folder, "version", "def run(params):\n    return 'v2'\n")
    wait_for(lambda: reloads(worker) > before, 30, "a reload")
    assert finished(client, client.schedule_task("version")).result == "v2"
    slow = finished(client, running)
    assert (slow.state, slow.attempts, slow.result) == ("done", 1, "slow v1")

    # A changed helper counts as a change of the tasks that import it.
    before = reloads(worker)
    replace(folder, "_helper", "VALUE = 'helped 2'\n")
    wait_for(lambda: reloads(worker) > before, 30, "a reload")
    assert finished(client, client.schedule_task("fresh")).result == "helped 2"

    # A module that no longer loads is reported; the other tasks run on.
    replace(folder, "fresh", "raise RuntimeError('half written')\n")
    wait_for(lambda: served_tasks(db, schema_name) == ["slow", "version"], 30,
             "the broken task out of the worker's row")
    assert f"task {folder / 'fresh.py'} not loaded: RuntimeError: half written" in worker.log()
    assert finished(client, client.schedule_task("version")).result == "v2"
    assert worker.stop() == 0
