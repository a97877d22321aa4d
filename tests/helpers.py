"""Small helpers shared by test files: SQL on a test schema, and roles."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from tests.paths import run_cli


def q(schema: str, text: str) -> sql.Composed:
    """A query on the test schema: `{}` stands for it."""
    return sql.SQL(text).format(sql.Identifier(schema))


def call(dsn: str, schema: str, query: str, params: Any = None) -> Any:
    """The first column of the first row of `query` (`{}` the schema), on a new
    connection to `dsn` (as the role it names); None if no row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql.SQL(query).format(sql.Identifier(schema)), params).fetchone()
        return row[0] if row else None


def status_json(dsn: str, schema: str) -> dict[str, Any]:
    """`pgcc status --json`, which must succeed, as a dict."""
    result = run_cli("status", "--json", "--dsn", dsn, "--schema", schema)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def reaper_once(dsn: str, schema: str, *args: str) -> str:
    """`pgcc reaper --once`, which must succeed; what it printed."""
    result = run_cli("reaper", "--once", "--dsn", dsn, "--schema", schema, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def grant(pg_dsn: str, schema: str, kind: str, role: str) -> None:
    """`pgcc grant kind role`, which must succeed and say so."""
    result = run_cli("grant", kind, role, "--dsn", pg_dsn, "--schema", schema)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"granted {kind} on schema {schema} to {role}"


def insert_expired_worker(conn: psycopg.Connection[Any], schema: str) -> int:
    """A worker row whose 1 s lease ran out an hour ago: its worker is long gone,
    and only a leading reaper's rescuer gives back what it ran."""
    row = conn.execute(q(schema, (
        "INSERT INTO {}.workers (hostname, pid, tasks, concurrency, lease, started_at,"
        " heartbeat_at) VALUES ('ghost', 0, '{{noop}}', 1, interval '1 s',"
        " now() - interval '2 h', now() - interval '1 h') RETURNING id"))).fetchone()
    assert row is not None
    return int(row[0])
