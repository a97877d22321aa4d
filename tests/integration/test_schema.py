"""The schema: `pgcc migrate`, the tables of the SPEC, the queue invariant, NOTIFY."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcc import _schema as pgcc_schema
from tests.paths import MIGRATIONS, PGCC, run_cli


def migration_versions() -> list[int]:
    return sorted(int(p.name[:4]) for p in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def recorded(db: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return db.execute(sql.SQL("SELECT version, name, applied_at FROM {}.schema_migrations "
                              "ORDER BY version").format(sql.Identifier(schema))).fetchall()


def schema_exists(db: psycopg.Connection[Any], schema: str) -> bool:
    row = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    return row == (1,)


@pytest.fixture
def fresh_schema(db: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema name nobody has created yet; dropped afterwards."""
    name = f"t_fresh_{uuid.uuid4().hex[:10]}"
    assert not schema_exists(db, name)
    yield name
    db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def schedule(db: psycopg.Connection[Any], schema: str, task: str = "t",
             queue: str | None = None) -> int:
    row = db.execute(sql.SQL("SELECT {}.schedule_task(%s, queue => %s)")
                     .format(sql.Identifier(schema)), [task, queue]).fetchone()
    assert row is not None
    return int(row[0])


# --- pgcc migrate --------------------------------------------------------------------------


def test_migrate_creates_then_does_nothing(
        pg_dsn: str, db: psycopg.Connection[Any], fresh_schema: str) -> None:
    first = run_cli("migrate", "--dsn", pg_dsn, "--schema", fresh_schema)
    assert first.returncode == 0, first.stderr
    assert fresh_schema in first.stdout and "applied" in first.stdout
    versions = migration_versions()
    rows = recorded(db, fresh_schema)
    assert [r[0] for r in rows] == versions and versions[0] == 1
    assert rows[0][1] == "initial"

    second = run_cli("migrate", "--dsn", pg_dsn, "--schema", fresh_schema)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert recorded(db, fresh_schema) == rows  # nothing applied again, nothing re-recorded


def test_migrate_twice_in_python(db: psycopg.Connection[Any], fresh_schema: str) -> None:
    assert pgcc_schema.migrate(db, fresh_schema) == migration_versions()
    assert pgcc_schema.migrate(db, fresh_schema) == []
    assert pgcc_schema.current_version(db, fresh_schema) == migration_versions()[-1]


def test_migrate_keeps_data(pg_dsn: str, db: psycopg.Connection[Any], schema_name: str) -> None:
    job_id = schedule(db, schema_name, "keepme")
    result = run_cli("migrate", "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr
    row = db.execute(sql.SQL("SELECT task FROM {}.jobs WHERE id = %s")
                     .format(sql.Identifier(schema_name)), [job_id]).fetchone()
    assert row == ("keepme",)


def test_migrate_from_four_processes_at_once(
        pg_dsn: str, db: psycopg.Connection[Any], fresh_schema: str) -> None:
    command = [PGCC, "migrate", "--dsn", pg_dsn, "--schema", fresh_schema]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, (out, err)
    assert sum("applied" in out for out, _ in outputs) == 1
    assert sum("up to date" in out for out, _ in outputs) == 3
    assert [r[0] for r in recorded(db, fresh_schema)] == migration_versions()
    # And the schema works.
    assert schedule(db, fresh_schema) > 0


def test_migrate_refuses_a_bad_schema_name(pg_dsn: str, db: psycopg.Connection[Any]) -> None:
    result = run_cli("migrate", "--dsn", pg_dsn, "--schema", 'x"; DROP SCHEMA public; --')
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert "schema" in result.stderr
    assert schema_exists(db, "public")


def test_two_schemas_are_independent(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str, fresh_schema: str) -> None:
    pgcc_schema.migrate(db, fresh_schema)
    a, b = sql.Identifier(schema_name), sql.Identifier(fresh_schema)
    schedule(db, schema_name, "only_in_a")
    schedule(db, schema_name, "only_in_a", queue="q")
    assert db.execute(sql.SQL("SELECT count(*) FROM {}.jobs").format(b)).fetchone() == (0,)
    schedule(db, fresh_schema, "only_in_b")
    assert db.execute(sql.SQL("SELECT array_agg(DISTINCT task) FROM {}.jobs").format(a)
                      ).fetchone() == (["only_in_a"],)
    assert db.execute(sql.SQL("SELECT array_agg(DISTINCT task) FROM {}.jobs").format(b)
                      ).fetchone() == (["only_in_b"],)
    # Settings are per schema too.
    db.execute(sql.SQL("UPDATE {}.settings SET value = '100' "
                       "WHERE key = 'max_parameters_bytes'").format(a))
    big = '{"a": "' + "x" * 200 + '"}'
    with pytest.raises(psycopg.Error) as info:
        db.execute(sql.SQL("SELECT {}.schedule_task('t', %s::jsonb)").format(a), [big])
    assert info.value.sqlstate == "22023"
    db.execute(sql.SQL("SELECT {}.schedule_task('t', %s::jsonb)").format(b), [big])
    # Dropping one leaves the other whole.
    db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(b))
    assert schedule(db, schema_name) > 0
    result = run_cli("status", "--json", "--dsn", pg_dsn, "--schema", schema_name)
    assert result.returncode == 0, result.stderr


