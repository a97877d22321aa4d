#!/usr/bin/env python3
"""Soak: many jobs over many queues while workers are hit by faults every few seconds.

    python scripts/soak.py --dsn postgresql://postgres@127.0.0.1:5432/test

Starts --workers `pgcc worker` processes on a fresh schema, schedules --jobs jobs
over --queues queues (spread over --minutes, so the faults hit a busy queue the
whole time; a --free-share of them without a queue), and every --fault-every
seconds injects one fault, chosen at random among --faults:

- worker: SIGKILL of a worker; a new one is started in its place
- child: SIGKILL of one of a worker's job children (preferably one that is
  mid-job: a no-response, so the job runs again)
- connection: pg_terminate_backend() of one worker's own database sessions
  (matched by client port; with a Unix-socket DSN, every session of this
  soak's workers)
- stop: SIGSTOP of a worker for longer than its lease (--stop-seconds), then
  SIGCONT; its jobs are reaped meanwhile and it must not overwrite them

until every job is final. A worker that exits by itself is restarted (the soak
plays its supervisor) and counted. Each job writes a start row and an end row
with clock_timestamp() into a log table from its own connection, and holds a
per-queue advisory lock while it runs (a second copy of a queue's job that
starts while the first still runs cannot take it). The report:

- lost: jobs not final at the end (must be 0)
- overlapping: runs of one queue whose intervals overlap, or that found the
  queue's lock taken (must be 0)
- re-runs after a response: runs that started after the job's response was
  recorded, or a recorded result that is not the last run's (must be 0)
- per fault kind: how many were injected, and for the kills the time from the
  kill to the next run of each job the victim held (p50 / p90 / max)
- workers that exited by themselves, and processes of the soak's workers
  still alive after they were stopped (orphans, killed by the soak)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from pgcc import _schema as pgcc_schema

# The soak runs the chaos tests' task: tests/ is a package beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import chaos_task

PGCC = str(Path(sys.executable).parent / "pgcc")
FAULTS = ("worker", "child", "connection", "stop")
# Set in the workers' environment (so inherited by all their processes): finds
# what is left of them after the run.
MARKER = "PGCC_SOAK_RUN"
# Seconds before a worker that exited by itself is started again (systemd's RestartSec).
RESTART_DELAY = 1.0


@dataclass
class Fault:
    kind: str
    at: dt.datetime
    # (job id, attempt) of the jobs the victim held when the fault hit
    held: list[tuple[int, int]] = field(default_factory=list)
    # backends cut (connection faults)
    cut: int = 0


def log_table(schema: str) -> sql.Composed:
    return sql.SQL("{}.soak_log").format(sql.Identifier(schema))


def parse_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def now(conn: psycopg.Connection[Any]) -> dt.datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def schedule(conn: psycopg.Connection[Any], schema: str, args: argparse.Namespace) -> None:
    start = now(conn) + dt.timedelta(seconds=2)
    spread = max(0.0, args.minutes * 60)  # the last job is due when the time is up
    batch: list[dict[str, Any]] = []
    query = sql.SQL("SELECT {}.schedule_tasks(%s::jsonb)").format(sql.Identifier(schema))
    for i in range(args.jobs):
        at = start + dt.timedelta(seconds=spread * i / max(1, args.jobs))
        queue = None if random.random() < args.free_share else f"q{i % args.queues}"
        batch.append({"task": "soak", "queue": queue, "at": at.isoformat(),
                      "parameters": {"sleep": round(random.uniform(*args.job_seconds), 3)}})
        if len(batch) == 2000:
            conn.execute(query, [json.dumps(batch)])
            batch = []
    if batch:
        conn.execute(query, [json.dumps(batch)])


def states(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    rows = conn.execute(sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state").format(
        sql.Identifier(schema))).fetchall()
    return {row[0]: row[1] for row in rows}


class Workers:
    def __init__(self, args: argparse.Namespace, schema: str, tasks: Path, logs: Path) -> None:
        self.args, self.schema, self.tasks, self.logs = args, schema, tasks, logs
        self.started = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        # pid of a SIGSTOPped worker -> when it gets SIGCONT (time.monotonic())
        self.stopped: dict[int, float] = {}
        # (exit code, last log line, whether it had been SIGSTOPped) of the workers
        # that exited without the soak killing them
        self.exits: list[tuple[int, str, bool]] = []
        self.ever_stopped: set[int] = set()
        # index of an exited worker -> when its replacement starts (a supervisor's delay)
        self.restart_at: dict[int, float] = {}
        self.log_of: dict[int, Path] = {}

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        out = open(self.logs / f"worker-{self.started}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [PGCC, "worker", "--dsn", self.args.dsn, "--schema", self.schema,
             "--tasks", str(self.tasks), "--lease", str(self.args.lease),
             "--poll-interval", str(self.args.poll_interval),
             "--concurrency", str(self.args.concurrency), "--no-migrate", "--quiet"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, MARKER: self.schema})
        out.close()
        self.log_of[proc.pid] = self.logs / f"worker-{self.started}.log"
        return proc

    def running(self) -> list[int]:
        """Indexes of the workers that are up and not stopped."""
        return [i for i, proc in enumerate(self.procs)
                if proc.poll() is None and proc.pid not in self.stopped]

    def supervise(self) -> None:
        """SIGCONT the stopped workers whose time is up; restart those that exited."""
        for pid, resume_at in list(self.stopped.items()):
            if time.monotonic() >= resume_at:
                self.resume(pid)
        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            if i not in self.restart_at:
                self.exits.append((proc.returncode, self.last_words(proc.pid),
                                   proc.pid in self.ever_stopped))
                self.restart_at[i] = time.monotonic() + RESTART_DELAY
                if len(self.exits) <= 10 or len(self.exits) % 100 == 0:
                    print(f"worker {proc.pid} exited by itself with {proc.returncode} "
                          f"({len(self.exits)} so far): {self.exits[-1][1]}", flush=True)
            elif time.monotonic() >= self.restart_at[i]:
                del self.restart_at[i]
                self.procs[i] = self.start()

    def last_words(self, pid: int) -> str:
        """The reason a worker gave for exiting: its last CRITICAL line, or its
        last line, without the timestamp."""
        try:
            lines = self.log_of[pid].read_text(errors="replace").splitlines()
        except (KeyError, OSError):
            return "?"
        lines = [line for line in lines if line.strip()] or ["(empty log)"]
        line = next((line for line in reversed(lines) if "CRITICAL" in line), lines[-1])
        return re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line)[:160]

    def resume(self, pid: int) -> None:
        self.stopped.pop(pid, None)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def stop_all(self) -> None:
        for pid in list(self.stopped):
            self.resume(pid)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def leftovers(self) -> list[psutil.Process]:
        """Processes started by this soak's workers that are still alive."""
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.environ().get(MARKER) == self.schema:
                    found.append(process)
        return found


