"""`ctx` inside a task, sync and async, on a real `pgcc worker`.

ctx.job_id / ctx.task / ctx.attempt name the job and its claim; ctx.schedule_task
schedules into the worker's own schema with the rules of every door (a refusal is a
pgcc.ScheduleError raised inside the task); ctx.taskstate is the task state API.
In an `async def run` the same calls are awaited.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgcc
from tests import workers
from tests.paths import CTX_TASKS
from tests.workers import WorkerFactory, copy_tasks, finished

FAST = (*workers.FAST, "--concurrency", "4")
VARIANTS = ["sync", "async"]


def job_ids(db: psycopg.Connection[Any], schema: str) -> list[int]:
    query = sql.SQL("SELECT id FROM {}.jobs ORDER BY id").format(sql.Identifier(schema))
    return [row[0] for row in db.execute(query).fetchall()]


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    """A tasks folder with `target`; each test adds the sync and async forms of
    its task (tests/tasks/ctx/<name>_sync.py and <name>_async.py)."""
    return copy_tasks(tmp_path / "tasks", CTX_TASKS, "target")


# --- job_id, task, attempt ----------------------------------------------------------------

def test_job_id_task_and_attempt(tasks_dir: Path, client: pgcc.Client,
                                 start_worker: WorkerFactory) -> None:
    copy_tasks(tasks_dir, CTX_TASKS, *(f"ident_{kind}" for kind in VARIANTS))
    start_worker(tasks_dir, *FAST)
    jobs = {(kind, crash): client.schedule_task(f"ident_{kind}", {"crash_until": crash})
            for kind in VARIANTS for crash in (0, 2)}
    for (kind, crash), job_id in jobs.items():
        job = finished(client, job_id)
        attempt = 2 if crash else 1
        assert job.state == "done", (kind, job.error)
        assert job.result == {"job_id": job_id, "task": f"ident_{kind}", "attempt": attempt}
        assert job.attempts == attempt


# --- schedule_task --------------------------------------------------------------------------

def test_schedule_task_into_the_same_schema(tasks_dir: Path, client: pgcc.Client,
                                            db: psycopg.Connection[Any], schema_name: str,
                                            start_worker: WorkerFactory) -> None:
    copy_tasks(tasks_dir, CTX_TASKS, *(f"spawn_{kind}" for kind in VARIANTS))
    start_worker(tasks_dir, *FAST)
    parents = {kind: client.schedule_task(f"spawn_{kind}", {"count": 2, "after": 100})
               for kind in VARIANTS}
    all_ids = list(parents.values())
    for kind, parent in parents.items():
        job = finished(client, parent)
        assert job.state == "done", (kind, job.error)
        children = job.result["jobs"]
        assert len(children) == 2
        all_ids += children
        for n, child_id in enumerate(children):
            child = finished(client, child_id)
            assert child.task == "target"
            assert child.parameters == {"n": n, "from": parent}
            assert child.queue is None
            assert child.run_at >= child.created_at
            assert (child.state, child.result) == ("done", {
                "params": {"n": n, "from": parent}, "job_id": child_id, "task": "target"})
    # The children are rows of this test's schema (the worker's environment).
    assert job_ids(db, schema_name) == sorted(all_ids)


def test_schedule_task_into_a_queue(tasks_dir: Path, client: pgcc.Client,
                                    start_worker: WorkerFactory) -> None:
    # target here takes 0.2 s and says when it started and finished.
    copy_tasks(tasks_dir, CTX_TASKS, *(f"spawn_{kind}" for kind in VARIANTS),
               target="serial_target")
    start_worker(tasks_dir, *FAST)
    parents = {kind: client.schedule_task(f"spawn_{kind}", {"count": 3, "queue": f"ctx-{kind}"})
               for kind in VARIANTS}
    for kind, parent in parents.items():
        job = finished(client, parent)
        assert job.state == "done", (kind, job.error)
        children = [finished(client, child_id) for child_id in job.result["jobs"]]
        assert [c.queue for c in children] == [f"ctx-{kind}"] * 3
        assert [c.state for c in children] == ["done"] * 3
        # One queue: they ran one at a time, in the order they were scheduled.
        assert [c.result["n"] for c in children] == [0, 1, 2]
        for before, after in itertools.pairwise(children):
            assert before.result["finished"] <= after.result["started"]


# What the task refused_<kind> schedules (params["case"]), and the error it fails with.
REFUSALS = {
    "set": "ParameterTypeError: parameters: ids.a[1] is a set",
    "nan": "ScheduleError: parameters: x is nan",
    "nul": "ScheduleError: parameters: x contains a NUL character",
    "empty task": "ScheduleError: task must be a non-empty name",
    "long queue": "ScheduleError: queue is 201 characters long",
    "at and after": "ScheduleError: give at or after, not both",
    "negative after": "ScheduleError: after must be >= 0",
    "not an object": "ParameterTypeError: parameters must be a JSON object",
}


def test_schedule_task_applies_the_rules_of_every_door(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str, start_worker: WorkerFactory) -> None:
    copy_tasks(tasks_dir, CTX_TASKS, *(f"refused_{kind}" for kind in VARIANTS))
    start_worker(tasks_dir, *FAST)
    jobs = {(kind, case): client.schedule_task(f"refused_{kind}", {"case": case})
            for kind in VARIANTS for case in REFUSALS}
    for (kind, case), job_id in jobs.items():
        job = finished(client, job_id)
        assert job.state == "failed", (kind, case, job.result)
        assert job.error is not None and job.error.startswith(REFUSALS[case]), \
            (kind, case, job.error)
        assert job.result is None
    # Refused means no row written: only the jobs this test scheduled exist.
    assert job_ids(db, schema_name) == sorted(jobs.values())


# --- taskstate ----------------------------------------------------------------------------

def test_taskstate_get_and_save(tasks_dir: Path, client: pgcc.Client,
                                start_worker: WorkerFactory) -> None:
    copy_tasks(tasks_dir, CTX_TASKS, *(f"stateful_{kind}" for kind in VARIANTS))
    start_worker(tasks_dir, *FAST)
    jobs = {kind: client.schedule_task(f"stateful_{kind}", {"state_id": f"ctx:{kind}"})
            for kind in VARIANTS}
    for kind, job_id in jobs.items():
        job = finished(client, job_id)
        assert job.state == "done", (kind, job.error)
        data = {"job_id": job_id, "seen": "pending", "list": [1, "two"]}
        assert job.result == {"read_back": ["complete", 4, data],
                              "stale": "StaleTaskStateError", "typo": "TaskStateError"}
        # The same row through the client, in the worker's schema.
        state = client.taskstate.get(f"ctx:{kind}")
        assert (state.status, state.tries_remaining, state.data) == ("complete", 4, data)
