"""The scheduling rules of the SPEC, through all three doors: SQL, Python, CLI.

Refused means: a clear error (SQL: SQLSTATE 22023; Python: a PgccError that is
a ValueError or TypeError naming the offending key path; CLI: exit 2 and one
line on stderr) and no row written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import pgcc
from pgcc import _schema as pgcc_schema
from tests.conftest import fresh_schema
from tests.paths import run_cli

LIMIT = 1024 * 1024  # the default limit on a parameters document, in bytes
UTC = dt.timezone.utc
QUOTES_TASK = "x'; DROP TABLE jobs; --\""
QUOTES_QUEUE = "q\"); DELETE FROM jobs; --'"


# --- helpers -------------------------------------------------------------------------------


def doc_of_size(size: int) -> dict[str, str]:
    """A parameters document whose jsonb text (`{"a": "xx..."}`) is `size` bytes."""
    return {"a": "x" * (size - len('{"a": ""}'))}


def count_jobs(db: psycopg.Connection[Any], schema: str, task: str | None = None) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.jobs").format(sql.Identifier(schema))
    if task is not None:
        query = query + sql.SQL(" WHERE task = %s")
    row = db.execute(query, [task] if task is not None else None).fetchone()
    assert row is not None
    return int(row[0])


def job_row(db: psycopg.Connection[Any], schema: str, job_id: int) -> dict[str, Any]:
    cur = db.cursor(row_factory=dict_row)
    row = cur.execute(
        sql.SQL(
            "SELECT *, now() AS db_now FROM {}.jobs WHERE id = %s"
        ).format(sql.Identifier(schema)),
        [job_id],
    ).fetchone()
    assert row is not None, f"no row for job {job_id}"
    return row


def assert_created_about_now(row: dict[str, Any]) -> None:
    age = row["db_now"] - row["created_at"]
    assert dt.timedelta(0) <= age < dt.timedelta(seconds=5)


# SQL door


SQL_TYPES = {"task": "text", "parameters": "jsonb", "at": "timestamptz", "after": "bigint",
             "queue": "text"}


def sql_schedule(db: psycopg.Connection[Any], schema: str, **args: Any) -> int:
    """SELECT <schema>.schedule_task(name => value, ...) with bound values."""
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}::{}").format(sql.Identifier(k), sql.Placeholder(k),
                                       sql.SQL(SQL_TYPES[k]))
        for k in args
    )
    query = sql.SQL("SELECT {}.schedule_task({})").format(sql.Identifier(schema), arguments)
    row = db.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])


def sql_schedule_many(db: psycopg.Connection[Any], schema: str, jobs: Any) -> list[int]:
    query = sql.SQL("SELECT {}.schedule_tasks(%s::jsonb)").format(sql.Identifier(schema))
    row = db.execute(query, [json.dumps(jobs)]).fetchone()
    assert row is not None
    return list(row[0])


def sql_refused(db: psycopg.Connection[Any], schema: str,
                call: Callable[[], object]) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        call()
    assert info.value.sqlstate == "22023", (info.value.sqlstate, str(info.value))
    assert count_jobs(db, schema) == 0
    return info.value


# Python door: the same calls through pgcc.Client and pgcc.AsyncClient


class PyDoor:
    def __init__(self, kind: str, dsn: str, schema: str) -> None:
        self.kind, self.dsn, self.schema = kind, dsn, schema

    def schedule_task(self, *args: Any, **kwargs: Any) -> int:
        if self.kind == "sync":
            with pgcc.Client(self.dsn, schema=self.schema) as client:
                return client.schedule_task(*args, **kwargs)

        async def go() -> int:
            async with pgcc.AsyncClient(self.dsn, schema=self.schema) as client:
                return await client.schedule_task(*args, **kwargs)

        return asyncio.run(go())

    def schedule_tasks(self, jobs: Any) -> list[int]:
        if self.kind == "sync":
            with pgcc.Client(self.dsn, schema=self.schema) as client:
                return client.schedule_tasks(jobs)

        async def go() -> list[int]:
            async with pgcc.AsyncClient(self.dsn, schema=self.schema) as client:
                return await client.schedule_tasks(jobs)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def rules_schema(pg_dsn: str) -> Iterator[str]:
    with fresh_schema(pg_dsn, "t_rules") as name:
        yield name


@pytest.fixture
def schema_name(rules_schema: str, db: psycopg.Connection[Any]) -> str:
    """One schema for the module (migrating one per test costs more than these tests),
    emptied and reset to the default limit before each test."""
    name = sql.Identifier(rules_schema)
    db.execute(sql.SQL("DELETE FROM {}.jobs").format(name))
    db.execute(sql.SQL("UPDATE {}.settings SET value = %s WHERE key = 'max_parameters_bytes'")
               .format(name), [str(LIMIT)])
    return rules_schema


@pytest.fixture(params=["sync", "async"])
def door(request: pytest.FixtureRequest, pg_dsn: str, schema_name: str) -> PyDoor:
    return PyDoor(request.param, pg_dsn, schema_name)


def py_refused(db: psycopg.Connection[Any], door: PyDoor,
               call: Callable[[], object]) -> str:
    with pytest.raises(pgcc.PgccError) as info:
        call()
    assert isinstance(info.value, (ValueError, TypeError)), type(info.value).__mro__
    assert count_jobs(db, door.schema) == 0
    message = str(info.value)
    assert message and "\n" not in message
    return message


# CLI door


def cli_schedule(dsn: str, schema: str, *args: str) -> int:
    result = run_cli("schedule", *args, "--dsn", dsn, "--schema", schema)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit(), result.stdout
    assert result.stdout == result.stdout.strip() + "\n"
    return int(result.stdout)


# --- bad inputs ------------------------------------------------------------------------------


class Opaque:
    """Stands for any object of the caller's: a model instance, a connection..."""


