"""`pgcc worker` with real worker processes, real children, real signals, real PostgreSQL.

Each test writes its own small tasks folder into tmp_path, starts one or more
`pgcc worker` subprocesses on the test's fresh schema, and then checks what a
user would check: the rows of the jobs table and the worker's log.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import pgcc
from tests import logged_task
from tests.helpers import q, status_json
from tests.paths import PGCC, WORKER_TASKS
from tests.workers import (
    FAST,
    WorkerFactory,
    WorkerProcess,
    all_jobs_final,
    copy_tasks,
    job_states,
    records,
    wait_for,
    write_task,
)

OK_SOURCE = (WORKER_TASKS / "ok.py").read_text()


def tasks_of(tmp_path: Path, *names: str, **renamed: str) -> Path:
    """A tasks folder holding just these modules of tests/tasks/worker."""
    return copy_tasks(tmp_path / "tasks", WORKER_TASKS, *names, **renamed)


# --- helpers -------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("show_worker_logs")


def job(db: psycopg.Connection[Any], schema: str, job_id: int) -> dict[str, Any]:
    cur = db.cursor(row_factory=dict_row)
    row = cur.execute(q(schema, "SELECT * FROM {}.jobs WHERE id = %s"), [job_id]).fetchone()
    assert row is not None, f"job {job_id} is not in the jobs table"
    return row


def state_of(db: psycopg.Connection[Any], schema: str, job_id: int) -> str:
    return str(job(db, schema, job_id)["state"])


def wait_state(db: psycopg.Connection[Any], schema: str, job_id: int, *states: str,
               timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: ((row := job(db, schema, job_id))["state"] in states and row) or None,
                    timeout, f"job {job_id} to be {'/'.join(states)}")


def wait_final(db: psycopg.Connection[Any], schema: str, timeout: float = 60) -> None:
    wait_for(lambda: all_jobs_final(db, schema), timeout, "every job to finish")


def wait_ready(worker: WorkerProcess, timeout: float = 30) -> None:
    wait_for(lambda: " ready: " in worker.log(), timeout, "the worker to be ready")


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a process, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), fields[19]


def descendants(pid: int) -> dict[tuple[int, str], int]:
    """Every live process below `pid`, as (pid, start time) so that a reused pid does
    not count, mapped to its parent's pid."""
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] != "Z":
            children[stat[1]].append((int(entry), stat[2]))
    found: dict[tuple[int, str], int] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, []):
            if child not in found:
                found[child] = parent
                todo.append(child[0])
    return found


def alive(process: tuple[int, str]) -> bool:
    stat = _stat(process[0])
    return stat is not None and stat[0] != "Z" and stat[2] == process[1]


def assert_no_process_left(worker_pid: int, family: dict[tuple[int, str], int]) -> None:
    """After the worker exited: the processes that ran jobs (the pool's children,
    below the worker's own helpers) are gone at once; the helpers themselves
    (forkserver, resource tracker) go as soon as they see the worker's end."""
    job_runners = [p for p, parent in family.items() if parent != worker_pid]
    assert job_runners, family
    assert not [p for p in job_runners if alive(p)]
    wait_for(lambda: not [p for p in family if alive(p)], 10,
             "the worker's helper processes to exit")


# --- run(params) and run(params, ctx), sync and async --------------------------------------


