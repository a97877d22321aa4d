"""Real `pgcc worker` processes for tests, and waiting on the jobs table."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

import pgcc
from pgcc._queries import Queries
from pgcc._worker.messages import JobState, Response
from pgcc._worker.outcomes import OutcomeWriter
from tests.paths import PGCC, REPO

T = TypeVar("T")

# Short leases and polls keep the suite quick; the behaviour under test is the same.
LEASE = 2.0
FAST = ("--lease", f"{LEASE:g}", "--poll-interval", "0.2")
FINAL = ("done", "failed", "dead", "cancelled")


def _python_path() -> str:
    inherited = os.environ.get("PYTHONPATH")
    return f"{REPO}{os.pathsep}{inherited}" if inherited else str(REPO)


class PgccProcess:
    """A `pgcc` subprocess (`pgcc ARGS`); its log goes to a file the test can read."""

    def __init__(self, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [PGCC, *args], stdout=self._log, stderr=subprocess.STDOUT,
            # The repository on the path: test task modules share helpers
            # (tests/tasks/recording.py).
            env={**os.environ, "PYTHONPATH": _python_path(), **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class WorkerProcess(PgccProcess):
    """A `pgcc worker` subprocess."""

    def __init__(self, dsn: str, schema: str, tasks_dir: Path, log_path: Path,
                 *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(log_path, "worker", "--dsn", dsn, "--schema", schema,
                         "--tasks", str(tasks_dir), *args, env=env)


class WorkerFactory:
    def __init__(self, dsn: str, schema: str, tmp_path: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.tmp_path = tmp_path
        self.started: list[PgccProcess] = []

    def __call__(self, tasks_dir: Path, *args: str, env: dict[str, str] | None = None
                 ) -> WorkerProcess:
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(self.dsn, self.schema, tasks_dir, log_path, *args, env=env)
        self.started.append(worker)
        return worker

    def start_on(self, dsn: str, tasks_dir: Path, *args: str, schema: str | None = None
                 ) -> WorkerProcess:
        """A worker that reaches the database through `dsn` (a proxy, another role
        or database), of the test's schema unless told; stopped after the test
        like the others."""
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(dsn, schema or self.schema, tasks_dir, log_path, *args)
        self.started.append(worker)
        return worker

    def reaper(self, *args: str) -> PgccProcess:
        """A `pgcc reaper` of the test's schema, stopped after the test like the workers."""
        log_path = self.tmp_path / f"reaper-{len(self.started)}.log"
        reaper = PgccProcess(log_path, "reaper", "--dsn", self.dsn, "--schema", self.schema,
                             *args)
        self.started.append(reaper)
        return reaper

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def start_worker(pg_dsn: str, schema_name: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """start_worker(tasks_dir, *cli_args) -> WorkerProcess; all stopped after the test."""
    factory = WorkerFactory(pg_dsn, schema_name, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def show_worker_logs(start_worker: WorkerFactory, db: psycopg.Connection[Any],
                     schema_name: str) -> Iterator[None]:
    """On a failure, pytest shows what this prints: the jobs and every worker's
    log. A module takes it with `pytestmark = pytest.mark.usefixtures(...)`."""
    yield
    print_worker_logs(start_worker, db, schema_name)


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a test task appended to `path` (none yet: empty)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def print_worker_logs(factory: WorkerFactory, conn: psycopg.Connection[Any],
                      schema: str) -> None:
    """What a failed test shows (pytest prints a test's output on failure): the
    jobs by state and the end of every worker's log."""
    with contextlib.suppress(psycopg.Error):
        print("jobs by state:", job_states(conn, schema))
    for worker in factory.started:
        print(f"--- {worker.log_path.name} (pid {worker.pid}, "
              f"exit {worker.process.poll()}) ---\n{worker.log()[-20000:]}")


def finished(client: pgcc.Client, job_id: int, timeout: float = 30) -> pgcc.Job:
    """The job, once it has reached a final state."""
    def check() -> pgcc.Job | None:
        job = client.get_job(job_id)
        return job if job is not None and job.state in FINAL else None
    return wait_for(check, timeout, f"job {job_id} to finish")


def wait_for(check: Callable[[], T | None], timeout: float = 30, what: str = "condition",
             interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def job_states(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    query = sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state").format(
        sql.Identifier(schema))
    return dict(conn.execute(query).fetchall())


def all_jobs_final(conn: psycopg.Connection[Any], schema: str) -> bool:
    states = job_states(conn, schema)
    return not states.get("queued") and not states.get("running")


def copy_tasks(folder: Path, source: Path, *names: str, **renamed: str) -> Path:
    """A tasks folder holding just these modules of `source` (a folder of
    tests/tasks), and `new_name=module` copies under another task name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in [*((name, name) for name in names), *renamed.items()]:
        shutil.copy(source / f"{module}.py", folder / f"{name}.py")
    return folder


def write_task(folder: Path, name: str, source: str) -> Path:
    """A task module written from text: for modules whose text is the point
    (broken ones, one that changes); others are real files in tests/tasks."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    return path


def finish_as_worker(conn: psycopg.Connection[Any], queries: Queries, worker: int,
                     outcomes: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Responses ([id, token, state, result, error, queue or None]) written the
    way a worker writes them, with no room for a queue's next job; the ids
    written."""
    writer = OutcomeWriter(queries, [], [])
    writer.add([Response(o[0], o[1], JobState(o[2]), o[3], o[4], *o[5:]) for o in outcomes])
    with conn.transaction():
        results = [conn.execute(query, params).fetchall()
                   for _, query, params, *_ in writer.statements(worker, 0)]
    if any(o[5:] and o[5] is not None for o in outcomes):
        return [(row[1],) for row in results[-1] if not row[0]]
    return results[-1]
