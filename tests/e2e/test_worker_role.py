"""A role given `pgcc grant worker` runs a real `pgcc worker` without owning
anything (the other kinds of role: tests/integration/test_privileges.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import pgcc
from pgcc import _schema as schema
from tests.helpers import call, grant, reaper_once
from tests.paths import MISC_TASKS
from tests.workers import WorkerFactory, copy_tasks, wait_for


def test_a_worker_role_runs_jobs_without_owning_anything(
        pg_dsn: str, schema_name: str, login_role: Any, client: pgcc.Client,
        tmp_path: Path, start_worker: WorkerFactory) -> None:
    role, dsn = login_role()
    grant(pg_dsn, schema_name, "worker", role)
    # In a queue, beside a queue whose head no worker has: the worker takes the
    # queues in, goes on with their next jobs and records heads, as the role.
    tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "hello")
    client.schedule_task("nobody-has-this", {}, queue="blocked")
    job = client.schedule_task("hello", {"n": 0}, queue="q")
    worker = start_worker.start_on(dsn, tasks)
    wait_for(lambda: _done_count(pg_dsn, schema_name) == 3, timeout=30,
             what="the job, and the two it scheduled from its task, to run as the role")
    assert client.get_job(job).result == 0  # type: ignore[union-attr]
    reaper_once(dsn, schema_name)
    assert worker.stop() == 0, worker.log()


def _done_count(pg_dsn: str, schema: str) -> int:
    return int(call(pg_dsn, schema, "SELECT count(*) FROM {}.jobs WHERE state = 'done'"))


# What `pgcc grant worker` gave a role at schema version 10, before steps
# (migration 0011), the one-statement write of queue jobs (0012) and the
# maintenance leadership's lease row (0013).
GRANT_AT_VERSION_10 = """
    GRANT USAGE ON SCHEMA {schema} TO {role};
    GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,
        {schema}.queue_locks, {schema}.queue_heads, {schema}.taskstate, {schema}.periodic,
        {schema}.paused_queues TO {role};
    GRANT SELECT ON {schema}.settings, {schema}.schema_migrations TO {role};
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role};
"""


def test_a_worker_role_granted_before_an_upgrade_has_what_the_upgrade_added(
        pg_dsn: str, login_role: Any, tmp_path: Path, start_worker: WorkerFactory) -> None:
    """The migrations give a worker role the tables and functions they add:
    after an upgrade its worker writes steps and queue jobs' responses, and
    leads the maintenance."""
    role, dsn = login_role()
    name = f"v_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        schema.migrate(conn, name, target=10)
        conn.execute(sql.SQL(GRANT_AT_VERSION_10).format(schema=sql.Identifier(name),
                                                         role=sql.Identifier(role)))
        schema.migrate(conn, name)
    try:
        tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "hello", "one_step")
        with pgcc.Client(pg_dsn, schema=name) as client:
            stepped = client.schedule_task("one_step", {})
            queued = client.schedule_task("hello", {"n": 0}, queue="q")
            worker = start_worker.start_on(dsn, tasks, schema=name)
            wait_for(lambda: all(j.state == "done" for j in client.list_jobs()) and
                     len(client.list_jobs()) == 4, timeout=30,
                     what="the step's job and the queue's three jobs to run as the role")
            assert client.get_job(stepped).result == 42  # type: ignore[union-attr]
            assert [(s.name, s.value) for s in client.get_steps(stepped)] == [("answer", 42)]
            assert client.get_job(queued).result == 0  # type: ignore[union-attr]
            # It leads the maintenance: the lease row of migration 0013 is its to write.
            wait_for(lambda: call(pg_dsn, name, "SELECT leader_id FROM {}.leader") is not None,
                     what="the worker role to take the maintenance leadership")
        assert worker.stop() == 0, worker.log()
        assert "maintenance: lead failed" not in worker.log()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
