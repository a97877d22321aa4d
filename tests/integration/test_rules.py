"""Rules and defaults held by both SQL and Python agree (issue 14): the job
states and task statuses, the name rule, max_attempts' default and limit, the
retention and the parameters limit. The SQL side is read from the database."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgcc
from pgcc._database import Link, RowMismatch, named_row
from pgcc._maintenance.pruner import Pruner, PrunerConfig
from pgcc._maintenance.rescuer import Rescuer
from pgcc._queries import for_schema
from pgcc._rows import ClaimedRow
from pgcc._states import FINISHED, JobState, TaskStatus
from pgcc._validation import DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_LIMIT, NAME_LIMIT, check_name
from pgcc._worker.messages import JobState as WorkerJobState
from pgcc._worker.messages import NoResponse
from pgcc._worker.outcomes import OutcomeWriter
from pgcc.errors import ScheduleError


def q(schema: str, text: str) -> sql.Composed:
    return sql.SQL(text).format(sql.Identifier(schema))


def check_values(db: psycopg.Connection[Any], schema: str, table: str, name: str) -> set[str]:
    row = db.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = %s::regclass AND c.conname = %s",
        [f'"{schema}".{table}', name]).fetchone()
    assert row is not None, f"no constraint {name}"
    return set(re.findall(r"'([^']*)'::text", row[0]))


def column_default(db: psycopg.Connection[Any], schema: str, table: str, column: str) -> str:
    row = db.execute(
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s AND column_name = %s",
        [schema, table, column]).fetchone()
    assert row is not None
    return str(row[0])


def test_job_states_are_the_tables(db: psycopg.Connection[Any], schema_name: str) -> None:
    """The jobs table's CHECK allows exactly JobState's members, and its default
    is one of them; the worker's JobState is the same enum."""
    assert check_values(db, schema_name, "jobs", "jobs_state_check") == \
        {state.value for state in JobState}
    assert column_default(db, schema_name, "jobs", "state") == f"'{JobState.QUEUED}'::text"
    assert WorkerJobState is JobState and pgcc.JobState is JobState


def test_finished_states_are_the_index(db: psycopg.Connection[Any], schema_name: str) -> None:
    """The states a job ends in, as the index the reaper prunes by has them."""
    row = db.execute("SELECT pg_get_indexdef(%s::regclass)",
                     [f'"{schema_name}".jobs_finished']).fetchone()
    assert row is not None
    assert set(re.findall(r"'([^']*)'::text", row[0])) == {state.value for state in FINISHED}
    assert {state for state in JobState if state.finished} == FINISHED


def test_task_statuses_are_the_tables(db: psycopg.Connection[Any], schema_name: str) -> None:
    assert check_values(db, schema_name, "taskstate", "taskstate_status_check") == \
        {status.value for status in TaskStatus}
    assert column_default(db, schema_name, "taskstate", "status") == \
        f"'{TaskStatus.PENDING}'::text"


def test_states_read_as_enums(client: pgcc.Client) -> None:
    job = client.get_job(client.schedule_task("t", {}))
    as_text: str = "queued"  # a caller comparing with the text still works
    assert job is not None and job.state is JobState.QUEUED and job.state == as_text
    assert client.taskstate.get("s").status is TaskStatus.PENDING


def test_max_attempts_limit_is_the_tables(db: psycopg.Connection[Any], schema_name: str) -> None:
    """A task module may set max_attempts from 1 to MAX_ATTEMPTS_LIMIT: the
    jobs table takes exactly those."""
    taken = []
    for value in (0, 1, MAX_ATTEMPTS_LIMIT, MAX_ATTEMPTS_LIMIT + 1):
        with contextlib.suppress(psycopg.errors.CheckViolation), \
                db.transaction(force_rollback=True):
            db.execute(q(schema_name, "INSERT INTO {}.jobs (task, max_attempts) VALUES ('t', %s)"),
                       [value])
            taken.append(value)
    assert taken == [1, MAX_ATTEMPTS_LIMIT]


@pytest.fixture
def link(pg_dsn: str) -> Iterator[Link]:
    link = Link(pg_dsn)
    yield link
    link.close()