def deep(value: Any) -> dict[str, Any]:
    """`value` nested inside dicts and lists, at key path a.b[2]."""
    return {"a": {"b": [0, 1, value]}}


def nested(levels: int) -> dict[str, Any]:
    """{"a": [[...]]}, `levels` containers deep."""
    value: list[Any] = []
    for _ in range(levels - 2):
        value = [value]
    return {"a": value}


BAD_PARAMETERS_PY = [
    pytest.param([1, 2], "parameters", id="list"),
    pytest.param("text", "parameters", id="string"),
    pytest.param(42, "parameters", id="number"),
    pytest.param(4.5, "parameters", id="float"),
    pytest.param(True, "parameters", id="bool"),
    pytest.param(deep(float("nan")), "a.b[2]", id="nan"),
    pytest.param(deep(float("inf")), "a.b[2]", id="infinity"),
    pytest.param(deep(float("-inf")), "a.b[2]", id="minus-infinity"),
    pytest.param(deep(dt.datetime.now(UTC)), "a.b[2]", id="datetime"),
    pytest.param(deep(dt.date.today()), "a.b[2]", id="date"),
    pytest.param(deep({1, 2}), "a.b[2]", id="set"),
    pytest.param(deep(b"bytes"), "a.b[2]", id="bytes"),
    pytest.param(deep(Opaque()), "a.b[2]", id="custom-object"),
    pytest.param(deep(decimal.Decimal("1.5")), "a.b[2]", id="decimal"),
    pytest.param(deep({7: "x"}), "a.b[2]", id="int-key"),
    pytest.param(deep({("t", 1): "x"}), "a.b[2]", id="tuple-key"),
    pytest.param(deep("nul\x00inside"), "a.b[2]", id="nul-in-string"),
    pytest.param(deep({"k\x00": 1}), "a.b[2]", id="nul-in-key"),
    pytest.param(deep("\ud800"), "a.b[2]", id="lone-surrogate"),
    pytest.param({"x": [{"y": {"z": [float("nan")]}}]}, "x[0].y.z[0]", id="deeper"),
    pytest.param({"odd key": [float("inf")]}, '["odd key"][0]', id="odd-key"),
    pytest.param(nested(501), "a[0][0]", id="nested-501-deep"),
    pytest.param(nested(5000), "nested more than 500 levels deep", id="nested-5000-deep"),
]

# Names that break the rules. NUL cannot travel in PostgreSQL text or in argv,
# so that case is for the Python door only.
BAD_NAMES = [
    pytest.param("", id="empty"),
    pytest.param(" ", id="space"),
    pytest.param("    ", id="spaces"),
    pytest.param("x" * 201, id="201-chars"),
    pytest.param("é" * 201, id="201-wide-chars"),
    pytest.param("bad\nname", id="newline"),
    pytest.param("bad\x07name", id="bell"),
    pytest.param("tab\tname", id="tab"),
    pytest.param("del\x7f", id="del"),
    pytest.param("c1\x85", id="c1-control"),
]
NUL_NAME = pytest.param("nul\x00name", id="nul")
SURROGATE_NAME = pytest.param("a\ud800", id="lone-surrogate")

GOOD_NAMES = [
    pytest.param("x" * 200, id="200-chars"),
    pytest.param("🎉" * 200, id="200-astral-chars"),
    pytest.param(QUOTES_TASK, id="quotes-semicolons"),
    pytest.param(QUOTES_QUEUE, id="quotes-semicolons-2"),
    pytest.param("Robert'); DROP TABLE students;-- {schema} %s %(x)s $1", id="placeholders"),
    pytest.param(" padded ", id="inner-spaces"),
]


def name_args(field: str, name: Any) -> dict[str, Any]:
    """schedule_task arguments putting `name` in `field` (task or queue)."""
    return {"task": name} if field == "task" else {"task": "othertask", "queue": name}


