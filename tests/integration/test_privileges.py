"""Least privilege, with real LOGIN roles: the SQL doors run with their owner's
rights, PUBLIC may run no pgcc function, and `pgcc grant enqueue|worker|read`
gives a role what its kind needs and nothing more."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgcc
from tests.paths import run_cli
from tests.workers import WorkerFactory, WorkerProcess, wait_for, write_task


@pytest.fixture
def login_role(db: psycopg.Connection[Any], pg_dsn: str) -> Iterator[Callable[[], tuple[str,
                                                                                       str]]]:
    """make() -> (role, dsn): a new LOGIN role with no rights, and a DSN as it."""
    made: list[str] = []

    def make() -> tuple[str, str]:
        role = f"pgcc_role_{uuid.uuid4().hex[:10]}"
        db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        made.append(role)
        params = conninfo_to_dict(pg_dsn)
        params.pop("password", None)
        return role, make_conninfo(**{**params, "user": role})

    yield make
    for role in made:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def grant(pg_dsn: str, schema: str, kind: str, role: str) -> None:
    result = run_cli("grant", kind, role, "--dsn", pg_dsn, "--schema", schema)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"granted {kind} on schema {schema} to {role}"


def call(dsn: str, schema: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql.SQL(query).format(sql.Identifier(schema)), params).fetchone()
        return row[0] if row else None


def test_a_role_without_a_grant_can_run_no_door(pg_dsn: str, schema_name: str,
                                                login_role: Any) -> None:
    _, dsn = login_role()
    for query in ("SELECT {}.schedule_task('t')", "SELECT {}.schedule_tasks('[]')",
                  "SELECT {}.cancel_job(1)"):
        with pytest.raises(errors.InsufficientPrivilege):
            call(dsn, schema_name, query)


def test_an_enqueue_role_uses_the_doors_and_nothing_else(
        pg_dsn: str, schema_name: str, login_role: Any, db: psycopg.Connection[Any]) -> None:
    role, dsn = login_role()
    grant(pg_dsn, schema_name, "enqueue", role)
    job = call(dsn, schema_name, "SELECT {}.schedule_task('t', '{{\"a\": 1}}', NULL, 5000)")
    ids = call(dsn, schema_name, """SELECT {}.schedule_tasks('[{{"task": "t"}}]')""")
    assert len(ids) == 1
    with pgcc.Client(dsn, schema=schema_name) as client:
        assert client.schedule_task("t", {"b": 2}, queue="q") > job
    assert call(dsn, schema_name, "SELECT {}.cancel_job(%s)", [job]) is True
    # The doors' rules hold for it as for anyone.
    with pytest.raises(errors.InvalidParameterValue):
        call(dsn, schema_name, "SELECT {}.schedule_task('')")
    # No table rights: it reads no job, and writes no row past the doors.
    for query in ("SELECT parameters FROM {}.jobs", "SELECT * FROM {}.settings",
                  "INSERT INTO {}.jobs (task, run_at) VALUES ('t', 'infinity') RETURNING id",
                  "UPDATE {}.jobs SET state = 'done' RETURNING id",
                  "DELETE FROM {}.jobs RETURNING id"):
        with pytest.raises(errors.InsufficientPrivilege):
            call(dsn, schema_name, query)
    states = db.execute(sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state ORDER BY 1"
                                ).format(sql.Identifier(schema_name))).fetchall()
    assert states == [("cancelled", 1), ("queued", 2)]


def test_a_worker_role_runs_jobs_without_owning_anything(
        pg_dsn: str, schema_name: str, login_role: Any, client: pgcc.Client,
        tmp_path: Path, start_worker: WorkerFactory) -> None:
    role, dsn = login_role()
    grant(pg_dsn, schema_name, "worker", role)
    tasks = tmp_path / "tasks"
    # In a queue, beside a queue whose head no worker has: the worker takes the
    # queues in, goes on with their next jobs and records heads, as the role.
    write_task(tasks, "hello", "def run(params, ctx):\n"
                              "    ctx.schedule_task('hello', {'n': params['n'] + 1}, queue='q')"
                              " if params['n'] < 2 else None\n"
                              "    return params['n']\n")
    client.schedule_task("nobody-has-this", {}, queue="blocked")
    job = client.schedule_task("hello", {"n": 0}, queue="q")
    worker = WorkerProcess(dsn, schema_name, tasks, tmp_path / "role-worker.log")
    start_worker.started.append(worker)
    wait_for(lambda: _done_count(pg_dsn, schema_name) == 3, timeout=30,
             what="the job, and the two it scheduled from its task, to run as the role")
    assert client.get_job(job).result == 0  # type: ignore[union-attr]
    result = run_cli("reaper", "--once", "--dsn", dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    assert worker.stop() == 0, worker.log()


def _done_count(pg_dsn: str, schema: str) -> int:
    return int(call(pg_dsn, schema, "SELECT count(*) FROM {}.jobs WHERE state = 'done'"))


def test_a_read_role_sees_everything_and_changes_nothing(
        pg_dsn: str, schema_name: str, login_role: Any, client: pgcc.Client) -> None:
    role, dsn = login_role()
    grant(pg_dsn, schema_name, "read", role)
    client.schedule_task("t", {"secret": 1})
    assert call(dsn, schema_name, "SELECT count(*) FROM {}.jobs") == 1
    status = run_cli("status", "--dsn", dsn, "--schema", schema_name)
    assert status.returncode == 0, status.stderr
    for query in ("SELECT {}.schedule_task('t')", "UPDATE {}.jobs SET state = 'done'"):
        with pytest.raises(errors.InsufficientPrivilege):
            call(dsn, schema_name, query)


def test_grant_refuses_an_unknown_kind_and_names_the_choices(pg_dsn: str,
                                                             schema_name: str) -> None:
    result = run_cli("grant", "admin", "someone", "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 2
    assert "enqueue" in result.stderr and "worker" in result.stderr
