"""ctx.step on real `pgcc worker` processes (SPEC, "Exactly once for database
effects"), tried the ways it could break: the child killed between two steps
and inside one, an attempt that lost its job to the reaper and a newer
attempt, a cancel during a step, names used twice, values JSON cannot hold.

The task (tests/tasks/steps/stepper_*.py) runs named steps whose fn each
inserts (step, attempt) into an `effects` table of the test's schema; what a
user would check is that table, the recorded `steps` and the job's result.
The test holds a run at a chosen point (tests/tasks/steps/gate.py) to kill
the child or take the job away right there.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgcc
from tests.helpers import q, reaper_once
from tests.paths import TEST_TASKS
from tests.workers import FAST, WorkerFactory, copy_tasks, finished, print_worker_logs, wait_for

STEPS_TASKS = TEST_TASKS / "steps"
KINDS = ["sync", "async"]
# A worker whose heartbeat (every lease / 4) does not come during a test: the
# attempt that lost its job is then stopped by its step, not by the worker.
SLOW_HEARTBEAT = ("--lease", "300", "--poll-interval", "0.2", "--concurrency", "1",
                  "--no-reaper")


@pytest.fixture(autouse=True)
def _effects(db: psycopg.Connection[Any], schema_name: str, start_worker: WorkerFactory
             ) -> Iterator[None]:
    db.execute(q(schema_name, "CREATE TABLE {0}.effects ("
                              " step text NOT NULL, attempt integer NOT NULL)"))
    yield
    for worker in start_worker.started:
        worker.stop(timeout=10)
    print_worker_logs(start_worker, db, schema_name)


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    return copy_tasks(tmp_path / "tasks", STEPS_TASKS, "stepper_sync", "stepper_async",
                      "schedules_sync", "schedules_async")


def effects(db: psycopg.Connection[Any], schema: str) -> list[tuple[str, int]]:
    return [(row[0], row[1]) for row in db.execute(q(
        schema, "SELECT step, attempt FROM {0}.effects ORDER BY attempt, step"))]


def recorded(db: psycopg.Connection[Any], schema: str, job_id: int
             ) -> list[tuple[str, Any, int]]:
    return [(row[0], row[1], row[2]) for row in db.execute(q(
        schema, "SELECT name, value, attempt FROM {0}.steps WHERE job_id = %s"
                " ORDER BY name"), [job_id])]


def job_state(db: psycopg.Connection[Any], schema: str, job_id: int) -> str:
    row = db.execute(q(schema, "SELECT state FROM {0}.jobs WHERE id = %s"), [job_id]).fetchone()
    assert row is not None
    return str(row[0])


def gate_at(tmp_path: Path, step: str, where: str, attempt: int = 1) -> dict[str, Any]:
    folder = tmp_path / f"gate-{step}-{where}-{attempt}"
    folder.mkdir()
    return {"step": step, "where": where, "attempt": attempt, "dir": str(folder)}


def reached(gate: dict[str, Any]) -> int:
    """The process id of the child that reached the gate, once it has."""
    path = Path(gate["dir"]) / "reached"
    text: str = wait_for(lambda: path.read_text() if path.exists() else None, 30,
                         f"the task to reach {gate['where']} step {gate['step']}")
    return int(text)


def open_gate(gate: dict[str, Any]) -> None:
    (Path(gate["dir"]) / "go").touch()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- the main path --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_steps_run_once_and_return_their_values(
        kind: str, tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str, start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task(f"stepper_{kind}",
                                  {"schema": schema_name, "steps": ["a", "b"]})
    job = finished(client, job_id)
    assert job.state == "done", job.error
    assert job.result == {"0:a": {"attempt": 1}, "1:b": {"attempt": 1}}
    assert effects(db, schema_name) == [("a", 1), ("b", 1)]
    assert recorded(db, schema_name, job_id) == [("a", {"attempt": 1}, 1),
                                                 ("b", {"attempt": 1}, 1)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_scheduled_inside_a_step_commits_or_rolls_back_with_it(
        kind: str, tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str, start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job = finished(client, client.schedule_task(f"schedules_{kind}"))
    assert job.state == "done", job.error
    targets = db.execute(q(schema_name, "SELECT id, parameters FROM {0}.jobs"
                                        " WHERE task = 'target' ORDER BY id")).fetchall()
    assert targets == [(job.result["kept"], {"n": 1}), (job.result["outside"], {"n": 3})]
    assert [s.name for s in client.get_steps(job.id)] == ["kept"]


# --- a child killed -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_killed_after_a_step_commits_the_next_attempt_goes_on_from_there(
        kind: str, tasks_dir: Path, tmp_path: Path, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str, start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    gate = gate_at(tmp_path, "a", "after")
    job_id = client.schedule_task(f"stepper_{kind}", {
        "schema": schema_name, "steps": ["a", "b"], "gate": gate})
    os.kill(reached(gate), signal.SIGKILL)
    job = finished(client, job_id)
    assert (job.state, job.attempts) == ("done", 2), job.error
    # Step a ran once, in attempt 1; attempt 2 got its recorded value back.
    assert effects(db, schema_name) == [("a", 1), ("b", 2)]
    assert job.result == {"0:a": {"attempt": 1}, "1:b": {"attempt": 2}}
    assert recorded(db, schema_name, job_id) == [("a", {"attempt": 1}, 1),
                                                 ("b", {"attempt": 2}, 2)]


@pytest.mark.parametrize("kind", KINDS)
def test_killed_inside_a_step_its_writes_are_gone_and_the_next_attempt_runs_it(
        kind: str, tasks_dir: Path, tmp_path: Path, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str, start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    gate = gate_at(tmp_path, "b", "inside")
    job_id = client.schedule_task(f"stepper_{kind}", {
        "schema": schema_name, "steps": ["a", "b", "c"], "gate": gate})
    pid = reached(gate)
    # Its insert of b is written, not committed: no one sees it.
    assert effects(db, schema_name) == [("a", 1)]
    os.kill(pid, signal.SIGKILL)
    job = finished(client, job_id)
    assert (job.state, job.attempts) == ("done", 2), job.error
    assert effects(db, schema_name) == [("a", 1), ("b", 2), ("c", 2)]
    assert [(name, attempt) for name, _, attempt in recorded(db, schema_name, job_id)] == [
        ("a", 1), ("b", 2), ("c", 2)]


# --- an attempt that lost its job -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_an_attempt_reaped_during_a_step_commits_nothing_and_stops(
        kind: str, tasks_dir: Path, tmp_path: Path, client: pgcc.Client, pg_dsn: str,
        db: psycopg.Connection[Any], schema_name: str, start_worker: WorkerFactory) -> None:
    """Worker A runs attempt 1 and is inside step b when the reaper takes the
    job back (A's heartbeat made to look stale) and worker B runs attempt 2 to
    the end. When A's step b then tries to commit, it is refused: pgcc.JobLost,
    which the task's `except Exception` does not catch, stops attempt 1; its
    write of b never appears, and attempt 2's do."""
    first = start_worker(tasks_dir, *SLOW_HEARTBEAT)
    gate = gate_at(tmp_path, "b", "inside")
    job_id = client.schedule_task(f"stepper_{kind}", {
        "schema": schema_name, "steps": ["a", "b", "c"], "gate": gate})
    pid = reached(gate)
    db.execute(q(schema_name, "UPDATE {0}.workers SET heartbeat_at = now() - interval"
                              " '1 hour' WHERE id = (SELECT worker_id FROM {0}.jobs"
                              " WHERE id = %s)"), [job_id])
    reaper_once(pg_dsn, schema_name)
    assert job_state(db, schema_name, job_id) == "queued"  # attempt 1 runs on, unaware
    start_worker(tasks_dir, *FAST)
    job = finished(client, job_id)
    assert (job.state, job.attempts) == ("done", 2), job.error
    assert job.result == {"0:a": {"attempt": 1}, "1:b": {"attempt": 2}, "2:c": {"attempt": 2}}

    open_gate(gate)
    wait_for(lambda: gone(pid), 30, "attempt 1's child to stop")
    wait_for(lambda: "stopped by pgcc.JobLost" in first.log(), 30, "worker A's log")
    assert f"[job {job_id}] stopped: job {job_id} is done now" in first.log()
    # Attempt 1's write of b never committed, nor did it go on to step c.
    assert effects(db, schema_name) == [("a", 1), ("b", 2), ("c", 2)]
    assert [(name, attempt) for name, _, attempt in recorded(db, schema_name, job_id)] == [
        ("a", 1), ("b", 2), ("c", 2)]
    # Worker A's record of attempt 1's end was fenced out: the job is as B left it.
    time.sleep(0.5)
    after = client.get_job(job_id)
    assert after is not None
    assert (after.state, after.attempts, after.result) == ("done", 2, job.result)
    assert first.process.poll() is None  # and A goes on working


@pytest.mark.parametrize("kind", KINDS)
def test_a_step_of_an_attempt_handed_over_before_it_began_does_not_run(
        kind: str, tasks_dir: Path, tmp_path: Path, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str, start_worker: WorkerFactory) -> None:
    """The job changes hands (a new claim's token) while attempt 1 is between
    steps: its next step stops it before fn runs."""
    first = start_worker(tasks_dir, *SLOW_HEARTBEAT)
    gate = gate_at(tmp_path, "b", "before")
    job_id = client.schedule_task(f"stepper_{kind}", {
        "schema": schema_name, "steps": ["a", "b"], "gate": gate})
    pid = reached(gate)
    db.execute(q(schema_name, "UPDATE {0}.jobs SET token = {0}.new_token()"
                              " WHERE id = %s"), [job_id])
    open_gate(gate)
    wait_for(lambda: gone(pid), 30, "attempt 1's child to stop")
    wait_for(lambda: "stopped by pgcc.JobLost" in first.log(), 30, "worker A's log")
    assert f"job {job_id} was handed to a newer attempt" in first.log()
    assert effects(db, schema_name) == [("a", 1)]
    # The worker wrote nothing for the attempt: the job still runs under the new token.
    job = client.get_job(job_id)
    assert job is not None and job.state == "running"


def test_a_cancel_during_a_step_commits_none_of_it(
        tasks_dir: Path, tmp_path: Path, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str, start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    gate = gate_at(tmp_path, "b", "inside")
    job_id = client.schedule_task("stepper_sync", {
        "schema": schema_name, "steps": ["a", "b"], "gate": gate})
    reached(gate)
    assert client.cancel_job(job_id)
    open_gate(gate)  # the worker kills the child, or its step finds the job cancelled
    job = finished(client, job_id)
    assert job.state == "cancelled"
    assert effects(db, schema_name) == [("a", 1)]
    assert [name for name, _, _ in recorded(db, schema_name, job_id)] == ["a"]


# --- refused steps ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_name_used_twice_and_a_value_json_cannot_hold_are_refused(
        kind: str, tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str, start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task(f"stepper_{kind}", {
        "schema": schema_name, "steps": ["a", "bad", "c"], "twice": "a", "bad": "bad"})
    job = finished(client, job_id)
    assert job.state == "done", job.error
    assert job.result == {
        "0:a": {"attempt": 1},
        "1:a": "StepError: step 'a' has already run in this job: step names are unique "
               "within a job",
        "2:bad": "ParameterTypeError: step 'bad' value is a set, which does not survive JSON",
        "3:c": {"attempt": 1},
    }
    # Neither the refused step's write nor its record committed.
    assert effects(db, schema_name) == [("a", 1), ("c", 1)]
    assert [name for name, _, _ in recorded(db, schema_name, job_id)] == ["a", "c"]


def test_steps_are_shown_and_pruned_with_their_job(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any], pg_dsn: str,
        schema_name: str, start_worker: WorkerFactory) -> None:
    from tests.paths import run_cli

    start_worker(tasks_dir, *FAST)
    job_id = client.schedule_task("stepper_sync", {"schema": schema_name, "steps": ["a"]})
    assert finished(client, job_id).state == "done"
    shown = run_cli("job", str(job_id), "--dsn", pg_dsn, "--schema", schema_name)
    assert shown.returncode == 0, shown.stderr
    assert "steps:" in shown.stdout and 'a  attempt 1' in shown.stdout, shown.stdout
    as_json = run_cli("job", str(job_id), "--json", "--dsn", pg_dsn, "--schema", schema_name)
    assert as_json.returncode == 0, as_json.stderr
    [step] = json.loads(as_json.stdout)["steps"]
    assert (step["name"], step["value"], step["attempt"]) == ("a", {"attempt": 1}, 1)
    db.execute(q(schema_name, "UPDATE {0}.jobs SET finished_at = now() - interval"
                              " '30 days' WHERE id = %s"), [job_id])
    reaper_once(pg_dsn, schema_name)
    assert client.get_job(job_id) is None
    assert recorded(db, schema_name, job_id) == []