# --- SQL door ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "42", "true", "null"])
def test_sql_refuses_parameters_not_an_object(
        db: psycopg.Connection[Any], schema_name: str, text: str) -> None:
    err = sql_refused(db, schema_name,
                      lambda: sql_schedule(db, schema_name, task="t", parameters=text))
    assert "parameters" in str(err)


def test_sql_refuses_sql_null_parameters(db: psycopg.Connection[Any], schema_name: str) -> None:
    err = sql_refused(db, schema_name,
                      lambda: sql_schedule(db, schema_name, task="t", parameters=None))
    assert "parameters" in str(err)


@pytest.mark.parametrize("text", [
    '{"a": {"b": [0, 1, NaN]}}',
    '{"a": {"b": [0, 1, Infinity]}}',
    '{"a": {"b": [0, 1, "nul\\u0000inside"]}}',
])
def test_sql_jsonb_itself_refuses_what_json_cannot_hold(
        db: psycopg.Connection[Any], schema_name: str, text: str) -> None:
    # jsonb has no NaN, Infinity or NUL: PostgreSQL refuses them while reading the
    # value, before schedule_task runs, with a data exception of its own (22P02 or
    # 22P05) rather than 22023.
    with pytest.raises(psycopg.DataError) as info:
        sql_schedule(db, schema_name, task="t", parameters=text)
    assert info.value.sqlstate is not None and info.value.sqlstate.startswith("22")
    assert count_jobs(db, schema_name) == 0


