"""`pgcc worker --metrics PORT`: Prometheus metrics over HTTP (see docs/metrics.md).

Imported only when --metrics is given: prometheus_client loads nowhere else.
The server is one more part of the worker (pgcc._worker.parts.Part), in a
thread of its own that answers one request per step. A scrape reads:

- what this worker counted (pgcc._worker.stats), without a lock: the
  exchange's thread adds to plain ints and dicts, the scrape copies them;
- the jobs running now, from the pool (one pass under its lock per scrape);
- the queues, from the database: one query on a connection of its own,
  opened per read with short timeouts, its answer kept for a second; a slow
  or absent database makes the scrape slow or leaves those metrics out
  (pgcc_queue_metrics_up 0), never the worker's own work.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pgcc._queries import for_schema
from pgcc._worker.config import WorkerConfig
from pgcc._worker.stats import Histogram, Stats
from pgcc.errors import ConfigurationError

log = logging.getLogger("pgcc.worker")

# Seconds a read of the queues is reused for.
QUEUE_CACHE = 1.0
# Seconds a read of the queues may take: connecting (libpq's least), the query.
CONNECT_TIMEOUT = 2
STATEMENT_TIMEOUT_MS = 1000
# Seconds a client may take to send its request.
REQUEST_TIMEOUT = 2.0
# How long one step of the server's part waits for a request.
STEP_WAIT = 0.5


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT
    server: _Server

    def do_GET(self) -> None:  # the name http.server calls
        path = self.path.split("?", 1)[0]
        if path not in ("/", "/metrics"):
            self.send_error(404, "metrics are at /metrics")
            return
        try:
            body = generate_latest(self.server.registry)
        except Exception:
            log.exception("metrics: a scrape failed")
            self.send_error(500, "the metrics could not be collected")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class _Server(http.server.HTTPServer):
    registry: CollectorRegistry

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that hung up mid-answer: no traceback on stderr.
        log.debug("metrics: a request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """The listening socket, bound when the worker starts (a port in use is
    a configuration error), and what it serves once the worker is built."""

    def __init__(self, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _Handler)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigurationError(
                f"--metrics {port}: cannot listen on {host}:{port} ({reason})") from None
        self._server.timeout = STEP_WAIT
        self._server.registry = CollectorRegistry(auto_describe=False)
        port = self._server.server_address[1]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def serve(self, config: WorkerConfig, stats: Stats,
              running: Callable[[], dict[str, int]]) -> None:
        registry = self._server.registry
        registry.register(WorkerCollector(config, stats, running))
        ProcessCollector(registry=registry)
        log.info("metrics at http://%s/metrics", self.address)

    def step(self) -> float | None:
        """Answer one request, or return after STEP_WAIT without one."""
        self._server.handle_request()
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.server_close()


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    counts, total = histogram.snapshot()
    cumulative = 0
    buckets = []
    for bound, count in zip((*histogram.bounds, math.inf), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == math.inf else repr(bound), float(cumulative)))
    return buckets, total


class WorkerCollector(Collector):
    def __init__(self, config: WorkerConfig, stats: Stats,
                 running: Callable[[], dict[str, int]]) -> None:
        self._config = config
        self._stats = stats
        self._running = running
        self._query = for_schema(config.schema)["metrics_queues"]
        self._queues: list[tuple[str, int, int, float | None]] | None = None
        self._read_at = -math.inf
        self._failing = False

    def collect(self) -> Iterable[Metric]:
        yield from self._own()
        yield from self._from_database()

    def _own(self) -> Iterator[Metric]:
        stats = self._stats
        finished = CounterMetricFamily(
            "pgcc_jobs_finished", "Jobs this worker finished running, by task and outcome.",
            labels=["task", "outcome"])
        for (task, outcome), count in sorted(dict(stats.finished).items()):
            finished.add_metric([task, outcome], count)
        yield finished
        durations = HistogramMetricFamily(
            "pgcc_job_duration_seconds", "How long this worker's jobs ran, by task.",
            labels=["task"])
        for task, histogram in sorted(dict(stats.durations).items()):
            buckets, total = _buckets(histogram)
            durations.add_metric([task], buckets, total)
        yield durations
        running = GaugeMetricFamily(
            "pgcc_running_jobs", "Jobs running in this worker's children now, by task.",
            labels=["task"])
        for task, count in sorted(self._running().items()):
            running.add_metric([task], count)
        yield running
        round_trips = HistogramMetricFamily(
            "pgcc_claim_round_trip_seconds",
            "Round trips to the database that claimed jobs (with the outcomes written "
            "in the same trip).")
        buckets, total = _buckets(stats.round_trips)
        round_trips.add_metric([], buckets, total)
        yield round_trips
        yield CounterMetricFamily("pgcc_jobs_claimed", "Jobs this worker claimed.",
                                  value=stats.claimed)
        yield GaugeMetricFamily("pgcc_worker_concurrency", "This worker's child processes.",
                                value=self._config.concurrency)

    def _from_database(self) -> Iterator[Metric]:
        queues = self._read_queues()
        yield GaugeMetricFamily(
            "pgcc_queue_metrics_up",
            "1 if the last read of the queues from the database succeeded, else 0.",
            value=0 if queues is None else 1)
        if queues is None:
            return
        queued = GaugeMetricFamily(
            "pgcc_queued_jobs", "Jobs due to run and waiting for a worker, by task "
            "(every worker of the environment, every task).", labels=["task"])
        scheduled = GaugeMetricFamily(
            "pgcc_scheduled_jobs", "Queued jobs not due yet (scheduled for later, or "
            "waiting out a retry's backoff), by task.", labels=["task"])
        oldest = GaugeMetricFamily(
            "pgcc_oldest_queued_age_seconds", "How long the oldest due job of each task "
            "has waited past its run time (0 when none is due).", labels=["task"])
        for task, due, later, age in queues:
            queued.add_metric([task], due)
            scheduled.add_metric([task], later)
            oldest.add_metric([task], age or 0.0)
        yield queued
        yield scheduled
        yield oldest

    def _read_queues(self) -> list[tuple[str, int, int, float | None]] | None:
        now = time.monotonic()
        if now - self._read_at < QUEUE_CACHE:
            return self._queues
        try:
            with psycopg.connect(self._config.dsn, autocommit=True,
                                 connect_timeout=CONNECT_TIMEOUT,
                                 application_name="pgcc worker metrics") as conn:
                conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
                rows = conn.execute(self._query).fetchall()
        except (psycopg.Error, OSError) as exc:
            if not self._failing:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("metrics: cannot read the queues (%s)", first)
                self._failing = True
            self._queues = None
        else:
            self._failing = False
            self._queues = [(str(task), int(due), int(later),
                             None if age is None else float(age))
                            for task, due, later, age in rows]
        self._read_at = time.monotonic()
        return self._queues