def running_job(db: psycopg.Connection[Any], schema: str, worker: int, attempts: int) -> int:
    """A job running on `worker` with no max_attempts of its own, `attempts` used."""
    row = db.execute(q(schema, "INSERT INTO {}.jobs (task, state, worker_id, attempts, token)"
                               " VALUES ('t', 'running', %s, %s, 7) RETURNING id"),
                     [worker, attempts]).fetchone()
    assert row is not None
    return int(row[0])


def state_of(db: psycopg.Connection[Any], schema: str, job: int) -> str:
    row = db.execute(q(schema, "SELECT state FROM {}.jobs WHERE id = %s"), [job]).fetchone()
    assert row is not None
    return str(row[0])


def test_default_max_attempts_reaped(db: psycopg.Connection[Any], schema_name: str,
                                     link: Link) -> None:
    """A job without max_attempts whose worker stopped is dead after
    DEFAULT_MAX_ATTEMPTS attempts (the reap query takes it from Python)."""
    row = db.execute(q(schema_name, "INSERT INTO {}.workers (hostname, pid, tasks, concurrency,"
                                    " lease, heartbeat_at) VALUES ('h', 1, '{{t}}', 1, '1 s',"
                                    " now() - interval '1 h') RETURNING id")).fetchone()
    assert row is not None
    last = running_job(db, schema_name, row[0], DEFAULT_MAX_ATTEMPTS)
    before_last = running_job(db, schema_name, row[0], DEFAULT_MAX_ATTEMPTS - 1)
    result = Rescuer(schema_name).run(link)
    assert (result.requeued, result.dead) == (1, 1)
    assert state_of(db, schema_name, last) == JobState.DEAD
    assert state_of(db, schema_name, before_last) == JobState.QUEUED


def test_default_max_attempts_retried(db: psycopg.Connection[Any], schema_name: str,
                                      link: Link) -> None:
    """The same default when the worker writes that a job gave no response."""
    worker = link.execute(for_schema(schema_name)["register_worker"], {
        "hostname": "h", "pid": 1, "tasks": ["t"], "concurrency": 1, "lease": 30})[0][0]
    last = running_job(db, schema_name, worker, DEFAULT_MAX_ATTEMPTS)
    before_last = running_job(db, schema_name, worker, DEFAULT_MAX_ATTEMPTS - 1)
    writer = OutcomeWriter(for_schema(schema_name), ["t"], [DEFAULT_MAX_ATTEMPTS])
    writer.add([NoResponse(last, 7, "lost"), NoResponse(before_last, 7, "lost")])
    writer.written(link.transactions([writer.statements(worker, 0)])[0])
    assert state_of(db, schema_name, last) == JobState.DEAD
    assert state_of(db, schema_name, before_last) == JobState.QUEUED


def finished_hours_ago(db: psycopg.Connection[Any], schema: str, hours: float) -> int:
    row = db.execute(q(schema, "INSERT INTO {}.jobs (task, state, finished_at) VALUES"
                               " ('t', 'done', now() - make_interval(secs => %s)) RETURNING id"),
                     [hours * 3600]).fetchone()
    assert row is not None
    return int(row[0])


def remaining(db: psycopg.Connection[Any], schema: str) -> int:
    row = db.execute(q(schema, "SELECT count(*) FROM {}.jobs")).fetchone()
    assert row is not None
    return int(row[0])


def test_retention_is_the_setting_unless_given(db: psycopg.Connection[Any], schema_name: str,
                                               link: Link) -> None:
    """Without --retention the reaper keeps finished jobs for the schema's
    settings.retention_seconds (7 days as installed); --retention wins; with
    neither, nothing is pruned."""
    setting = db.execute(q(schema_name, "SELECT value FROM {}.settings"
                                        " WHERE key = 'retention_seconds'")).fetchone()
    assert setting == (7 * 24 * 3600,)
    for hours in (1, 24 * 7 - 1, 24 * 7 + 1):
        finished_hours_ago(db, schema_name, hours)
    assert Pruner(schema_name).run(link) == (1, True)
    assert remaining(db, schema_name) == 2
    db.execute(q(schema_name, "UPDATE {}.settings SET value = '7200'"
                              " WHERE key = 'retention_seconds'"))
    assert Pruner(schema_name).run(link) == (1, True)
    assert Pruner(schema_name, PrunerConfig(retention=1800)).run(link) == (1, True)
    assert remaining(db, schema_name) == 0
    db.execute(q(schema_name, "DELETE FROM {}.settings WHERE key = 'retention_seconds'"))
    finished_hours_ago(db, schema_name, 24 * 365)
    assert Pruner(schema_name).run(link) == (0, True)


