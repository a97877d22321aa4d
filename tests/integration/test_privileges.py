"""Least privilege, with real LOGIN roles: the SQL doors run with their owner's
rights, PUBLIC may run no pgcc function, and `pgcc grant enqueue|worker|read`
gives a role what its kind needs and nothing more."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

import pgcc
from tests.helpers import call, grant
from tests.paths import run_cli


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
