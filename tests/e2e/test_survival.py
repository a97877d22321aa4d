"""What a worker survives (SPEC, "What a worker survives"): one or a few tests per
defect found, each built the way the defect was found.

Every test runs real `pgcc worker` processes on a fresh schema, and checks what
an operator would check: the job rows, whether the worker process is alive and
its exit code, its CPU use. The task modules live in tests/tasks/survival/;
each test copies just the ones it needs into its own tasks folder, since every
`*.py` of a worker's --tasks folder is a task (and some of them misbehave on
purpose). A worker that hangs never hangs the test: every wait is bounded, and
every worker is stopped (SIGTERM, then SIGKILL after 10 s) after each test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from pgcc import _schema as pgcc_schema
from tests.helpers import insert_expired_worker, q, reaper_once
from tests.paths import PGCC, SURVIVAL_TASKS
from tests.proxy import Proxy
from tests.workers import (
    FAST,
    FINAL,
    LEASE,
    WorkerFactory,
    WorkerProcess,
    copy_tasks,
    print_worker_logs,
    wait_for,
)

# For CPU measurements: the default poll interval, so that an idle worker's own
# polling (about 2% of a core at 0.2 s here) does not blur what is measured.
QUIET = ("--lease", f"{LEASE:g}", "--poll-interval", "1", "--concurrency", "1")
T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _stop_workers_and_show_logs(start_worker: WorkerFactory, pg_dsn: str,
                                schema_name: str) -> Iterator[None]:
    """After each test: stop its workers (a frozen one is killed after 10 s, not the
    factory's 30), and on a failure show the jobs and every worker's log."""
    yield
    for worker in start_worker.started:
        worker.stop(timeout=10)
    with contextlib.suppress(psycopg.Error), psycopg.connect(pg_dsn, autocommit=True) as conn:
        print_worker_logs(start_worker, conn, schema_name)


def tasks_dir(tmp_path: Path, *names: str) -> Path:
    """A tasks folder holding just these modules of tests/tasks/survival."""
    return copy_tasks(tmp_path / "tasks", SURVIVAL_TASKS, *names)


def one(conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed, params: Any = None
        ) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def job(conn: psycopg.Connection[Any], schema: str, job_id: int) -> dict[str, Any]:
    """A job's row; run_at as text (it may be infinite, which Python cannot hold) and
    run_in, the seconds until then."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(q(schema, (
        "SELECT id, task, queue, state, attempts, max_attempts, worker_id, error, result,"
        " attempt_errors, started_at, finished_at, run_at::text AS run_at,"
        " CASE WHEN isfinite(run_at) THEN extract(epoch FROM run_at - now())::float8"
        " END AS run_in FROM {}.jobs WHERE id = %s")), [job_id]).fetchone()
    assert row is not None, f"job {job_id} is not in the jobs table"
    return row


def wait_alive(worker: WorkerProcess | None, check: Callable[[], T | None], timeout: float,
               what: str) -> T:
    """wait_for, failing at once if the worker exits meanwhile."""
    def alive_check() -> T | None:
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"the worker exited with code {worker.process.returncode}"
                        f" while waiting for {what}")
        return check()
    return wait_for(alive_check, timeout, what)


def wait_done(conn: psycopg.Connection[Any], schema: str, job_id: int,
              worker: WorkerProcess | None, timeout: float = 30) -> dict[str, Any]:
    """The job ends, done."""
    row = wait_state(conn, schema, job_id, *FINAL, worker=worker, timeout=timeout)
    assert row["state"] == "done", row
    return row


