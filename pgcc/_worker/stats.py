"""What a worker counts for its metrics: plain numbers, cheap to keep.

Kept only with `pgcc worker --metrics`: without it the pool and the exchange
hold None and count nothing. The exchange's thread (through the pool) is the
only writer: it adds to ints and dicts, with no lock of their own and no
import of prometheus_client.
`pgcc worker --metrics` reads them at scrape time (pgcc._worker.metrics),
copying each dict first (a copy is one step for the interpreter, so it sees
no half-made change). A scrape may see a histogram's count one job ahead of
its sum; the next scrape agrees again.
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds (seconds) of the histograms' buckets; +Inf is implied.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 900.0, 3600.0)
ROUND_TRIP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                      1.0, 2.5, 5.0)

# A job's outcome, as counted (the `outcome` label of pgcc_jobs_finished_total).
DONE = "done"  # the task returned
FAILED = "failed"  # the task raised
RETRY = "retry"  # the task asked for another attempt (pgcc.Retry or its module's retry_on)
TIMEOUT = "timeout"  # the worker killed it at its timeout
NO_RESPONSE = "no_response"  # its child died or was stopped (cancel, lease) without answering
PUT_BACK = "put_back"  # stopped by the worker's shutdown, back in the queue


class Histogram:
    """Counts per bucket (not cumulative; the last is +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus's `le`: a value equal to a bound goes in that bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> tuple[list[int], float]:
        return list(self.counts), self.sum


class Stats:
    """The worker's counts since it started."""

    def __init__(self) -> None:
        # (task, outcome) -> jobs.
        self.finished: dict[tuple[str, str], int] = {}
        # task -> how long its jobs ran (seconds).
        self.durations: dict[str, Histogram] = {}
        # Round trips that claimed (the write of outcomes may share them).
        self.round_trips = Histogram(ROUND_TRIP_BUCKETS)
        self.claimed = 0

    def job_finished(self, task: str, outcome: str, seconds: float) -> None:
        key = (task, outcome)
        finished = self.finished
        finished[key] = finished.get(key, 0) + 1
        histogram = self.durations.get(task)
        if histogram is None:
            histogram = self.durations[task] = Histogram(DURATION_BUCKETS)
        # Histogram.observe, inline: this runs once per job.
        histogram.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def claim(self, seconds: float, jobs: int) -> None:
        self.round_trips.observe(seconds)
        self.claimed += jobs
