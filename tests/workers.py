"""Real `pgcc worker` processes for tests, and waiting on the jobs table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from pgcc.queries import Queries
from pgcc.worker.messages import JobState, Response
from pgcc.worker.outcomes import OutcomeWriter

PGCC = str(Path(sys.executable).parent / "pgcc")
T = TypeVar("T")


class WorkerProcess:
    """A `pgcc worker` subprocess; its log goes to a file the test can read."""

    def __init__(self, dsn: str, schema: str, tasks_dir: Path, log_path: Path,
                 *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [PGCC, "worker", "--dsn", dsn, "--schema", schema,
                   "--tasks", str(tasks_dir), *args]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
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


class WorkerFactory:
    def __init__(self, dsn: str, schema: str, tmp_path: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def __call__(self, tasks_dir: Path, *args: str, env: dict[str, str] | None = None
                 ) -> WorkerProcess:
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(self.dsn, self.schema, tasks_dir, log_path, *args, env=env)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def start_worker(pg_dsn: str, schema_name: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """start_worker(tasks_dir, *cli_args) -> WorkerProcess; all stopped after the test."""
    factory = WorkerFactory(pg_dsn, schema_name, tmp_path)
    yield factory
    factory.stop_all()


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
    return dict(conn.execute(query).fetchall())  # type: ignore[arg-type]


def all_jobs_final(conn: psycopg.Connection[Any], schema: str) -> bool:
    states = job_states(conn, schema)
    return not states.get("queued") and not states.get("running")


def write_task(folder: Path, name: str, source: str) -> Path:
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
