"""What a worker counts for its metrics (pgcc/_worker/stats.py), and the JSON
log lines (pgcc/_logging.py)."""

from __future__ import annotations

import json
import logging

from pgcc._logging import JsonFormatter
from pgcc._worker.stats import DURATION_BUCKETS, ROUND_TRIP_BUCKETS, Stats


def test_jobs_are_counted_by_task_and_outcome_with_prometheus_buckets() -> None:
    stats = Stats()
    stats.job_finished("ok", "done", 0.005)  # on a bound: that bucket (le="0.005")
    stats.job_finished("ok", "done", 0.0051)
    stats.job_finished("ok", "failed", 7200.0)  # past the last bound: +Inf
    stats.job_finished("other", "timeout", 1.0)
    assert stats.finished == {("ok", "done"): 2, ("ok", "failed"): 1, ("other", "timeout"): 1}
    counts, total = stats.durations["ok"].snapshot()
    assert len(counts) == len(DURATION_BUCKETS) + 1
    assert counts[0] == 1 and counts[1] == 1 and counts[-1] == 1 and sum(counts) == 3
    assert total == 0.005 + 0.0051 + 7200.0
    assert sum(stats.durations["other"].snapshot()[0]) == 1


def test_claims_count_round_trips_and_jobs() -> None:
    stats = Stats()
    stats.claim(0.0004, 10)
    stats.claim(0.003, 0)
    counts, total = stats.round_trips.snapshot()
    assert len(counts) == len(ROUND_TRIP_BUCKETS) + 1
    assert counts[0] == 1 and counts[ROUND_TRIP_BUCKETS.index(0.005)] == 1
    assert abs(total - 0.0034) < 1e-12
    assert stats.claimed == 10


def test_a_json_log_line_has_the_records_fields_and_the_jobs() -> None:
    record = logging.LogRecord("pgcc.worker", logging.WARNING, __file__, 1,
                               "job %s failed: %s", (7, "ValueError: \"x\"\nmore"), None)
    record.pgcc_job = {"job_id": 7, "task": "ok", "attempt": 2, "outcome": "failed",
                       "duration": 0.25}
    line = json.loads(JsonFormatter().format(record))
    assert line.pop("time").endswith("Z")
    assert line == {"level": "warning", "logger": "pgcc.worker",
                    "message": "job 7 failed: ValueError: \"x\"\nmore", "job_id": 7,
                    "task": "ok", "attempt": 2, "outcome": "failed", "duration": 0.25}
    assert "\n" not in JsonFormatter().format(record)