def wait_state(conn: psycopg.Connection[Any], schema: str, job_id: int, *states: str,
               worker: WorkerProcess | None = None, timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        row = job(conn, schema, job_id)
        return row if row["state"] in states else None
    return wait_alive(worker, reached, timeout, f"job {job_id} to be {'/'.join(states)}")


def schedule(conn: psycopg.Connection[Any], schema: str, task: str,
             parameters: dict[str, Any] | None = None, queue: str | None = None) -> int:
    return int(one(conn, q(schema, "SELECT {}.schedule_task(%s, %s::jsonb, NULL, NULL, %s)"),
                   [task, json.dumps(parameters or {}), queue]))


def schedule_many(conn: psycopg.Connection[Any], schema: str,
                  jobs: list[dict[str, Any]]) -> list[int]:
    """In one statement, so in one transaction."""
    return list(one(conn, q(schema, "SELECT {}.schedule_tasks(%s::jsonb)"), [json.dumps(jobs)]))


def insert_job(conn: psycopg.Connection[Any], schema: str, **columns: Any) -> int | None:
    """A row written straight into the jobs table, as a careless client could; None
    if the table's constraints refuse it (which the SPEC allows: "impossible")."""
    names = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    values = sql.SQL(", ").join(sql.Placeholder() * len(columns))
    query = sql.SQL("INSERT INTO {}.jobs ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(schema), names, values)
    try:
        return int(one(conn, query, list(columns.values())))
    except psycopg.errors.CheckViolation:
        return None


def registered(conn: psycopg.Connection[Any], schema: str, worker: WorkerProcess) -> bool:
    return bool(one(conn, q(schema, "SELECT count(*) FROM {}.workers WHERE pid = %s"),
                    [worker.pid]))


def alive(worker: WorkerProcess) -> bool:
    return worker.process.poll() is None


def assert_alive(worker: WorkerProcess) -> None:
    assert alive(worker), f"the worker exited with code {worker.process.returncode}"


def stays_alive(worker: WorkerProcess, seconds: float) -> None:
    """The worker does not exit during `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert_alive(worker)
        time.sleep(0.1)


def exit_code_within(process: subprocess.Popen[bytes], seconds: float, what: str) -> int:
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {seconds:g} s of {what}")


def with_dsn(dsn: str, **changes: str) -> str:
    return make_conninfo(dsn, **changes)


def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core the process used over `seconds`."""
    process = psutil.Process(pid)
    before, started = process.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, ended = process.cpu_times(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return float(used / (ended - started))


def insert_running_on(conn: psycopg.Connection[Any], schema: str, worker_id: int,
                      **columns: Any) -> int | None:
    """A job that has run on `worker_id` for an hour; None if the table refuses it."""
    job_id = insert_job(conn, schema, task="noop", state="running", worker_id=worker_id,
                        **columns)
    if job_id is not None:
        conn.execute(q(schema, "UPDATE {}.jobs SET started_at = now() - interval '1 h',"
                               " heartbeat_at = now() - interval '1 h' WHERE id = %s"), [job_id])
    return job_id


# A job far into its attempts: 2**1100 s of backoff overflows a double. The SPEC
# caps a job's max_attempts at 1000, so a table that refuses 2000 gets 1000 (and
# the job, out of attempts, ends dead instead of queued: its backoff is computed
# all the same).
MANY_ATTEMPTS = ({"attempts": 1100, "max_attempts": 2000},
                 {"attempts": 1100, "max_attempts": 1000})


def insert_far_gone(conn: psycopg.Connection[Any], schema: str, worker_id: int | None = None,
                    task: str = "noop") -> int:
    for columns in MANY_ATTEMPTS:
        if worker_id is None:
            job_id = insert_job(conn, schema, task=task, **columns)
        else:
            job_id = insert_running_on(conn, schema, worker_id, **columns)
        if job_id is not None:
            return job_id
    pytest.fail(f"the jobs table refuses every row of {MANY_ATTEMPTS}")


# --- 1. Never blocked: a busy child's full pipe ---------------------------------------------


# The jobs of one transaction, in claim order: (big no-ops, small no-ops) ahead of
# the slow job, then (big, small) behind it; a big one has ~400 KB of parameters.
# As reported: 8 big, the slow job, 20 small. And with the big ones behind the slow
# job: the worker claims them for the child's line once the short jobs ahead of
# the slow one have answered, while the child sleeps in it and reads nothing.
LAYOUTS = {
    "as_reported": ((8, 0), (0, 20)),
    "big_behind_slow": ((0, 8), (8, 20)),
}


def freeze_batch(layout: str, mark: Path, slow_task: str) -> tuple[list[dict[str, Any]], int]:
    """The jobs of `layout`, and the index of the slow job among them."""
    blob = "x" * 400_000

    def noops(big: int, small: int) -> list[dict[str, Any]]:
        return ([{"task": "noop", "parameters": {"blob": blob, "n": n}} for n in range(big)]
                + [{"task": "noop", "parameters": {"n": n}} for n in range(small)])

    ahead, behind = LAYOUTS[layout]
    jobs = noops(*ahead)
    jobs.append({"task": slow_task, "parameters": {"mark": str(mark)}})
    return jobs + noops(*behind), len(jobs) - 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_timeout_enforced_while_pipe_full(tmp_path: Path, db: psycopg.Connection[Any],
                                          schema_name: str, start_worker: WorkerFactory,
                                          layout: str) -> None:
    """The supervisor once blocked writing big jobs into the pipe of a child that ran
    a slow job: the timeout was not enforced and SIGTERM did nothing."""
    tasks = tasks_dir(tmp_path, "noop", "slow_timeout")
    mark = tmp_path / "slow.started"
    jobs, index = freeze_batch(layout, mark, "slow_timeout")
    ids = schedule_many(db, schema_name, jobs)
    slow = ids[index]
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_alive(worker, mark.exists, 60, "the slow job to start")
    # Its timeout is 2 s: it leaves 'running' within that and a few seconds more;
    # with max_attempts = 1 it ends dead.
    row = wait_state(db, schema_name, slow, "dead", "queued", "failed", worker=worker,
                     timeout=2 + 4)
    assert row["state"] == "dead", row
    assert row["error"]
    wait_alive(worker, lambda: all(job(db, schema_name, i)["state"] == "done"
                                   for i in ids if i != slow), 60, "every no-op to be done")
    assert_alive(worker)
    worker.signal(signal.SIGTERM)
    assert exit_code_within(worker.process, 5, "SIGTERM") == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sigterm_honoured_while_pipe_full(tmp_path: Path, db: psycopg.Connection[Any],
                                          schema_name: str, start_worker: WorkerFactory,
                                          layout: str) -> None:
    """SIGTERM while the slow job runs with big jobs on their way to its child: the
    worker stops within its grace and a few seconds, and puts the slow job back:
    nothing lost."""
    tasks = tasks_dir(tmp_path, "noop", "hang")
    mark = tmp_path / "hang.started"
    jobs, index = freeze_batch(layout, mark, "hang")
    ids = schedule_many(db, schema_name, jobs)
    slow = ids[index]
    worker = start_worker(tasks, *FAST, "--concurrency", "1", "--grace", "1")
    wait_alive(worker, mark.exists, 60, "the slow job to start")
    time.sleep(0.5)  # the supervisor goes on claiming jobs for the child's line
    worker.signal(signal.SIGTERM)
    assert exit_code_within(worker.process, 1 + 3, "SIGTERM (--grace 1)") == 0
    assert job(db, schema_name, slow)["state"] == "queued", "the slow job was not put back"
    states = {i: job(db, schema_name, i)["state"] for i in ids}
    assert set(states.values()) <= {"queued", "done"}, states


# --- 2. Poison rows are impossible or harmless ----------------------------------------------


def assert_poison_harmless(db: psycopg.Connection[Any], schema: str, worker: WorkerProcess,
                           poison: int | None, may_wait: bool = False) -> None:
    """A normal job scheduled alongside ends done, the worker stays alive, and the
    poison job (unless the table refused it) ends failed or dead with an error;
    with `may_wait`, it may also just stay queued."""
    normal = schedule(db, schema, "noop")
    wait_done(db, schema, normal, worker, timeout=30)
    stays_alive(worker, 2 * LEASE)
    # Still working: a job scheduled now runs too.
    later = schedule(db, schema, "noop")
    wait_done(db, schema, later, worker, timeout=30)
    assert_alive(worker)
    if poison is None:
        return
    if may_wait:
        row = job(db, schema, poison)
        if row["state"] == "queued":
            return
    row = wait_state(db, schema, poison, *FINAL, worker=worker, timeout=30)
    assert row["state"] in ("failed", "dead"), row
    assert row["error"], row


@pytest.mark.parametrize("queue", [None, "poison"])
def test_poison_minus_infinity_run_at(tmp_path: Path, db: psycopg.Connection[Any],
                                      schema_name: str, start_worker: WorkerFactory,
                                      queue: str | None) -> None:
    tasks = tasks_dir(tmp_path, "noop")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_alive(worker, lambda: registered(db, schema_name, worker), 30, "the worker to register")
    poison = insert_job(db, schema_name, task="noop", queue=queue, run_at="-infinity")
    assert_poison_harmless(db, schema_name, worker, poison)


def test_poison_infinity_run_at_at_start(tmp_path: Path, db: psycopg.Connection[Any],
                                         schema_name: str, start_worker: WorkerFactory
                                         ) -> None:
    """A job due at 'infinity' is there when the worker starts: it may wait forever,
    but the worker must not trip over it (on PostgreSQL < 17, 'infinity' - now()
    raises)."""
    tasks = tasks_dir(tmp_path, "noop")
    poison = insert_job(db, schema_name, task="noop", run_at="infinity")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    assert_poison_harmless(db, schema_name, worker, poison, may_wait=True)


@pytest.mark.parametrize("attempts", [2**31 - 1, 2**31 - 2])
def test_poison_attempts_near_integer_limit(tmp_path: Path, db: psycopg.Connection[Any],
                                            schema_name: str, start_worker: WorkerFactory,
                                            attempts: int) -> None:
    tasks = tasks_dir(tmp_path, "noop")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_alive(worker, lambda: registered(db, schema_name, worker), 30, "the worker to register")
    poison = insert_job(db, schema_name, task="noop", attempts=attempts)
    normal = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, normal, worker)
    if poison is not None:
        row = wait_state(db, schema_name, poison, *FINAL, worker=worker)
        if row["state"] != "done":  # one more run of a 2**31 - 2 job is harmless
            assert row["state"] in ("failed", "dead") and row["error"], row
    stays_alive(worker, 2 * LEASE)
    later = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, later, worker)
    assert_alive(worker)


def test_task_module_max_attempts_past_integer(tmp_path: Path, db: psycopg.Connection[Any],
                                               schema_name: str, start_worker: WorkerFactory
                                               ) -> None:
    """A module with max_attempts = 2**31 is reported at start, by its file name,
    and the worker runs the other tasks."""
    tasks = tasks_dir(tmp_path, "noop", "big_attempts")
    normal = schedule(db, schema_name, "noop")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_done(db, schema_name, normal, worker)
    assert "big_attempts.py" in worker.log()
    stays_alive(worker, 2 * LEASE)
    later = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, later, worker)
    assert_alive(worker)


