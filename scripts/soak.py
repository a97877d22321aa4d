#!/usr/bin/env python3
"""Soak: many jobs over many queues while a worker is killed (SIGKILL) every few seconds.

    python scripts/soak.py --dsn postgresql://postgres@127.0.0.1:5432/test

Starts --workers `pgcc worker` processes on a fresh schema, schedules --jobs jobs
over --queues queues (spread over --minutes, so the kills hit a busy queue the
whole time; a --free-share of them without a queue), kills one worker at random
every --kill-every seconds and starts a new one in its place, until every job is
final. Each job writes a start row and an end row with clock_timestamp() into a
log table from its own connection, and holds a per-queue advisory lock while it
runs (a second copy of a queue's job that starts while the first still runs
cannot take it). The report:

- lost: jobs not final at the end (must be 0)
- overlapping: runs of one queue whose intervals overlap, or that found the
  queue's lock taken (must be 0)
- re-runs after a response: runs that started after the job's response was
  recorded, or a recorded result that is not the last run's (must be 0)
- kill -> running again: for every job a killed worker held, the time from the
  kill to the start of its next run (p50 / p90 / max), against lease + 2 s
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgcc import schema as pgcc_schema

# The soak runs the chaos tests' task: tests/ is a package beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import chaos_task

PGCC = str(Path(sys.executable).parent / "pgcc")



def log_table(schema: str) -> sql.Composed:
    return sql.SQL("{}.soak_log").format(sql.Identifier(schema))


def parse_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def now(conn: psycopg.Connection[Any]) -> dt.datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


class Workers:
    def __init__(self, args: argparse.Namespace, schema: str, tasks: Path, logs: Path) -> None:
        self.args, self.schema, self.tasks, self.logs = args, schema, tasks, logs
        self.started = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        out = open(self.logs / f"worker-{self.started}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [PGCC, "worker", "--dsn", self.args.dsn, "--schema", self.schema,
             "--tasks", str(self.tasks), "--lease", str(self.args.lease),
             "--poll-interval", str(self.args.poll_interval),
             "--concurrency", str(self.args.concurrency), "--no-migrate", "--quiet"],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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


def report(conn: psycopg.Connection[Any], schema: str, args: argparse.Namespace,
           kills: list[tuple[dt.datetime, list[tuple[int, int]]]], elapsed: float,
           logs: Path, started_workers: int) -> bool:
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
    retried = one(sql.SQL("SELECT count(*) FROM {jobs} WHERE attempts > 1").format(jobs=jobs))

    delays: list[float] = []
    never = 0
    for killed_at, held in kills:
        for job_id, attempt in held:
            row = conn.execute(sql.SQL(
                "SELECT min(started_at) FROM {log} WHERE job_id = %s AND attempt > %s").format(
                log=log), [job_id, attempt]).fetchone()
            if row is None or row[0] is None:
                never += 1
            else:
                delays.append((row[0] - killed_at).total_seconds())

    def worker_lines(text: str) -> int:
        return sum(path.read_text(errors="replace").count(text) for path in logs.iterdir())

    print()
    print(f"soak report ({args.jobs} jobs, {args.queues} queues, {args.free_share:.0%} without "
          f"one, {args.workers} workers x "
          f"{args.concurrency} children, lease {args.lease:g} s, poll {args.poll_interval:g} s)")
    print(f"  elapsed                     {elapsed:.0f} s")
    print(f"  final states                {json.dumps(final, sort_keys=True)} (total {total})")
    print(f"  runs logged                 {runs} ({retried} jobs ran more than once)")
    print(f"  kills                       {len(kills)} (workers started: {started_workers})")
    print(f"  lost                        {lost}")
    print(f"  overlapping                 {overlapping + lock_taken} "
          f"(intervals {overlapping}, queue lock found taken {lock_taken})")
    print(f"  re-runs after a response    {reruns + wrong_result} "
          f"(started after the response {reruns}, result not from the last run "
          f"{wrong_result})")
    if delays:
        ordered = sorted(delays)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        print(f"  kill -> running again       {len(delays)} jobs: p50 "
              f"{statistics.median(ordered):.2f} s, p90 {p90:.2f} s, max {ordered[-1]:.2f} s "
              f"(lease + 2 s = {args.lease + 2:g} s; over it: "
              f"{sum(1 for d in ordered if d > args.lease + 2)})")
    if never:
        print(f"  jobs of a killed worker that never ran again: {never} "
              "(their response was already on its way: it committed after the kill)")
    print(f"  worker log: self-fencing {worker_lines('lease not renewed for')}, "
          f"late results dropped {worker_lines('dropped a late')}, "
          f"re-registered {worker_lines('taken over by the reaper')}")
    return lost == 0 and overlapping + lock_taken == 0 and reruns + wrong_result == 0


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
    parser.add_argument("--kill-every", type=parse_range, default=(3.0, 8.0),
                        help="seconds between kills, a range: 3-8")
    parser.add_argument("--job-seconds", type=parse_range, default=(0.0, 0.2),
                        help="how long a job runs, a range: 0-0.2")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--keep", action="store_true", help="keep the schema and the logs")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (or PGCC_TEST_DSN / PGCC_DSN) is required")

    schema = f"soak_{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="pgcc-soak-"))
    tasks, logs = work / "tasks", work / "logs"
    tasks.mkdir()
    logs.mkdir()
    conn = psycopg.connect(args.dsn, autocommit=True)
    pgcc_schema.migrate(conn, schema)
    log = log_table(schema)
    chaos_task.install(conn, log, tasks, "soak", args.dsn, random.randrange(1, 2**31))
    print(f"schema {schema}, work folder {work}", flush=True)

    workers = Workers(args, schema, tasks, logs)
    workers.procs = [workers.start() for _ in range(args.workers)]
    schedule(conn, schema, args)
    print(f"scheduled {args.jobs} jobs", flush=True)

    kills: list[tuple[dt.datetime, list[tuple[int, int]]]] = []
    began = time.monotonic()
    next_kill = began + random.uniform(*args.kill_every)
    next_print = began + 15
    hard_stop = began + args.minutes * 60 + 600
    try:
        while True:
            current = states(conn, schema)
            if not current.get("queued") and not current.get("running") \
                    and time.monotonic() - began >= args.minutes * 60:
                break
            if time.monotonic() > hard_stop:
                print("giving up: jobs still not final", flush=True)
                break
            if time.monotonic() >= next_kill:
                index = random.randrange(len(workers.procs))
                victim = workers.procs[index]
                killed_at = now(conn)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                held = conn.execute(sql.SQL(
                    "SELECT j.id, j.attempts FROM {jobs} j JOIN {workers} w"
                    " ON w.id = j.worker_id WHERE w.pid = %s AND j.state = 'running'").format(
                    jobs=sql.SQL("{}.jobs").format(sql.Identifier(schema)),
                    workers=sql.SQL("{}.workers").format(sql.Identifier(schema))),
                    [victim.pid]).fetchall()
                kills.append((killed_at, [(row[0], row[1]) for row in held]))
                workers.procs[index] = workers.start()
                next_kill = time.monotonic() + random.uniform(*args.kill_every)
            if time.monotonic() >= next_print:
                next_print += 15
                print(f"{time.monotonic() - began:5.0f} s: {json.dumps(current, sort_keys=True)}"
                      f", {len(kills)} kills", flush=True)
            time.sleep(0.2)
    finally:
        elapsed = time.monotonic() - began
        workers.stop_all()
    ok = report(conn, schema, args, kills, elapsed, logs, workers.started)
    if not args.keep:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        shutil.rmtree(work, ignore_errors=True)
    conn.close()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
