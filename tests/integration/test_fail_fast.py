"""Failing fast with honest exit codes: 0 done, 2 refused input, 3 the
database cannot be used (one line saying which), 1 anything else; a DSN that
cannot work fails within the connect timeout, never after a pool's wait."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgcc
from tests.paths import PGCC

BAD_DSN = "postgresql://nobody@127.0.0.1:1/x"


def pgcc_run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("PGCC_DSN", "PGCC_SCHEMA", "PGCC_CONNECT_TIMEOUT")}
    return subprocess.run([PGCC, *args], capture_output=True, text=True, timeout=60,
                          check=False, input=stdin, env={**base, **(env or {})}, cwd=cwd)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", [
    ["schedule", "mytask", "{}"], ["cancel", "1"], ["status"], ["status", "--json"],
    ["worker", "--tasks", "."], ["migrate"], ["reaper", "--once"],
])
def test_an_unreachable_database_exits_3_at_once(command: list[str]) -> None:
    started = time.monotonic()
    result = pgcc_run(*command, "--dsn", BAD_DSN)
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "cannot connect to PostgreSQL" in one_line(result.stderr)
    assert took < 8, took
    assert result.stdout == ""


def test_a_server_that_does_not_answer_fails_within_the_connect_timeout() -> None:
    # A non-routable address: the connection hangs until the timeout.
    started = time.monotonic()
    result = pgcc_run("schedule", "mytask", "--connect-timeout", "1",
                      "--dsn", "postgresql://nobody@10.255.255.1:5432/x")
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "cannot connect to PostgreSQL" in one_line(result.stderr)
    assert took < 6, took


def test_a_refused_login_exits_3(pg_dsn: str) -> None:
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname="no_such_database_here")
    result = pgcc_run("status", "--dsn", dsn)
    assert result.returncode == 3
    assert "no_such_database_here" in one_line(result.stderr)


def test_the_client_raises_database_unavailable_within_seconds() -> None:
    assert issubclass(pgcc.DatabaseUnavailable, pgcc.PgccError)
    started = time.monotonic()
    with pytest.raises(pgcc.DatabaseUnavailable, match="cannot connect"), \
            pgcc.Client(BAD_DSN) as client:
        client.schedule_task("mytask", {})
    assert time.monotonic() - started < 5

    async def scheduled() -> int:
        async with pgcc.AsyncClient(BAD_DSN) as aclient:
            return await aclient.schedule_task("mytask", {})
    started = time.monotonic()
    with pytest.raises(pgcc.DatabaseUnavailable):
        asyncio.run(scheduled())
    assert time.monotonic() - started < 5


def schema_exists(db: psycopg.Connection[Any], name: str) -> bool:
    return db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name]).fetchone() \
        is not None


@pytest.mark.parametrize("command", [
    ["schedule", "mytask"], ["cancel", "1"], ["status"], ["reaper", "--once"],
    ["worker", "--tasks", ".", "--no-migrate"], ["grant", "read", "postgres"],
])
def test_an_unknown_schema_exits_3_naming_it_and_nothing_is_created(
        command: list[str], pg_dsn: str, db: psycopg.Connection[Any]) -> None:
    result = pgcc_run(*command, "--dsn", pg_dsn, "--schema", "nosuch_schema_15")
    assert result.returncode == 3, result.stderr
    line = one_line(result.stderr)
    assert "nosuch_schema_15" in line and "pgcc migrate" in line
    assert not schema_exists(db, "nosuch_schema_15")


def test_the_client_refuses_an_unknown_schema(pg_dsn: str, db: psycopg.Connection[Any]
                                              ) -> None:
    with pytest.raises(pgcc.DatabaseUnavailable, match=r"nosuch_schema_15.*pgcc migrate"), \
            pgcc.Client(pg_dsn, schema="nosuch_schema_15") as client:
        client.schedule_task("mytask")
    assert not schema_exists(db, "nosuch_schema_15")


def test_client_honours_pgcc_schema(pg_dsn: str, schema_name: str,
                                    db: psycopg.Connection[Any],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGCC_SCHEMA", schema_name)
    with pgcc.Client(pg_dsn) as client:
        assert client.schema == schema_name
        job_id = client.schedule_task("mytask")
    row = db.execute(f'SELECT task FROM "{schema_name}".jobs WHERE id = %s', [job_id]).fetchone()
    assert row == ("mytask",)


def test_pgcc_embedded_0_refuses_the_fallback(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PGCC_EMBEDDED": "0", "PGCC_HOME": str(tmp_path / "home")}
    result = pgcc_run("schedule", "mytask", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "PGCC_EMBEDDED=0" in one_line(result.stderr)
    assert not (tmp_path / "home").exists()
    monkeypatch.delenv("PGCC_DSN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(pgcc.DatabaseUnavailable, match="PGCC_EMBEDDED=0"), \
            pgcc.Client() as client:
        client.schedule_task("mytask")


def job_parameters(db: psycopg.Connection[Any], schema: str, job_id: int) -> Any:
    row = db.execute(f'SELECT parameters FROM "{schema}".jobs WHERE id = %s',
                     [job_id]).fetchone()
    assert row is not None
    return row[0]


def test_parameters_from_a_file_and_from_stdin(pg_dsn: str, schema_name: str,
                                               db: psycopg.Connection[Any],
                                               tmp_path: Path) -> None:
    big = {"blob": "x" * 200_000, "n": 1}
    path = tmp_path / "params.json"
    path.write_text(json.dumps(big))
    result = pgcc_run("schedule", "mytask", f"@{path}", "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    assert job_parameters(db, schema_name, int(result.stdout)) == big

    result = pgcc_run("schedule", "mytask", "-", "--dsn", pg_dsn, "--schema", schema_name,
                      stdin=json.dumps(big))
    assert result.returncode == 0, result.stderr
    assert job_parameters(db, schema_name, int(result.stdout)) == big


def test_parameters_from_a_missing_file_are_refused(pg_dsn: str, schema_name: str,
                                                    db: psycopg.Connection[Any],
                                                    tmp_path: Path) -> None:
    result = pgcc_run("schedule", "mytask", f"@{tmp_path}/none.json",
                      "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 2
    assert "none.json" in one_line(result.stderr)
    result = pgcc_run("schedule", "mytask", "-", "--dsn", pg_dsn, "--schema", schema_name,
                      stdin="[1]")
    assert result.returncode == 2
    assert "JSON object" in one_line(result.stderr)
    row = db.execute(f'SELECT count(*) FROM "{schema_name}".jobs').fetchone()
    assert row == (0,)


def test_schedule_notes_a_task_no_live_worker_has(pg_dsn: str, schema_name: str) -> None:
    result = pgcc_run("schedule", "othertsk", "--queue", "qx",
                      "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0
    assert result.stdout.strip().isdigit()
    line = one_line(result.stderr)
    assert "othertsk" in line and "no live worker" in line


def test_version_and_short_help() -> None:
    from importlib.metadata import version

    result = pgcc_run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pgcc {version('pgcc')}"
    assert pgcc_run("-h").stdout == pgcc_run("--help").stdout
    assert "--concurrency" in pgcc_run("worker", "-h").stdout


@pytest.mark.parametrize(("command", "shown"), [
    (["worker"], ["2 x cores", "[default: 600]", "[default: 30]", "[default: tasks]"]),
    (["schedule"], ["@FILE", "- from stdin"]),
    (["status"], ["--watch", "--json"]),
    (["migrate"], ["[default: pgcc]", "--connect-timeout"]),
])
def test_help_shows_the_defaults(command: list[str], shown: list[str]) -> None:
    result = pgcc_run(*command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for words in shown:
        assert words in text, (words, result.stdout)


def test_embedded_status_exits_1_when_not_running(tmp_path: Path) -> None:
    result = pgcc_run("embedded", "status", env={"PGCC_HOME": str(tmp_path / "home")},
                      cwd=tmp_path)
    assert result.returncode == 1
    assert "not running" in result.stdout