@pytest.fixture
def latin1_dsn(pg_dsn: str, db: psycopg.Connection[Any]) -> Iterator[str]:
    """A database in LATIN1, dropped afterwards."""
    name = f"pgcc_latin1_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
                       " TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield with_dsn(pg_dsn, dbname=name)
    finally:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def test_result_the_database_cannot_encode(tmp_path: Path, latin1_dsn: str,
                                           start_worker: WorkerFactory) -> None:
    """In a LATIN1 database, a task returning '€': the job ends failed with an error;
    the worker stays alive and runs the next job."""
    schema = "pgcc_latin1"
    with psycopg.connect(latin1_dsn, autocommit=True) as conn:
        pgcc_schema.migrate(conn, schema)
        tasks = tasks_dir(tmp_path, "noop", "euro")
        worker = start_worker.start_on(latin1_dsn, tasks, *FAST, "--concurrency", "1",
                                       schema=schema)
        try:
            euro = schedule(conn, schema, "euro")
            row = wait_state(conn, schema, euro, *FINAL, worker=worker, timeout=30)
            assert row["state"] == "failed" and row["error"], row
            stays_alive(worker, LEASE)
            after = schedule(conn, schema, "noop")
            wait_done(conn, schema, after, worker, timeout=30)
            assert_alive(worker)
        finally:
            worker.stop(timeout=10)


