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
from tests.workers import WorkerFactory, finished, write_task

FAST = (*workers.FAST, "--concurrency", "4")
VARIANTS = ["sync", "async"]


def variant(source: str, kind: str) -> str:
    """A task's source in its sync or async form: ASYNC/AWAIT markers become keywords."""
    is_async = kind == "async"
    return (source.replace("ASYNC ", "async " if is_async else "")
            .replace("AWAIT ", "await " if is_async else ""))


def job_ids(db: psycopg.Connection[Any], schema: str) -> list[int]:
    query = sql.SQL("SELECT id FROM {}.jobs ORDER BY id").format(sql.Identifier(schema))
    return [row[0] for row in db.execute(query).fetchall()]


TARGET = '''
def run(params, ctx):
    return {"params": params, "job_id": ctx.job_id, "task": ctx.task}
'''


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    write_task(folder, "target", TARGET)
    return folder


# --- job_id, task, attempt ----------------------------------------------------------------

IDENTITY = '''
import os

ASYNC def run(params, ctx):
    if ctx.attempt < params.get("crash_until", 0):
        os._exit(3)  # no response: pgcc runs the job again, attempt + 1
    return {"job_id": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt}
'''


def test_job_id_task_and_attempt(tasks_dir: Path, client: pgcc.Client,
                                 start_worker: WorkerFactory) -> None:
    for kind in VARIANTS:
        write_task(tasks_dir, f"ident_{kind}", variant(IDENTITY, kind))
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

SPAWNER = '''
import pgcc

ASYNC def run(params, ctx):
    kwargs = {k: params[k] for k in ("queue", "after") if k in params}
    ids = []
    for i in range(params.get("count", 1)):
        ids.append(AWAIT ctx.schedule_task("target", {"n": i, "from": ctx.job_id}, **kwargs))
    assert all(type(i) is int for i in ids)
    return {"jobs": ids}
'''


def test_schedule_task_into_the_same_schema(tasks_dir: Path, client: pgcc.Client,
                                            db: psycopg.Connection[Any], schema_name: str,
                                            start_worker: WorkerFactory) -> None:
    for kind in VARIANTS:
        write_task(tasks_dir, f"spawn_{kind}", variant(SPAWNER, kind))
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


SERIAL_TARGET = '''
import time

def run(params, ctx):
    started = time.time()
    time.sleep(0.2)
    return {"n": params["n"], "started": started, "finished": time.time()}
'''


def test_schedule_task_into_a_queue(tasks_dir: Path, client: pgcc.Client,
                                    start_worker: WorkerFactory) -> None:
    write_task(tasks_dir, "target", SERIAL_TARGET)
    for kind in VARIANTS:
        write_task(tasks_dir, f"spawn_{kind}", variant(SPAWNER, kind))
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


REFUSED = '''
import pgcc

CASES = {
    "set": lambda: ("target", {"ids": {"a": [1, {2, 3}]}}, {}),
    "nan": lambda: ("target", {"x": float("nan")}, {}),
    "nul": lambda: ("target", {"x": "a\\x00b"}, {}),
    "empty task": lambda: ("", {}, {}),
    "long queue": lambda: ("target", {}, {"queue": "q" * 201}),
    "at and after": lambda: ("target", {}, {"after": 5, "at": __import__("datetime").datetime.now(
        __import__("datetime").timezone.utc)}),
    "negative after": lambda: ("target", {}, {"after": -1}),
    "not an object": lambda: ("target", [1, 2], {}),
}

ASYNC def run(params, ctx):
    task, parameters, kwargs = CASES[params["case"]]()
    try:
        AWAIT ctx.schedule_task(task, parameters, **kwargs)
    except pgcc.ScheduleError:
        raise  # fails the job with this error
    except Exception as exc:
        raise AssertionError(f"not a pgcc.ScheduleError: {exc!r}") from exc
    return "scheduled?"
'''

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
    for kind in VARIANTS:
        write_task(tasks_dir, f"refused_{kind}", variant(REFUSED, kind))
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

STATEFUL = '''
import pgcc

ASYNC def run(params, ctx):
    state = AWAIT ctx.taskstate.get(params["state_id"])
    seen = state.status
    state.status = "complete"
    state.tries_remaining = 4
    state.data = {"job_id": ctx.job_id, "seen": seen, "list": [1, "two"]}
    AWAIT state.save()
    again = AWAIT ctx.taskstate.get(params["state_id"])
    read_back = [again.status, again.tries_remaining, again.data]

    other = AWAIT ctx.taskstate.get(params["state_id"])
    other.status = "failed"
    AWAIT again.save()
    try:
        AWAIT other.save()
        stale = "no error"
    except pgcc.StaleTaskStateError:
        stale = "StaleTaskStateError"
    try:
        again.status = "completed"
        AWAIT again.save()
        typo = "no error"
    except pgcc.TaskStateError:
        typo = "TaskStateError"
    return {"read_back": read_back,
            "stale": stale, "typo": typo}
'''


def test_taskstate_get_and_save(tasks_dir: Path, client: pgcc.Client,
                                start_worker: WorkerFactory) -> None:
    for kind in VARIANTS:
        write_task(tasks_dir, f"stateful_{kind}", variant(STATEFUL, kind))
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
