"""`pgcc worker --reload`: new and changed task modules (and changed helpers)
are picked up without a restart, and a running job is not killed for it; the
metrics list the new tasks, and the schedules of periodic tasks are declared
again. A real worker, task files written and changed under it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgcc
from tests import workers
from tests.e2e.test_metrics import metrics_url, scrape
from tests.helpers import q
from tests.workers import WorkerFactory, WorkerProcess, finished, wait_for, write_task

FAST = (*workers.FAST, "--concurrency", "2", "--reload")

pytestmark = pytest.mark.usefixtures("show_worker_logs")


def served_tasks(db: psycopg.Connection[Any], schema: str) -> list[str] | None:
    row = db.execute(q(schema, "SELECT tasks FROM {}.workers")).fetchone()
    return sorted(row[0]) if row else None


def reloads(worker: WorkerProcess) -> int:
    return worker.log().count("tasks reloaded:")


def running_gauge(url: str) -> list[str]:
    """The tasks pgcc_running_jobs lists."""
    prefix = 'pgcc_running_jobs{task="'
    return sorted(key[len(prefix):-2] for key in scrape(url) if key.startswith(prefix))


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
    worker = start_worker(folder, *FAST, "--metrics", "0")
    url = metrics_url(worker)
    wait_for(lambda: served_tasks(db, schema_name) == ["slow", "version"], 30, "the worker")
    assert finished(client, client.schedule_task("version")).result == "v1"
    assert running_gauge(url) == ["slow", "version"]

    # A new task, with a helper: claimable once the worker has seen it.
    replace(folder, "_helper", "VALUE = 'helped 1'\n")
    replace(folder, "fresh", "from . import _helper\n\n"
            "def run(params):\n    return _helper.VALUE\n")
    wait_for(lambda: served_tasks(db, schema_name) == ["fresh", "slow", "version"], 30,
             "the new task in the worker's row")
    assert reloads(worker) >= 1
    assert finished(client, client.schedule_task("fresh")).result == "helped 1"
    assert running_gauge(url) == ["fresh", "slow", "version"]

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
    assert running_gauge(url) == ["slow", "version"]
    assert worker.stop() == 0


def schedules(db: psycopg.Connection[Any], schema: str) -> dict[str, tuple[Any, ...]]:
    """The table `periodic`: task -> (schedule, timezone, active, declared_at)."""
    rows = db.execute(q(schema, "SELECT task, schedule, timezone, active, declared_at "
                                "FROM {}.periodic")).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def schedule_of(db: psycopg.Connection[Any], schema: str, task: str) -> tuple[Any, ...] | None:
    row = schedules(db, schema).get(task)
    return None if row is None else row[:3]


def report_jobs(db: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return db.execute(q(schema, "SELECT id, parameters, run_at FROM {}.jobs "
                                "WHERE task = 'report' ORDER BY id")).fetchall()


PLAIN = "def run(params):\n    return params\n"


def test_reload_declares_added_changed_and_removed_schedules(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    folder = tmp_path / "tasks"
    write_task(folder, "report", PLAIN)
    write_task(folder, "other", PLAIN)
    # An old version of `legacy` had a schedule: a module of it added without
    # one retires it, as a worker started with that module would.
    db.execute(q(schema_name, "INSERT INTO {}.periodic (task, schedule, timezone) "
                              "VALUES ('legacy', '0 5 * * *', 'UTC')"))
    worker = start_worker(folder, *FAST)
    wait_for(lambda: served_tasks(db, schema_name) == ["other", "report"], 30, "the worker")
    assert schedules(db, schema_name).keys() == {"legacy"}

    # A schedule added to a module: declared, and its ticks are this worker's.
    replace(folder, "report", 'schedule = "* * * * *"\nschedule_parameters = {"v": 1}\n\n'
            + PLAIN)
    wait_for(lambda: schedule_of(db, schema_name, "report") == ("* * * * *", "UTC", True),
             30, "the new schedule in the table")
    # Its first tick would come at the next minute boundary: rather than wait
    # for it, the table is made as a minute without a worker leaves it (the
    # schedule declared before the last tick), and the worker, which looks at
    # it every few seconds, schedules that missed tick.
    last_minute = db.execute(q(schema_name, """
        UPDATE {}.periodic SET due_after = date_trunc('minute', now()) - interval '1 minute'
        WHERE task = 'report' RETURNING date_trunc('minute', now())""")).fetchone()[0]  # type: ignore[index]
    jobs = wait_for(lambda: report_jobs(db, schema_name), 15, "the tick's job")
    # (A later tick if a real minute boundary passed meanwhile.)
    assert jobs[0][1] == {"v": 1} and jobs[0][2] >= last_minute
    assert "periodic: report runs at '* * * * *' (UTC)" in worker.log()

    # A reload that leaves a schedule as it was does not declare it again: a
    # worker that declared another schedule since keeps it.
    declared_at = schedules(db, schema_name)["report"][3]
    before = reloads(worker)
    replace(folder, "other", PLAIN + "\n# changed\n")
    wait_for(lambda: reloads(worker) > before, 30, "a reload")
    time.sleep(1.0)  # the scheduler, woken by the reload, would declare at once
    assert schedules(db, schema_name)["report"][3] == declared_at

    # A changed schedule.
    replace(folder, "report", 'schedule = "0 4 * * *"\nschedule_timezone = "Asia/Tokyo"\n\n'
            + PLAIN)
    wait_for(lambda: schedule_of(db, schema_name, "report") == ("0 4 * * *", "Asia/Tokyo", True),
             30, "the changed schedule in the table")

    # A new periodic module, and a module without a schedule where the table has one.
    replace(folder, "nightly", 'schedule = "0 3 * * *"\n\n' + PLAIN)
    replace(folder, "legacy", PLAIN)
    wait_for(lambda: schedule_of(db, schema_name, "nightly") == ("0 3 * * *", "UTC", True),
             30, "the new module's schedule in the table")
    wait_for(lambda: schedule_of(db, schema_name, "legacy") == ("0 5 * * *", "UTC", False),
             30, "the old schedule retired")

    # A removed schedule: retired, as at a worker's start.
    replace(folder, "report", PLAIN)
    wait_for(lambda: schedule_of(db, schema_name, "report") == ("0 4 * * *", "Asia/Tokyo", False),
             30, "the removed schedule retired")
    assert "periodic: report has no schedule any more; retiring it" in worker.log()

    # A deleted module: its row stays, as a worker started without it leaves
    # it (docs/periodic.md); this worker no longer schedules its ticks.
    (folder / "nightly.py").unlink()
    wait_for(lambda: "periodic: nightly is no longer among this worker's tasks" in worker.log(),
             30, "the deleted module")
    assert schedule_of(db, schema_name, "nightly") == ("0 3 * * *", "UTC", True)
    # The worker's row is rewritten by another of its threads (the exchange)
    # than the one that logged the line above.
    wait_for(lambda: served_tasks(db, schema_name) == ["legacy", "other", "report"], 10,
             "the worker's row to list its tasks as they are now")
    assert worker.stop() == 0