@pytest.mark.parametrize("field", ["task", "queue"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_sql_refuses_bad_names(
        db: psycopg.Connection[Any], schema_name: str, field: str, name: Any) -> None:
    err = sql_refused(db, schema_name,
                      lambda: sql_schedule(db, schema_name, **name_args(field, name)))
    assert field in str(err)


def test_sql_refuses_null_task(db: psycopg.Connection[Any], schema_name: str) -> None:
    sql_refused(db, schema_name, lambda: sql_schedule(db, schema_name, task=None))


def test_sql_refuses_at_and_after_together(db: psycopg.Connection[Any], schema_name: str) -> None:
    at = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    err = sql_refused(db, schema_name,
                      lambda: sql_schedule(db, schema_name, task="t", at=at, after=1000))
    assert "at" in str(err) and "after" in str(err)


def test_sql_refuses_negative_after(db: psycopg.Connection[Any], schema_name: str) -> None:
    err = sql_refused(db, schema_name,
                      lambda: sql_schedule(db, schema_name, task="t", after=-1))
    assert "after" in str(err)


def test_sql_refuses_infinite_at(db: psycopg.Connection[Any], schema_name: str) -> None:
    # (A naive time cannot reach the SQL door: `at` is timestamptz, so PostgreSQL
    # reads a zone-less literal in the session's TimeZone before the call.)
    query = sql.SQL("SELECT {}.schedule_task('t', at => 'infinity')").format(
        sql.Identifier(schema_name))
    sql_refused(db, schema_name, lambda: db.execute(query))


def test_parameters_size_helper_is_exact(db: psycopg.Connection[Any]) -> None:
    row = db.execute("SELECT octet_length(%s::jsonb::text)",
                     [json.dumps(doc_of_size(LIMIT))]).fetchone()
    assert row is not None and row[0] == LIMIT


def test_sql_parameters_size_limit(db: psycopg.Connection[Any], schema_name: str) -> None:
    over = json.dumps(doc_of_size(LIMIT + 1))
    err = sql_refused(db, schema_name,
                      lambda: sql_schedule(db, schema_name, task="t", parameters=over))
    assert "bytes" in str(err)
    job_id = sql_schedule(db, schema_name, task="t", parameters=json.dumps(doc_of_size(LIMIT)))
    assert job_row(db, schema_name, job_id)["parameters"] == doc_of_size(LIMIT)


def test_sql_parameters_size_limit_is_configurable(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    db.execute(sql.SQL("UPDATE {}.settings SET value = '100' WHERE key = 'max_parameters_bytes'")
               .format(sql.Identifier(schema_name)))
    sql_refused(db, schema_name, lambda: sql_schedule(
        db, schema_name, task="t", parameters=json.dumps(doc_of_size(101))))
    sql_schedule(db, schema_name, task="t", parameters=json.dumps(doc_of_size(100)))


def test_sql_schedules_a_job(db: psycopg.Connection[Any], schema_name: str) -> None:
    job_id = sql_schedule(db, schema_name, task="othertask", parameters='{"myvalue": 42}',
                          queue="billing")
    assert isinstance(job_id, int)
    row = job_row(db, schema_name, job_id)
    assert (row["task"], row["parameters"], row["queue"]) == ("othertask", {"myvalue": 42},
                                                                "billing")
    assert row["state"] == "queued" and row["attempts"] == 0
    assert row["run_at"] == row["scheduled_at"] == row["created_at"]
    assert_created_about_now(row)


def test_sql_defaults(db: psycopg.Connection[Any], schema_name: str) -> None:
    query = sql.SQL("SELECT {}.schedule_task('othertask')").format(sql.Identifier(schema_name))
    row = db.execute(query).fetchone()
    assert row is not None
    job = job_row(db, schema_name, row[0])
    assert job["parameters"] == {} and job["queue"] is None


def test_sql_after_delays_the_job(db: psycopg.Connection[Any], schema_name: str) -> None:
    job = job_row(db, schema_name, sql_schedule(db, schema_name, task="t", after=5000))
    assert job["run_at"] - job["created_at"] == dt.timedelta(milliseconds=5000)
    assert_created_about_now(job)


def test_sql_at_in_the_past_runs_as_soon_as_possible(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    at = dt.datetime.now(UTC) - dt.timedelta(hours=3)
    job = job_row(db, schema_name, sql_schedule(db, schema_name, task="t", at=at))
    assert job["scheduled_at"] == job["run_at"] == job["created_at"]
    assert_created_about_now(job)


def test_sql_at_in_the_future(db: psycopg.Connection[Any], schema_name: str) -> None:
    at = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    job = job_row(db, schema_name, sql_schedule(db, schema_name, task="t", at=at))
    assert job["run_at"] == job["scheduled_at"] == at


@pytest.mark.parametrize("field", ["task", "queue"])
@pytest.mark.parametrize("name", GOOD_NAMES)
def test_sql_accepts_good_names_verbatim(
        db: psycopg.Connection[Any], schema_name: str, field: str, name: Any) -> None:
    job = job_row(db, schema_name, sql_schedule(db, schema_name, **name_args(field, name)))
    assert job[field] == name
    assert count_jobs(db, schema_name) == 1


def test_sql_schedule_inside_a_transaction(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        sql_schedule(conn, schema_name, task="t")
        assert count_jobs(db, schema_name) == 0
        conn.rollback()
        sql_schedule(conn, schema_name, task="t")
        conn.commit()
    assert count_jobs(db, schema_name) == 1


# SQL bulk door


def test_sql_bulk_returns_ids_in_order(db: psycopg.Connection[Any], schema_name: str) -> None:
    jobs = [
        {"task": "t0", "parameters": {"n": 0}},
        {"task": "t1", "parameters": {"n": 1}, "queue": "q", "after": 1000},
        {"task": "t2", "at": (dt.datetime.now(UTC) + dt.timedelta(hours=1)).isoformat()},
        {"task": "t3"},
    ]
    ids = sql_schedule_many(db, schema_name, jobs)
    assert len(ids) == 4 and ids == sorted(ids)
    rows = [job_row(db, schema_name, i) for i in ids]
    assert [r["task"] for r in rows] == ["t0", "t1", "t2", "t3"]
    assert [r["parameters"] for r in rows] == [{"n": 0}, {"n": 1}, {}, {}]
    assert rows[1]["queue"] == "q"
    assert rows[1]["run_at"] - rows[1]["created_at"] == dt.timedelta(seconds=1)
    assert sql_schedule_many(db, schema_name, []) == []


BAD_BULK_ELEMENTS_SQL = [
    pytest.param({"task": ""}, id="empty-task"),
    pytest.param({"task": "bad\nname"}, id="newline-task"),
    pytest.param({"task": "t", "queue": "x" * 201}, id="long-queue"),
    pytest.param({"task": "t", "parameters": [1]}, id="parameters-list"),
    pytest.param({"task": "t", "after": -1}, id="negative-after"),
    pytest.param({"task": "t", "after": 1, "at": "2030-01-01T00:00:00+00:00"}, id="at-and-after"),
    pytest.param({"task": "t", "at": "2030-01-01T00:00:00"}, id="naive-at"),
    pytest.param({"task": "t", "parameters": doc_of_size(LIMIT + 1)}, id="too-big"),
    pytest.param({"parameters": {}}, id="no-task"),
    pytest.param({"task": "t", "colour": "red"}, id="unknown-key"),
    pytest.param([1], id="not-an-object"),
]


@pytest.mark.parametrize("position", [0, 3])
@pytest.mark.parametrize("bad", BAD_BULK_ELEMENTS_SQL)
def test_sql_bulk_refuses_the_whole_batch(
        db: psycopg.Connection[Any], schema_name: str, position: int, bad: Any) -> None:
    jobs: list[Any] = [{"task": f"good{i}"} for i in range(4)]
    jobs.insert(position, bad)
    err = sql_refused(db, schema_name, lambda: sql_schedule_many(db, schema_name, jobs))
    assert f"jobs[{position}]" in str(err)


# --- Python door ---------------------------------------------------------------------------


def test_error_classes() -> None:
    assert issubclass(pgcc.ScheduleError, pgcc.PgccError)
    assert issubclass(pgcc.ScheduleError, ValueError)
    assert issubclass(pgcc.ParameterTypeError, pgcc.ScheduleError)
    assert issubclass(pgcc.ParameterTypeError, TypeError)


@pytest.mark.parametrize(("parameters", "path"), BAD_PARAMETERS_PY)
def test_python_refuses_bad_parameters(
        db: psycopg.Connection[Any], door: PyDoor, parameters: Any, path: str) -> None:
    message = py_refused(db, door, lambda: door.schedule_task("t", parameters))
    assert path in message


@pytest.mark.parametrize("field", ["task", "queue"])
@pytest.mark.parametrize("name", [*BAD_NAMES, NUL_NAME, SURROGATE_NAME])
def test_python_refuses_bad_names(
        db: psycopg.Connection[Any], door: PyDoor, field: str, name: Any) -> None:
    args = name_args(field, name)
    message = py_refused(db, door, lambda: door.schedule_task(
        args.pop("task"), {}, **args))
    assert field in message


@pytest.mark.parametrize("field", ["task", "queue"])
def test_python_refuses_names_that_are_not_strings(
        db: psycopg.Connection[Any], door: PyDoor, field: str) -> None:
    args = name_args(field, 42)
    with pytest.raises(pgcc.PgccError) as info:
        door.schedule_task(args.pop("task"), {}, **args)
    assert isinstance(info.value, TypeError)
    assert field in str(info.value)
    assert count_jobs(db, door.schema) == 0


@pytest.mark.parametrize(("kwargs", "expect"), [
    pytest.param({"at": dt.datetime.now(UTC) + dt.timedelta(hours=1), "after": 1000}, "after",
                 id="at-and-after"),
    pytest.param({"at": dt.datetime.now(UTC), "after": dt.timedelta(0)}, "after",
                 id="at-and-zero-after"),
    pytest.param({"after": -1}, "after", id="negative-after"),
    pytest.param({"after": dt.timedelta(seconds=-1)}, "after", id="negative-timedelta"),
    pytest.param({"at": dt.datetime(2030, 1, 1, 12, 0)}, "timezone", id="naive-at"),
    pytest.param({"at": dt.datetime.now()}, "timezone", id="naive-now"),
    pytest.param({"at": "2030-01-01T00:00:00+00:00"}, "datetime", id="at-as-text"),
    pytest.param({"after": 1.5}, "after", id="after-float"),
    pytest.param({"after": True}, "after", id="after-bool"),
])
def test_python_refuses_bad_timing(
        db: psycopg.Connection[Any], door: PyDoor, kwargs: dict[str, Any], expect: str) -> None:
    message = py_refused(db, door, lambda: door.schedule_task("t", {}, **kwargs))
    assert expect in message


def test_python_parameters_size_limit(db: psycopg.Connection[Any], door: PyDoor) -> None:
    message = py_refused(db, door, lambda: door.schedule_task("t", doc_of_size(LIMIT + 1)))
    assert "bytes" in message
    job_id = door.schedule_task("t", doc_of_size(LIMIT))
    assert job_row(db, door.schema, job_id)["parameters"] == doc_of_size(LIMIT)


def test_python_accepts_parameters_500_levels_deep(
        db: psycopg.Connection[Any], door: PyDoor) -> None:
    job_id = door.schedule_task("t", nested(500))
    assert job_row(db, door.schema, job_id)["parameters"] == nested(500)


def test_python_schedules_a_job(db: psycopg.Connection[Any], door: PyDoor) -> None:
    job_id = door.schedule_task("othertask", {"myvalue": 42, "nested": {"list": [1, "two", None,
                                                                         True, 2.5]}},
                                queue="billing")
    assert type(job_id) is int
    row = job_row(db, door.schema, job_id)
    assert row["task"] == "othertask"
    assert row["parameters"] == {"myvalue": 42, "nested": {"list": [1, "two", None, True, 2.5]}}
    assert row["queue"] == "billing"
    assert row["state"] == "queued" and row["attempts"] == 0
    assert row["run_at"] == row["scheduled_at"] == row["created_at"]
    assert_created_about_now(row)


def test_python_no_parameters_means_empty_object(db: psycopg.Connection[Any], door: PyDoor) -> None:
    # None is the documented default of `parameters`: it stands for {}.
    for job_id in (door.schedule_task("t"), door.schedule_task("t", None),
                   door.schedule_task("t", {})):
        assert job_row(db, door.schema, job_id)["parameters"] == {}


@pytest.mark.parametrize("after", [
    pytest.param(90_000, id="int-ms"),
    pytest.param(dt.timedelta(minutes=1, seconds=30), id="timedelta"),
    pytest.param(0, id="zero"),
])
def test_python_after_delays_the_job(db: psycopg.Connection[Any], door: PyDoor, after: Any) -> None:
    job = job_row(db, door.schema, door.schedule_task("t", after=after))
    expected = after if isinstance(after, dt.timedelta) else dt.timedelta(milliseconds=after)
    assert job["run_at"] - job["created_at"] == expected
    assert_created_about_now(job)


def test_python_at_in_the_past_runs_as_soon_as_possible(
        db: psycopg.Connection[Any], door: PyDoor) -> None:
    at = dt.datetime.now(UTC) - dt.timedelta(days=2)
    job = job_row(db, door.schema, door.schedule_task("t", at=at))
    assert job["scheduled_at"] == job["run_at"] == job["created_at"]
    assert_created_about_now(job)


def test_python_at_in_the_future(db: psycopg.Connection[Any], door: PyDoor) -> None:
    tz = dt.timezone(dt.timedelta(hours=-5))
    at = dt.datetime.now(tz).replace(microsecond=0) + dt.timedelta(hours=2)
    job = job_row(db, door.schema, door.schedule_task("t", at=at))
    assert job["run_at"] == job["scheduled_at"] == at


@pytest.mark.parametrize("field", ["task", "queue"])
@pytest.mark.parametrize("name", GOOD_NAMES)
def test_python_accepts_good_names_verbatim(
        db: psycopg.Connection[Any], door: PyDoor, field: str, name: Any) -> None:
    args = name_args(field, name)
    job_id = door.schedule_task(args.pop("task"), {"k": name}, **args)
    job = job_row(db, door.schema, job_id)
    assert job[field] == name and job["parameters"] == {"k": name}
    assert count_jobs(db, door.schema) == 1


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "rollback"])
def test_python_connection_joins_the_callers_transaction(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str, commit: bool) -> None:
    with pgcc.Client(pg_dsn, schema=schema_name) as client, psycopg.connect(pg_dsn) as conn:
        job_id = client.schedule_task("t", {"x": 1}, connection=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        # Visible inside the caller's transaction, invisible to everyone else.
        mine = conn.execute(sql.SQL("SELECT count(*) FROM {}.jobs WHERE id = %s")
                            .format(sql.Identifier(schema_name)), [job_id]).fetchone()
        assert mine == (1,)
        assert count_jobs(db, schema_name) == 0
        ids = client.schedule_tasks([{"task": "u"}, {"task": "v"}], connection=conn)
        assert count_jobs(db, schema_name) == 0
        if commit:
            conn.commit()
        else:
            conn.rollback()
    assert count_jobs(db, schema_name) == (3 if commit else 0)
    if commit:
        assert [job_row(db, schema_name, i)["task"] for i in ids] == ["u", "v"]


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "rollback"])
def test_async_connection_joins_the_callers_transaction(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str, commit: bool) -> None:
    async def scenario() -> None:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name) as client, \
                await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            await client.schedule_task("t", {"x": 1}, connection=conn)
            await client.schedule_tasks([{"task": "u"}], connection=conn)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert count_jobs(db, schema_name) == 0
            if commit:
                await conn.commit()
            else:
                await conn.rollback()

    asyncio.run(scenario())
    assert count_jobs(db, schema_name) == (2 if commit else 0)


# Python bulk door


def test_python_bulk_returns_ids_in_order(db: psycopg.Connection[Any], door: PyDoor) -> None:
    at = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    ids = door.schedule_tasks([
        {"task": "t0", "parameters": {"n": 0}},
        {"task": "t1", "parameters": {"n": 1}, "queue": "q", "after": dt.timedelta(seconds=2)},
        {"task": "t2", "at": at},
        {"task": "t3", "after": 500},
    ])
    assert len(ids) == 4 and all(type(i) is int for i in ids) and ids == sorted(ids)
    rows = [job_row(db, door.schema, i) for i in ids]
    assert [r["task"] for r in rows] == ["t0", "t1", "t2", "t3"]
    assert [r["parameters"] for r in rows] == [{"n": 0}, {"n": 1}, {}, {}]
    assert rows[1]["queue"] == "q"
    assert rows[1]["run_at"] - rows[1]["created_at"] == dt.timedelta(seconds=2)
    assert rows[2]["run_at"] == at
    assert rows[3]["run_at"] - rows[3]["created_at"] == dt.timedelta(milliseconds=500)
    assert door.schedule_tasks([]) == []


BAD_BULK_ELEMENTS_PY = [
    pytest.param({"task": "t", "parameters": deep(float("nan"))}, "a.b[2]", id="nan"),
    pytest.param({"task": "t", "parameters": deep(Opaque())}, "a.b[2]", id="object"),
    pytest.param({"task": "t", "parameters": [1]}, "parameters", id="parameters-list"),
    pytest.param({"task": ""}, "task", id="empty-task"),
    pytest.param({"task": "t", "queue": "bad\x07"}, "queue", id="bell-queue"),
    pytest.param({"task": "t", "after": -5}, "after", id="negative-after"),
    pytest.param({"task": "t", "at": dt.datetime(2030, 1, 1)}, "at", id="naive-at"),
    pytest.param({"task": "t", "after": 1, "at": dt.datetime.now(UTC)}, "at", id="both"),
    pytest.param({"task": "t", "parameters": doc_of_size(LIMIT + 1)}, "bytes", id="too-big"),
    pytest.param({"parameters": {}}, "task", id="no-task"),
    pytest.param("othertask", "dict", id="not-a-dict"),
]


@pytest.mark.parametrize("position", [0, 3])
@pytest.mark.parametrize(("bad", "detail"), BAD_BULK_ELEMENTS_PY)
def test_python_bulk_refuses_the_whole_batch(
        db: psycopg.Connection[Any], door: PyDoor, position: int, bad: Any, detail: str) -> None:
    jobs: list[Any] = [{"task": f"good{i}"} for i in range(3)]
    jobs.insert(position, bad)
    message = py_refused(db, door, lambda: door.schedule_tasks(jobs))
    assert f"jobs[{position}]" in message
    assert detail in message


# --- CLI door ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliCase:
    id: str
    args: tuple[str, ...]
    expect: str  # a fragment the one line on stderr must hold
    task: str = "clitask"


def _cli_cases() -> list[CliCase]:
    cases = [
        CliCase("list", ("clitask", "[1, 2]"), "parameters"),
        CliCase("number", ("clitask", "42"), "parameters"),
        CliCase("null", ("clitask", "null"), "parameters"),
        CliCase("nan", ("clitask", '{"a": {"b": [0, 1, NaN]}}'), "a.b[2]"),
        CliCase("infinity", ("clitask", '{"a": {"b": [0, 1, Infinity]}}'), "a.b[2]"),
        CliCase("nul-in-string", ("clitask", '{"a": {"b": [0, 1, "x\\u0000"]}}'), "a.b[2]"),
        CliCase("nul-in-key", ("clitask", '{"a": {"b": [0, 1, {"k\\u0000": 1}]}}'), "a.b[2]"),
        CliCase("duplicate-key", ("clitask", '{"a": 1, "a": 2}'), "twice"),
        CliCase("not-json", ("clitask", '{"a": '), "JSON"),
        CliCase("nested-600-deep", ("clitask", '{"a": ' + "[" * 599 + "]" * 599 + "}"),
                "nested more than 500 levels deep"),
        CliCase("nested-5000-deep", ("clitask", "[" * 5000 + "]" * 5000),
                "nested more than 500 levels deep"),
        CliCase("too-big", ("clitask", json.dumps(doc_of_size(1001))), "bytes"),
        CliCase("at-and-after", ("clitask", "{}", "--at", "2030-01-01T00:00:00+00:00",
                                 "--after", "1000"), "after"),
        CliCase("negative-after", ("clitask", "{}", "--after=-1"), "after"),
        CliCase("naive-at", ("clitask", "{}", "--at", "2030-01-01T00:00:00"), "timezone"),
        CliCase("bad-at", ("clitask", "{}", "--at", "next tuesday"), "ISO 8601"),
    ]
    names = {"empty": "", "spaces": "   ", "201-chars": "x" * 201, "newline": "bad\nname",
             "bell": "bad\x07name"}
    for label, name in names.items():
        cases.append(CliCase(f"task-{label}", (name, "{}"), "task", task=name))
        cases.append(CliCase(f"queue-{label}", ("clitask", "{}", "--queue", name), "queue"))
    return cases


CLI_CASES = _cli_cases()


@pytest.fixture(scope="module")
def cli_refusals(pg_dsn: str) -> Iterator[tuple[str, dict[str, subprocess.CompletedProcess[str]]]]:
    """Every CLI refusal, run at once (each is a process start) against one schema
    whose parameters limit is lowered to 1000 bytes (argv cannot carry 1 MiB)."""
    schema = f"t_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        pgcc_schema.migrate(conn, schema)
        conn.execute(sql.SQL("UPDATE {}.settings SET value = '1000' "
                             "WHERE key = 'max_parameters_bytes'").format(sql.Identifier(schema)))
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = dict(zip(
                [case.id for case in CLI_CASES],
                pool.map(lambda case: run_cli("schedule", *case.args, "--dsn", pg_dsn,
                                              "--schema", schema), CLI_CASES),
                strict=True,
            ))
        yield schema, results
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.id for case in CLI_CASES])
def test_cli_refuses(
        db: psycopg.Connection[Any],
        cli_refusals: tuple[str, dict[str, subprocess.CompletedProcess[str]]],
        case: CliCase) -> None:
    schema, results = cli_refusals
    result = results[case.id]
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert case.expect in lines[0]
    assert count_jobs(db, schema, case.task) == 0