# --- tables and columns --------------------------------------------------------------------


SPEC_COLUMNS = {
    "jobs": {"id", "task", "parameters", "queue", "state", "run_at", "attempts",
             "max_attempts", "created_at", "started_at", "finished_at", "heartbeat_at",
             "worker_id", "error", "result"},
    "queue_locks": {"queue"},
    "taskstate": {"id", "status", "error", "tries_remaining", "data", "created_at",
                  "updated_at"},
    "workers": {"id", "heartbeat_at"},
    "schema_migrations": {"version"},
}


@pytest.mark.parametrize("table", sorted(SPEC_COLUMNS))
def test_spec_tables_and_columns_exist(
        db: psycopg.Connection[Any], schema_name: str, table: str) -> None:
    rows = db.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s", [schema_name, table]).fetchall()
    columns = {r[0] for r in rows}
    assert columns, f"no table {schema_name}.{table}"
    assert SPEC_COLUMNS[table] <= columns, SPEC_COLUMNS[table] - columns


def test_jobs_columns_hold_what_they_say(db: psycopg.Connection[Any], schema_name: str) -> None:
    types = dict(db.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'jobs'", [schema_name]).fetchall())
    assert types["id"] == "bigint"
    assert types["parameters"] == "jsonb" and types["result"] == "jsonb"
    for column in ("run_at", "created_at", "started_at", "finished_at", "heartbeat_at"):
        assert types[column] == "timestamp with time zone", column


def test_schema_functions_exist(db: psycopg.Connection[Any], schema_name: str) -> None:
    rows = db.execute("SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
                      "ON n.oid = p.pronamespace WHERE n.nspname = %s", [schema_name]).fetchall()
    assert {"schedule_task", "schedule_tasks"} <= {r[0] for r in rows}


# --- the queue invariant -------------------------------------------------------------------


def test_a_queue_cannot_have_two_running_jobs(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    jobs = sql.Identifier(schema_name, "jobs")
    first, second = schedule(db, schema_name, queue="billing"), schedule(db, schema_name,
                                                                           queue="billing")
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(sql.SQL("UPDATE {} SET state = 'running', worker_id = 1 WHERE queue = %s")
                   .format(jobs), ["billing"])
    # One at a time: the first may run, the second may not while it does.
    db.execute(sql.SQL("UPDATE {} SET state = 'running', worker_id = 1 WHERE id = %s")
               .format(jobs), [first])
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(sql.SQL("UPDATE {} SET state = 'running', worker_id = 2 WHERE id = %s")
                   .format(jobs), [second])
    running = db.execute(sql.SQL("SELECT array_agg(id) FROM {} WHERE state = 'running'")
                         .format(jobs)).fetchone()
    assert running == ([first],)
    # Once the first is done, the second may run.
    db.execute(sql.SQL("UPDATE {} SET state = 'done' WHERE id = %s").format(jobs), [first])
    db.execute(sql.SQL("UPDATE {} SET state = 'running', worker_id = 2 WHERE id = %s")
               .format(jobs), [second])


def test_other_queues_and_free_jobs_run_side_by_side(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    jobs = sql.Identifier(schema_name, "jobs")
    for queue in ("a", "b", None, None, None):
        schedule(db, schema_name, queue=queue)
    db.execute(sql.SQL("UPDATE {} SET state = 'running', worker_id = 1").format(jobs))
    row = db.execute(sql.SQL("SELECT count(*) FROM {} WHERE state = 'running'")
                     .format(jobs)).fetchone()
    assert row == (5,)


def test_queue_locks_hold_one_row_per_queue(db: psycopg.Connection[Any], schema_name: str) -> None:
    locks = sql.Identifier(schema_name, "queue_locks")
    insert = sql.SQL("INSERT INTO {} (queue, job_id, worker_id) VALUES (%s, %s, 1)"
                     ).format(locks)
    db.execute(insert, ["billing", 1])
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, ["billing", 2])


def test_running_job_needs_a_worker(db: psycopg.Connection[Any], schema_name: str) -> None:
    job_id = schedule(db, schema_name)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(sql.SQL("UPDATE {} SET state = 'running' WHERE id = %s")
                   .format(sql.Identifier(schema_name, "jobs")), [job_id])


# --- NOTIFY --------------------------------------------------------------------------------


@pytest.fixture
def listener(pg_dsn: str, schema_name: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"pgcc.{schema_name}")))
        yield conn


