"""`pgcc bench`: the workloads users compare job queues by, and this machine's
PostgreSQL limit (pgbench) measured in the same run for scale.

Each workload runs on a fresh schema, `--reps` times; the median is reported.
Workers are real `pgcc worker` processes, so the figures include process
isolation, IPC and every round trip a user would pay.

Only `pgcc bench` imports this package. Its tasks (tasks/), its named queries
(bench.sql) and pgbench's scripts (sql/) ship in it as package data.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from pgcc import _schema as schema
from pgcc._client import Client
from pgcc._embedded import pg_binary
from pgcc._queries import for_schema
from pgcc._workloads import check_workloads

# Seconds from a worker's registration until its children are up, with room to
# spare on a slow machine (~0.5 s here).
CHILDREN_START = 1.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; `scale` shrinks them all for a smoke run."""

    scale: float = 1.0

    def n(self, full: int, least: int = 10) -> int:
        return max(least, int(full * self.scale))


@dataclass
class Figure:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    ref: str | None = None  # which REF figure this is a ratio to
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


@dataclass
class Report:
    figures: dict[str, Figure] = field(default_factory=dict)
    checks: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, name: str, unit: str, value: float, ref: str | None = None,
            higher_is_better: bool = True) -> None:
        figure = self.figures.setdefault(key, Figure(name, unit, ref=ref,
                                                     higher_is_better=higher_is_better))
        figure.values.append(value)

    def problem(self, workload: str, message: str) -> None:
        self.checks.setdefault(workload, []).append(message)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"figures": {}, "problems": self.checks, "notes": self.notes}
        for key, fig in self.figures.items():
            ref = self.figures.get(fig.ref) if fig.ref else None
            out["figures"][key] = {
                "name": fig.name, "unit": fig.unit, "median": fig.median,
                "values": fig.values,
                "ratio_to_ref": fig.median / ref.median if ref and ref.median else None,
                "ref": fig.ref,
            }
        return out

    def table(self) -> str:
        rows = [("figure", "median", "unit", "runs", "vs REF")]
        for key, fig in self.figures.items():
            ref = self.figures.get(fig.ref) if fig.ref else None
            ratio = f"{fig.median / ref.median:.2f} x {fig.ref}" if ref and ref.median else "-"
            runs = ", ".join(_fmt(v) for v in fig.values)
            rows.append((f"{key} {fig.name}", _fmt(fig.median), fig.unit, runs, ratio))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for workload, problems in self.checks.items():
            for problem in problems:
                lines.append(f"PROBLEM {workload}: {problem}")
        lines.extend(self.notes)
        return "\n".join(lines)


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