# --- 3. Backoff arithmetic cannot overflow --------------------------------------------------


def test_no_response_after_many_attempts(tmp_path: Path, db: psycopg.Connection[Any],
                                         schema_name: str, start_worker: WorkerFactory
                                         ) -> None:
    """A job at attempt 1100 (of 2000) whose child crashes: 2**1100 s of backoff must
    not overflow; the job goes back to queued within the 5 minute cap (or, out of
    attempts, ends dead), and the worker goes on."""
    tasks = tasks_dir(tmp_path, "noop", "crash")
    poison = insert_far_gone(db, schema_name, task="crash")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    row = wait_alive(worker, lambda: (r := job(db, schema_name, poison))["attempts"] > 1100
                     and r["state"] != "running" and r, 30, "the crashed job to come back")
    assert row["state"] in ("queued", "dead"), row
    if row["state"] == "queued":
        assert row["run_in"] <= 330, f"run_at is {row['run_in']} s ahead: past the 5 min cap"
    stays_alive(worker, LEASE)
    normal = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, normal, worker)
    assert_alive(worker)


def assert_reaped(db: psycopg.Connection[Any], schema: str, job_id: int, ghost: int) -> None:
    row = job(db, schema, job_id)
    assert row["state"] in ("queued", "dead"), row
    assert row["worker_id"] != ghost
    if row["state"] == "queued":
        assert row["run_in"] <= 330, f"run_at is {row['run_in']} s ahead: past the 5 min cap"