def test_cli_refusals_wrote_no_row(
        db: psycopg.Connection[Any],
        cli_refusals: tuple[str, dict[str, subprocess.CompletedProcess[str]]]) -> None:
    schema, _ = cli_refusals
    assert count_jobs(db, schema) == 0


def test_cli_schedule_prints_only_the_id(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str) -> None:
    result = run_cli("schedule", "othertask", '{"myvalue": 42}', "--queue", "billing",
                     "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit() and result.stdout == result.stdout.strip() + "\n"
    row = job_row(db, schema_name, int(result.stdout))
    assert (row["task"], row["parameters"], row["queue"]) == ("othertask", {"myvalue": 42},
                                                                "billing")
    assert row["run_at"] == row["created_at"]
    assert_created_about_now(row)


def test_cli_timing(pg_dsn: str, db: psycopg.Connection[Any], schema_name: str) -> None:
    delayed = job_row(db, schema_name, cli_schedule(pg_dsn, schema_name, "t", "--after", "60000"))
    assert delayed["run_at"] - delayed["created_at"] == dt.timedelta(minutes=1)
    past = job_row(db, schema_name, cli_schedule(pg_dsn, schema_name, "t", "{}", "--at",
                                                  "2001-02-03T04:05:06Z"))
    assert past["scheduled_at"] == past["run_at"] == past["created_at"]
    assert_created_about_now(past)
    future = job_row(db, schema_name, cli_schedule(pg_dsn, schema_name, "t", "{}", "--at",
                                                    "2999-01-02T03:04:05+02:00"))
    assert future["run_at"] == dt.datetime(2999, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_cli_accepts_good_names_and_the_size_limit(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str) -> None:
    db.execute(sql.SQL("UPDATE {}.settings SET value = '1000' WHERE key = 'max_parameters_bytes'")
               .format(sql.Identifier(schema_name)))
    job_id = cli_schedule(pg_dsn, schema_name, QUOTES_TASK, json.dumps(doc_of_size(1000)),
                          "--queue", QUOTES_QUEUE)
    job = job_row(db, schema_name, job_id)
    assert (job["task"], job["queue"]) == (QUOTES_TASK, QUOTES_QUEUE)
    assert job["parameters"] == doc_of_size(1000)
    job = job_row(db, schema_name, cli_schedule(pg_dsn, schema_name, "é" * 200, "{}",
                                                  "--queue", "q" * 200))
    assert (job["task"], job["queue"]) == ("é" * 200, "q" * 200)
    assert count_jobs(db, schema_name) == 2


# --- the three doors write the same row ----------------------------------------------------


def test_every_door_writes_the_same_row(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str) -> None:
    params = {"myvalue": 42, "list": [1, 2.5, "x", None, True], "nested": {"é": "ü"}}
    ids = [
        sql_schedule(db, schema_name, task="othertask", parameters=json.dumps(params),
                     queue="billing"),
        PyDoor("sync", pg_dsn, schema_name).schedule_task("othertask", params, queue="billing"),
        PyDoor("async", pg_dsn, schema_name).schedule_task("othertask", params, queue="billing"),
        PyDoor("sync", pg_dsn, schema_name).schedule_tasks(
            [{"task": "othertask", "parameters": params, "queue": "billing"}])[0],
        sql_schedule_many(db, schema_name,
                          [{"task": "othertask", "parameters": params, "queue": "billing"}])[0],
        cli_schedule(pg_dsn, schema_name, "othertask", json.dumps(params), "--queue", "billing"),
    ]
    assert len(set(ids)) == len(ids)
    keys = ("task", "parameters", "queue", "state", "attempts", "max_attempts", "started_at",
            "finished_at", "worker_id", "error", "result", "attempt_errors")
    rows = [job_row(db, schema_name, i) for i in ids]
    first = {k: rows[0][k] for k in keys}
    assert first["parameters"] == params
    for row in rows[1:]:
        assert {k: row[k] for k in keys} == first
        assert row["run_at"] == row["scheduled_at"] == row["created_at"]


@pytest.mark.parametrize("with_time", [False, True])
def test_sql_bulk_keeps_the_class_of_an_error_that_is_not_bad_input(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str, with_time: bool) -> None:
    """A lock timeout while inserting is not bad input: it comes back as itself
    (55P03, which a caller may retry), not as 22023 (which says: do not)."""
    at = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    jobs = [{"task": "t", "at": at.isoformat()} if with_time else {"task": "t"}]
    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute(sql.SQL("LOCK TABLE {}.jobs IN EXCLUSIVE MODE").format(
            sql.Identifier(schema_name)))
        db.execute("SET lock_timeout = '200ms'")
        try:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                sql_schedule_many(db, schema_name, jobs)
            with pytest.raises(psycopg.errors.LockNotAvailable), \
                    pgcc.Client(pg_dsn, schema=schema_name) as client, \
                    client.connection() as conn:
                conn.execute("SET lock_timeout = '200ms'")
                client.schedule_tasks([{"task": "t", "at": at} if with_time else {"task": "t"}],
                                      connection=conn)
        finally:
            db.execute("RESET lock_timeout")
            holder.execute("ROLLBACK")
