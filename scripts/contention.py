#!/usr/bin/env python3
"""The Worker issue's "Done when" run: real `pgcc worker` processes on contended queues.

Each repetition makes a fresh schema, starts --workers `pgcc worker` processes
with --concurrency children each, schedules --jobs jobs spread round-robin over
--queues queues, and waits until none is queued or running. Every job writes
(job id, queue, attempt, start, end, pid) into a log table from its own
connection, with the database clock. Then, per repetition:

- overlaps: runs that started before an earlier run of the same queue ended
- out-of-order: runs that started after a run of a later job of the same queue
- lost: jobs that did not end `done`, or ended `done` without having run
- duplicates: extra runs of a job that got a response (`done`)

All four must be 0; the script exits 1 otherwise (or if a worker did not exit 0).

    python scripts/contention.py --dsn postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import pgcc
from pgcc import _schema as pgcc_schema

# The contention run uses the tests' logging task: tests/ is a package beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import logged_task

PGCC = str(Path(sys.executable).parent / "pgcc")


CHECKS = """
WITH ordered AS (
    SELECT job_id, started,
           max(ended) OVER w AS earlier_end, max(job_id) OVER w AS earlier_id
    FROM {schema}.run_log
    WHERE queue IS NOT NULL
    WINDOW w AS (PARTITION BY queue ORDER BY started, job_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT
    (SELECT count(*) FROM {schema}.jobs) AS jobs,
    (SELECT count(*) FROM {schema}.jobs WHERE state = 'done') AS done,
    (SELECT count(*) FROM ordered WHERE started < earlier_end) AS overlaps,
    (SELECT count(*) FROM ordered WHERE job_id < earlier_id) AS out_of_order,
    (SELECT count(*) FROM {schema}.jobs j
     WHERE j.state <> 'done'
        OR NOT EXISTS (SELECT FROM {schema}.run_log l WHERE l.job_id = j.id)) AS lost,
    (SELECT coalesce(sum(n - 1), 0) FROM (
        SELECT count(*) AS n FROM {schema}.run_log l
        JOIN {schema}.jobs j ON j.id = l.job_id AND j.state = 'done'
        GROUP BY l.job_id HAVING count(*) > 1) d) AS duplicates,
    (SELECT count(DISTINCT pid) FROM {schema}.run_log) AS children,
    (SELECT count(DISTINCT worker_id) FROM {schema}.jobs) AS workers
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGCC_TEST_DSN")
                        or os.environ.get("PGCC_DSN"),
                        help="PostgreSQL to run on [PGCC_TEST_DSN, else PGCC_DSN]")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sleep-ms", type=float, default=2.0,
                        help="how long each job sleeps between its two log writes")
    parser.add_argument("--max-wait", type=float, default=900.0,
                        help="seconds a repetition may take before it counts as a failure")
    parser.add_argument("--keep", action="store_true", help="keep each repetition's schema")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn (or set PGCC_TEST_DSN or PGCC_DSN)")
    return args


def counts(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    query = sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state").format(
        sql.Identifier(schema))
    return {state: int(n) for state, n in conn.execute(query).fetchall()}


def wait_ready(log_path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while " ready: " not in log_path.read_text(errors="replace"):
        if process.poll() is not None:
            raise SystemExit(f"worker exited with {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise SystemExit(f"worker not ready after {timeout} s; see {log_path}")
        time.sleep(0.05)


def one_rep(args: argparse.Namespace, rep: int, workdir: Path) -> dict[str, Any]:
    schema = f"contention_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(schema)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        pgcc_schema.migrate(conn, schema)
        tasks = workdir / "tasks"
        env = {**os.environ, **logged_task.install(conn, schema, args.dsn, tasks)}
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for n in range(args.workers):
            log_path = workdir / f"rep{rep}-worker{n}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [PGCC, "worker", "--dsn", args.dsn, "--schema", schema, "--tasks",
                     str(tasks), "--concurrency", str(args.concurrency), "--no-migrate",
                     "--quiet"],
                    stdout=log, stderr=subprocess.STDOUT, env=env)
            workers.append((process, log_path))
        # --quiet hides the ready line; wait for the registrations instead.
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            query = sql.SQL("SELECT count(*) FROM {}.workers").format(ident)
            while (row := conn.execute(query).fetchone()) and row[0] < args.workers:
                for process, log_path in workers:
                    if process.poll() is not None:
                        raise SystemExit(f"worker exited with {process.returncode}; "
                                         f"see {log_path}")
                if time.monotonic() > deadline:
                    raise SystemExit("workers not registered after 60 s")
                time.sleep(0.05)
            # Let every worker finish starting its children before the jobs land.
            time.sleep(1)

            params = {"sleep": args.sleep_ms / 1000}
            jobs = [{"task": "logged", "parameters": params, "queue": f"q{i % args.queues}"}
                    for i in range(args.jobs)]
            started = time.monotonic()
            with pgcc.Client(args.dsn, schema=schema) as client:
                client.schedule_tasks(jobs)
            timed_out = False
            while True:
                state = counts(conn, schema)
                if not state.get("queued") and not state.get("running"):
                    break
                if time.monotonic() - started > args.max_wait:
                    timed_out = True
                    break
                time.sleep(0.1)
            wall = time.monotonic() - started
            row = conn.execute(sql.SQL(CHECKS).format(schema=ident)).fetchone()
            assert row is not None
            names = ["jobs", "done", "overlaps", "out_of_order", "lost", "duplicates",
                     "children", "workers"]
            result: dict[str, Any] = dict(zip(names, (int(v) for v in row), strict=True))
            result["lost"] += args.jobs - result["jobs"]
            result["wall"] = wall
            result["timed_out"] = timed_out
    finally:
        codes = []
        for process, _ in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in workers:
            try:
                codes.append(process.wait(60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
    result["exit_codes"] = codes
    result["schema"] = schema
    return result


def main() -> int:
    args = parse_args()
    print(f"contention: {args.workers} workers x {args.concurrency} children, "
          f"{args.queues} queues, {args.jobs} jobs, {args.reps} repetitions", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="pgcc-contention-") as tmp:
        for rep in range(1, args.reps + 1):
            r = one_rep(args, rep, Path(tmp))
            bad = (r["overlaps"] or r["out_of_order"] or r["lost"] or r["duplicates"]
                   or r["timed_out"] or any(r["exit_codes"]))
            failures += bool(bad)
            print(f"rep {rep}: jobs {r['jobs']} (done {r['done']}), overlaps {r['overlaps']}, "
                  f"out-of-order {r['out_of_order']}, lost {r['lost']}, "
                  f"duplicates {r['duplicates']}, wall {r['wall']:.1f} s "
                  f"({r['done'] / r['wall']:.0f} jobs/s), children used {r['children']}, "
                  f"workers used {r['workers']}, worker exit codes {r['exit_codes']}"
                  + (" TIMED OUT" if r["timed_out"] else "")
                  + ("  FAIL" if bad else "  ok"), flush=True)
            if bad and args.keep:
                print(f"  schema kept: {r['schema']}", flush=True)
    print("all repetitions clean" if not failures else f"{failures} repetition(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