def notifications(listener: psycopg.Connection[Any], db: psycopg.Connection[Any],
                  schema: str) -> list[psycopg.Notify]:
    """The notifications on the schema's channel so far. A marker sent last (they
    arrive in commit order) says when all have arrived, so no waiting on a clock."""
    channel = f"pgcc.{schema}"
    db.execute("SELECT pg_notify(%s, 'test-marker')", [channel])
    received: list[psycopg.Notify] = []
    for notify in listener.notifies(timeout=10):
        if notify.payload == "test-marker":
            return received
        received.append(notify)
    raise AssertionError(f"the marker never arrived; got {received}")


def test_one_notify_for_100_jobs_from_schedule_task(
        db: psycopg.Connection[Any], schema_name: str, listener: psycopg.Connection[Any]) -> None:
    query = sql.SQL("SELECT {}.schedule_task('t', jsonb_build_object('n', i)) "
                    "FROM generate_series(1, 100) AS i").format(sql.Identifier(schema_name))
    assert len(db.execute(query).fetchall()) == 100
    received = notifications(listener, db, schema_name)
    assert len(received) == 1
    assert received[0].channel == f"pgcc.{schema_name}"


def test_one_notify_for_100_jobs_from_schedule_tasks(
        db: psycopg.Connection[Any], schema_name: str, listener: psycopg.Connection[Any]) -> None:
    query = sql.SQL("SELECT {}.schedule_tasks((SELECT jsonb_agg(jsonb_build_object("
                    "'task', 't', 'parameters', jsonb_build_object('n', i))) "
                    "FROM generate_series(1, 100) AS i))").format(sql.Identifier(schema_name))
    row = db.execute(query).fetchone()
    assert row is not None and len(row[0]) == 100
    assert len(notifications(listener, db, schema_name)) == 1


def test_one_notify_for_a_plain_insert_of_100_rows(
        db: psycopg.Connection[Any], schema_name: str, listener: psycopg.Connection[Any]) -> None:
    db.execute(sql.SQL("INSERT INTO {} (task) SELECT 't' FROM generate_series(1, 100)")
               .format(sql.Identifier(schema_name, "jobs")))
    assert len(notifications(listener, db, schema_name)) == 1


def test_one_notify_per_transaction(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str,
        listener: psycopg.Connection[Any]) -> None:
    for _ in range(3):
        schedule(db, schema_name)
    assert len(notifications(listener, db, schema_name)) == 3
    with psycopg.connect(pg_dsn) as conn:
        for _ in range(5):
            schedule(conn, schema_name)
    assert len(notifications(listener, db, schema_name)) == 1


def test_no_notify_for_a_rolled_back_insert_or_another_schema(
        pg_dsn: str, db: psycopg.Connection[Any], schema_name: str,
        listener: psycopg.Connection[Any], fresh_schema: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        schedule(conn, schema_name)
        conn.rollback()
    pgcc_schema.migrate(db, fresh_schema)
    schedule(db, fresh_schema)
    assert notifications(listener, db, schema_name) == []


def test_notify_reaches_a_listener_while_waiting(
        pg_dsn: str, schema_name: str, listener: psycopg.Connection[Any]) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: next(listener.notifies(timeout=10), None))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            schedule(conn, schema_name)
        notify = waiting.result(timeout=15)
    assert notify is not None and notify.channel == f"pgcc.{schema_name}"


@pytest.mark.parametrize(("column", "value"), [
    ("run_at", "-infinity"), ("run_at", "infinity"), ("scheduled_at", "infinity"),
    ("attempts", "-1"), ("attempts", "2147483647"), ("max_attempts", "0"),
    ("max_attempts", "2147483647"),
])
def test_the_jobs_table_refuses_rows_no_worker_could_run(
        db: psycopg.Connection[Any], schema_name: str, column: str, value: str) -> None:
    """Whoever writes to the table, a row a worker could not claim, time or count
    is refused (the doors refuse them earlier, with a clearer message)."""
    insert = sql.SQL("INSERT INTO {}.jobs (task, {}) VALUES ('t', %s)").format(
        sql.Identifier(schema_name), sql.Identifier(column))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(insert, [value])


def test_an_older_pgcc_refuses_a_newer_schema(db: psycopg.Connection[Any],
                                             schema_name: str) -> None:
    """A schema migrated by a newer pgcc: this one's worker must not run on it."""
    db.execute(sql.SQL("INSERT INTO {}.schema_migrations (version, name) VALUES (9999, 'x')"
                       ).format(sql.Identifier(schema_name)))
    result = run_cli("migrate", "--dsn", db.info.dsn, "--schema", schema_name)
    assert result.returncode != 0
    assert "newer than this pgcc" in result.stderr and "9999" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
