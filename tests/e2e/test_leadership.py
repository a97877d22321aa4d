"""The maintenance leadership across real processes (pgcc/_maintenance): workers
and `pgcc reaper` elect one leader through the lease row; a killed leader's
lease runs out and another candidate leads and rescues; a frozen leader,
thawed, stands by; a stopped one resigns, so the next one need not wait."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgcc._reaper import REAPER_LEASE
from tests.helpers import insert_expired_worker, q
from tests.paths import SURVIVAL_TASKS
from tests.workers import FAST, LEASE, WorkerFactory, copy_tasks, wait_for

pytestmark = pytest.mark.usefixtures("show_worker_logs")

LEADING = "maintenance: leading"
STANDING_BY = "maintenance: another process leads; standing by"


def leader_pid(db: psycopg.Connection[Any], schema: str) -> int | None:
    """The pid of the candidate whose lease has not expired, if any (a
    candidate's name is host:pid:random)."""
    row = db.execute(q(schema, "SELECT leader_id FROM {}.leader WHERE expires_at > now()")
                     ).fetchone()
    return None if row is None else int(str(row[0]).rsplit(":", 2)[1])


def leader_name(db: psycopg.Connection[Any], schema: str) -> str | None:
    row = db.execute(q(schema, "SELECT leader_id FROM {}.leader")).fetchone()
    return None if row is None else str(row[0])


def ghost_job(db: psycopg.Connection[Any], schema: str) -> int:
    """A job running for an hour on a worker whose lease ran out an hour ago."""
    row = db.execute(q(schema, (
        "INSERT INTO {}.jobs (task, parameters, state, worker_id, attempts, token, started_at,"
        " heartbeat_at) VALUES ('noop', '{{}}', 'running', %s, 1, 1, now() - interval '1 h',"
        " now() - interval '1 h') RETURNING id")), [insert_expired_worker(db, schema)]
    ).fetchone()
    assert row is not None
    return int(row[0])


def state(db: psycopg.Connection[Any], schema: str, job_id: int) -> str:
    row = db.execute(q(schema, "SELECT state FROM {}.jobs WHERE id = %s"), [job_id]).fetchone()
    assert row is not None
    return str(row[0])


def test_workers_elect_one_leader_and_a_killed_leaders_duties_pass_on(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    tasks = copy_tasks(tmp_path / "tasks", SURVIVAL_TASKS, "noop")
    workers = [start_worker(tasks, *FAST) for _ in range(2)]
    pid = wait_for(lambda: leader_pid(db, schema_name), what="a leader")
    (leader,) = [w for w in workers if w.pid == pid]
    (follower,) = [w for w in workers if w.pid != pid]
    wait_for(lambda: STANDING_BY in follower.log(), what="the other worker to stand by")
    assert LEADING in leader.log() and LEADING not in follower.log()
    # It stays so: the leader renews its lease, nobody takes it.
    time.sleep(2 * LEASE)
    assert leader_pid(db, schema_name) == leader.pid and LEADING not in follower.log()
    leader.kill()
    wait_for(lambda: leader_pid(db, schema_name) == follower.pid, timeout=LEASE + 10,
             what="the surviving worker to lead once the killed one's lease ran out")
    assert LEADING in follower.log()
    orphan = ghost_job(db, schema_name)
    wait_for(lambda: state(db, schema_name, orphan) == "done", timeout=30,
             what="the new leader to rescue a dead worker's job, and a worker to run it")
    assert follower.process.poll() is None


def test_a_frozen_leader_loses_the_lead_and_thawed_stands_by(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    """SIGSTOP: the leader renews nothing, its lease expires by the server's clock
    and the other worker leads, whatever became of the frozen one's session.
    SIGCONT: the thawed worker finds another leader, stands by, and runs jobs."""
    tasks = copy_tasks(tmp_path / "tasks", SURVIVAL_TASKS, "noop")
    first = start_worker(tasks, *FAST)
    wait_for(lambda: leader_pid(db, schema_name) == first.pid, what="the first worker to lead")
    second = start_worker(tasks, *FAST)
    wait_for(lambda: STANDING_BY in second.log(), what="the second worker to stand by")
    first.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: leader_pid(db, schema_name) == second.pid, timeout=LEASE + 10,
                 what="the second worker to lead once the frozen leader's lease expired")
    finally:
        first.signal(signal.SIGCONT)
    wait_for(lambda: STANDING_BY in first.log(), timeout=LEASE + 10,
             what="the thawed worker to stand by")
    time.sleep(LEASE)
    assert leader_pid(db, schema_name) == second.pid, "the thawed worker took the lead back"
    orphan = ghost_job(db, schema_name)
    wait_for(lambda: state(db, schema_name, orphan) == "done", timeout=30,
             what="the leader to rescue a dead worker's job")
    assert first.process.poll() is None and second.process.poll() is None


def test_a_stopped_reaper_resigns_and_the_next_leads_at_once(
        tmp_path: Path, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    """`pgcc reaper` beside workers that run none: the first reaper leads, a
    second stands by. SIGTERM: the first exits 0 and gives the lease up, so the
    second leads within its standby look, not after the lease's 10 s."""
    tasks = copy_tasks(tmp_path / "tasks", SURVIVAL_TASKS, "noop")
    start_worker(tasks, *FAST, "--no-reaper")
    first = start_worker.reaper()
    wait_for(lambda: leader_pid(db, schema_name) == first.pid, what="the first reaper to lead")
    second = start_worker.reaper()
    wait_for(lambda: STANDING_BY in second.log(), what="the second reaper to stand by")
    name = leader_name(db, schema_name)
    assert first.stop() == 0, first.log()
    assert "reaper: stopped" in first.log()
    assert leader_name(db, schema_name) != name, "the stopped reaper still holds the lease"
    wait_for(lambda: leader_pid(db, schema_name) == second.pid, timeout=REAPER_LEASE / 2,
             what="the second reaper to lead")
    orphan = ghost_job(db, schema_name)
    wait_for(lambda: state(db, schema_name, orphan) == "done", timeout=30,
             what="the standalone reaper to rescue a dead worker's job")
    assert second.process.poll() is None


def test_a_stopped_worker_resigns(tmp_path: Path, db: psycopg.Connection[Any],
                                  schema_name: str, start_worker: WorkerFactory) -> None:
    tasks = copy_tasks(tmp_path / "tasks", SURVIVAL_TASKS, "noop")
    worker = start_worker(tasks, *FAST)
    wait_for(lambda: leader_pid(db, schema_name) == worker.pid, what="the worker to lead")
    assert worker.stop() == 0, worker.log()
    assert leader_name(db, schema_name) is None