def test_parameters_limit_is_the_setting(db: psycopg.Connection[Any], schema_name: str,
                                         client: pgcc.Client, link: Link) -> None:
    """The worker reads the limit the SQL doors apply; with the setting removed,
    neither limits anything."""
    query = for_schema(schema_name)["max_parameters_bytes"]
    assert link.execute(query) == [(1 << 20,)]
    with pytest.raises(ScheduleError, match="the limit is 1048576 bytes"):
        client.schedule_task("t", {"x": "y" * (1 << 20)})
    db.execute(q(schema_name, "DELETE FROM {}.settings WHERE key = 'max_parameters_bytes'"))
    assert link.execute(query) == [(None,)]
    client.schedule_task("t", {"x": "y" * (1 << 20)})
    client.schedule_tasks([{"task": "t", "parameters": {"x": "y" * (1 << 20)}}])


# Names on both sides of each part of the rule: blank, length, control
# characters (C0, DEL, C1), and what is allowed next to them.
NAMES = ["a", "", " ", "   ", " a ", "\t", "a\tb", "\u3000", "\xa0", "a\x01", "a\x1f", "a\x7f",
         "a\x80", "a\x9f", "a\xa0", "a\u2028", "é" * NAME_LIMIT, "é" * (NAME_LIMIT + 1),
         "x" * NAME_LIMIT, "x" * (NAME_LIMIT + 1), "emoji \U0001f600", "quote ' \" \\"]


def python_takes(name: str) -> bool:
    try:
        check_name("task", name)
    except ScheduleError:
        return False
    return True


def sql_takes(db: psycopg.Connection[Any], statement: sql.Composed, params: list[Any]) -> bool:
    try:
        with db.transaction(force_rollback=True):
            db.execute(statement, params)
    except psycopg.errors.InvalidParameterValue:
        return False
    return True


@pytest.mark.parametrize("name", NAMES, ids=repr)
def test_name_rule_agrees(db: psycopg.Connection[Any], schema_name: str, name: str) -> None:
    """Python's check_name and every SQL door take the same task and queue names."""
    expected = python_takes(name)
    doors = {
        "check_name": (q(schema_name, "SELECT {}.check_name('task', %s)"), [name]),
        "schedule_task": (q(schema_name, "SELECT {}.schedule_task(%s)"), [name]),
        "schedule_task queue": (q(schema_name, "SELECT {}.schedule_task('t', queue => %s)"),
                                [name]),
        "schedule_tasks": (q(schema_name, "SELECT {}.schedule_tasks(jsonb_build_array("
                                          "jsonb_build_object('task', %s::text)))"), [name]),
        "schedule_tasks queue": (q(schema_name, "SELECT {}.schedule_tasks(jsonb_build_array("
                                                "jsonb_build_object('task', 't', 'queue',"
                                                " %s::text)))"), [name]),
    }
    assert {door: sql_takes(db, *args) for door, args in doors.items()} == \
        dict.fromkeys(doors, expected)


def test_named_row_reads_by_name(db: psycopg.Connection[Any]) -> None:
    """Columns in another order land in their fields; a missing one is refused."""
    factory = named_row(ClaimedRow)
    cur = db.cursor(row_factory=factory)
    row = cur.execute("SELECT 7 AS token, 'x' AS run_at, 2 AS attempts, NULL AS queue,"
                      " '{}' AS parameters, 't' AS task, 1 AS id, NULL AS timeout,"
                      " 0 AS priority").fetchone()
    assert row == ClaimedRow(1, "t", "{}", None, 2, "x", 7, None, 0)
    with pytest.raises(RowMismatch, match="token"):
        cur.execute("SELECT 1 AS id, 't' AS task, '{}' AS parameters, NULL AS queue,"
                    " 2 AS attempts, 'x' AS run_at")
        cur.fetchall()


def test_states_survive_json_as_their_text(client: pgcc.Client) -> None:
    """A state read from pgcc may be written back into parameters or task
    state data: JSON holds its text."""
    job = client.get_job(client.schedule_task("t", {"seen": JobState.DONE,
                                                    TaskStatus.PENDING: [TaskStatus.FAILED]}))
    assert job is not None and job.parameters == {"seen": "done", "pending": ["failed"]}