def job_children(worker_pid: int) -> list[psutil.Process]:
    """The processes of a worker's tree that run jobs: all its descendants except
    multiprocessing's helpers (the forkserver, which the job children are
    forked from, and the resource tracker), whatever the start method."""
    try:
        worker = psutil.Process(worker_pid)
        tree = worker.children(recursive=True)
        direct = worker.children()
    except psutil.Error:
        return []
    helpers = set()
    for process in direct:
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing.forkserver" in command or "multiprocessing.resource_tracker" \
                in command:
            helpers.add(process.pid)
    return [process for process in tree if process.pid not in helpers]


class Injector:
    """Injects one fault of a random kind at a time into a random worker."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, args: argparse.Namespace,
                 workers: Workers) -> None:
        self.conn, self.schema, self.args, self.workers = conn, schema, args, workers
        self.faults: list[Fault] = []
        self.skipped: dict[str, int] = dict.fromkeys(FAULTS, 0)

    def counts(self) -> dict[str, int]:
        done = dict.fromkeys(self.args.faults, 0)
        for fault in self.faults:
            done[fault.kind] += 1
        return done

    def held_by(self, pid: int) -> list[tuple[int, int]]:
        rows = self.conn.execute(sql.SQL(
            "SELECT j.id, j.attempts FROM {jobs} j JOIN {workers} w"
            " ON w.id = j.worker_id WHERE w.pid = %s AND j.state = 'running'").format(
            jobs=sql.SQL("{}.jobs").format(sql.Identifier(self.schema)),
            workers=sql.SQL("{}.workers").format(sql.Identifier(self.schema))),
            [pid]).fetchall()
        return [(row[0], row[1]) for row in rows]

    def inject(self) -> None:
        kind = random.choice(self.args.faults)
        candidates = self.workers.running()
        if not candidates:
            self.skipped[kind] += 1
            return
        index = random.choice(candidates)
        fault = getattr(self, kind)(index)
        if fault is None:
            self.skipped[kind] += 1
        else:
            self.faults.append(fault)

    def worker(self, index: int) -> Fault:
        victim = self.workers.procs[index]
        killed_at = now(self.conn)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        fault = Fault("worker", killed_at, self.held_by(victim.pid))
        self.workers.procs[index] = self.workers.start()
        return fault

    def child(self, index: int) -> Fault | None:
        # Prefer a child that is mid-job (its run has no end row yet): a no-response.
        children = {process.pid: process for process in job_children(
            self.workers.procs[index].pid)}
        if not children:
            return None
        busy = self.conn.execute(sql.SQL(
            "SELECT DISTINCT ON (pid) pid, job_id, attempt FROM {} WHERE ended_at IS NULL"
            " AND pid = ANY(%s) ORDER BY pid, id DESC").format(log_table(self.schema)),
            [list(children)]).fetchall()
        if busy:
            pid, job_id, attempt = random.choice(busy)
            held = [(job_id, attempt)]
        else:
            pid, held = random.choice(list(children)), []
        killed_at = now(self.conn)
        try:
            children[pid].send_signal(signal.SIGKILL)  # psutil: checks the pid is not reused
        except psutil.Error:
            return None
        return Fault("child", killed_at, held)

    def connection(self, index: int) -> Fault | None:
        pid = self.workers.procs[index].pid
        try:
            ports = [c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr]
        except psutil.Error:
            return None
        if ports:
            query = sql.SQL("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s"
                            " AND client_port = ANY(%s) AND datname = current_database()")
            params: list[Any] = ["pgcc worker%", ports]
        else:  # a Unix socket: no port tells the workers apart; cut all of this soak's
            query = sql.SQL("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s"
                            " AND datname = current_database() AND query LIKE %s")
            params = ["pgcc worker%", f"%{self.schema}%"]
        backends = [row[0] for row in self.conn.execute(query, params).fetchall()]
        if not backends:
            return None
        at = now(self.conn)
        held = self.held_by(pid)
        rows = self.conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
            " FROM unnest(%s::int[]) AS pid", [backends]).fetchone()
        return Fault("connection", at, held, cut=rows[0] if rows else 0)

    def stop(self, index: int) -> Fault:
        victim = self.workers.procs[index]
        at = now(self.conn)
        held = self.held_by(victim.pid)
        victim.send_signal(signal.SIGSTOP)
        self.workers.ever_stopped.add(victim.pid)
        self.workers.stopped[victim.pid] = time.monotonic() + random.uniform(
            *self.args.stop_seconds)
        return Fault("stop", at, held)


def report(conn: psycopg.Connection[Any], schema: str, args: argparse.Namespace,
           injector: Injector, elapsed: float, logs: Path, workers: Workers,
           leftovers: int) -> bool:
    jobs = sql.SQL("{}.jobs").format(sql.Identifier(schema))
    log = log_table(schema)
    final = states(conn, schema)
    total = sum(final.values())
    lost = args.jobs - final.get("done", 0) - final.get("failed", 0) - final.get("dead", 0)

    def one(query: sql.Composable) -> Any:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    overlapping = one(sql.SQL("""
        SELECT count(*) FROM (
            SELECT started_at, max(coalesce(ended_at, seen_at)) OVER (
                PARTITION BY queue ORDER BY started_at, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
            FROM {log} WHERE queue IS NOT NULL) r
        WHERE started_at < previous_end""").format(log=log))
    lock_taken = one(sql.SQL("SELECT count(*) FROM {log} WHERE NOT lock_ok").format(log=log))
    reruns = one(sql.SQL("""
        SELECT count(*) FROM {log} l JOIN {jobs} j ON j.id = l.job_id
        WHERE j.state IN ('done', 'failed')
          AND (l.attempt > j.attempts OR l.started_at > j.finished_at)""").format(
        log=log, jobs=jobs))
    wrong_result = one(sql.SQL("""
        SELECT count(*) FROM {jobs} j
        WHERE j.state = 'done' AND NOT EXISTS (
            SELECT FROM {log} l WHERE l.job_id = j.id AND l.attempt = j.attempts
              AND l.pid = (j.result ->> 'pid')::int AND l.ended_at IS NOT NULL)""").format(
        log=log, jobs=jobs))
    runs = one(sql.SQL("SELECT count(*) FROM {log}").format(log=log))
    # A few of the jobs behind a non-zero must-be-zero line, with their runs.
    suspects = conn.execute(sql.SQL("""
        SELECT j.id, j.state, j.attempts, j.finished_at, j.result FROM {jobs} j
        WHERE j.state NOT IN ('done', 'failed', 'dead')
           OR (j.state IN ('done', 'failed') AND EXISTS (
                SELECT FROM {log} l WHERE l.job_id = j.id
                  AND (l.attempt > j.attempts OR l.started_at > j.finished_at)))
           OR (j.state = 'done' AND NOT EXISTS (
                SELECT FROM {log} l WHERE l.job_id = j.id AND l.attempt = j.attempts
                  AND l.pid = (j.result ->> 'pid')::int AND l.ended_at IS NOT NULL))
           OR j.id IN (SELECT job_id FROM {log} WHERE NOT lock_ok)
        ORDER BY j.id LIMIT 3""").format(log=log, jobs=jobs)).fetchall()
    retried = one(sql.SQL("SELECT count(*) FROM {jobs} WHERE attempts > 1").format(jobs=jobs))

    def next_runs(kind: str) -> tuple[list[float], int, int]:
        """Delays from the fault to the next run of each job the victim held; how
        many held jobs never ran again; how many were held."""
        delays: list[float] = []
        never = held = 0
        for fault in injector.faults:
            if fault.kind != kind:
                continue
            for job_id, attempt in fault.held:
                held += 1
                row = conn.execute(sql.SQL(
                    "SELECT min(started_at) FROM {log} WHERE job_id = %s AND attempt > %s"
                ).format(log=log), [job_id, attempt]).fetchone()
                if row is None or row[0] is None:
                    never += 1
                else:
                    delays.append((row[0] - fault.at).total_seconds())
        return delays, never, held

    def spread(delays: list[float]) -> str:
        ordered = sorted(delays)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        return (f"p50 {statistics.median(ordered):.2f} s, p90 {p90:.2f} s, "
                f"max {ordered[-1]:.2f} s")

    def worker_lines(text: str) -> int:
        return sum(path.read_text(errors="replace").count(text) for path in logs.iterdir())

    counts = injector.counts()
    print()
    print(f"soak report ({args.jobs} jobs, {args.queues} queues, {args.free_share:.0%} without "
          f"one, {args.workers} workers x "
          f"{args.concurrency} children, lease {args.lease:g} s, poll {args.poll_interval:g} s)")
    print(f"  elapsed                     {elapsed:.0f} s")
    print(f"  final states                {json.dumps(final, sort_keys=True)} (total {total})")
    print(f"  runs logged                 {runs} ({retried} jobs ran more than once)")
    print(f"  faults                      {sum(counts.values())} "
          f"({', '.join(f'{kind} {n}' for kind, n in counts.items())}; skipped, no target: "
          f"{sum(injector.skipped.values())}; workers started: {workers.started})")
    for kind in args.faults:
        delays, never, held = next_runs(kind)
        line = f"    {kind:<12}{counts[kind]:>4} injected, {held} jobs held"
        if kind == "connection":
            line += f", {sum(f.cut for f in injector.faults if f.kind == kind)} backends cut"
        if kind in ("worker", "child"):
            if delays:
                line += f"; fault -> running again: {spread(delays)}"
            if kind == "worker" and delays:
                line += (f" (over lease + 2 s = {args.lease + 2:g} s: "
                         f"{sum(1 for d in delays if d > args.lease + 2)})")
            if never:
                line += f"; {never} never ran again (response already on its way)"
        elif held:
            line += f"; {held - never} of them ran again"
        print(line)
    print(f"  lost                        {lost}")
    print(f"  overlapping                 {overlapping + lock_taken} "
          f"(intervals {overlapping}, queue lock found taken {lock_taken})")
    print(f"  re-runs after a response    {reruns + wrong_result} "
          f"(started after the response {reruns}, result not from the last run "
          f"{wrong_result})")
    codes = Counter(code for code, _, _ in workers.exits)
    after_stop = sum(1 for _, _, stopped in workers.exits if stopped)
    print(f"  workers that exited by themselves {len(workers.exits)} ({after_stop} after a "
          f"stop; exit codes {json.dumps(dict(sorted(codes.items())))}); "
          f"processes left after the stop: {leftovers}")
    reasons = Counter((re.sub(r"\d+(\.\d+)?", "N", reason), stopped)
                      for _, reason, stopped in workers.exits)
    for (reason, stopped), n in reasons.most_common(4):
        print(f"    {n:>4} x {'(stopped) ' if stopped else ''}{reason}")
    for job_id, state, attempts, finished_at, result in suspects:
        print(f"  suspect job {job_id}: {state}, attempts {attempts}, finished "
              f"{finished_at:%H:%M:%S.%f}, result {json.dumps(result)}" if finished_at else
              f"  suspect job {job_id}: {state}, attempts {attempts}")
        for attempt, pid, started, ended, lock_ok in conn.execute(sql.SQL(
                "SELECT attempt, pid, started_at, ended_at, lock_ok FROM {log}"
                " WHERE job_id = %s ORDER BY id").format(log=log), [job_id]):
            print(f"      run: attempt {attempt}, pid {pid}, {started:%H:%M:%S.%f} - "
                  f"{f'{ended:%H:%M:%S.%f}' if ended else 'no end'}"
                  f"{'' if lock_ok else ', queue lock taken'}")
    print(f"  worker log: self-fencing {worker_lines('lease not renewed for')}, "
          f"late results dropped {worker_lines('dropped a late')}, "
          f"re-registered {worker_lines('taken over by the reaper')}")
    ok = lost == 0 and overlapping + lock_taken == 0 and reruns + wrong_result == 0
    print(f"SUMMARY: {'PASS' if ok else 'FAIL'} {args.jobs} jobs, {elapsed:.0f} s, faults "
          f"{' '.join(f'{kind}={n}' for kind, n in counts.items())}; lost {lost}, overlapping "
          f"{overlapping + lock_taken}, re-runs after a response {reruns + wrong_result}; "
          f"worker self-exits {len(workers.exits)} ({after_stop} after a stop), "
          f"leftover processes {leftovers}")
    return ok


def parse_faults(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kind.strip() for kind in text.split(",") if kind.strip()))
    unknown = [kind for kind in kinds if kind not in FAULTS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown) or '(none)'}; choose among {','.join(FAULTS)}")
    return kinds


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGCC_TEST_DSN")
                        or os.environ.get("PGCC_DSN"), required=False)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--free-share", type=float, default=0.0,
                        help="share of the jobs without a queue, 0-1")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--faults", type=parse_faults, default=FAULTS,
                        help=f"fault kinds to pick from at random, comma-separated "
                             f"(default: {','.join(FAULTS)})")
    parser.add_argument("--fault-every", "--kill-every", dest="fault_every", type=parse_range,
                        default=(3.0, 8.0), help="seconds between faults, a range: 3-8")
    parser.add_argument("--stop-seconds", type=parse_range, default=None,
                        help="how long a stop fault lasts, a range (default: 1.5-3 x lease)")
    parser.add_argument("--job-seconds", type=parse_range, default=(0.0, 0.2),
                        help="how long a job runs, a range: 0-0.2")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--keep", action="store_true", help="keep the schema and the logs")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (or PGCC_TEST_DSN / PGCC_DSN) is required")
    if args.stop_seconds is None:
        args.stop_seconds = (1.5 * args.lease, 3 * args.lease)

    # SIGINT and SIGTERM stop the soak through its cleanup (workers stopped, schema
    # dropped), even when SIGINT came in ignored (a background job of a script).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupted)

    schema = f"soak_{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="pgcc-soak-"))
    tasks, logs = work / "tasks", work / "logs"
    tasks.mkdir()
    logs.mkdir()
    conn = psycopg.connect(args.dsn, autocommit=True)
    ok = False
    try:
        pgcc_schema.migrate(conn, schema)
        log = log_table(schema)
        chaos_task.install(conn, log, tasks, "soak", args.dsn, random.randrange(1, 2**31))
        print(f"schema {schema}, work folder {work}, faults {','.join(args.faults)}", flush=True)
        ok = soak(conn, schema, args, tasks, logs)
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop}): workers stopped, cleaning up", flush=True)
        return 130
    finally:
        if not args.keep:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
            shutil.rmtree(work, ignore_errors=True)
        conn.close()
    return 0 if ok else 1


def soak(conn: psycopg.Connection[Any], schema: str, args: argparse.Namespace, tasks: Path,
         logs: Path) -> bool:
    workers = Workers(args, schema, tasks, logs)
    injector = Injector(conn, schema, args, workers)
    began = time.monotonic()
    try:
        workers.procs = [workers.start() for _ in range(args.workers)]
        schedule(conn, schema, args)
        print(f"scheduled {args.jobs} jobs", flush=True)
        began = time.monotonic()
        next_fault = began + random.uniform(*args.fault_every)
        next_print = began + 15
        hard_stop = began + args.minutes * 60 + 600
        while True:
            workers.supervise()
            current = states(conn, schema)
            if not current.get("queued") and not current.get("running") \
                    and time.monotonic() - began >= args.minutes * 60:
                break
            if time.monotonic() > hard_stop:
                print("giving up: jobs still not final", flush=True)
                break
            if time.monotonic() >= next_fault:
                injector.inject()
                next_fault = time.monotonic() + random.uniform(*args.fault_every)
            if time.monotonic() >= next_print:
                next_print += 15
                print(f"{time.monotonic() - began:5.0f} s: {json.dumps(current, sort_keys=True)}"
                      f", faults {json.dumps(injector.counts())}", flush=True)
            time.sleep(0.2)
    finally:
        elapsed = time.monotonic() - began
        workers.stop_all()
        time.sleep(1)  # children notice their worker's end
        leftovers = workers.leftovers()
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
    ok = report(conn, schema, args, injector, elapsed, logs, workers, len(leftovers))
    print("PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    sys.exit(main())