def test_worker_reaper_after_many_attempts(tmp_path: Path, db: psycopg.Connection[Any],
                                           schema_name: str, start_worker: WorkerFactory
                                           ) -> None:
    """The worker's own reaper requeues a running job at attempt 1100 whose worker
    is long gone, and the worker goes on claiming."""
    tasks = tasks_dir(tmp_path, "noop")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    warm = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, warm, worker)
    ghost = insert_expired_worker(db, schema_name)
    reaped = insert_far_gone(db, schema_name, ghost)
    wait_alive(worker, lambda: job(db, schema_name, reaped)["state"] != "running", 15,
               "the worker's reaper to requeue the job")
    assert_reaped(db, schema_name, reaped, ghost)
    stays_alive(worker, 2 * LEASE)
    after = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, after, worker, timeout=30)
    assert_alive(worker)


def test_reaper_once_after_many_attempts(tmp_path: Path, pg_dsn: str,
                                         db: psycopg.Connection[Any], schema_name: str,
                                         start_worker: WorkerFactory) -> None:
    """`pgcc reaper --once` requeues it too, without an error; a worker then runs
    new jobs."""
    ghost = insert_expired_worker(db, schema_name)
    reaped = insert_far_gone(db, schema_name, ghost)
    reaper_once(pg_dsn, schema_name)
    assert_reaped(db, schema_name, reaped, ghost)
    worker = start_worker(tasks_dir(tmp_path, "noop"), *FAST, "--concurrency", "1")
    after = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, after, worker, timeout=30)
    assert_alive(worker)


# --- 4. Quiet when the database is down -----------------------------------------------------


def proxied_backends(db: psycopg.Connection[Any], proxy: Proxy) -> list[int]:
    """Backend pids of the worker sessions that go through `proxy`."""
    names = "application_name LIKE 'pgcc worker%%' AND datname = current_database()"
    if proxy._family == socket.AF_UNIX:
        # A unix socket (the session's own embedded server): nobody else's workers.
        return [r[0] for r in db.execute(
            f"SELECT pid FROM pg_stat_activity WHERE {names}").fetchall()]
    # A shared server: the backends at the other end of the proxy's upstream sockets.
    ports = []
    for sock in list(proxy._sockets):
        with contextlib.suppress(OSError):
            if sock.getsockname()[1] != proxy.port:
                ports.append(sock.getsockname()[1])
    return [r[0] for r in db.execute(
        f"SELECT pid FROM pg_stat_activity WHERE {names} AND client_port = ANY(%s)",
        [ports]).fetchall()]


def terminate(db: psycopg.Connection[Any], pids: list[int]) -> None:
    db.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", [pids])