def test_sync_and_async_run_with_and_without_ctx(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "sync_plain", "sync_ctx", "async_plain", "async_ctx")
    params = {"n": 7, "nested": {"list": [1, 2.5, None, "é"]}, "secret": "s3cr3t-value"}
    ids = {name: client.schedule_task(name, params, queue="q1" if "ctx" in name else None)
           for name in ("sync_plain", "sync_ctx", "async_plain", "async_ctx")}
    worker = start_worker(tasks, *FAST, "--concurrency", "2")
    wait_final(db, schema_name)

    rows = {name: job(db, schema_name, job_id) for name, job_id in ids.items()}
    for name, row in rows.items():
        assert row["state"] == "done", (name, row["error"])
        assert row["attempts"] == 1
        assert row["error"] is None
        assert row["finished_at"] is not None and row["started_at"] is not None
    assert rows["sync_plain"]["result"] == {"got": params}
    assert rows["sync_ctx"]["result"] == {
        "got": params, "job_id": ids["sync_ctx"], "task": "sync_ctx", "attempt": 1}
    assert rows["async_plain"]["result"] == [7, None, True, "x"]
    assert rows["async_ctx"]["result"] == {
        "job_id": ids["async_ctx"], "task": "async_ctx", "attempt": 1}

    # One line per start and end, with id, task, queue, attempt and duration;
    # parameters stay out of the log.
    log = worker.log()
    assert f"job {ids['sync_plain']} (sync_plain, attempt 1) started" in log
    assert re.search(rf"job {ids['sync_ctx']} \(sync_ctx, queue q1, attempt 1\) done in "
                     r"[0-9.]+ ms", log), log
    assert re.search(rf"job {ids['async_ctx']} \(async_ctx, queue q1, attempt 1\) done in ",
                     log), log
    assert "s3cr3t-value" not in log
    assert worker.stop() == 0


# --- a raised exception is a response -------------------------------------------------------


def test_raised_exception_is_failed_with_traceback_and_not_retried(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "boom", "aboom", "ok")
    runs = tmp_path / "runs.jsonl"
    failing = client.schedule_task("boom", {"n": 42, "log": str(runs)})
    async_failing = client.schedule_task("aboom", {})
    worker = start_worker(tasks, *FAST)
    wait_final(db, schema_name)

    row = job(db, schema_name, failing)
    assert row["state"] == "failed"
    assert row["attempts"] == 1
    assert row["result"] is None
    assert row["error"].splitlines()[0] == "ValueError: bad value 42"
    assert "Traceback (most recent call last)" in row["error"]
    assert "helper_that_raises" in row["error"] and "boom.py" in row["error"]
    assert row["attempt_errors"] == []
    arow = job(db, schema_name, async_failing)
    assert arow["state"] == "failed" and arow["attempts"] == 1
    assert arow["error"].startswith("KeyError: 'missing thing'")
    assert "Traceback" in arow["error"]

    # Not retried: later jobs run past the point where a retry's backoff (~1 s) ends,
    # and the failing task still ran once.
    later = client.schedule_task("ok", {}, after=1500)
    wait_state(db, schema_name, later, "done")
    assert len(records(runs)) == 1
    assert job(db, schema_name, failing)["attempts"] == 1
    assert state_of(db, schema_name, failing) == "failed"
    assert f"job {failing} (boom, attempt 1) failed in" in worker.log()
    assert "ValueError: bad value 42" in worker.log()


