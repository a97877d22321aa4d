"""A role given `pgcc grant worker` runs a real `pgcc worker` without owning
anything (the other kinds of role: tests/integration/test_privileges.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pgcc
from tests.helpers import call, grant, reaper_once
from tests.paths import MISC_TASKS
from tests.workers import WorkerFactory, copy_tasks, wait_for


def test_a_worker_role_runs_jobs_without_owning_anything(
        pg_dsn: str, schema_name: str, login_role: Any, client: pgcc.Client,
        tmp_path: Path, start_worker: WorkerFactory) -> None:
    role, dsn = login_role()
    grant(pg_dsn, schema_name, "worker", role)
    # In a queue, beside a queue whose head no worker has: the worker takes the
    # queues in, goes on with their next jobs and records heads, as the role.
    tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "hello")
    client.schedule_task("nobody-has-this", {}, queue="blocked")
    job = client.schedule_task("hello", {"n": 0}, queue="q")
    worker = start_worker.start_on(dsn, tasks)
    wait_for(lambda: _done_count(pg_dsn, schema_name) == 3, timeout=30,
             what="the job, and the two it scheduled from its task, to run as the role")
    assert client.get_job(job).result == 0  # type: ignore[union-attr]
    reaper_once(dsn, schema_name)
    assert worker.stop() == 0, worker.log()


def _done_count(pg_dsn: str, schema: str) -> int:
    return int(call(pg_dsn, schema, "SELECT count(*) FROM {}.jobs WHERE state = 'done'"))