def test_quiet_during_outage_then_resumes(tmp_path: Path, pg_dsn: str,
                                          db: psycopg.Connection[Any], schema_name: str,
                                          start_worker: WorkerFactory) -> None:
    """The network to the database is cut and the worker's sessions are ended: it
    must not spin while it cannot reconnect, and works again once the network is
    back."""
    tasks = tasks_dir(tmp_path, "noop")
    with Proxy(pg_dsn) as proxy:
        worker = start_worker.start_on(proxy.dsn, tasks, *QUIET)
        warm = schedule(db, schema_name, "noop")
        wait_done(db, schema_name, warm, worker)
        backends = wait_alive(worker, lambda: proxied_backends(db, proxy), 10,
                              "the worker's sessions")
        proxy.cut()
        terminate(db, backends)
        during = schedule(db, schema_name, "noop")
        time.sleep(LEASE)  # it notices: its calls time out, its reconnects hang
        share = cpu_share(worker.pid, 5)
        assert share < 0.05, f"the worker used {share:.0%} of a core while the database was away"
        assert_alive(worker)
        assert job(db, schema_name, during)["state"] == "queued", "the outage was no outage"
        proxy.heal()
        wait_done(db, schema_name, during, worker, timeout=30)
        assert_alive(worker)


def test_quiet_when_connections_refused(tmp_path: Path, pg_dsn: str,
                                        db: psycopg.Connection[Any], schema_name: str,
                                        start_worker: WorkerFactory) -> None:
    """The database's address stops answering at all (every connection closed,
    new ones refused): the worker rides it out, reconnecting at most a few times
    per second, well under 5% of a core."""
    tasks = tasks_dir(tmp_path, "noop")
    proxy = Proxy(pg_dsn)
    try:
        worker = start_worker.start_on(proxy.dsn, tasks, *QUIET)
        warm = schedule(db, schema_name, "noop")
        wait_done(db, schema_name, warm, worker)
    finally:
        proxy.close()
    time.sleep(1.0)
    share = cpu_share(worker.pid, 5)
    assert share < 0.05, f"the worker used {share:.0%} of a core while the database was away"
    assert_alive(worker)


# --- 5. Process groups ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_process_group_is_graceful(tmp_path: Path, pg_dsn: str,
                                             db: psycopg.Connection[Any], schema_name: str,
                                             sig: signal.Signals) -> None:
    """`kill -TERM -- -PGID` (systemd's KillMode=control-group), or Ctrl-C's SIGINT
    to the group: the running job finishes, once, and the worker exits 0."""
    tasks = tasks_dir(tmp_path, "nap")
    runs = tmp_path / "runs.log"
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [PGCC, "worker", "--dsn", pg_dsn, "--schema", schema_name, "--tasks", str(tasks),
             *FAST, "--concurrency", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pgid = os.getpgid(process.pid)
    try:
        napping = schedule(db, schema_name, "nap", {"log": str(runs), "seconds": 3})
        wait_for(runs.exists, 30, "the job to start")
        time.sleep(0.3)
        os.killpg(pgid, sig)
        code = exit_code_within(process, 3 + 10, f"{sig.name} to the process group")
        row = job(db, schema_name, napping)
        assert (row["state"], row["attempts"], row["attempt_errors"]) == ("done", 1, []), \
            row | {"log": log_path.read_text(errors="replace")[-5000:]}
        assert len(runs.read_text().splitlines()) == 1
        assert code == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait()


# --- 6. Task code never runs in the supervisor ----------------------------------------------


def test_module_exiting_at_import(tmp_path: Path, db: psycopg.Connection[Any],
                                  schema_name: str, start_worker: WorkerFactory) -> None:
    tasks = tasks_dir(tmp_path, "noop", "exit_at_import")
    normal = schedule(db, schema_name, "noop")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    wait_done(db, schema_name, normal, worker)
    stays_alive(worker, LEASE)
    assert "exit_at_import.py" in worker.log()
    later = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, later, worker)
    assert_alive(worker)


def test_task_module_not_imported_by_supervisor(tmp_path: Path, db: psycopg.Connection[Any],
                                                schema_name: str, start_worker: WorkerFactory
                                                ) -> None:
    tasks = tasks_dir(tmp_path, "pid_at_import")
    pids = tmp_path / "importers"
    worker = start_worker(tasks, *FAST, "--concurrency", "1",
                          env={"PGCC_SURVIVAL_PID_FILE": str(pids)})
    ran = schedule(db, schema_name, "pid_at_import")
    row = wait_state(db, schema_name, ran, *FINAL, worker=worker)
    assert row["state"] == "done", row
    importers = [int(line) for line in pids.read_text().split()]
    assert row["result"] in importers  # the child that ran it imported it
    assert worker.pid not in importers, "the supervisor imported task code"
    assert_alive(worker)