def test_results_and_errors_postgresql_cannot_store_fail_the_job_not_the_worker(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    # Each returns what its name says (see tests/tasks/worker).
    returns = ["nul_result", "surrogate_result", "nan_result", "set_result", "too_deep_result"]
    # Text that merely looks like a NUL escape is fine: lookalike.
    tasks = tasks_of(tmp_path, *returns, "nul_error", "surrogate_error", "lookalike")
    names = [*returns, "nul_error", "surrogate_error", "lookalike"]
    ids = {name: client.schedule_task(name, {}) for name in names}
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_final(db, schema_name)
    for name in names[:-1]:
        row = job(db, schema_name, ids[name])
        assert row["state"] == "failed" and row["attempts"] == 1, (name, row)
    for name in returns:
        assert job(db, schema_name, ids[name])["error"].startswith(
            "run returned a value that is not JSON"), name
    assert job(db, schema_name, ids["nul_error"])["error"].startswith(
        "ValueError: bad \\x00 byte")
    assert job(db, schema_name, ids["surrogate_error"])["error"].startswith("ValueError: ")
    row = job(db, schema_name, ids["lookalike"])
    assert row["state"] == "done" and row["result"] == "\\u0000 \U0001F600"
    assert worker.process.poll() is None
    assert worker.stop() == 0


# --- no response: crashes ------------------------------------------------------------------


# Task (see tests/tasks/worker) and how its crash is told.
CRASHES = {
    "crash_exit": "exited with code 1",  # os._exit(1)
    "crash_kill": "killed by SIGKILL",  # kills itself
    "crash_oom": "out of memory",  # raises MemoryError
}


def test_crashes_are_retried_after_backoff_then_dead(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, *CRASHES, "ok")
    runs = tmp_path / "runs.jsonl"
    crashing = {name: client.schedule_task(name, {"log": str(runs)}) for name in CRASHES}
    worker = start_worker(tasks, *FAST, "--concurrency", "2")

    # After the first crash: back to queued, attempts 1, due again about 1 s later.
    for name, job_id in crashing.items():
        def crashed_once(job_id: int = job_id) -> dict[str, Any] | None:
            r = job(db, schema_name, job_id)
            return r if r["state"] in ("queued", "dead") and r["attempts"] >= 1 else None
        row = wait_for(crashed_once, 30, f"{name} to crash once")
        if row["state"] == "queued":
            assert row["attempts"] == 1
            assert CRASHES[name] in row["error"]
            failed_at = dt.datetime.fromisoformat(row["attempt_errors"][0]["at"])
            backoff = (row["run_at"] - failed_at).total_seconds()
            assert 0.85 <= backoff <= 1.15, backoff

    # Other jobs still run while the crashing ones wait and crash again.
    oks = [client.schedule_task("ok", {}) for _ in range(5)]
    wait_final(db, schema_name)
    for job_id in oks:
        assert state_of(db, schema_name, job_id) == "done"

    by_job = defaultdict(list)
    for rec in records(runs):
        by_job[rec["job"]].append(rec)
    for name, job_id in crashing.items():
        row = job(db, schema_name, job_id)
        reason = CRASHES[name]
        assert row["state"] == "dead", (name, row)
        assert row["attempts"] == 2
        assert row["finished_at"] is not None
        assert [e["attempt"] for e in row["attempt_errors"]] == [1, 2]
        assert all(reason in e["error"] for e in row["attempt_errors"]), row["attempt_errors"]
        assert reason in row["error"]
        # Each attempt really ran, in its own child, the second after the backoff.
        first, second = by_job[job_id]
        assert (first["attempt"], second["attempt"]) == (1, 2)
        assert second["t"] - first["t"] >= 0.85
        assert f"job {job_id} is dead" in worker.log()
        assert re.search(rf"job {job_id} \({name}, attempt 1\) gave no response: .*{reason}",
                         worker.log())

    # The worker kept running through all of it and still takes jobs.
    assert worker.process.poll() is None
    last = client.schedule_task("ok", {})
    wait_state(db, schema_name, last, "done")
    assert worker.stop() == 0


def test_a_crashed_job_runs_again_after_its_backoff_without_waiting_for_a_poll(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    """A retry announces nothing: the worker that wrote it sets its own timer for it."""
    tasks = tasks_of(tmp_path, "crash_once")
    runs = tmp_path / "runs.jsonl"
    worker = start_worker(tasks, "--lease", "2", "--poll-interval", "30")
    wait_ready(worker)
    job_id = client.schedule_task("crash_once", {"log": str(runs)})
    row = wait_state(db, schema_name, job_id, "done", timeout=10)
    assert row["attempts"] == 2
    first, second = records(runs)
    assert 0.85 <= second["t"] - first["t"] <= 5, second["t"] - first["t"]


# --- no response: timeouts -----------------------------------------------------------------


def test_task_timeout_kills_and_retries_then_dead(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "slow", "ok")  # slow: a timeout of 1 s, sleeps 30 s
    runs = tmp_path / "runs.jsonl"
    slow = client.schedule_task("slow", {"log": str(runs)})
    worker = start_worker(tasks, *FAST, "--concurrency", "2")

    row = wait_for(lambda: (r := job(db, schema_name, slow))["attempts"] >= 1
                   and r["state"] != "running" and r, 30, "the first timeout")
    assert row["state"] == "queued" and row["attempts"] == 1
    assert "timed out after 1 s" in row["error"]
    ok = client.schedule_task("ok", {})
    row = wait_state(db, schema_name, slow, "dead")
    assert state_of(db, schema_name, ok) == "done"
    assert row["attempts"] == 2
    assert [e["attempt"] for e in row["attempt_errors"]] == [1, 2]
    assert all("timed out after 1 s" in e["error"] for e in row["attempt_errors"])
    runs_seen = records(runs)
    assert [r["attempt"] for r in runs_seen] == [1, 2]  # killed: never woke up
    # The children that ran it are gone.
    for rec in runs_seen:
        assert _stat(rec["pid"]) is None or _stat(rec["pid"])[0] == "Z"  # type: ignore[index]
    assert re.search(rf"job {slow} \(slow, attempt 1\) gave no response: timed out after 1 s",
                     worker.log())
    assert worker.process.poll() is None
    assert worker.stop() == 0


def test_cli_timeout_is_the_default_and_a_task_timeout_wins(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    # Both sleep params["seconds"]; sleepy has one attempt, patient a timeout of 20 s.
    tasks = tasks_of(tmp_path, "sleepy", "patient")
    log = tmp_path / "runs.jsonl"
    sleepy = client.schedule_task("sleepy", {"log": str(log), "seconds": 30})
    patient = client.schedule_task("patient", {"log": str(log), "seconds": 2})
    start_worker(tasks, *FAST, "--concurrency", "2", "--timeout", "1")
    row = wait_state(db, schema_name, sleepy, "dead")
    assert row["attempts"] == 1
    assert row["attempt_errors"][0]["error"] == "timed out after 1 s"
    row = wait_state(db, schema_name, patient, "done")
    assert row["result"] == "slept"


# --- jobs no worker here can run ------------------------------------------------------------


def test_unknown_task_stays_queued_and_visible(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, pg_dsn: str,
        client: pgcc.Client, start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "ok")
    unknown = client.schedule_task("nosuchtask", {"a": 1})
    unknown_in_queue = client.schedule_task("nosuchtask", {"a": 2}, queue="other")
    # Queue order is strict: a known task behind it in its queue waits for it.
    behind = client.schedule_task("ok", {}, queue="other")
    worker = start_worker(tasks, *FAST)
    done = [client.schedule_task("ok", {}) for _ in range(3)]
    for job_id in done:
        wait_state(db, schema_name, job_id, "done")
    # Several polls later it is still waiting, untouched.
    later = client.schedule_task("ok", {}, after=500)
    wait_state(db, schema_name, later, "done")
    for job_id in (unknown, unknown_in_queue, behind):
        row = job(db, schema_name, job_id)
        assert row["state"] == "queued" and row["attempts"] == 0 and row["worker_id"] is None
    report = status_json(pg_dsn, schema_name)
    assert report["tasks"]["nosuchtask"] == {"queued": 2, "running": 0}
    assert report["queues"]["other"] == {"queued": 2, "running": 0}
    assert report["jobs"]["queued"] == 3
    assert report["jobs"]["done"] == 4
    assert worker.process.poll() is None


def test_broken_modules_are_reported_and_the_others_run(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    # Broken on purpose: each module's text is the point.
    tasks = tmp_path / "tasks"
    write_task(tasks, "syntax_broken", "def run(params:\n    return 1\n")
    write_task(tasks, "import_broken", "import no_such_module_pgcc_xyz\n" + OK_SOURCE)
    write_task(tasks, "raises_on_import", "raise RuntimeError('config missing')\n" + OK_SOURCE)
    write_task(tasks, "no_run", "x = 1\n")
    copy_tasks(tasks, WORKER_TASKS, "ok")
    broken = client.schedule_task("syntax_broken", {})
    ok = client.schedule_task("ok", {})
    worker = start_worker(tasks, *FAST)
    wait_ready(worker)
    wait_state(db, schema_name, ok, "done")
    log = worker.log()
    lines = log.splitlines()

    def reported(filename: str, error: str) -> bool:
        return any(filename in line and error in line for line in lines)

    assert reported("syntax_broken.py", "SyntaxError"), log
    assert reported("import_broken.py", "No module named 'no_such_module_pgcc_xyz'"), log
    assert reported("raises_on_import.py", "RuntimeError: config missing"), log
    assert reported("no_run.py", "run"), log
    ready = next(line for line in lines if " ready: " in line)
    assert "ok" in ready and "syntax_broken" not in ready
    # A job for a broken task is not claimed by this worker: it waits for one that has it.
    row = job(db, schema_name, broken)
    assert row["state"] == "queued" and row["attempts"] == 0
    assert worker.process.poll() is None


# --- stopping -------------------------------------------------------------------------------


def test_sigterm_lets_a_running_job_finish_within_grace(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "sleeper")
    log = tmp_path / "runs.jsonl"
    job_id = client.schedule_task("sleeper", {"log": str(log), "seconds": 2})
    worker = start_worker(tasks, *FAST, "--concurrency", "2", "--grace", "20")
    wait_for(lambda: records(log), 30, "the job to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in worker.log(), 10, "the worker to see SIGTERM")
    # Stopped workers claim nothing new.
    after_stop = client.schedule_task("sleeper", {"log": str(log), "seconds": 0})
    assert worker.process.wait(30) == 0
    row = job(db, schema_name, job_id)
    assert row["state"] == "done" and row["result"] == "slept" and row["attempts"] == 1
    assert [r["event"] for r in records(log)] == ["start", "end"]
    row = job(db, schema_name, after_stop)
    assert row["state"] == "queued" and row["attempts"] == 0
    assert "stopped" in worker.log()


def test_sigterm_past_grace_puts_the_job_back_and_leaves_no_process(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "sleeper")
    log = tmp_path / "runs.jsonl"
    job_id = client.schedule_task("sleeper", {"log": str(log), "seconds": 30}, queue="q")
    behind = client.schedule_task("sleeper", {"log": str(log), "seconds": 0}, queue="q")
    worker = start_worker(tasks, *FAST, "--concurrency", "3", "--grace", "0.5")
    wait_for(lambda: records(log), 30, "the job to start")
    family = descendants(worker.pid)
    job_child = records(log)[0]["pid"]
    assert job_child in {pid for pid, _ in family}
    assert len(family) >= 3  # the pool (and whatever helps start it)
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0

    row = job(db, schema_name, job_id)
    assert row["state"] == "queued", row  # not failed, not lost
    assert row["attempts"] == 1 and row["worker_id"] is None
    assert row["finished_at"] is None and row["error"] is None
    assert job(db, schema_name, behind)["state"] == "queued"  # still behind it
    assert [r["event"] for r in records(log)] == ["start"]
    assert_no_process_left(worker.pid, family)
    assert not db.execute(q(schema_name, "SELECT * FROM {}.queue_locks")).fetchall()
    assert "put back" in worker.log()

    # Nothing lost: the next worker (whose sleeper is quick) runs it, then the job behind it.
    rerun = tmp_path / "tasks2"
    write_task(rerun, "sleeper", "def run(params, ctx):\n    return 'quick'\n")
    start_worker(rerun, *FAST)
    row = wait_state(db, schema_name, behind, "done")
    first = job(db, schema_name, job_id)
    assert first["state"] == "done" and first["attempts"] == 2
    assert first["finished_at"] <= row["started_at"]


def test_a_job_put_back_at_shutdown_does_not_use_up_its_attempts(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "flaky")
    log = tmp_path / "runs.jsonl"
    job_id = client.schedule_task("flaky", {"log": str(log)})
    first = start_worker(tasks, *FAST, "--grace", "0.2")
    wait_for(lambda: records(log), 30, "the first attempt to start")
    first.signal(signal.SIGTERM)
    assert first.process.wait(30) == 0
    row = job(db, schema_name, job_id)
    assert row["state"] == "queued" and row["attempts"] == 1
    # Put back by a graceful stop, then one crash: one no-response of the two allowed.
    start_worker(tasks, *FAST)
    row = wait_state(db, schema_name, job_id, "done", "dead")
    assert row["state"] == "done", row
    assert row["result"] == 3 and row["attempts"] == 3
    assert [r["attempt"] for r in records(log)] == [1, 2, 3]
    put_back, crash = row["attempt_errors"]
    assert "put back" in put_back["error"] and put_back["attempt"] == 1
    assert "exited with code 1" in crash["error"] and crash["attempt"] == 2
    # The backoff after the first no-response is the first step (~1 s).
    backoff = (row["run_at"] - dt.datetime.fromisoformat(crash["at"])).total_seconds()
    assert 0.85 <= backoff <= 1.15, backoff


def test_second_sigint_stops_at_once_and_loses_nothing(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "sleeper")
    log = tmp_path / "runs.jsonl"
    ids = [client.schedule_task("sleeper", {"log": str(log), "seconds": 60}) for _ in range(2)]
    waiting = client.schedule_task("sleeper", {"log": str(log), "seconds": 60})
    worker = start_worker(tasks, *FAST, "--concurrency", "2", "--grace", "120")
    wait_for(lambda: len(records(log)) == 2, 30, "two jobs to start")
    family = descendants(worker.pid)
    worker.signal(signal.SIGINT)
    wait_for(lambda: "stopping" in worker.log(), 10, "the worker to see SIGINT")
    assert worker.process.poll() is None  # the first one waits for the jobs
    worker.signal(signal.SIGINT)
    # Well before the 60 s jobs or the 120 s grace would end; not a clean stop,
    # so not 0: 130, as for any command interrupted by Ctrl-C.
    assert worker.process.wait(20) == 130
    for job_id in [*ids, waiting]:
        row = job(db, schema_name, job_id)
        assert row["state"] == "queued", row
    assert sorted(job(db, schema_name, i)["attempts"] for i in [*ids, waiting]) == [0, 1, 1]
    assert_no_process_left(worker.pid, family)
    assert job_states(db, schema_name) == {"queued": 3}


# --- when jobs start ------------------------------------------------------------------------


def test_delayed_jobs_start_on_time(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, pg_dsn: str,
        client: pgcc.Client, start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "ok")
    # A long poll interval: only the worker's timer for the next delayed job is on time.
    worker = start_worker(tasks, "--lease", "2", "--poll-interval", "10")
    wait_ready(worker)
    out = subprocess.run([PGCC, "schedule", "ok", "{}", "--after", "1500", "--dsn", pg_dsn,
                          "--schema", schema_name], capture_output=True, text=True, check=True)
    delayed = int(out.stdout)
    past = client.schedule_task("ok", {}, at=dt.datetime.now(dt.timezone.utc)
                                - dt.timedelta(hours=1))
    row = wait_state(db, schema_name, past, "done")
    assert row["started_at"] - row["created_at"] < dt.timedelta(seconds=1)
    assert state_of(db, schema_name, delayed) == "queued"
    row = wait_state(db, schema_name, delayed, "done")
    waited = row["started_at"] - row["created_at"]
    assert dt.timedelta(seconds=1.5) <= waited <= dt.timedelta(seconds=3), waited


def test_tasks_schedule_other_tasks_from_run(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    # countdown, a long chain through itself: how a long job is split into pieces.
    tasks = tasks_of(tmp_path, "parent_sync", "parent_async", "child", "countdown")
    parents = {kind: client.schedule_task(f"parent_{kind}", {}) for kind in ("sync", "async")}
    client.schedule_task("countdown", {"n": 5})
    start_worker(tasks, *FAST, "--concurrency", "2")
    wait_for(lambda: job_states(db, schema_name).get("done") == 10 and all_jobs_final(
        db, schema_name), 30, "parents, children and the countdown")
    for kind, parent in parents.items():
        row = job(db, schema_name, parent)
        assert row["state"] == "done"
        child = job(db, schema_name, row["result"])
        assert child["task"] == "child" and child["state"] == "done"
        assert child["parameters"] == {"from": parent, "kind": kind}
        assert child["result"] == {"params": {"from": parent, "kind": kind}, "me": child["id"]}
    assert job(db, schema_name, job(db, schema_name, parents["sync"])["result"])["queue"] \
        == "children"
    counts = db.execute(q(schema_name, "SELECT array_agg(result::int ORDER BY id) FROM {}.jobs "
                          "WHERE task = 'countdown'")).fetchone()
    assert counts is not None and counts[0] == [5, 4, 3, 2, 1, 0]


# --- queues under contention ----------------------------------------------------------------

def test_queues_are_exclusive_and_ordered_under_contention(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, pg_dsn: str,
        client: pgcc.Client, start_worker: WorkerFactory) -> None:
    tasks = tmp_path / "tasks"
    env = logged_task.install(db, schema_name, pg_dsn, tasks)
    workers = [start_worker(tasks, *FAST, "--concurrency", "8", env=env) for _ in range(3)]
    for worker in workers:
        wait_ready(worker)
    queues, per_queue, free = 20, 30, 60
    jobs = [{"task": "logged", "parameters": {"sleep": 0.002}, "queue": f"q{i % queues}"}
            for i in range(queues * per_queue)]
    jobs += [{"task": "logged", "parameters": {"sleep": 0.002}} for _ in range(free)]
    ids = client.schedule_tasks(jobs)
    assert len(ids) == len(jobs)
    wait_final(db, schema_name, timeout=120)

    assert job_states(db, schema_name) == {"done": len(jobs)}
    rows = db.execute(q(schema_name, "SELECT job_id, queue, started, ended, pid "
                                     "FROM {}.run_log ORDER BY started, job_id")).fetchall()
    ran: dict[int, int] = defaultdict(int)
    for job_id, *_ in rows:
        ran[job_id] += 1
    assert set(ran) == set(ids) and set(ran.values()) == {1}  # every job exactly once
    by_queue: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        if row[1] is not None:
            by_queue[row[1]].append(row)
    assert len(by_queue) == queues
    for queue, runs in by_queue.items():
        assert len(runs) == per_queue
        # Runs in start order: each starts after every earlier run of its queue ended,
        # and belongs to a later job than all of them.
        for index, (job_id, _, started, _, _) in enumerate(runs[1:], 1):
            earlier = runs[:index]
            last_end = max(run[3] for run in earlier)
            assert started >= last_end, f"{queue}: job {job_id} overlaps an earlier run"
            assert job_id > max(run[0] for run in earlier), \
                f"{queue}: job {job_id} started after a later job"
    # The work really was shared: several workers and many children took part.
    worker_ids = db.execute(q(schema_name, "SELECT count(DISTINCT worker_id) FROM {}.jobs"
                              )).fetchone()
    assert worker_ids is not None and worker_ids[0] == 3
    assert len({row[4] for row in rows}) > 8
    for worker in workers:
        assert worker.stop() == 0


def test_a_retrying_job_keeps_its_place_at_the_head_of_its_queue(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, pg_dsn: str,
        client: pgcc.Client, start_worker: WorkerFactory) -> None:
    tasks = tmp_path / "tasks"
    env = logged_task.install(db, schema_name, pg_dsn, tasks)
    first = client.schedule_task("logged", {"crash_on_attempt": 1}, queue="q")
    second = client.schedule_task("logged", {}, queue="q")
    other = client.schedule_task("logged", {}, queue="elsewhere")
    start_worker(tasks, *FAST, "--concurrency", "3", env=env)
    start_worker(tasks, *FAST, "--concurrency", "3", env=env)
    wait_final(db, schema_name)
    a, b = job(db, schema_name, first), job(db, schema_name, second)
    assert a["state"] == "done" and a["attempts"] == 2 and a["result"] == 2
    assert len(a["attempt_errors"]) == 1
    assert b["state"] == "done" and b["attempts"] == 1
    assert state_of(db, schema_name, other) == "done"
    rows = dict(db.execute(q(schema_name, "SELECT job_id, ended FROM {}.run_log")).fetchall())
    started = dict(db.execute(q(schema_name, "SELECT job_id, started FROM {}.run_log"))
                   .fetchall())
    # B waited through A's backoff: it started after A's second attempt had ended.
    assert started[second] >= rows[first]
    assert b["started_at"] >= a["finished_at"]


def test_a_queue_whose_tasks_live_on_different_workers_runs_in_order(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str,
        client: pgcc.Client, start_worker: WorkerFactory) -> None:
    """Each of two workers has one of a queue's two tasks. A worker goes on with
    its queue's next job only when it has that task; otherwise the queue's head
    is recorded for the other worker, which hears of it at once (not at its
    next poll: polls are 30 s apart here), and the queue keeps its order."""
    first, second = tmp_path / "first", tmp_path / "second"
    log = tmp_path / "runs.jsonl"
    copy_tasks(first, WORKER_TASKS, ping="sleeper")
    copy_tasks(second, WORKER_TASKS, pong="sleeper")
    slow_poll = ("--lease", "2", "--poll-interval", "30")
    for tasks in (first, second):
        wait_ready(start_worker(tasks, *slow_poll, "--concurrency", "2"))
    ids = client.schedule_tasks({"task": ("ping", "pong")[n % 2], "queue": "q",
                                 "parameters": {"log": str(log), "seconds": 0.01}}
                                for n in range(12))
    wait_final(db, schema_name, timeout=30)
    assert job_states(db, schema_name) == {"done": 12}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["job"] for e in events if e["event"] == "start"] == ids
    assert [e["event"] for e in events] == ["start", "end"] * 12, "a job overlapped"
    workers = db.execute(q(schema_name, "SELECT task, count(DISTINCT worker_id) FROM {}.jobs "
                                        "GROUP BY task ORDER BY task")).fetchall()
    assert workers == [("ping", 1), ("pong", 1)]


def test_cancelling_a_head_no_worker_can_run_unblocks_its_queue(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str,
        client: pgcc.Client, start_worker: WorkerFactory) -> None:
    """A typo'd task at the head of a queue holds up the jobs behind it; once
    it is cancelled, the queue runs on."""
    tasks = tasks_of(tmp_path, "ok")
    typo = client.schedule_task("okk", {}, queue="q")
    behind = [client.schedule_task("ok", {}, queue="q") for _ in range(3)]
    wait_ready(start_worker(tasks, *FAST))
    with pytest.raises(pytest.fail.Exception):
        wait_for(lambda: state_of(db, schema_name, behind[0]) == "done", timeout=1)
    assert client.cancel(typo)
    wait_for(lambda: all(state_of(db, schema_name, b) == "done" for b in behind), timeout=10,
             what="the jobs behind the cancelled head to run")


def test_the_package_and_the_command_entry_import_no_client() -> None:
    """`pgcc worker` starts its forkserver before psycopg and the CLI are imported,
    which only helps while the package and its entry point stay light."""
    code = ("import sys, pgcc, pgcc.__main__\n"
            "print(sorted(m for m in ('psycopg', 'typer', 'pgcc._client', 'pgcc._cli')"
            " if m in sys.modules))\n"
            "import pgcc._client\n"
            "print(pgcc.Client is pgcc._client.Client, pgcc.Job is pgcc._client.Job)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.splitlines() == ["[]", "True True"]


def test_children_are_reused_across_jobs(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    tasks = tasks_of(tmp_path, "pid")
    ids = [client.schedule_task("pid", {}) for _ in range(5)]
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_final(db, schema_name)
    pids = {job(db, schema_name, i)["result"] for i in ids}
    assert len(pids) == 1 and worker.pid not in pids


def test_jobs_waiting_behind_a_crash_go_back_unstarted(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        start_worker: WorkerFactory) -> None:
    """Fast jobs are sent to a child several at a time; when one of them crashes the
    child, those behind it never ran: they go back keeping attempt 1, not counted."""
    tasks = tasks_of(tmp_path, "quick", "crash")  # crash: os._exit(3), one attempt
    worker = start_worker(tasks, *FAST, "--concurrency", "1", "--prefetch", "3")
    # Enough quick jobs first for the worker to see that its jobs are fast.
    warm = [client.schedule_task("quick", {}) for _ in range(50)]
    wait_final(db, schema_name)
    with client.connection() as conn, conn.transaction():
        crash = client.schedule_task("crash", {}, connection=conn)
        behind = [client.schedule_task("quick", {}, connection=conn) for _ in range(20)]
    wait_final(db, schema_name)
    assert state_of(db, schema_name, crash) == "dead"
    for job_id in warm + behind:
        row = job(db, schema_name, job_id)
        assert (row["state"], row["attempts"], row["attempt_errors"]) == ("done", 1, []), row
    # Some did wait behind the crash: the worker put them back.
    assert re.search(r"job \d+ \(crash, attempt 1\) gave no response", worker.log())
    assert worker.process.poll() is None
    assert worker.stop() == 0
