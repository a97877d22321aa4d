"""Upgrades of a live schema: what was queued before runs after, and workers
of two versions never share a schema."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcc import _schema as schema
from tests.paths import MISC_TASKS, run_cli
from tests.workers import WorkerFactory, all_jobs_final, copy_tasks, wait_for

# The version before per-queue heads (migration 0007).
BEFORE_QUEUE_HEADS = 6


@pytest.fixture
def old_schema(pg_dsn: str) -> Iterator[str]:
    """A schema left at version 6, as a pgcc of that version made it."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        schema.migrate(conn, name, target=BEFORE_QUEUE_HEADS)
    try:
        yield name
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def migrate_cli(dsn: str, name: str) -> subprocess.CompletedProcess[str]:
    return run_cli("migrate", "--dsn", dsn, "--schema", name)


def first(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of the cursor's one row."""
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def q(conn: psycopg.Connection[Any], name: str, query: str, params: Any = None) -> list[Any]:
    tables = {t: sql.Identifier(name, t) for t in ("jobs", "workers", "queue_locks")}
    cur = conn.execute(sql.SQL(query).format(**tables), params)
    return cur.fetchall() if cur.description else []


def test_jobs_queued_before_the_upgrade_run_after_it_in_order(
        pg_dsn: str, db: psycopg.Connection[Any], old_schema: str, tmp_path: Path) -> None:
    """Queued jobs in several queues, a queue whose job was running when its
    worker stopped, a head no worker can run, and jobs without a queue, all
    written at version 6: after the upgrade a new worker runs every job it has
    the task of, each queue in order, and leaves the other queue waiting."""
    schedule = sql.SQL("SELECT {}.schedule_task(%s, %s::jsonb, NULL, NULL, %s)").format(
        sql.Identifier(old_schema))
    ids: dict[str, list[int]] = {"a": [], "b": [], "free": []}
    for n in range(5):
        ids["a"].append(first(db.execute(schedule, ["log", f'{{"n": {n}}}', "a"])))
        ids["free"].append(first(db.execute(schedule, ["log", "{}", None])))
    blocked = first(db.execute(schedule, ["nobody-has-this", "{}", "c"]))
    behind_blocked = first(db.execute(schedule, ["log", "{}", "c"]))
    # Queue b: its first job was running on a worker of the old version that has
    # since stopped (its lease ran out); three wait behind it.
    (old_worker,) = q(db, old_schema,
                      "INSERT INTO {workers} (hostname, pid, tasks, concurrency, lease,"
                      " heartbeat_at) VALUES ('old', 1, '{{log}}', 1, '1 s',"
                      " now() - interval '1 h') RETURNING id")[0]
    for n in range(4):
        ids["b"].append(first(db.execute(schedule, ["log", f'{{"n": {n}}}', "b"])))
    q(db, old_schema, "UPDATE {jobs} SET state = 'running', attempts = 1, token = 7,"
      " worker_id = %s, started_at = now(), heartbeat_at = now() - interval '1 h'"
      " WHERE id = %s", [old_worker, ids["b"][0]])
    q(db, old_schema, "INSERT INTO {queue_locks} (queue, job_id, worker_id) VALUES"
      " ('b', %s, %s)", [ids["b"][0], old_worker])

    upgraded = migrate_cli(pg_dsn, old_schema)
    assert upgraded.returncode == 0, upgraded.stderr
    assert schema.current_version(db, old_schema) == max(m.version for m in schema.migrations())

    tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "log")
    worker = WorkerFactory(pg_dsn, old_schema, tmp_path)
    try:
        worker(tasks, "--concurrency", "4")
        wanted = ids["a"] + ids["b"] + ids["free"]
        wait_for(lambda: q(db, old_schema, "SELECT bool_and(state = 'done') FROM {jobs}"
                           " WHERE id = ANY(%s)", [wanted])[0][0],
                 what="the jobs queued before the upgrade to run")
    finally:
        worker.stop_all()
    for queue in ("a", "b"):
        started = q(db, old_schema, "SELECT id FROM {jobs} WHERE queue = %s"
                    " ORDER BY started_at, id", [queue])
        assert [row[0] for row in started] == ids[queue], f"queue {queue} out of order"
    # The unrunnable head still waits, and so does the job behind it.
    states = dict(q(db, old_schema, "SELECT id, state FROM {jobs} WHERE queue = 'c'"))
    assert states == {blocked: "queued", behind_blocked: "queued"}
    assert not all_jobs_final(db, old_schema)


def test_an_upgrade_waits_until_older_workers_have_stopped(
        pg_dsn: str, db: psycopg.Connection[Any], old_schema: str, tmp_path: Path) -> None:
    """A worker of the old version is running (it heartbeats): `pgcc migrate`
    refuses with one clear line and changes nothing, and so does a new worker,
    which migrates on start. Once the old worker is gone, the upgrade runs."""
    q(db, old_schema, "INSERT INTO {workers} (hostname, pid, tasks, concurrency, lease)"
      " VALUES ('old-host', 4242, '{{t}}', 2, '30 s')")
    refused = migrate_cli(pg_dsn, old_schema)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"version {BEFORE_QUEUE_HEADS}" in lines[0] and "old-host pid 4242" in lines[0]
    assert "stop them" in lines[0]
    assert schema.current_version(db, old_schema) == BEFORE_QUEUE_HEADS

    tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "t")
    worker = WorkerFactory(pg_dsn, old_schema, tmp_path)(tasks)
    assert worker.process.wait(60) == 2
    assert "still run on it" in worker.log()
    assert schema.current_version(db, old_schema) == BEFORE_QUEUE_HEADS

    # The old worker stopped heartbeating a lease ago: it counts as gone.
    q(db, old_schema, "UPDATE {workers} SET heartbeat_at = now() - interval '1 min'")
    upgraded = migrate_cli(pg_dsn, old_schema)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (schema.current_version(db, old_schema) or 0) > BEFORE_QUEUE_HEADS


def test_a_worker_told_not_to_migrate_refuses_an_older_schema(
        pg_dsn: str, old_schema: str, tmp_path: Path) -> None:
    tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "t")
    worker = WorkerFactory(pg_dsn, old_schema, tmp_path)(tasks, "--no-migrate")
    assert worker.process.wait(60) == 3  # the database cannot be used: not migrated
    assert "older than this pgcc" in worker.log() and "pgcc migrate" in worker.log()