# --- 7. A result larger than the parameters limit -------------------------------------------


def test_result_over_parameters_limit(tmp_path: Path, db: psycopg.Connection[Any],
                                      schema_name: str, start_worker: WorkerFactory) -> None:
    tasks = tasks_dir(tmp_path, "noop", "huge_result")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    huge = schedule(db, schema_name, "huge_result")
    row = wait_state(db, schema_name, huge, *FINAL, worker=worker)
    assert row["state"] == "failed", {k: row[k] for k in ("state", "attempts", "error")}
    assert row["result"] is None
    assert re.search(r"limit|too (large|big)|bytes|MiB|size", row["error"] or "", re.I), \
        row["error"]
    after = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, after, worker)
    assert_alive(worker)


# --- 8. A read-only server after a failover -------------------------------------------------


@pytest.fixture
def worker_role(db: psycopg.Connection[Any]) -> Iterator[str]:
    """A LOGIN role for the worker (a superuser: it needs no grants), dropped afterwards."""
    role = f"pgcc_ro_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                   [role])
        wait_for(lambda: not one(db, sql.SQL(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"), [role]), 10,
            "the role's sessions to end")
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def end_sessions_of(db: psycopg.Connection[Any], role: str) -> None:
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
               " WHERE usename = %s AND datname = current_database()", [role])


def test_read_only_server_after_failover(tmp_path: Path, pg_dsn: str,
                                         db: psycopg.Connection[Any], schema_name: str,
                                         start_worker: WorkerFactory, worker_role: str
                                         ) -> None:
    """After a failover the worker reconnects to a server where every write fails
    (ReadOnlySqlTransaction). It rides it out, and once writes work again, a job
    scheduled meanwhile runs exactly once."""
    tasks = tasks_dir(tmp_path, "nap")
    runs = tmp_path / "runs.log"
    worker = start_worker.start_on(with_dsn(pg_dsn, user=worker_role), tasks,
                                   *FAST, "--concurrency", "1")
    try:
        warm = schedule(db, schema_name, "nap", {"log": str(runs)})
        wait_done(db, schema_name, warm, worker)
        role = sql.Identifier(worker_role)
        db.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        try:
            end_sessions_of(db, worker_role)
            waiting = schedule(db, schema_name, "nap", {"log": str(runs)})
            stays_alive(worker, 5)
            # Every session it opened since could write nothing: it claimed nothing.
            assert job(db, schema_name, waiting)["state"] == "queued"
        finally:
            db.execute(sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(role))
        end_sessions_of(db, worker_role)
        row = wait_state(db, schema_name, waiting, *FINAL, worker=worker, timeout=30)
        assert (row["state"], row["attempts"], row["attempt_errors"]) == ("done", 1, []), row
        ran = [line.split()[0] for line in runs.read_text().splitlines()]
        assert ran.count(str(waiting)) == 1
        assert_alive(worker)
    finally:
        worker.stop(timeout=10)  # before its role goes


# --- 9. A non-connection error in a maintenance duty ----------------------------------------


def test_reaper_error_does_not_stop_worker(tmp_path: Path, db: psycopg.Connection[Any],
                                           schema_name: str, start_worker: WorkerFactory
                                           ) -> None:
    """The reaper's query fails on every tick (UndefinedFunction): the worker keeps
    claiming and finishing jobs; once the function is back, its reaper reaps."""
    tasks = tasks_dir(tmp_path, "noop")
    worker = start_worker(tasks, *FAST, "--concurrency", "1")
    warm = schedule(db, schema_name, "noop")
    wait_done(db, schema_name, warm, worker)
    db.execute(q(schema_name, "ALTER FUNCTION {}.retry_delay(integer) RENAME TO retry_delay_gone"))
    try:
        stays_alive(worker, 3 * LEASE)  # many reaper ticks, longer than the lease
        during = [schedule(db, schema_name, "noop") for _ in range(3)]
        for job_id in during:
            wait_done(db, schema_name, job_id, worker, timeout=20)
        assert_alive(worker)
    finally:
        db.execute(q(schema_name,
                     "ALTER FUNCTION {}.retry_delay_gone(integer) RENAME TO retry_delay"))
    ghost = insert_expired_worker(db, schema_name)
    orphan = insert_running_on(db, schema_name, ghost, attempts=1, max_attempts=10)
    assert orphan is not None
    row = wait_alive(worker, lambda: (r := job(db, schema_name, orphan))["state"] != "running"
                     and r, 15, "the worker's reaper to requeue the orphan")
    assert row["worker_id"] != ghost and row["attempt_errors"], row
    wait_done(db, schema_name, orphan, worker, timeout=30)
    assert_alive(worker)


def test_a_hung_prune_holds_up_neither_jobs_nor_the_lease(
        tmp_path: Path, db: psycopg.Connection[Any], pg_dsn: str, schema_name: str,
        start_worker: WorkerFactory) -> None:
    """Suspected defect: a pruning statement that hangs is never cut, and holds up the
    heartbeat it shares a connection with. Pruning runs on the maintenance part's
    own connection: a prune stuck on a lock holds up neither the jobs nor the lease,
    the watchdog cuts it after half a lease, and pruning goes on once the lock is gone."""
    tasks = tasks_dir(tmp_path, "noop")
    # Finished jobs past the retention, so many that pruning takes several ticks.
    db.execute(q(schema_name, "INSERT INTO {}.jobs (task, parameters, state, attempts, finished_at)"
                              " SELECT 'noop', '{{}}'::jsonb, 'done', 1, now() - interval '30 days'"
                              " FROM generate_series(1, 500000)"))
    # Jobs due in a while, written now: the door reads the settings table, which
    # is about to be locked.
    later = [int(one(db, q(schema_name, "SELECT {}.schedule_task('noop', '{{}}'::jsonb, NULL, "
                                        "6000, NULL)"))) for _ in range(5)]
    old = q(schema_name,
            "SELECT count(*) FROM {}.jobs WHERE finished_at < now() - interval '1 day'")
    worker = start_worker(tasks, *FAST)
    wait_alive(worker, lambda: "pruner: pruned" in worker.log(), 30, "the first prune")
    with psycopg.connect(pg_dsn) as locker:
        # The prune's subquery reads the retention from the settings table.
        locker.execute(q(schema_name, "LOCK TABLE {}.settings IN ACCESS EXCLUSIVE MODE"))
        assert one(db, old) > 0, "pruning was over before the lock"
        beat = one(db, q(schema_name, "SELECT heartbeat_at FROM {}.workers WHERE pid = %s"),
                   [worker.pid])
        stuck = ("SELECT array_agg(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                 " AND application_name = 'pgcc worker maintenance' AND query LIKE %s")
        hung = wait_alive(worker, lambda: one(db, sql.SQL(stuck), [f"%{schema_name}%"]), 10,
                          "the prune to wait on the lock")
        wait_alive(worker, lambda: "maintenance: database unavailable" in worker.log(),
                   LEASE * 3, "the stuck prune to be cut")
        # The server ends the cut session although its statement still waits
        # (client_connection_check_interval).
        alive_pids = sql.SQL("SELECT array_agg(pid) FROM pg_stat_activity WHERE pid = ANY(%s)")
        wait_alive(worker, lambda: not one(db, alive_pids, [hung]), 10,
                   "the cut session to be ended by the server")
        for job_id in later:
            wait_done(db, schema_name, job_id, worker)
        assert one(db, q(schema_name, "SELECT heartbeat_at FROM {}.workers WHERE pid = %s"),
                   [worker.pid]) > beat, "the heartbeat stopped while the prune hung"
        assert one(db, old) > 0, "the lock did not hold the prune"
        assert_alive(worker)
        locker.rollback()
    wait_alive(worker, lambda: one(db, old) == 0, 60, "pruning to go on")
    assert_alive(worker)