class Bench:
    def __init__(self, dsn: str, *, reps: int, sizes: Sizes, progress: Progress,
                 keep_schemas: bool = False) -> None:
        self.dsn = dsn
        self.reps = reps
        self.sizes = sizes
        self.progress = progress
        self.keep_schemas = keep_schemas
        self.report = Report()
        self.tasks_dir = Path(str(resources.files(__name__) / "tasks"))
        self.pgcc = str(Path(sys.executable).parent / "pgcc")

    # ---- plumbing --------------------------------------------------------

    @contextlib.contextmanager
    def fresh_schema(self, label: str) -> Iterator[str]:
        name = f"bench_{label.lower()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            schema.migrate(conn, name)
        try:
            yield name
        finally:
            if not self.keep_schemas:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(_q(name, "drop_schema"))

    @contextlib.contextmanager
    def workers(self, schema_name: str, count: int, concurrency: int) -> Iterator[list[int]]:
        processes = [
            subprocess.Popen(
                [self.pgcc, "worker", "--dsn", self.dsn, "--schema", schema_name,
                 "--tasks", str(self.tasks_dir), "--concurrency", str(concurrency),
                 "--no-migrate", "--quiet"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                # W9's write_plain connects by itself, as a task would.
                env={**os.environ, "PGCC_BENCH_DSN": self.dsn},
            )
            for _ in range(count)
        ]
        try:
            yield [p.pid for p in processes]
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    _, err = process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    _, err = process.communicate()
                if process.returncode != 0:
                    self.report.notes.append(
                        f"worker exited {process.returncode}: "
                        f"{err.decode(errors='replace')[-500:]}")

    def wait_ready(self, conn: psycopg.Connection[Any], schema_name: str, count: int) -> None:
        query = _q(schema_name, "workers_registered")
        deadline = time.monotonic() + 60
        while conn.execute(query).fetchone()[0] < count:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start within 60 s")
            time.sleep(0.01)

    def wait_started(self, conn: psycopg.Connection[Any], schema_name: str, count: int) -> None:
        """Every worker registered, and long enough since for its children to be up."""
        self.wait_ready(conn, schema_name, count)
        time.sleep(CHILDREN_START)

    def wait_done(self, conn: psycopg.Connection[Any], schema_name: str, total: int,
                  label: str, timeout: float = 600, task: str | None = None) -> None:
        query = _q(schema_name, "jobs_final" if task is None else "jobs_final_of")
        deadline = time.monotonic() + timeout
        last_shown = 0.0
        while True:
            done = conn.execute(query, {"task": task}).fetchone()[0]  # type: ignore[index]
            now = time.monotonic()
            if now - last_shown > 1:
                self.progress(f"{label}: {done:,}/{total:,} jobs done")
                last_shown = now
            if done >= total:
                return
            if now > deadline:
                raise RuntimeError(f"{label}: only {done} of {total} jobs done after {timeout} s")
            # The figures come from the jobs' own times; polling often only costs CPU.
            time.sleep(0.1)

    def enqueue_noops(self, conn: psycopg.Connection[Any], schema_name: str, total: int,
                      task: str = "noop") -> None:
        """Fill the queue fast: a plain INSERT, which the SPEC allows as a door."""
        batch = 100_000
        for start in range(0, total, batch):
            conn.execute(_q(schema_name, "enqueue_noops"),
                         {"task": task, "count": min(batch, total - start)})
            self.progress(f"enqueued {min(start + batch, total):,}/{total:,}")
        conn.execute(_q(schema_name, "vacuum_jobs"))

    # ---- workloads -------------------------------------------------------

    def ref(self) -> None:
        """pgbench on the same server: the ceiling every figure is scaled by."""
        pgbench = pg_binary("pgbench")
        scripts = resources.files(__name__) / "sql"
        with self.fresh_schema("ref") as name, resources.as_file(scripts) as folder:
            rows = self.sizes.n(100_000, 2_000)
            clients = 10
            per_client = max(1, rows // (clients * 100))
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SELECT set_config('search_path', %s, false)", [f'"{name}"'])
                conn.execute((folder / "ref_setup.sql").read_bytes())
            cycle, insert = folder / "claim_cycle.sql", folder / "single_insert.sql"
            enqueue = folder / "schedule_task.sql"
            for rep in range(self.reps):
                self.progress(f"REF rep {rep + 1}/{self.reps}: pgbench claim-and-complete")
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(_q(name, "ref_reset"))
                    conn.execute(_q(name, "ref_fill"), {"count": clients * per_client * 100})
                    conn.execute(_q(name, "ref_vacuum"))
                tps = _run_pgbench(pgbench, self.dsn, name, cycle, clients, per_client)
                self.report.add("REF-claim", "pgbench claim+complete 100/tx, 10 clients",
                                "rows/s", tps * 100)
                self.progress(f"REF rep {rep + 1}/{self.reps}: pgbench single-row INSERT")
                tps = _run_pgbench(pgbench, self.dsn, name, insert, 1, self.sizes.n(5_000, 200))
                self.report.add("REF-insert", "pgbench single-row INSERT, 1 client",
                                "rows/s", tps)
                # Not a limit of PostgreSQL but of pgcc's own SQL door, with no client
                # cost: how much of W1's gap to REF-insert lies in the server.
                self.progress(f"REF rep {rep + 1}/{self.reps}: pgbench schedule_task")
                tps = _run_pgbench(pgbench, self.dsn, name, enqueue, 1, self.sizes.n(5_000, 200))
                self.report.add("SQL-enqueue", "pgbench SELECT schedule_task(...), 1 client",
                                "jobs/s", tps, ref="REF-insert")

    def w1(self) -> None:
        total = self.sizes.n(5_000, 100)
        for rep in range(self.reps):
            with self.fresh_schema("w1") as name, Client(self.dsn, schema=name) as client:
                client.schedule_task("noop", {})  # open the pool outside the timing
                latencies = []
                self.progress(f"W1 rep {rep + 1}/{self.reps}: {total:,} schedule_task calls")
                start = time.perf_counter()
                for i in range(total):
                    t0 = time.perf_counter()
                    client.schedule_task("noop", {"i": i})
                    latencies.append(time.perf_counter() - t0)
                elapsed = time.perf_counter() - start
            self.report.add("W1", "enqueue single", "jobs/s", total / elapsed, ref="REF-insert")
            self.report.add("W1-p50", "enqueue single p50", "ms",
                            _percentile(latencies, 50) * 1000, higher_is_better=False)
            self.report.add("W1-p99", "enqueue single p99", "ms",
                            _percentile(latencies, 99) * 1000, higher_is_better=False)

    def w2(self) -> None:
        total, batch = self.sizes.n(20_000, 1_000), 1_000
        for rep in range(self.reps):
            with self.fresh_schema("w2") as name, Client(self.dsn, schema=name) as client:
                client.schedule_task("noop", {})
                self.progress(f"W2 rep {rep + 1}/{self.reps}: {total:,} jobs in batches of "
                              f"{batch:,}")
                start = time.perf_counter()
                for offset in range(0, total, batch):
                    client.schedule_tasks({"task": "noop", "parameters": {"i": i}}
                                          for i in range(offset, min(offset + batch, total)))
                elapsed = time.perf_counter() - start
            self.report.add("W2", "enqueue bulk", "jobs/s", total / elapsed, ref="REF-insert")

    def _drain(self, label: str, key: str, total: int, worker_count: int,
               rss: bool = False, blocked: int = 0) -> None:
        with self.fresh_schema(label) as name, \
                psycopg.connect(self.dsn, autocommit=True) as conn:
            if blocked:
                conn.execute(_q(name, "enqueue_blocked_queues"), {"count": blocked})
            self.enqueue_noops(conn, name, total)
            # On the server's clock, like the jobs' finished_at (the server may be elsewhere).
            launched = conn.execute(_q(name, "server_clock")).fetchone()[0]  # type: ignore[index]
            with self.workers(name, worker_count, 10) as pids:
                sampler = _RssSampler(pids) if rss else None
                self.wait_done(conn, name, total, label, task="noop")
                if sampler:
                    sampler.stop()
                    self.report.add("W3-rss", "worker + 10 children RSS (peak, PSS)", "MB",
                                    sampler.peak_mb, higher_is_better=False)
            first, last = conn.execute(_q(name, "run_span_of"),  # type: ignore[misc]
                                       {"task": "noop"}).fetchone()
        beside = f", beside {blocked:,} blocked queues" if blocked else ""
        self.report.add(key, f"drain, {worker_count} worker x 10, from launch{beside}", "jobs/s",
                        total / max(1e-9, last - launched), ref="REF-claim")
        self.report.add(f"{key}-steady", "drain, first start to last finish", "jobs/s",
                        total / max(1e-9, last - first), ref="REF-claim")

    def w3(self) -> None:
        total = self.sizes.n(20_000, 200)
        for rep in range(self.reps):
            self.progress(f"W3 rep {rep + 1}/{self.reps}: one worker")
            self._drain("w3", "W3-1", total, 1, rss=True)
            self.progress(f"W3 rep {rep + 1}/{self.reps}: two workers")
            self._drain("w3", "W3-2", total, 2)

    def w7(self) -> None:
        """W3-1 beside 10,000 queues whose heads no worker can run."""
        total = self.sizes.n(20_000, 200)
        for rep in range(self.reps):
            self.progress(f"W7 rep {rep + 1}/{self.reps}: one worker, 10,000 blocked queues")
            self._drain("w7", "W7", total, 1, blocked=10_000)

    def w4(self) -> None:
        seconds = max(1.0, 10 * self.sizes.scale)
        for rep in range(self.reps):
            with self.fresh_schema("w4") as name, Client(self.dsn, schema=name) as client, \
                    psycopg.connect(self.dsn, autocommit=True) as conn, \
                    self.workers(name, 1, 10):
                self.wait_started(conn, name, 1)
                self.progress(f"W4 rep {rep + 1}/{self.reps}: one job every 20 ms for "
                              f"{seconds:g} s")
                count = int(seconds / 0.02)
                next_at = time.perf_counter()
                for i in range(count):
                    client.schedule_task("noop", {"i": i})
                    next_at += 0.02
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                self.wait_done(conn, name, count, "W4")
                lat = [row[0] for row in conn.execute(_q(name, "latencies_ms"))]
            self.report.add("W4-p50", "latency p50 (start - enqueue)", "ms",
                            _percentile(lat, 50), higher_is_better=False)
            self.report.add("W4-p99", "latency p99", "ms", _percentile(lat, 99),
                            higher_is_better=False)

    def w5(self) -> None:
        """Serial queues: 2,000 jobs of 2 ms over 20 queues, both workers up first."""
        for rep in range(self.reps):
            self.progress(f"W5 rep {rep + 1}/{self.reps}")
            self._serial("W5", "serial queues, 2 workers x 10, workers up first",
                         queues=20, per_queue=self.sizes.n(100, 5), cold=False)

    def w5_cold(self) -> None:
        """W5 as other queues are compared: the jobs queued first, then two
        workers launched together, timed from their launch."""
        for rep in range(self.reps):
            self.progress(f"W5-cold rep {rep + 1}/{self.reps}")
            self._serial("W5-cold", "serial queues, jobs first, 2 workers x 10 from launch",
                         queues=20, per_queue=self.sizes.n(100, 5), cold=True)

    def w8(self) -> None:
        """200 busy serial queues x 100 jobs of 2 ms, two workers x 10."""
        for rep in range(self.reps):
            self.progress(f"W8 rep {rep + 1}/{self.reps}")
            self._serial("W8", "200 busy serial queues x 100, 2 workers x 10", queues=200,
                         per_queue=self.sizes.n(100, 5), cold=False)

    def _serial(self, key: str, title: str, *, queues: int, per_queue: int,
                cold: bool) -> None:
        total = queues * per_queue
        jobs = ({"task": "serial_probe", "queue": f"q{i % queues}",
                 "parameters": {"sleep": 0.002}} for i in range(total))
        with self.fresh_schema(key.replace("-", "_")) as name, \
                Client(self.dsn, schema=name) as client, \
                psycopg.connect(self.dsn, autocommit=True) as conn:
            if cold:
                client.schedule_tasks(jobs)
                conn.execute(_q(name, "vacuum_jobs"))
                launched = conn.execute(_q(name, "server_clock")).fetchone()[0]  # type: ignore[index]
            with self.workers(name, 2, 10):
                if not cold:
                    # Both workers up before the jobs arrive: the figure is the
                    # queues' pace, not how far apart two workers finish starting.
                    self.wait_started(conn, name, 2)
                    client.schedule_tasks(jobs)
                self.wait_done(conn, name, total, key)
            rows = conn.execute(_q(name, "serial_runs")).fetchall()
        first = launched if cold else min(r[3] for r in rows if r[3] is not None)
        last = max(r[4] for r in rows if r[4] is not None)
        self.report.add(key, title, "jobs/s", total / (last - first), ref="REF-claim")
        split = sorted(collections.Counter(r[5] for r in rows).values(), reverse=True)
        self.report.add(f"{key}-split", "busiest worker's share of the jobs", "%",
                        100 * split[0] / total, higher_is_better=False)
        self.report.notes.append(f"{key}: jobs per worker {split}")
        for problem in _serial_problems(rows):
            self.report.problem(key, problem)

    def w6(self) -> None:
        backlog = self.sizes.n(1_000_000, 2_000)
        window = max(2.0, 60 * self.sizes.scale)
        with self.fresh_schema("w6") as name, psycopg.connect(self.dsn, autocommit=True) as conn:
            self.progress(f"W6: enqueueing a backlog of {backlog:,} jobs")
            self.enqueue_noops(conn, name, backlog)
            with self.workers(name, 1, 10):
                self.wait_ready(conn, name, 1)
                first_start = None
                while first_start is None:
                    first_start = conn.execute(_q(name, "first_start")).fetchone()[0]  # type: ignore[index]
                    time.sleep(0.01)
                deadline = time.monotonic() + window
                done = 0
                while done < backlog and time.monotonic() < deadline:
                    done = conn.execute(_q(name, "jobs_done")).fetchone()[0]  # type: ignore[index]
                    self.progress(f"W6: {done:,} done of {backlog:,}")
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                done, now = conn.execute(_q(name, "jobs_done")).fetchone()  # type: ignore[misc]
                if done >= backlog:
                    # Drained within the window: the rate is over the drain, not the window.
                    now = conn.execute(_q(name, "run_span")).fetchone()[1]  # type: ignore[index]
        rate = done / (now - first_start)
        self.report.add("W6", f"drain at a {backlog:,} backlog, first {window:g} s or until "
                        "drained", "jobs/s", rate, ref="REF-claim")


    def w9(self) -> None:
        """What a step costs: jobs that each write one row, in a transaction of
        their own (write_plain) or as a step (write_step), drained by one
        worker x 10; and the write's own time, measured in the task."""
        total = self.sizes.n(5_000, 100)
        for rep in range(self.reps):
            times = {}
            for task in ("write_plain", "write_step"):
                self.progress(f"W9 rep {rep + 1}/{self.reps}: {total:,} jobs of {task}")
                with self.fresh_schema("w9") as name, \
                        psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(_q(name, "writes_table"))
                    conn.execute(_q(name, "enqueue_writes"),
                                 {"task": task, "schema": name, "count": total})
                    conn.execute(_q(name, "vacuum_jobs"))
                    with self.workers(name, 1, 10):
                        self.wait_done(conn, name, total, f"W9 {task}", task=task)
                    first, last = conn.execute(_q(name, "run_span_of"),  # type: ignore[misc]
                                               {"task": task}).fetchone()
                    ms, rows, not_done = conn.execute(  # type: ignore[misc]
                        _q(name, "write_times"), {"task": task}).fetchone()
                if rows != total or not_done:
                    self.report.problem("W9", f"{task}: {rows} rows written and {not_done} "
                                        f"jobs not done, of {total}")
                key = "W9-plain" if task == "write_plain" else "W9-step"
                self.report.add(key, f"drain, jobs writing one row ({task}), 1 worker x 10",
                                "jobs/s", total / max(1e-9, last - first),
                                ref=None if key == "W9-plain" else "W9-plain")
                self.report.add(f"{key}-p50", f"{task}: the write's time in the task, p50",
                                "ms", ms, higher_is_better=False)
                times[key] = ms
            self.report.add("W9-extra", "a step's extra time per write, p50", "ms",
                            times["W9-step"] - times["W9-plain"], higher_is_better=False)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def _serial_problems(rows: list[tuple[Any, ...]]) -> list[str]:
    """Overlaps, order breaks and unfinished jobs in a serial-queue run."""
    problems = []
    by_queue: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        if row[2] != "done":
            problems.append(f"job {row[0]} ended {row[2]}")
            continue
        by_queue.setdefault(row[1], []).append(row)
    for queue, jobs in by_queue.items():
        for earlier, later in itertools.pairwise(jobs):  # ordered by id
            if later[3] < earlier[4]:
                problems.append(f"queue {queue}: job {later[0]} started before job "
                                f"{earlier[0]} ended (overlap or out of order)")
    return problems


def _q(schema_name: str, name: str) -> str:
    return for_schema(schema_name, "bench.sql", __name__)[name]


def _run_pgbench(pgbench: str, dsn: str, schema_name: str, script: Path, clients: int,
                 transactions: int) -> float:
    result = subprocess.run(
        [pgbench, "-n", "-f", str(script), "-c", str(clients), "-j", str(min(clients, 2)),
         "-t", str(transactions), dsn],
        capture_output=True, text=True, check=False,
        # The scripts name their tables unqualified: point them at the bench schema.
        env={**os.environ, "PGOPTIONS": f"-c search_path={schema_name}"},
    )
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip() or result.stdout.strip()}")
    return float(match[1])


class _RssSampler:
    """Peak memory of the workers' process trees (PSS, so shared pages count once)."""

    def __init__(self, pids: list[int]) -> None:
        import threading

        self._pids = pids
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = sum(_pss_kb(pid) for root in self._pids for pid in _tree(root))
            self.peak_mb = max(self.peak_mb, total / 1024)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def method_name(workload: str) -> str:
    """The Bench method that runs a workload of WORKLOADS ("W5-COLD": w5_cold)."""
    return workload.lower().replace("-", "_")


def run(dsn: str, *, only: list[str], reps: int, scale: float, progress: Progress) -> Report:
    check_workloads(only)
    bench = Bench(dsn, reps=reps, sizes=Sizes(scale), progress=progress)
    for name in only:
        getattr(bench, method_name(name))()
    return bench.report
